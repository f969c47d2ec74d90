package cache_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/mem"
	"github.com/cairn-backup/cairn/repo/cache"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
	"github.com/zeebo/blake3"
)

const repoID = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func handleFor(t backend.FileType, data []byte) backend.Handle {
	sum := blake3.Sum256(data)
	return backend.Handle{Type: t, Name: hex.EncodeToString(sum[:])}
}

func openCache(t *testing.T) (*cache.Cache, string) {
	t.Helper()
	base := t.TempDir()
	c, err := cache.Open(base, repoID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(base, "CACHEDIR.TAG")); err != nil {
		t.Fatalf("no CACHEDIR.TAG: %v", err)
	}
	return c, base
}

func TestSaveLoadVerify(t *testing.T) {
	c, _ := openCache(t)
	data := []byte("an encrypted snapshot file")
	h := handleFor(backend.SnapshotFile, data)
	if _, ok := c.Load(h); ok {
		t.Fatal("hit in an empty cache")
	}
	if err := c.Save(h, data); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Load(h)
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("Load = %q, %v", got, ok)
	}
	// Bytes that do not match the name are never stored.
	bad := backend.Handle{Type: backend.IndexFile, Name: h.Name}
	if err := c.Save(bad, []byte("other bytes")); !errors.Is(err, cache.ErrMismatch) {
		t.Fatalf("Save of mismatching bytes: %v", err)
	}
	if c.Has(bad) {
		t.Fatal("mismatching bytes were cached")
	}
	// A damaged cached file is deleted and reported as a miss.
	p := filepath.Join(c.Dir(), filepath.FromSlash(h.Path()))
	if err := os.WriteFile(p, []byte("tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Load(h); ok {
		t.Fatal("damaged file served")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("damaged file not deleted: %v", err)
	}
	if s := c.Stats(); s.Damaged != 1 || s.Hits != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Only content-addressed repository files are cached.
	if err := c.Save(backend.Handle{Type: backend.LockFile, Name: h.Name}, data); err == nil {
		t.Fatal("lock file cached")
	}
}

func TestFetchOpenRetain(t *testing.T) {
	c, _ := openCache(t)
	pack := bytes.Repeat([]byte("tree pack "), 10000)
	h := handleFor(backend.PackFile, pack)
	var downloads int
	var mu sync.Mutex
	fetch := func() (*os.File, int64, error) {
		return c.Fetch(h, func(save func(io.Reader) error) error {
			mu.Lock()
			downloads++
			mu.Unlock()
			// A broken first transfer, then a complete one: each save starts over.
			if err := save(io.LimitReader(bytes.NewReader(pack), 100)); !errors.Is(err, cache.ErrMismatch) {
				return errors.New("truncated transfer was accepted")
			}
			return save(bytes.NewReader(pack))
		})
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, size, err := fetch()
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			got, _ := io.ReadAll(f)
			if size != int64(len(pack)) || !bytes.Equal(got, pack) {
				t.Error("fetched content differs")
			}
		}()
	}
	wg.Wait()
	if downloads != 1 {
		t.Fatalf("%d downloads for concurrent fetches, want 1", downloads)
	}
	// Open verifies a file once per process; a damaged file is dropped.
	c2, err := cache.Open(filepath.Dir(c.Dir()), repoID)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(c.Dir(), filepath.FromSlash(h.Path()))
	damaged := append([]byte(nil), pack...)
	damaged[5000] ^= 1
	if err := os.WriteFile(p, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if f, _, ok := c2.Open(h); ok {
		f.Close()
		t.Fatal("damaged pack opened")
	}
	if c2.Has(h) {
		t.Fatal("damaged pack kept")
	}
	// A download that does not match the name fails permanently and caches nothing.
	_, _, err = c2.Fetch(h, func(save func(io.Reader) error) error { return save(bytes.NewReader(damaged)) })
	if !errors.Is(err, cache.ErrMismatch) || c2.Has(h) {
		t.Fatalf("mismatching download: %v, cached %v", err, c2.Has(h))
	}

	// Retain evicts what keep rejects.
	a, b := []byte("index a"), []byte("index b")
	ha, hb := handleFor(backend.IndexFile, a), handleFor(backend.IndexFile, b)
	for _, x := range []struct {
		h backend.Handle
		d []byte
	}{{ha, a}, {hb, b}} {
		if err := c2.Save(x.h, x.d); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c2.Retain(backend.IndexFile, func(name string) bool { return name == ha.Name })
	if err != nil || n != 1 || !c2.Has(ha) || c2.Has(hb) {
		t.Fatalf("Retain: %d, %v; has a %v, b %v", n, err, c2.Has(ha), c2.Has(hb))
	}
}

// countingBackend counts Loads per file type.
type countingBackend struct {
	backend.Backend
	mu    sync.Mutex
	loads map[backend.FileType]int
}

func (c *countingBackend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	c.mu.Lock()
	c.loads[h.Type]++
	c.mu.Unlock()
	return c.Backend.Load(ctx, h, length, offset, fn)
}

func (c *countingBackend) reset() map[backend.FileType]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.loads
	c.loads = map[backend.FileType]int{}
	return old
}

// TestRepositoryThroughCache: a second command (a new Repository on the same cache)
// lists snapshots, loads the index and walks the trees without loading any index,
// snapshot or pack file; damaged cached files are replaced; deleted files are
// evicted.
func TestRepositoryThroughCache(t *testing.T) {
	ctx := context.Background()
	be := &countingBackend{Backend: mem.New(), loads: map[backend.FileType]int{}}
	cred, err := crypto.NewPassphrase("pw", 10)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, be, cred, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for i, name := range []string{"a/one.txt", "a/b/two.txt", "c/three.bin"} {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, 100000*(i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var snapIDs []string
	for range 2 {
		res, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}, Host: "h"})
		if err != nil {
			t.Fatal(err)
		}
		snapIDs = append(snapIDs, res.Snapshot.ID.String())
	}
	base := t.TempDir()
	open := func() *repo.Repository {
		t.Helper()
		hook := func(ctx context.Context, r *repo.Repository) error {
			c, err := cache.Open(base, r.Config().ID)
			if err != nil {
				return err
			}
			r.SetCache(c)
			return nil
		}
		r, err := repo.Open(repo.WithOpenHook(ctx, hook), be, cred)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	plan := func(r *repo.Repository) int {
		t.Helper()
		if err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		snaps, err := snapshot.List(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		files := 0
		for _, sn := range snaps {
			if err := snapshot.Walk(ctx, r, sn.Tree, func(p string, n *snapshot.Node) error {
				if n.Type == snapshot.TypeFile {
					files++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		return files
	}
	be.reset()
	if got := plan(open()); got != 6 {
		t.Fatalf("first walk found %d files, want 6", got)
	}
	if l := be.reset(); l[backend.SnapshotFile] != 2 || l[backend.IndexFile] == 0 || l[backend.PackFile] == 0 {
		t.Fatalf("first run loads %v: expected snapshot, index and tree pack downloads", l)
	}
	if got := plan(open()); got != 6 {
		t.Fatalf("second walk found %d files", got)
	}
	if l := be.reset(); l[backend.SnapshotFile]+l[backend.IndexFile]+l[backend.PackFile] != 0 {
		t.Fatalf("second run loaded %v from the backend, want nothing but config and keys", l)
	}

	// A damaged cached snapshot and tree pack are replaced from the repository.
	dir := filepath.Join(base, r.Config().ID)
	snapPath := filepath.Join(dir, "snapshots", snapIDs[0])
	if err := os.WriteFile(snapPath, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	var packPath string
	_ = filepath.WalkDir(filepath.Join(dir, "data"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			packPath = p
		}
		return nil
	})
	if packPath == "" {
		t.Fatal("no tree pack cached")
	}
	pack, err := os.ReadFile(packPath)
	if err != nil {
		t.Fatal(err)
	}
	pack[len(pack)/2] ^= 0xff
	if err := os.WriteFile(packPath, pack, 0o600); err != nil {
		t.Fatal(err)
	}
	r3 := open()
	if got := plan(r3); got != 6 {
		t.Fatalf("walk over damaged cache found %d files", got)
	}
	if l := be.reset(); l[backend.SnapshotFile] != 1 || l[backend.PackFile] != 1 {
		t.Fatalf("damaged cache: loads %v, want the snapshot and the pack again", l)
	}
	if s := r3.Cache().Stats(); s.Damaged != 2 {
		t.Fatalf("cache stats %+v, want 2 damaged", s)
	}

	// Index files and packs the repository no longer has are evicted when the index
	// is loaded.
	gone := strings.Repeat("ab", 32)
	stalePack := filepath.Join(dir, "data", "ab", gone)
	staleIndex := filepath.Join(dir, "index", gone)
	for _, p := range []string{stalePack, staleIndex} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("deleted from the repository"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := open().LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{stalePack, staleIndex} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s not evicted: %v", p, err)
		}
	}

	// A snapshot deleted from the repository is evicted at the next listing.
	if err := be.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: snapIDs[0]}); err != nil {
		t.Fatal(err)
	}
	if got := plan(open()); got != 3 {
		t.Fatalf("after forgetting one snapshot: %d files", got)
	}
	if _, err := os.Stat(snapPath); !os.IsNotExist(err) {
		t.Fatalf("deleted snapshot still cached: %v", err)
	}
}
