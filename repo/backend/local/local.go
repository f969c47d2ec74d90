// Package local owns the local-directory backend: a repository stored as plain files
// under one directory, with atomic saves (temporary file, fsync, rename, fsync of the
// directory) and pack files spread over data/<xx>/ subdirectories.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/internal/directio"
	"github.com/cairn-backup/cairn/repo/backend"
)

// TempPrefix starts the names of the temporary files Save writes. Handle names never
// start with a dot, so List never reports them.
const TempPrefix = ".tmp-"

const (
	dirMode  = 0o700
	fileMode = 0o600
)

// Backend is a repository in a local directory.
type Backend struct {
	root   string
	loc    string
	closed atomic.Bool
}

var _ backend.Backend = (*Backend)(nil)

// Create makes the directory layout of a new repository at path (the directory itself
// may already exist but must not contain a config file) and opens it.
func Create(path string) (*Backend, error) {
	root, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("create repository %s: %w", path, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "config")); err == nil {
		return nil, fmt.Errorf("create repository %s: config file already present: %w", path, backend.ErrExists)
	}
	if err := os.MkdirAll(root, dirMode); err != nil {
		return nil, fmt.Errorf("create repository %s: %w", path, mapErr(err))
	}
	for _, t := range backend.AllTypes {
		if t == backend.ConfigFile {
			continue
		}
		if err := os.MkdirAll(filepath.Join(root, t.String()), dirMode); err != nil {
			return nil, fmt.Errorf("create repository %s: %w", path, mapErr(err))
		}
	}
	if err := syncDir(root); err != nil {
		return nil, fmt.Errorf("create repository %s: %w", path, err)
	}
	return &Backend{root: root, loc: path}, nil
}

// Open opens the existing repository directory at path. A missing directory yields
// an error wrapping fs.ErrNotExist.
func Open(path string) (*Backend, error) {
	root, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", path, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open repository %s: not a directory", path)
	}
	return &Backend{root: root, loc: path}, nil
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.loc }

// WithLocation sets the string Location reports (the location as the user wrote it,
// e.g. with a "local:" prefix) and returns b. Call it before sharing b.
func (b *Backend) WithLocation(loc string) *Backend {
	b.loc = loc
	return b
}

// Root returns the absolute path of the repository directory.
func (b *Backend) Root() string { return b.root }

func (b *Backend) filename(h backend.Handle) string {
	return filepath.Join(b.root, filepath.FromSlash(h.Path()))
}

func (b *Backend) check(ctx context.Context, op string, h backend.Handle) error {
	if err := h.Valid(); err != nil {
		return fmt.Errorf("%s %s: %w", op, h, err)
	}
	if b.closed.Load() {
		return fmt.Errorf("%s %s: backend %s is closed", op, h, b.loc)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, h, err)
	}
	return nil
}

// StagingDir implements backend.StagingDirer: temporary files there (named
// TempPrefix+"…") are on the repository's file system and never listed.
func (b *Backend) StagingDir() string { return filepath.Join(b.root, backend.PackFile.String()) }

// adopt links a complete staged file to its final name after syncing it: no copy.
// The caller removes the staged name. The file's pages, clean once synced, are then
// dropped from the page cache: nothing reads a pack soon after it is written (a
// restore reads packs with direct I/O, LoadFile), and the memory is the cheapest
// there is for the next pack a backup writes (docs/PERFORMANCE.md §Pack files).
func (b *Backend) adopt(ctx context.Context, h backend.Handle, f *os.File, length int64, crash bool) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	if fi.Size() != length {
		return fmt.Errorf("save %s: staged file has %d bytes, reader announced %d", h, fi.Size(), length)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save %s: sync %s: %w", h, f.Name(), mapErr(err))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	crashMidpoint(crash)
	final := b.filename(h)
	err = os.Link(f.Name(), final)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(final), dirMode); err != nil {
			return fmt.Errorf("save %s: %w", h, mapErr(err))
		}
		err = os.Link(f.Name(), final)
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("save %s: %w", h, backend.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	directio.DropCache(f)
	return nil
}

// RemoveTemp implements backend.TempCleaner: it deletes TempPrefix files older than
// before under every type directory (and data/<xx>/).
func (b *Backend) RemoveTemp(ctx context.Context, before time.Time) (int, error) {
	n := 0
	err := filepath.WalkDir(b.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), TempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil || !fi.ModTime().Before(before) {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove temporary file %s: %w", p, err)
		}
		n++
		return nil
	})
	return n, err
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	crash := crashEnter()
	if err := b.check(ctx, "save", h); err != nil {
		return err
	}
	final := b.filename(h)
	dir := filepath.Dir(final)
	if h.Type != backend.LockFile {
		if _, err := os.Lstat(final); err == nil {
			return fmt.Errorf("save %s: %w", h, backend.ErrExists)
		}
	}
	f, err := os.CreateTemp(dir, TempPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// data/<xx>/ (or a type directory removed by hand) is created lazily.
		if err = os.MkdirAll(dir, dirMode); err != nil {
			return fmt.Errorf("save %s: %w", h, mapErr(err))
		}
		f, err = os.CreateTemp(dir, TempPrefix+"*")
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()

	if fb, ok := rd.(backend.FileBacked); ok && h.Type != backend.LockFile && filepath.Dir(fb.File().Name()) == b.StagingDir() {
		return b.adopt(ctx, h, fb.File(), rd.Length(), crash)
	}
	var n int64
	if fb, ok := rd.(backend.FileBacked); ok {
		// In-kernel copy of a pack file written by the packer (no user-space copy).
		n, err = f.ReadFrom(fb.File())
	} else {
		n, err = io.Copy(f, backend.ContextReader(ctx, rd))
	}
	if err != nil {
		return fmt.Errorf("save %s: write %s: %w", h, tmp, mapErr(err))
	}
	if want := rd.Length(); n != want {
		return fmt.Errorf("save %s: wrote %d bytes, reader announced %d", h, n, want)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save %s: sync %s: %w", h, tmp, mapErr(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save %s: close %s: %w", h, tmp, mapErr(err))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	crashMidpoint(crash)
	if h.Type == backend.LockFile {
		if err := os.Rename(tmp, final); err != nil {
			return fmt.Errorf("save %s: %w", h, mapErr(err))
		}
	} else {
		// A hard link never replaces an existing file, so two concurrent Saves of the
		// same handle cannot both succeed. Where links are unsupported, fall back to
		// rename after the existence check above.
		err := os.Link(tmp, final)
		switch {
		case err == nil:
			_ = os.Remove(tmp)
		case errors.Is(err, fs.ErrExist):
			return fmt.Errorf("save %s: %w", h, backend.ErrExists)
		default:
			if _, serr := os.Lstat(final); serr == nil {
				return fmt.Errorf("save %s: %w", h, backend.ErrExists)
			}
			if err := os.Rename(tmp, final); err != nil {
				return fmt.Errorf("save %s: %w", h, mapErr(err))
			}
		}
	}
	committed = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	return nil
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	if err := b.check(ctx, "load", h); err != nil {
		return err
	}
	if err := backend.CheckRange(h, length, offset); err != nil {
		return err
	}
	f, err := os.Open(b.filename(h))
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	n, err := backend.RangeLength(h, fi.Size(), length, offset)
	if err != nil {
		return err
	}
	if err := fn(backend.ContextReader(ctx, io.NewSectionReader(f, offset, n))); err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	return nil
}

// LoadFile implements backend.FileLoader. The whole file is read in one request, into
// buf when buf is aligned and large enough: what the page cache already holds (a pack
// another tool or an earlier command left there) is copied from it, and the rest is
// read with direct I/O where the file system allows it. A restore, copy or check
// reads each pack once: through the page cache, every 4 KiB not yet cached would
// take a page the kernel has to find and fill (on the reference machine about 2.5 ns
// per byte of kernel time, more than decrypting it), to be thrown away later
// (docs/PERFORMANCE.md §Restore).
func (b *Backend) LoadFile(ctx context.Context, h backend.Handle, buf []byte) ([]byte, error) {
	if err := b.check(ctx, "load", h); err != nil {
		return nil, err
	}
	name := b.filename(h)
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
	size := int(fi.Size())
	need := (size + directio.Align - 1) &^ (directio.Align - 1)
	if cap(buf) < need || !directio.Aligned(buf) {
		// Room to spare, so that the buffer can be reused for the next file, which
		// is likely of about the same size (packs of 16 MiB plus a blob).
		buf = directio.Buffer((need + loadSlack - 1) &^ (loadSlack - 1))
	}
	buf = buf[:need]
	n := directio.ReadCached(f, buf[:size])
	if n < size {
		// Direct reads start at an aligned offset.
		n &^= directio.Align - 1
		df, direct, err := openForDirectRead(name)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", h, err)
		}
		defer func() { _ = df.Close() }()
		for n < size {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			m, err := df.ReadAt(buf[n:need], int64(n))
			n += m
			if err == io.EOF {
				break
			}
			if err != nil && direct && errors.Is(err, syscall.EINVAL) {
				// An offset or length the file system will not read directly (a short
				// read left n unaligned): go on through the page cache.
				if cerr := directio.Clear(df); cerr != nil {
					return nil, fmt.Errorf("load %s: %w", h, cerr)
				}
				direct = false
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", h, err)
			}
		}
	}
	if n != size {
		return nil, fmt.Errorf("load %s: read %d bytes of %d (file changed while read)", h, n, size)
	}
	return buf[:size], nil
}

// loadSlack rounds the buffers LoadFile allocates up to a multiple of it.
const loadSlack = 4 << 20

// openForDirectRead opens name for reading, with direct I/O where the file system
// supports it.
func openForDirectRead(name string) (*os.File, bool, error) {
	if directio.Flag != 0 {
		f, err := os.OpenFile(name, os.O_RDONLY|directio.Flag, 0)
		if err == nil {
			return f, true, nil
		}
		if !errors.Is(err, syscall.EINVAL) {
			return nil, false, err
		}
	}
	f, err := os.Open(name)
	return f, false, err
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := b.check(ctx, "stat", h); err != nil {
		return backend.FileInfo{}, err
	}
	fi, err := os.Stat(b.filename(h))
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	if !fi.Mode().IsRegular() {
		return backend.FileInfo{}, fmt.Errorf("stat %s: not a regular file", h)
	}
	return backend.FileInfo{Name: h.Name, Size: fi.Size()}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if b.closed.Load() {
		return fmt.Errorf("list %s: backend %s is closed", t, b.loc)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	switch t {
	case backend.ConfigFile:
		fi, err := os.Stat(filepath.Join(b.root, "config"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		return fn(backend.FileInfo{Size: fi.Size()})
	case backend.PackFile:
		top := filepath.Join(b.root, t.String())
		subs, err := os.ReadDir(top)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		for _, sub := range subs {
			if !sub.IsDir() || strings.HasPrefix(sub.Name(), ".") {
				continue
			}
			if err := b.listDir(ctx, t, filepath.Join(top, sub.Name()), fn); err != nil {
				return err
			}
		}
		return nil
	case backend.KeyFile, backend.IndexFile, backend.SnapshotFile, backend.LockFile:
		return b.listDir(ctx, t, filepath.Join(b.root, t.String()), fn)
	}
	return fmt.Errorf("list %s: invalid file type", t)
}

func (b *Backend) listDir(ctx context.Context, t backend.FileType, dir string, fn func(backend.FileInfo) error) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		if !e.Type().IsRegular() || (backend.Handle{Type: t, Name: e.Name()}).Valid() != nil {
			continue // temporary files, directories and foreign names
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed concurrently
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		if err := fn(backend.FileInfo{Name: e.Name(), Size: fi.Size()}); err != nil {
			return err
		}
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	crash := crashEnter()
	if err := b.check(ctx, "remove", h); err != nil {
		return err
	}
	if err := os.Remove(b.filename(h)); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	crashMidpoint(crash)
	return nil
}

// Close implements backend.Backend.
func (b *Backend) Close() error {
	b.closed.Store(true)
	return nil
}

// syncDir fsyncs a directory so a rename or new entry in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil && !syncUnsupported(err) {
		return fmt.Errorf("sync directory %s: %w", dir, mapErr(err))
	}
	return nil
}

// mapErr makes "disk full" and "quota exceeded" errors wrap backend.ErrNoSpace while
// keeping the original error (which names the path) in the chain.
func mapErr(err error) error {
	if err != nil && isNoSpace(err) && !errors.Is(err, backend.ErrNoSpace) {
		return fmt.Errorf("%w: %w", backend.ErrNoSpace, err)
	}
	return err
}
