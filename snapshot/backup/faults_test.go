package backup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend/mem"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
	"github.com/cairn-backup/cairn/snapshot/restore"
)

// Source-side faults (docs/RELIABILITY.md §Source faults): files that change size while
// they are read, directories replaced by files during the walk, sockets, pipes and
// devices. The backup never crashes; what it stores is consistent (the node's size is
// the content's size) and every deviation is reported through Warn.

func sfRepo(t *testing.T) *repo.Repository {
	t.Helper()
	cred, err := crypto.NewPassphrase("pw", crypto.MinScryptWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(context.Background(), mem.New(), cred, repo.InitOptions{PackSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

type sfWarnings struct {
	mu   sync.Mutex
	list []string
}

func (w *sfWarnings) warn(path string, err error) {
	w.mu.Lock()
	w.list = append(w.list, path+": "+err.Error())
	w.mu.Unlock()
}

func (w *sfWarnings) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.list, "\n")
}

// sfRestore restores the snapshot and returns the restored copy of path.
func sfRestore(t *testing.T, r *repo.Repository, sn *snapshot.Snapshot, path string) string {
	t.Helper()
	target := t.TempDir()
	if _, err := restore.Run(context.Background(), r, sn.Tree, restore.Options{Target: target}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	return filepath.Join(target, path)
}

func sfNode(t *testing.T, r *repo.Repository, sn *snapshot.Snapshot, path string) *snapshot.Node {
	t.Helper()
	var found *snapshot.Node
	err := snapshot.Walk(context.Background(), r, sn.Tree, func(p string, n *snapshot.Node) error {
		if "/"+p == path {
			c := *n
			found = &c
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestFileChangesSizeWhileRead: a goroutine truncates and appends to a large file
// while it is backed up. The backup succeeds; the stored node's size equals the stored
// content; when the file is reported as changed the warning names it, and otherwise
// the content is the file's.
func TestFileChangesSizeWhileRead(t *testing.T) {
	for _, mode := range []string{"shrink", "grow"} {
		t.Run(mode, func(t *testing.T) {
			src := t.TempDir()
			big := filepath.Join(src, "big.bin")
			rng := rand.New(rand.NewPCG(5, 5))
			data := make([]byte, 8<<20)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			if err := os.WriteFile(big, data, 0o644); err != nil {
				t.Fatal(err)
			}
			r := sfRepo(t)
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load() && i < 100; i++ {
					switch mode {
					case "shrink":
						_ = os.Truncate(big, int64(len(data)-(i+1)*(32<<10)))
					case "grow":
						f, err := os.OpenFile(big, os.O_APPEND|os.O_WRONLY, 0)
						if err == nil {
							_, _ = f.Write(data[:32<<10])
							f.Close()
						}
					}
				}
			}()
			var w sfWarnings
			res, err := backup.Run(context.Background(), r, backup.Options{Paths: []string{src}, Host: "t", Warn: w.warn})
			stop.Store(true)
			wg.Wait()
			if err != nil {
				t.Fatalf("backup of a changing file: %v", err)
			}
			n := sfNode(t, r, res.Snapshot, big)
			if n == nil {
				t.Fatalf("big.bin missing from the snapshot (warnings: %s)", w.String())
			}
			got, err := os.ReadFile(sfRestore(t, r, res.Snapshot, big))
			if err != nil {
				t.Fatal(err)
			}
			if uint64(len(got)) != n.Size {
				t.Fatalf("node size %d, restored %d bytes", n.Size, len(got))
			}
			now, _ := os.ReadFile(big)
			changed := strings.Contains(w.String(), big+": changed while being read")
			if !changed && !bytes.Equal(got, now) {
				t.Fatalf("content differs from the file (%d vs %d bytes) without a warning", len(got), len(now))
			}
			// What was stored is a state of the file: a prefix of the original data
			// (shrink) or the original plus appended copies (grow).
			cmp := data
			if mode == "grow" {
				cmp = append(bytes.Clone(data), bytes.Repeat(data[:32<<10], 100)...)
			}
			if !bytes.Equal(got, cmp[:min(len(got), len(cmp))]) {
				t.Fatal("stored content is not a state of the file")
			}
			t.Logf("%s: stored %d of %d bytes; warned: %v", mode, len(got), len(now), changed)
		})
	}
}

// TestDirectoriesReplacedDuringWalk: while a backup walks a tree, a goroutine keeps
// replacing directories by files and back. The backup succeeds or skips entries with
// warnings, never crashes, and its snapshot restores.
func TestDirectoriesReplacedDuringWalk(t *testing.T) {
	src := t.TempDir()
	const dirs = 40
	for i := 0; i < dirs; i++ {
		for j := 0; j < 5; j++ {
			p := filepath.Join(src, fmt.Sprintf("d%02d", i), fmt.Sprintf("f%d", j))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, 3000+j), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := sfRepo(t)
	for round := 0; round < 3; round++ {
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i = (i + 1) % dirs {
				d := filepath.Join(src, fmt.Sprintf("d%02d", i))
				if fi, err := os.Lstat(d); err == nil && fi.IsDir() {
					_ = os.RemoveAll(d)
					_ = os.WriteFile(d, []byte("now a file"), 0o644)
				} else {
					_ = os.Remove(d)
					_ = os.MkdirAll(d, 0o755)
					_ = os.WriteFile(filepath.Join(d, "f0"), []byte("back"), 0o644)
				}
			}
		}()
		var w sfWarnings
		res, err := backup.Run(context.Background(), r, backup.Options{Paths: []string{src}, Host: "t", Warn: w.warn})
		stop.Store(true)
		wg.Wait()
		if err != nil {
			t.Fatalf("round %d: backup while directories change: %v", round, err)
		}
		target := t.TempDir()
		if _, err := restore.Run(context.Background(), r, res.Snapshot.Tree, restore.Options{Target: target}); err != nil {
			t.Fatalf("round %d: restore: %v", round, err)
		}
		for _, s := range res.Skipped {
			var se *backup.SourceError
			if !errors.As(s, &se) || !strings.HasPrefix(se.Path, src) {
				t.Errorf("skipped entry does not name its path: %v", s)
			}
		}
	}
}

// TestSpecialFilesSkipped: sockets, named pipes and device files are skipped with a
// warning naming them; they are not errors (the backup is complete) and not restored.
func TestSpecialFilesSkipped(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "ok"), []byte("fine"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(src, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantKinds := []string{"socket", "named pipe"}
	// A character device (like /dev/null) needs CAP_MKNOD.
	if err := syscall.Mknod(filepath.Join(src, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err == nil {
		wantKinds = append(wantKinds, "device")
	} else {
		t.Logf("no device file: %v", err)
	}
	r := sfRepo(t)
	var w sfWarnings
	res, err := backup.Run(context.Background(), r, backup.Options{Paths: []string{src}, Host: "t", Warn: w.warn})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 0 {
		t.Errorf("special files counted as unreadable: %v", res.Skipped)
	}
	for _, k := range wantKinds {
		if !strings.Contains(w.String(), "skipped "+k) {
			t.Errorf("no warning for the %s; warnings:\n%s", k, w.String())
		}
	}
	restored := sfRestore(t, r, res.Snapshot, src)
	entries, err := os.ReadDir(restored)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "ok" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("restored %v, want only ok", names)
	}
}

// TestSourceVanishes: a source path deleted after it was given fails the backup with
// a message naming it, and no snapshot is written.
func TestSourceVanishes(t *testing.T) {
	src := filepath.Join(t.TempDir(), "gone")
	r := sfRepo(t)
	_, err := backup.Run(context.Background(), r, backup.Options{Paths: []string{src}, Host: "t"})
	if err == nil || !strings.Contains(err.Error(), src) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("backup of a missing path: %v", err)
	}
	if snaps, err := snapshot.List(context.Background(), r); err != nil || len(snaps) != 0 {
		t.Fatalf("%d snapshots after a failed backup (%v)", len(snaps), err)
	}
}
