package restore

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"github.com/cairn-backup/cairn/internal/directio"
)

// Direct I/O for restored files (docs/PERFORMANCE.md §Restore).
//
// A file of directMin bytes or more is created with O_DIRECT. While its blobs arrive
// in file order, they are copied into aligned 1 MiB bounce buffers, and each full
// stretch of aligned blocks is handed to a small pool of writer goroutines, so the
// worker that decrypted the pack goes on with the next blob while the disk takes the
// last one. The unaligned rest (less than a block) is carried to the next blob. The
// first blob out of order waits for the file's writes in flight, turns direct I/O
// off for its handle and writes the carried bytes and everything after through the
// page cache. The end of the file does the same on a goroutine of its own
// (finishLater), which then finishes the file, so the worker does not wait for the
// disk.
//
// Through the page cache, every 4 KiB of a restored file takes a page the kernel has
// to find and fill; on the reference machine that is half of a restore's CPU time.

// directMin: smaller files are written through the page cache, where a few writes
// cost less than the extra system calls direct I/O needs.
const directMin = 256 << 10

// bounceSize is the size of the aligned buffers direct writes go out of.
const bounceSize = 1 << 20

// directWriters is the number of goroutines writing bounce buffers; with the queue,
// it bounds the bounce memory in flight. With 4, a restore's trace showed workers
// waiting to hand over writes once files were finished off the workers; 8 keeps more
// writes queued at the disk (restore of the document set 3.4-4.4 s against 4.0-5.1 s,
// alternating runs; 16 was no faster and used 35 MiB more).
const directWriters = 8

var bounceBufs = sync.Pool{New: func() any { b := directio.Buffer(bounceSize); return &b }}

// directJob is one aligned write: buf[:n] at off in f through fh.
type directJob struct {
	f   *fileState
	fh  *os.File
	buf *[]byte
	n   int
	off int64
}

// directState is the direct-I/O part of a fileState, guarded by its mu except
// where noted.
type directState struct {
	direct bool   // fh was opened with O_DIRECT and blobs have come in order
	cursor int64  // file offset of carry[0]; everything before it is written or in flight
	carry  []byte // in-order bytes after cursor, fewer than a block
	// inflight counts writes handed to the writer goroutines and not finished.
	inflight sync.WaitGroup
	// errMu guards werr, set by writer goroutines.
	errMu sync.Mutex
	werr  error
}

// startDirectWriters starts the writer goroutines; stop them with stopDirectWriters
// after every worker has finished.
func (rs *restorer) startDirectWriters() {
	rs.directJobs = make(chan directJob, directWriters)
	rs.directWG.Add(directWriters)
	for range directWriters {
		go func() {
			defer rs.directWG.Done()
			for j := range rs.directJobs {
				j.f.writeBlock(j)
			}
		}()
	}
}

func (rs *restorer) stopDirectWriters() {
	close(rs.directJobs)
	rs.directWG.Wait()
}

// writeBlock runs on a writer goroutine. A file system that accepted O_DIRECT at
// open but refuses this write (EINVAL) gets it through the page cache.
func (f *fileState) writeBlock(j directJob) {
	b := (*j.buf)[:j.n]
	_, err := j.fh.WriteAt(b, j.off)
	if err != nil && errors.Is(err, syscall.EINVAL) {
		if err = directio.Clear(j.fh); err == nil {
			_, err = j.fh.WriteAt(b, j.off)
		}
	}
	if err != nil {
		f.errMu.Lock()
		if f.werr == nil {
			f.werr = err
		}
		f.errMu.Unlock()
	}
	bounceBufs.Put(j.buf)
	f.inflight.Done()
}

// directErr returns the first error of f's direct writes. f.mu is held.
func (f *fileState) directErr() error {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.werr
}

// submit hands buf[:n], the aligned bytes at f.cursor, to the writers. f.mu is held.
func (rs *restorer) submit(f *fileState, fh *os.File, buf *[]byte, n int) {
	f.inflight.Add(1)
	rs.directJobs <- directJob{f: f, fh: fh, buf: buf, n: n, off: f.cursor}
	f.cursor += int64(n)
}

// writeDirect takes data, which continues f's in-order bytes: whole aligned blocks go
// to the writers, the rest stays in f.carry. f.mu is held.
func (rs *restorer) writeDirect(f *fileState, fh *os.File, data []byte) error {
	if err := f.directErr(); err != nil {
		return err
	}
	bp := bounceBufs.Get().(*[]byte)
	b := append((*bp)[:0], f.carry...)
	f.carry = f.carry[:0]
	for len(data) > 0 {
		n := copy(b[len(b):cap(b)], data)
		b, data = b[:len(b)+n], data[n:]
		if len(b) < cap(b) {
			break
		}
		rs.submit(f, fh, bp, len(b))
		bp = bounceBufs.Get().(*[]byte)
		b = (*bp)[:0]
	}
	aligned := len(b) &^ (directio.Align - 1)
	f.carry = append(f.carry, b[aligned:]...)
	if aligned > 0 {
		rs.submit(f, fh, bp, aligned)
	} else {
		bounceBufs.Put(bp)
	}
	return nil
}

// finishLater finishes f, whose last blob has been handed over, on a goroutine of
// its own: finishing waits for the file's direct writes in flight, and the worker
// goes on decrypting the next blobs meanwhile instead. f.mu is held by the caller
// and is taken by the goroutine once the caller lets go of it; nothing else writes
// to f any more (its handle may still be closed to bound open files, as for any
// idle file).
func (rs *restorer) finishLater(f *fileState) {
	rs.finishing.Add(1)
	go func() {
		defer rs.finishing.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.done && !f.failed {
			rs.finishLocked(f)
		}
	}()
}

// waitDirect waits for f's writes in flight and returns their first error. f.mu is
// held.
func (f *fileState) waitDirect() error {
	f.inflight.Wait()
	return f.directErr()
}

// endDirect finishes f's direct writes: it waits for those in flight, turns direct
// I/O off for fh and writes the carried bytes. f.mu is held.
func (rs *restorer) endDirect(f *fileState, fh *os.File) error {
	if !f.direct {
		return nil
	}
	f.direct = false
	if err := f.waitDirect(); err != nil {
		return err
	}
	if err := directio.Clear(fh); err != nil {
		return err
	}
	if len(f.carry) > 0 {
		if _, err := fh.WriteAt(f.carry, f.cursor); err != nil {
			return err
		}
	}
	f.carry = nil
	return nil
}
