//go:build !unix

package restore

import (
	"os"
	"time"
)

// lchtimes would set a symlink's own times. Outside Unix there is no portable way
// to do so through an os.Root, and symlink times are left as created.
func lchtimes(root *os.Root, rel string, atime, mtime time.Time) error {
	return nil
}
