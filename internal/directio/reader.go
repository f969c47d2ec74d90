package directio

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
)

// readBufSize is how much a Reader reads at a time.
const readBufSize = 1 << 20

var readBufs = sync.Pool{New: func() any { b := Buffer(readBufSize); return &b }}

// Reader reads n bytes of a file opened with Flag, from offset, in aligned blocks
// through an aligned buffer. Close returns the buffer; it does not close the file.
type Reader struct {
	f      *os.File
	off    int64 // file offset of the next block (aligned)
	skip   int   // bytes to drop at the start of the next block
	left   int64 // bytes still to deliver
	bp     *[]byte
	data   []byte // delivered next
	direct bool
}

// NewReader returns a Reader of n bytes of f from offset.
func NewReader(f *os.File, offset, n int64) *Reader {
	aligned := offset &^ (Align - 1)
	return &Reader{f: f, off: aligned, skip: int(offset - aligned), left: n,
		bp: readBufs.Get().(*[]byte), direct: true}
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if len(r.data) == 0 {
		buf := (*r.bp)[:cap(*r.bp)]
		n, err := r.f.ReadAt(buf, r.off)
		if err != nil && r.direct && errors.Is(err, syscall.EINVAL) {
			// The file system refuses direct reads after all: read through the
			// page cache (the buffer and offset stay aligned, which is harmless).
			if cerr := Clear(r.f); cerr != nil {
				return 0, err
			}
			r.direct = false
			n, err = r.f.ReadAt(buf, r.off)
		}
		if n <= r.skip {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		r.data = buf[r.skip:n]
		r.off += int64(n)
		r.skip = 0
		if int64(len(r.data)) > r.left {
			r.data = r.data[:r.left]
		}
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	r.left -= int64(n)
	return n, nil
}

// Close returns the Reader's buffer; the Reader must not be used afterwards.
func (r *Reader) Close() error {
	if r.bp != nil {
		readBufs.Put(r.bp)
		r.bp, r.data = nil, nil
	}
	return nil
}
