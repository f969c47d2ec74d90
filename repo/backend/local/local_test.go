package local_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/backendtest"
	"github.com/cairn-backup/cairn/repo/backend/local"
)

func newLocal(t *testing.T) backend.Backend {
	be, err := local.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return be
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, newLocal)
}

func TestLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"keys", "data", "index", "snapshots", "locks"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			t.Fatalf("create: directory %s missing: %v", sub, err)
		}
	}
	h := backend.Handle{Type: backend.PackFile, Name: "cafe" + backendtest.RandomID()[4:]}
	backendtest.Save(t, be, h, []byte("pack"))
	if _, err := os.Stat(filepath.Join(dir, "data", "ca", h.Name)); err != nil {
		t.Fatalf("pack not stored under data/ca/: %v", err)
	}
	backendtest.Save(t, be, backend.Handle{Type: backend.ConfigFile}, []byte("cfg"))
	if _, err := os.Stat(filepath.Join(dir, "config")); err != nil {
		t.Fatalf("config not stored at the root: %v", err)
	}

	// Leftovers of interrupted saves and foreign entries are never listed.
	for _, p := range []string{"data/ca/" + local.TempPrefix + "123", "keys/" + local.TempPrefix + "9", "data/" + local.TempPrefix + "x"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "keys", "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if got := backendtest.ListNames(t, be, backend.PackFile); !slices.Equal(got, []string{h.Name}) {
		t.Fatalf("list data: got %v, want only %s", got, h.Name)
	}
	if got := backendtest.ListNames(t, be, backend.KeyFile); len(got) != 0 {
		t.Fatalf("list keys: got %v, want nothing", got)
	}

	// Create refuses an existing repository; Open accepts it.
	if _, err := local.Create(dir); !errors.Is(err, backend.ErrExists) {
		t.Fatalf("create over an existing repository: want ErrExists, got %v", err)
	}
	re, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := backendtest.Load(t, re, h); string(got) != "pack" {
		t.Fatalf("load through reopened backend: got %q", got)
	}
	if _, err := local.Open(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open missing directory: want fs.ErrNotExist, got %v", err)
	}
}

func TestNoTempLeftAfterFailedSave(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Type: backend.PackFile, Name: "ab" + backendtest.RandomID()[2:]}
	ctx, cancel := context.WithCancel(context.Background())
	rd := &cancelReader{data: make([]byte, 1<<20), cancel: cancel}
	if err := be.Save(ctx, h, rd); !errors.Is(err, context.Canceled) {
		t.Fatalf("save cancelled midway: want context.Canceled, got %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "data", "ab"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("data/ab holds %d entries after a failed save, want none", len(entries))
	}
}

// cancelReader cancels its context after the first read.
type cancelReader struct {
	data   []byte
	pos    int
	cancel func()
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.pos >= len(c.data) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1000)], c.data[c.pos:])
	c.pos += n
	c.cancel()
	return n, nil
}
func (c *cancelReader) Rewind() error { c.pos = 0; return nil }
func (c *cancelReader) Length() int64 { return int64(len(c.data)) }
