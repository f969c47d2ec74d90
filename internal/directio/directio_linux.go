package directio

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Flag is the open flag that asks for direct I/O (0 where it is not supported).
const Flag = syscall.O_DIRECT

// Clear turns direct I/O off for f: later writes go through the page cache and need
// no alignment.
func Clear(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			ferr = err
			return
		}
		_, ferr = unix.FcntlInt(fd, unix.F_SETFL, flags&^unix.O_DIRECT)
	})
	if err != nil {
		return err
	}
	return ferr
}

// DropCache asks the kernel to drop f's clean pages from the page cache, so that
// the memory is free again at once for the next file written (fadvise DONTNEED).
// Dirty pages are not dropped; sync f first. It is advice: errors are ignored.
func DropCache(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.Fadvise(int(fd), 0, 0, unix.FADV_DONTNEED)
	})
}

// ReadCached reads from f at offset 0 into b what the page cache already holds, up
// to len(b) bytes, without waiting for the disk (preadv2 with RWF_NOWAIT): it stops
// at the first page that is not cached. It returns how many bytes it read; 0 where
// nothing is cached or the kernel or file system does not support such reads.
func ReadCached(f *os.File, b []byte) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		for n < len(b) {
			m, err := unix.Preadv2(int(fd), [][]byte{b[n:]}, int64(n), unix.RWF_NOWAIT)
			if err == unix.EINTR {
				continue
			}
			if err != nil || m <= 0 {
				return
			}
			n += m
		}
	})
	return n
}
