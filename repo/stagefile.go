package repo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cairn-backup/cairn/internal/directio"
)

// stageAlign is the alignment direct I/O needs for buffers, offsets and lengths.
const stageAlign = directio.Align

// stageBufSize is how much of a pack is buffered before it is written.
const stageBufSize = 512 << 10

// stageBufs recycles staging buffers between packs: a buffer that was written from
// before is cheaper than fresh memory, whose first touch costs a page fault per 4 KiB.
var stageBufs = sync.Pool{New: func() any { b := directio.Buffer(stageBufSize); return &b }}

// stageWriter writes a pack being filled to its staging file. Where the file system
// allows it, the file is opened for direct I/O: the pack's bytes go to the disk
// without passing through the page cache. On the machines cairn is benchmarked on,
// writing new page-cache pages costs about 2.5 ns per byte of kernel time, more than
// encryption and hashing together, and a pack is read once at most (by an upload to
// a remote backend) after it is written (docs/PERFORMANCE.md §Pack files).
//
// A direct write returns only when the disk has the bytes, so full buffers are
// written by a goroutine of the writer's own while the caller fills the next one:
// the encrypting goroutine never waits for the disk unless two buffers are in
// flight. Writes stay in order. The first write error is returned by the next Write
// or by Flush.
type stageWriter struct {
	f      *os.File
	direct bool   // owned by the write goroutine until it has stopped
	buf    []byte // len = bytes buffered; cap = stageBufSize; aligned to stageAlign

	queue   chan []byte   // full buffers to write, in order
	free    chan []byte   // written buffers, ready to be filled again
	stopped chan struct{} // closed when the write goroutine has returned
	closed  bool          // queue is closed
	errMu   sync.Mutex
	err     error // first write error
}

// stageDepth is how many full buffers may wait for the disk behind the one being
// filled.
const stageDepth = 2

// createStageFile creates a new, empty, uniquely named pack staging file in dir.
func createStageFile(dir string) (*stageWriter, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	var rnd [8]byte
	var f *os.File
	var direct bool
	for attempt := 0; ; attempt++ {
		if _, err := rand.Read(rnd[:]); err != nil {
			return nil, err
		}
		name := filepath.Join(dir, ".tmp-pack-"+hex.EncodeToString(rnd[:]))
		var err error
		f, direct, err = openStageFile(name)
		if errors.Is(err, os.ErrExist) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	s := &stageWriter{f: f, direct: direct, buf: getStageBuf(),
		queue: make(chan []byte, stageDepth), free: make(chan []byte, stageDepth+1),
		stopped: make(chan struct{})}
	for range stageDepth {
		s.free <- getStageBuf()
	}
	go s.writeLoop()
	return s, nil
}

func getStageBuf() []byte { return (*stageBufs.Get().(*[]byte))[:0] }

func putStageBuf(b []byte) {
	b = b[:0]
	stageBufs.Put(&b)
}

// writeLoop writes the queued buffers in order; after an error it only hands them
// back.
func (s *stageWriter) writeLoop() {
	defer close(s.stopped)
	for b := range s.queue {
		if s.firstErr() == nil {
			if err := s.writeOut(b); err != nil {
				s.errMu.Lock()
				s.err = err
				s.errMu.Unlock()
			}
		}
		s.free <- b[:0]
	}
}

func (s *stageWriter) firstErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

func (s *stageWriter) Write(p []byte) (int, error) {
	if err := s.firstErr(); err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		n := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+n]
		p = p[n:]
		written += n
		if len(s.buf) == cap(s.buf) {
			s.queue <- s.buf
			s.buf = <-s.free
		}
	}
	return written, nil
}

// stop waits for the queued writes and ends the write goroutine. It is idempotent.
func (s *stageWriter) stop() {
	if s.closed {
		return
	}
	s.closed = true
	close(s.queue)
	<-s.stopped
	for range stageDepth {
		putStageBuf(<-s.free)
	}
}

// release stops the writer, if it was not flushed, and recycles its buffer. The
// file is left to the caller.
func (s *stageWriter) release() {
	s.stop()
	if s.buf != nil {
		putStageBuf(s.buf)
		s.buf = nil
	}
}

// Flush writes what is buffered and waits until every write is done. After Flush
// the writer must not be written to again: the file's tail is not aligned.
func (s *stageWriter) Flush() error {
	s.stop()
	if err := s.firstErr(); err != nil {
		return err
	}
	if s.direct {
		aligned := len(s.buf) &^ (stageAlign - 1)
		if aligned > 0 {
			if err := s.writeOut(s.buf[:aligned]); err != nil {
				return err
			}
		}
		tail := s.buf[aligned:]
		if err := s.endDirect(); err != nil {
			return err
		}
		if err := s.writeOut(tail); err != nil {
			return err
		}
	} else if err := s.writeOut(s.buf); err != nil {
		return err
	}
	s.buf = s.buf[:0]
	return nil
}

// writeOut writes b at the file's offset. A file system that accepted O_DIRECT at
// open but refuses an aligned direct write (EINVAL) gets the write buffered instead.
func (s *stageWriter) writeOut(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := s.f.Write(b)
	if err != nil && s.direct && errors.Is(err, syscall.EINVAL) {
		if err2 := s.endDirect(); err2 != nil {
			return err
		}
		_, err = s.f.Write(b)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(s.f.Name()), err)
	}
	return nil
}

func (s *stageWriter) endDirect() error {
	if !s.direct {
		return nil
	}
	if err := directio.Clear(s.f); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(s.f.Name()), err)
	}
	s.direct = false
	return nil
}

// openStageFile creates name exclusively, for direct I/O where the file system
// supports it (tmpfs, for one, does not: the file is then opened normally).
func openStageFile(name string) (*os.File, bool, error) {
	if directio.Flag != 0 {
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|directio.Flag, 0o600)
		if err == nil {
			return f, true, nil
		}
		if !errors.Is(err, syscall.EINVAL) {
			return nil, false, err
		}
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	return f, false, err
}
