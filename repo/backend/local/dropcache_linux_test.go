package local_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/local"
)

// stagedFile is a FileBacked reader over a file in the backend's staging directory,
// as the pack writer hands them to Save.
type stagedFile struct {
	f    *os.File
	size int64
}

func (s stagedFile) Rewind() error              { _, err := s.f.Seek(0, 0); return err }
func (s stagedFile) Length() int64              { return s.size }
func (s stagedFile) File() *os.File             { return s.f }
func (s stagedFile) Read(b []byte) (int, error) { return s.f.Read(b) }

// resident counts the pages of name in the page cache.
func resident(t *testing.T, name string) int {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestAdoptedPackLeavesPageCache: a staged pack the backend links into place is
// synced and its pages dropped, so the next pack's writes reuse that memory
// (docs/PERFORMANCE.md §Pack files). tmpfs keeps everything in memory, so the test
// needs a disk-backed temporary directory.
func TestAdoptedPackLeavesPageCache(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		t.Skip("temporary directory is on tmpfs, which has no pages to drop")
	}
	be, err := local.Create(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("cairn pack bytes "), 1<<16) // about 1 MiB
	f, err := os.CreateTemp(be.StagingDir(), local.TempPrefix+"pack-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if before := resident(t, f.Name()); before == 0 {
		t.Skip("the file system does not keep written pages cached")
	}
	h := backend.Handle{Type: backend.PackFile, Name: "ab12cd"}
	if err := be.Save(context.Background(), h, stagedFile{f: f, size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(be.Root(), "data", "ab", "ab12cd")
	if n := resident(t, final); n != 0 {
		t.Fatalf("%d pages of the adopted pack still in the page cache", n)
	}
	got, err := os.ReadFile(final)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("adopted pack reads back %d bytes (%v), want the %d saved", len(got), err, len(data))
	}
}
