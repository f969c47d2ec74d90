//go:build unix

package restore

import (
	"fmt"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"
)

// lchtimes sets the times of rel itself, not of what it points to if it is a
// symlink. os.Root has no such method: the parent directory is opened through the
// root and the change is made relative to it with AT_SYMLINK_NOFOLLOW.
func lchtimes(root *os.Root, rel string, atime, mtime time.Time) error {
	dir, base := path.Split(rel)
	if dir == "" {
		dir = "."
	}
	d, err := root.Open(dir)
	if err != nil {
		return fmt.Errorf("open parent directory: %w", err)
	}
	defer func() { _ = d.Close() }()
	rc, err := d.SyscallConn()
	if err != nil {
		return fmt.Errorf("open parent directory: %w", err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.UtimesNanoAt(int(fd), base, ts, unix.AT_SYMLINK_NOFOLLOW)
	}); err != nil {
		return fmt.Errorf("set times of %s: %w", rel, err)
	}
	if serr != nil {
		return &os.PathError{Op: "utimensat", Path: rel, Err: serr}
	}
	return nil
}
