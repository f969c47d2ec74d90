package local_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/cairn-backup/cairn/internal/directio/directiotest"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/local"
)

// TestLoadFile reads whole files of sizes around the direct-I/O block, into a reused
// buffer and into none, on the test's file system and on tmpfs (which refuses
// O_DIRECT before Linux 6.6), and compares them byte for byte.
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
			for _, reuse := range []bool{false, true} {
				in := buf
				if !reuse {
					in = nil
				}
				got, err := be.LoadFile(ctx, h, in)
				if err != nil {
					t.Fatalf("%s: size %d: %v", dir, size, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("%s: size %d: read %d bytes, not the %d saved", dir, size, len(got), size)
				}
				buf = got
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
