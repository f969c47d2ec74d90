package restore

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/directio/directiotest"
	"github.com/cairn-backup/cairn/snapshot"
)

// TestDirectWrites drives the content writer with blobs in file order, out of order
// and with the handle evicted in between, on the test's file system and on tmpfs
// (which refuses direct I/O), and compares the files byte for byte. Writes in flight
// on the writer goroutines must be finished before a file is finished or its handle
// closed.
func TestDirectWrites(t *testing.T) {
	dirs := directiotest.Dirs(t)
	rng := rand.New(rand.NewPCG(7, 8))
	sizes := [][]int{
		{100},                          // below directMin: buffered
		{directMin},                    // one aligned blob
		{directMin + 1},                // one blob with a 1-byte tail
		{70000, 5000, 3, 4096, 300000}, // carried tails across blobs
		{1 << 20, 1 << 20, 123457},     // bounce buffer boundaries
		{2<<20 + 17, 900001, 65536, 1}, // more
		{3 << 20, 5<<20 + 4095, 4097},  // several bounce buffers in flight at once
	}
	orders := map[string]func(n int) []int{
		"in order": func(n int) []int {
			o := make([]int, n)
			for i := range o {
				o[i] = i
			}
			return o
		},
		"reversed": func(n int) []int {
			o := make([]int, n)
			for i := range o {
				o[i] = n - 1 - i
			}
			return o
		},
		"shuffled": func(n int) []int { return rng.Perm(n) },
	}
	for _, dir := range dirs {
		for oname, order := range orders {
			for _, evict := range []bool{false, true} {
				root, err := os.OpenRoot(dir)
				if err != nil {
					t.Fatal(err)
				}
				rs := &restorer{root: root, ctx: context.Background(), failed: map[string]struct{}{},
					handles: &handleCache{limit: maxOpenFiles}}
				rs.startDirectWriters()
				for i, blobs := range sizes {
					var want []byte
					var offs []int64
					for _, n := range blobs {
						offs = append(offs, int64(len(want)))
						b := make([]byte, n)
						for j := range b {
							b[j] = byte(rng.Uint32())
						}
						want = append(want, b...)
					}
					name := filepath.Base(t.Name()) + "-" + oname + "-" + string(rune('a'+i))
					if evict {
						name += "-evict"
					}
					f := &fileState{rel: name, tmp: name, size: int64(len(want)), remaining: len(blobs),
						node: &snapshot.Node{Mode: 0o644, ModTime: time.Unix(1, 0)}}
					for _, k := range order(len(blobs)) {
						data := want[offs[k] : offs[k]+int64(blobs[k])]
						rs.write(target{f: f, off: offs[k]}, data)
						if evict && f.fh != nil && !f.done {
							f.mu.Lock()
							if err := rs.release(f); err != nil {
								t.Fatal(err)
							}
							f.mu.Unlock()
						}
					}
					if oname == "in order" && f.size >= directMin && directiotest.OK(dir) && f.cursor == 0 {
						t.Errorf("%s in %s: nothing was written directly", name, dir)
					}
					if !f.done || f.failed {
						t.Fatalf("%s: not finished (failed %v): %v", name, f.failed, rs.errs)
					}
					got, err := os.ReadFile(filepath.Join(dir, name))
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("%s in %s: %d bytes read back, want %d identical (%v)", name, dir, len(got), len(want), err)
					}
				}
				rs.stopDirectWriters()
				root.Close()
			}
		}
	}
}
