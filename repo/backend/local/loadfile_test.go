package local_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cairn-backup/cairn/internal/directio"
	"github.com/cairn-backup/cairn/internal/directio/directiotest"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/local"
)

// TestLoadFile reads whole files of sizes around the direct-I/O block, into a reused
// buffer and into none, on the test's file system and on tmpfs (which refuses
// O_DIRECT before Linux 6.6), with none, all or the first part of the file in the
// page cache, and compares them byte for byte.
func TestLoadFile(t *testing.T) {
	dirs := directiotest.Dirs(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dir := range dirs {
		be, err := local.Create(dir + "/repo")
		if err != nil {
			t.Fatal(err)
		}
		var buf []byte
		for i, size := range []int{0, 1, 4095, 4096, 4097, 1 << 20, 5<<20 + 12345, 300} {
			data := make([]byte, size)
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			h := backend.Handle{Type: backend.PackFile, Name: string(rune('a'+i)) + "0ffee"}
			if err := be.Save(ctx, h, backend.NewByteReader(data)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "repo", "data", h.Name[:2], h.Name)
			for _, cached := range []int{0, size, min(size, size/2+123)} {
				setCached(t, path, cached)
				for _, reuse := range []bool{false, true} {
					in := buf
					if !reuse {
						in = nil
					}
					got, err := be.LoadFile(ctx, h, in)
					if err != nil {
						t.Fatalf("%s: size %d, %d cached: %v", dir, size, cached, err)
					}
					if !bytes.Equal(got, data) {
						t.Fatalf("%s: size %d, %d cached: read %d bytes, not the %d saved", dir, size, cached, len(got), size)
					}
					buf = got
				}
			}
		}
		_, err = be.LoadFile(ctx, backend.Handle{Type: backend.PackFile, Name: "ffff"}, nil)
		if !backend.IsNotExist(err) {
			t.Fatalf("missing file: %v, want not-exist", err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := be.LoadFile(cctx, backend.Handle{Type: backend.PackFile, Name: "a0ffee"}, nil); err == nil {
			t.Fatal("cancelled context: no error")
		}
	}
}

// setCached leaves the first n bytes of the file at path in the page cache and drops
// the rest (as far as the file system lets pages go).
func setCached(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	directio.DropCache(f)
	if _, err := io.ReadFull(f, make([]byte, n)); err != nil && n > 0 {
		t.Fatal(err)
	}
}

// TestReadCached: a file just read comes whole from the page cache; one whose pages
// were dropped yields nothing, without waiting for the disk.
func TestReadCached(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	data := bytes.Repeat([]byte("cairn "), 300000)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	setCached(t, path, len(data))
	got := make([]byte, len(data))
	if n := directio.ReadCached(f, got); n != len(data) || !bytes.Equal(got, data) {
		if n == 0 && runtime.GOOS != "linux" {
			t.Skip("no cache-only reads on " + runtime.GOOS)
		}
		t.Fatalf("cached file: ReadCached read %d of %d bytes (equal: %v)", n, len(data), bytes.Equal(got[:n], data[:n]))
	}
	setCached(t, path, 0)
	if n := directio.ReadCached(f, got); n != 0 {
		// Some file systems keep pages that fadvise asked to drop; tmpfs always does.
		t.Logf("dropped file: ReadCached still read %d bytes", n)
	}
}
