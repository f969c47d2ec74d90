// Package directiotest gives tests of direct I/O the directories to run in: the
// test's own temporary directory and, where the machine has one, a directory on tmpfs,
// a second file system (which refuses O_DIRECT before Linux 6.6 and so exercises the
// fallbacks there; OK tells which).
package directiotest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/internal/directio"
)

// Dirs returns t.TempDir() and, if /dev/shm exists, a directory there removed when
// the test ends.
func Dirs(t testing.TB) []string {
	dirs := []string{t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "cairn-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// OK reports whether dir's file system accepts O_DIRECT.
func OK(dir string) bool {
	if directio.Flag == 0 {
		return false
	}
	f, err := os.OpenFile(filepath.Join(dir, ".probe-direct"), os.O_WRONLY|os.O_CREATE|directio.Flag, 0o600)
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}
