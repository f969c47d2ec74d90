package restore

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/directio"
	"github.com/cairn-backup/cairn/internal/directio/directiotest"
	"github.com/cairn-backup/cairn/snapshot"
)

// TestDirectWrites drives the content writer with blobs in file order, out of order
// and with the handle evicted in between, on the test's file system and on tmpfs,
// and on a stand-in for a file system that refuses direct I/O (at create, in
// in-place mode, or only when a file is reopened), and compares the files byte for
// byte. Writes in flight on the writer goroutines must be finished before a file is
// finished or its handle closed.
func TestDirectWrites(t *testing.T) {
	type setup struct {
		dir          string
		refuse       string // "", "create" or "reopen"
		inPlace      bool
		expectDirect bool
	}
	var setups []setup
	for _, dir := range directiotest.Dirs(t) {
		setups = append(setups, setup{dir: dir, expectDirect: directiotest.OK(dir)})
	}
	if directio.Flag != 0 {
		setups = append(setups, setup{dir: t.TempDir(), refuse: "create", inPlace: true},
			setup{dir: t.TempDir(), refuse: "reopen"})
	}
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
	for _, su := range setups {
		dir := su.dir
		for oname, order := range orders {
			for _, evict := range []bool{false, true} {
				root, err := os.OpenRoot(dir)
				if err != nil {
					t.Fatal(err)
				}
				rs := &restorer{root: root, ctx: context.Background(), failed: map[string]struct{}{},
					handles: &handleCache{limit: maxOpenFiles}, parents: newParentDirs(root), opts: Options{InPlace: su.inPlace}}
				if su.refuse != "" {
					rs.testOpen = refuseDirect(root, su.refuse)
				}
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
					if su.inPlace {
						f.tmp = name + ".part"
					}
					for _, k := range order(len(blobs)) {
						data := want[offs[k] : offs[k]+int64(blobs[k])]
						rs.write(target{f: f, off: offs[k]}, data)
						if evict {
							f.mu.Lock()
							if f.fh != nil && !f.done {
								if err := rs.release(f); err != nil {
									t.Fatal(err)
								}
							}
							f.mu.Unlock()
						}
					}
					// A file written directly is finished on a goroutine of its own.
					rs.finishing.Wait()
					if oname == "in order" && f.size >= directMin && su.expectDirect && f.cursor == 0 {
						t.Errorf("%s in %s: nothing was written directly", name, dir)
					}
					if su.refuse == "create" && f.cursor != 0 {
						t.Errorf("%s: %d bytes written directly where direct I/O is refused", name, f.cursor)
					}
					if !f.done || f.failed {
						t.Fatalf("%s (refused %q): not finished (failed %v): %v", name, su.refuse, f.failed, rs.errs)
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

// refuseDirect stands in for os.Root.OpenFile on a file system without direct I/O,
// as Linux reports it: an O_DIRECT open fails with EINVAL, after creating the file
// if asked to. when is "create" (every O_DIRECT open fails) or "reopen" (only opens
// of existing files do).
func refuseDirect(root *os.Root, when string) func(string, int, fs.FileMode) (*os.File, error) {
	return func(name string, flag int, perm fs.FileMode) (*os.File, error) {
		creating := flag&os.O_CREATE != 0
		if flag&directio.Flag == 0 || (when == "reopen" && creating) {
			return root.OpenFile(name, flag, perm)
		}
		if creating {
			f, err := root.OpenFile(name, flag&^directio.Flag, perm)
			if err != nil {
				return nil, err
			}
			f.Close()
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EINVAL}
	}
}
