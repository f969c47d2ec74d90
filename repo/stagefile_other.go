//go:build !linux

package repo

import "os"

// openStageFile creates name exclusively. Direct I/O is used on Linux only.
func openStageFile(name string) (*os.File, bool, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	return f, false, err
}

func clearDirect(*os.File) error { return nil }
