package restore

import (
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setFileTimes sets the access and modification times of the open file fh: futimens,
// which glibc implements as utimensat with a NULL path, so no path is resolved again.
func setFileTimes(fh *os.File, atime, mtime time.Time) error {
	rc, err := fh.SyscallConn()
	if err != nil {
		return err
	}
	ts := [2]unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_UTIMENSAT, fd, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return &os.PathError{Op: "futimens", Path: fh.Name(), Err: errno}
	}
	return nil
}
