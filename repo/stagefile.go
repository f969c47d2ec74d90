package repo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// stageBufSize is how much of a pack is buffered before it is written.
const stageBufSize = 512 << 10

// stageBufs recycles staging buffers between packs.
var stageBufs = sync.Pool{New: func() any { b := make([]byte, 0, stageBufSize); return &b }}

// stageWriter writes a pack being filled to its staging file. Full buffers are
// written by a goroutine of the writer's own while the caller fills the next one, so
// the goroutine that encrypts does not also copy into the page cache or wait for the
// disk. Writes stay in order. The first write error is returned by the next Write or
// by Flush.
//
// Once the pack is stored, its pages leave the page cache (the local backend drops
// them after linking the synced file; a remote upload's staged file takes them along
// when it is removed): the next packs reuse that memory at once. On the reference machine, memory the
// kernel has not touched for a few seconds costs about 2.5 ns per byte to fill
// (docs/PERFORMANCE.md §Pack files), more than encrypting it; memory just freed is
// cheap.
type stageWriter struct {
	f   *os.File
	buf []byte // len = bytes buffered; cap = stageBufSize

	queue   chan []byte   // full buffers to write, in order
	free    chan []byte   // written buffers, ready to be filled again
	stopped chan struct{} // closed when the write goroutine has returned
	closed  bool          // queue is closed
	errMu   sync.Mutex
	err     error // first write error
}

// stageDepth is how many full buffers may wait for the write goroutine behind the
// one being filled.
const stageDepth = 2

// createStageFile creates a new, empty, uniquely named pack staging file in dir.
func createStageFile(dir string) (*stageWriter, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	var rnd [8]byte
	var f *os.File
	for attempt := 0; ; attempt++ {
		if _, err := rand.Read(rnd[:]); err != nil {
			return nil, err
		}
		name := filepath.Join(dir, ".tmp-pack-"+hex.EncodeToString(rnd[:]))
		var err error
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	s := &stageWriter{f: f, buf: getStageBuf(),
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

// Flush writes what is buffered and waits until every write is done.
func (s *stageWriter) Flush() error {
	s.stop()
	if err := s.firstErr(); err != nil {
		return err
	}
	if err := s.writeOut(s.buf); err != nil {
		return err
	}
	s.buf = s.buf[:0]
	return nil
}

// writeOut writes b at the file's offset.
func (s *stageWriter) writeOut(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := s.f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(s.f.Name()), err)
	}
	return nil
}
