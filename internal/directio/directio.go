// Package directio reads and writes files past the page cache (Linux O_DIRECT) where
// the platform and the file system allow it, and drops a file's pages from the page
// cache; callers fall back to ordinary I/O where direct I/O is refused. A restore
// reads each pack once and writes each file once, and a backup's packs are not read
// back; on cairn's reference machine, filling page-cache pages costs more kernel
// time than encrypting the bytes in them (docs/PERFORMANCE.md §Pack files,
// §Restore). It holds the platform-specific parts (the open flag, turning direct
// I/O off, fadvise) and aligned buffers for the restorer, the local backend and the
// pack writer.
package directio

import "unsafe"

// Align is the alignment direct writes need for buffers, file offsets and lengths on
// every Linux file system cairn writes to (the logical block size is 512 or 4096
// bytes).
const Align = 4096

// Buffer returns an empty slice of capacity n whose first byte is aligned to Align.
func Buffer(n int) []byte {
	b := make([]byte, n+Align)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % Align); r != 0 {
		off = Align - r
	}
	return b[off : off : off+n]
}

// Aligned reports whether b starts at an Align boundary.
func Aligned(b []byte) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))%Align == 0
}
