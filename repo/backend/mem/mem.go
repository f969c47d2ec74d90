// Package mem owns the in-memory backend used by tests: a map from handle to bytes
// that honours the whole backend contract (atomic saves, ErrExists, ranged loads).
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/cairn-backup/cairn/repo/backend"
)

// Backend keeps a repository in memory. The zero value is not usable; call New.
type Backend struct {
	mu     sync.RWMutex
	files  map[backend.Handle][]byte
	loc    string
	closed bool
}

var _ backend.Backend = (*Backend)(nil)

// New returns an empty in-memory backend whose Location is "mem:".
func New() *Backend {
	return &Backend{files: make(map[backend.Handle][]byte), loc: "mem:"}
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.loc }

func (b *Backend) check(ctx context.Context, op string, h backend.Handle) error {
	if err := h.Valid(); err != nil {
		return fmt.Errorf("%s %s: %w", op, h, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, h, err)
	}
	return nil
}

func normalize(h backend.Handle) backend.Handle {
	if h.Type == backend.ConfigFile {
		h.Name = ""
	}
	return h
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if err := b.check(ctx, "save", h); err != nil {
		return err
	}
	h = normalize(h)
	b.mu.RLock()
	_, exists := b.files[h]
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return fmt.Errorf("save %s: backend %s is closed", h, b.loc)
	}
	if exists && h.Type != backend.LockFile {
		return fmt.Errorf("save %s: %w", h, backend.ErrExists)
	}
	var buf bytes.Buffer
	if n := rd.Length(); n > 0 {
		buf.Grow(int(n))
	}
	if _, err := io.Copy(&buf, rd); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	if n, want := int64(buf.Len()), rd.Length(); n != want {
		return fmt.Errorf("save %s: read %d bytes, reader announced %d", h, n, want)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, exists := b.files[h]; exists && h.Type != backend.LockFile {
		return fmt.Errorf("save %s: %w", h, backend.ErrExists)
	}
	b.files[h] = buf.Bytes()
	return nil
}

func (b *Backend) get(h backend.Handle) ([]byte, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, fmt.Errorf("backend %s is closed", b.loc)
	}
	data, ok := b.files[normalize(h)]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return data, nil
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	if err := b.check(ctx, "load", h); err != nil {
		return err
	}
	if err := backend.CheckRange(h, length, offset); err != nil {
		return err
	}
	data, err := b.get(h)
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	n, err := backend.RangeLength(h, int64(len(data)), length, offset)
	if err != nil {
		return err
	}
	data = data[offset : offset+n]
	if err := fn(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	return nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := b.check(ctx, "stat", h); err != nil {
		return backend.FileInfo{}, err
	}
	data, err := b.get(h)
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	return backend.FileInfo{Name: normalize(h).Name, Size: int64(len(data))}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return fmt.Errorf("list %s: backend %s is closed", t, b.loc)
	}
	var infos []backend.FileInfo
	for h, data := range b.files {
		if h.Type == t {
			infos = append(infos, backend.FileInfo{Name: h.Name, Size: int64(len(data))})
		}
	}
	b.mu.RUnlock()
	for _, fi := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := b.check(ctx, "remove", h); err != nil {
		return err
	}
	h = normalize(h)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("remove %s: backend %s is closed", h, b.loc)
	}
	if _, ok := b.files[h]; !ok {
		return fmt.Errorf("remove %s: %w", h, fs.ErrNotExist)
	}
	delete(b.files, h)
	return nil
}

// Close implements backend.Backend.
func (b *Backend) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}
