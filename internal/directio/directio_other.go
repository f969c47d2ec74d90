//go:build !linux

package directio

import "os"

// Flag is the open flag that asks for direct I/O (0 where it is not supported).
const Flag = 0

// Clear turns direct I/O off for f (nothing to do here).
func Clear(*os.File) error { return nil }

// DropCache does nothing here.
func DropCache(*os.File) {}

// ReadCached reads nothing where reads that skip the disk are not supported.
func ReadCached(*os.File, []byte) int { return 0 }
