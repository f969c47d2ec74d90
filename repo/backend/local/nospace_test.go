//go:build linux

package local

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/repo/backend"
)

func TestMapErrNoSpace(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		err := mapErr(&fs.PathError{Op: "write", Path: "/repo/data/ab/.tmp-1", Err: errno})
		if !errors.Is(err, backend.ErrNoSpace) || !errors.Is(err, errno) {
			t.Fatalf("mapErr(%v): want ErrNoSpace and the errno in the chain, got %v", errno, err)
		}
		if !strings.Contains(err.Error(), "/repo/data/ab/.tmp-1") {
			t.Fatalf("mapErr(%v): message %q does not name the path", errno, err)
		}
	}
	if err := mapErr(syscall.EACCES); errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("mapErr(EACCES) wraps ErrNoSpace: %v", err)
	}
}

// TestFullDisk saves into a tiny tmpfs when the test may mount one (root in a
// privileged environment) and skips otherwise.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("full-disk test needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("full-disk test cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	be, err := Create(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Type: backend.PackFile, Name: "abcdef"}
	err = be.Save(context.Background(), h, backend.NewByteReader(make([]byte, 1<<20)))
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("save on a full disk: want ErrNoSpace, got %v", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Fatalf("save on a full disk: message %q does not name the path", err)
	}
	if _, err := be.Stat(context.Background(), h); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat after a failed save: want fs.ErrNotExist, got %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "repo", "data", "ab"))
	if len(entries) != 0 {
		t.Fatalf("temporary file left behind after a full-disk save: %v", entries)
	}
}
