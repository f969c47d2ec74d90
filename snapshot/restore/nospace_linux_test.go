package restore

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/blob"
)

// TestDiskFull restores into a tiny tmpfs when the test may mount one (root in a
// privileged environment) and skips otherwise.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("disk-full test needs root to mount a small tmpfs")
	}
	tr := newTestRepo(t)
	files := map[string]spec{
		"a/small": {data: []byte("small")},
		"a/huge":  {data: randBytes(30, 1<<20)},
	}
	var tree blob.ID
	tr.session(func(w *repo.Writer) { tree = tr.build(w, files) })
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("disk-full test cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	for _, inPlace := range []bool{false, true} {
		target := filepath.Join(dir, "target")
		res, err := Run(ctx, tr.r, tree, Options{Target: target, InPlace: inPlace})
		if !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrIncomplete) {
			t.Fatalf("InPlace=%v: want ENOSPC, got %v", inPlace, err)
		}
		if !strings.Contains(err.Error(), "/a/huge") || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("InPlace=%v: error %q does not name the file", inPlace, err)
		}
		if len(res.Errors) == 0 {
			t.Errorf("InPlace=%v: no errors in the result", inPlace)
		}
		entries, _ := os.ReadDir(filepath.Join(target, "a"))
		for _, e := range entries {
			if e.Name() != "small" {
				t.Errorf("InPlace=%v: %q left behind", inPlace, e.Name())
			}
		}
		if err := os.RemoveAll(target); err != nil {
			t.Fatal(err)
		}
	}
}
