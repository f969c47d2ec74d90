// Package cache owns cairn's local cache of repository files: verified copies of the
// content-addressed files that every command reads again — index files, snapshot
// files and packs holding only trees — kept as the encrypted bytes under their
// content-addressed names, so that listing snapshots, planning a backup or walking
// trees against S3 or SFTP needs no downloads after the first time.
//
// Nothing in the cache is trusted: Load and Open check that the BLAKE3 hash of a file
// equals its name before returning it (Open once per process, after which age's
// authentication and the blob IDs protect every read), and a file that fails is
// deleted and reported as a miss, so the caller fetches it again. Files are written
// to a temporary name and renamed, so concurrent processes sharing the cache never
// see half a file. Retain evicts files the repository no longer lists.
//
// Layout: <base>/CACHEDIR.TAG and <base>/<repository id>/{index,snapshots,data/<xx>}/<id>,
// the paths of docs/FORMAT.md §Layout. The base is $XDG_CACHE_HOME/cairn or
// ~/.cache/cairn (DefaultBase) unless configured.
package cache

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/retry"
	"github.com/zeebo/blake3"
)

// ErrMismatch is wrapped by the error of a fetched file whose hash is not its name.
var ErrMismatch = errors.New("cache: content hash does not match the file's name")

// tagFile marks the base directory for backup tools (https://bford.info/cachedir/).
const (
	tagFile    = "CACHEDIR.TAG"
	tagContent = "Signature: 8a477f597d28d172789f06886806bc55\n" +
		"# This file is a cache directory tag created by cairn.\n" +
		"# For information about cache directory tags, see https://bford.info/cachedir/\n"
	tempPrefix = ".tmp-"
	// staleTemp is the age after which Retain removes temporary files left by a
	// process that died while writing.
	staleTemp = time.Hour
)

// Stats counts what a Cache did since it was opened.
type Stats struct {
	Hits    int64 // files served from the cache
	Misses  int64 // files not (validly) in the cache
	Damaged int64 // cached files that failed verification and were deleted
	Stored  int64 // files written to the cache
	Evicted int64 // files removed by Retain
}

// Cache is the cache directory of one repository. Safe for concurrent use, also by
// several processes.
type Cache struct {
	dir string

	mu       sync.Mutex
	verified map[string]int64       // path → size of files verified by this process
	fetching map[string]*sync.Mutex // path → lock held while the file is fetched

	hits, misses, damaged, stored, evicted atomic.Int64
}

// DefaultBase returns the directory that holds the caches of all repositories:
// $XDG_CACHE_HOME/cairn, else ~/.cache/cairn (on Linux; os.UserCacheDir elsewhere).
func DefaultBase() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the user cache directory: %w", err)
	}
	return filepath.Join(d, "cairn"), nil
}

// Open opens (creating it if needed) the cache of the repository with the given ID
// (hex, as in the config) below base.
func Open(base, repoID string) (*Cache, error) {
	if b, err := hex.DecodeString(repoID); err != nil || len(b) != 32 {
		return nil, fmt.Errorf("open cache: invalid repository id %q", repoID)
	}
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, fmt.Errorf("create cache directory: %w", err)
	}
	tag := filepath.Join(base, tagFile)
	if _, err := os.Stat(tag); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(tag, []byte(tagContent), 0o600); err != nil {
			return nil, fmt.Errorf("create cache directory tag: %w", err)
		}
	}
	dir := filepath.Join(base, repoID)
	for _, t := range []backend.FileType{backend.IndexFile, backend.SnapshotFile, backend.PackFile} {
		if err := os.MkdirAll(filepath.Join(dir, t.String()), 0o700); err != nil {
			return nil, fmt.Errorf("create cache directory: %w", err)
		}
	}
	return &Cache{dir: dir, verified: map[string]int64{}, fetching: map[string]*sync.Mutex{}}, nil
}

// Dir returns the repository's cache directory.
func (c *Cache) Dir() string { return c.dir }

// Cacheable reports whether files of type t may be cached: index, snapshot and pack
// files (the content-addressed types whose names verify their bytes).
func Cacheable(t backend.FileType) bool {
	return t == backend.IndexFile || t == backend.SnapshotFile || t == backend.PackFile
}

func (c *Cache) path(h backend.Handle) (string, error) {
	if !Cacheable(h.Type) {
		return "", fmt.Errorf("cache: %s files are not cached", h.Type)
	}
	if b, err := hex.DecodeString(h.Name); err != nil || len(b) != 32 {
		return "", fmt.Errorf("cache: %s is not a content-addressed name", h)
	}
	return filepath.Join(c.dir, filepath.FromSlash(h.Path())), nil
}

func matches(sum []byte, name string) bool { return hex.EncodeToString(sum) == name }

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Damaged: c.damaged.Load(),
		Stored: c.stored.Load(), Evicted: c.evicted.Load()}
}

// Load returns the cached bytes of h after checking that their hash is h's name. A
// file that fails the check is deleted; ok is false then and when there is none.
func (c *Cache) Load(h backend.Handle) (data []byte, ok bool) {
	p, err := c.path(h)
	if err != nil {
		return nil, false
	}
	data, err = os.ReadFile(p)
	if err != nil {
		c.misses.Add(1)
		return nil, false
	}
	sum := blake3.Sum256(data)
	if !matches(sum[:], h.Name) {
		c.discard(p)
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return data, true
}

// discard deletes a damaged cached file.
func (c *Cache) discard(p string) {
	c.damaged.Add(1)
	c.mu.Lock()
	delete(c.verified, p)
	c.mu.Unlock()
	_ = os.Remove(p)
}

// Remove deletes the cached copy of h, e.g. after its content failed to decrypt.
func (c *Cache) Remove(h backend.Handle) error {
	p, err := c.path(h)
	if err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.verified, p)
	c.mu.Unlock()
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove cached %s: %w", h, err)
	}
	return nil
}

// Save stores data as the cached copy of h. Data whose hash is not h's name is
// refused with an error wrapping ErrMismatch: the cache holds only verified bytes.
func (c *Cache) Save(h backend.Handle, data []byte) error {
	sum := blake3.Sum256(data)
	if !matches(sum[:], h.Name) {
		return fmt.Errorf("cache %s: %w", h, ErrMismatch)
	}
	p, err := c.path(h)
	if err != nil {
		return err
	}
	return c.write(p, h, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, nil)
}

// write fills a temporary file next to p with fill, checks the hash when hasher is
// given, and renames it to p.
func (c *Cache) write(p string, h backend.Handle, fill func(io.Writer) error, hasher *blake3.Hasher) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("cache %s: %w", h, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("cache %s: %w", h, err)
	}
	tmp := f.Name()
	var w io.Writer = f
	if hasher != nil {
		w = io.MultiWriter(f, hasher)
	}
	err = fill(w)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cache %s: %w", h, cerr)
	}
	if err == nil && hasher != nil && !matches(hasher.Sum(nil), h.Name) {
		err = fmt.Errorf("cache %s: %w", h, ErrMismatch)
	}
	if err == nil {
		if rerr := os.Rename(tmp, p); rerr != nil {
			err = fmt.Errorf("cache %s: %w", h, rerr)
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	c.stored.Add(1)
	return nil
}

// Open returns the cached file of h, open for reading, and its size. The first Open of
// a file in this process reads it whole and checks its hash against its name; a file
// that fails is deleted and ok is false, as when there is none. The caller closes f.
func (c *Cache) Open(h backend.Handle) (f *os.File, size int64, ok bool) {
	p, err := c.path(h)
	if err != nil {
		return nil, 0, false
	}
	f, err = os.Open(p)
	if err != nil {
		c.misses.Add(1)
		return nil, 0, false
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		c.misses.Add(1)
		return nil, 0, false
	}
	c.mu.Lock()
	vsize, verified := c.verified[p]
	c.mu.Unlock()
	if verified && vsize == fi.Size() {
		c.hits.Add(1)
		return f, fi.Size(), true
	}
	hasher := blake3.New()
	if _, err := io.Copy(hasher, f); err != nil || !matches(hasher.Sum(nil), h.Name) {
		_ = f.Close()
		c.discard(p)
		c.misses.Add(1)
		return nil, 0, false
	}
	c.mu.Lock()
	c.verified[p] = fi.Size()
	c.mu.Unlock()
	c.hits.Add(1)
	return f, fi.Size(), true
}

// Fetch returns the cached file of h like Open; on a miss it calls download, which
// must pass the file's bytes to save (download may call save more than once, e.g. a
// retrying backend after a broken transfer: each call starts over). save checks the
// hash against the name and fails with an error wrapping ErrMismatch (marked
// permanent for the retry decorator) when it differs. Concurrent Fetches of one file
// download it once.
func (c *Cache) Fetch(h backend.Handle, download func(save func(io.Reader) error) error) (*os.File, int64, error) {
	if f, size, ok := c.Open(h); ok {
		return f, size, nil
	}
	p, err := c.path(h)
	if err != nil {
		return nil, 0, err
	}
	unlock := c.lockFetch(p)
	defer unlock()
	if f, size, ok := c.Open(h); ok { // another goroutine fetched it meanwhile
		c.misses.Add(-1)
		return f, size, nil
	}
	err = download(func(rd io.Reader) error {
		hasher := blake3.New()
		err := c.write(p, h, func(w io.Writer) error {
			_, err := io.Copy(w, rd)
			return err
		}, hasher)
		if errors.Is(err, ErrMismatch) {
			return retry.Permanent(err)
		}
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, fmt.Errorf("open cached %s: %w", h, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("open cached %s: %w", h, err)
	}
	c.mu.Lock()
	c.verified[p] = fi.Size()
	c.mu.Unlock()
	return f, fi.Size(), nil
}

func (c *Cache) lockFetch(p string) func() {
	c.mu.Lock()
	m := c.fetching[p]
	if m == nil {
		m = &sync.Mutex{}
		c.fetching[p] = m
	}
	c.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// Has reports whether a file for h is in the cache (without verifying it).
func (c *Cache) Has(h backend.Handle) bool {
	p, err := c.path(h)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// Retain evicts the cached files of type t for which keep returns false — files the
// repository no longer has — and temporary files older than an hour. It returns the
// number of files evicted.
func (c *Cache) Retain(t backend.FileType, keep func(name string) bool) (int, error) {
	if !Cacheable(t) {
		return 0, fmt.Errorf("cache: %s files are not cached", t)
	}
	root := filepath.Join(c.dir, t.String())
	n := 0
	now := time.Now()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		name := d.Name()
		if strings.HasPrefix(name, tempPrefix) {
			if fi, err := d.Info(); err == nil && now.Sub(fi.ModTime()) > staleTemp {
				_ = os.Remove(p)
			}
			return nil
		}
		if keep(name) {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		c.mu.Lock()
		delete(c.verified, p)
		c.mu.Unlock()
		n++
		return nil
	})
	c.evicted.Add(int64(n))
	if err != nil {
		return n, fmt.Errorf("evict cached %s files: %w", t, err)
	}
	return n, nil
}
