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
