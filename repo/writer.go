package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/cairn-backup/cairn/repo/pack"
	"github.com/zeebo/blake3"
)

// storedBlobs recycles the buffers blobs are compressed into: SaveBlob copies the
// stored form into its pack before it returns.
var storedBlobs = sync.Pool{New: func() any { return &storedBlob{buf: make([]byte, 0, 2<<20)} }}

// WriterOptions tunes a write session.
type WriterOptions struct {
	// Uploaders is the number of packs uploaded at once (0: 2).
	Uploaders int
	// Packers is the number of data packs filled at once (0: GOMAXPROCS).
	Packers int
	// IndexEvery writes an index file after this many uploaded packs (0: 4), so that
	// an interrupted session's packs are known to the next one (docs/FORMAT.md
	// §Resuming).
	IndexEvery int
	// IndexInterval writes an index file at least this often while packs are uploaded
	// (0: 30 s).
	IndexInterval time.Duration
	// TempDir holds packs being filled ("" means the backend's staging directory if
	// it has one, else os.TempDir()).
	TempDir string
}

// WriterStats counts what a session stored.
type WriterStats struct {
	BlobsAdded  int64 // new blobs
	BytesRaw    int64 // their plaintext bytes
	BytesStored int64 // their stored (compressed) bytes
	Packs       int64
	PackBytes   int64 // bytes of pack files written
	IndexFiles  int64
}

// Writer is a write session: blobs go into packs, packs are uploaded, and index files
// listing them are written after the packs they name are durable. A snapshot that
// references the session's blobs may be saved only after Flush returns nil
// (docs/FORMAT.md §Read and write ordering). Safe for concurrent use.
type Writer struct {
	r    *Repository
	ctx  context.Context
	opts WriterOptions

	mu      sync.Mutex
	pending map[ID]struct{}
	err     error

	dataPackers chan *packer
	treeMu      sync.Mutex
	treePacker  *packer

	uploads   chan *packer
	uploadWG  sync.WaitGroup
	idxMu     sync.Mutex
	unindexed []index.PackRecord
	lastIndex time.Time
	stats     WriterStats
	closed    atomic.Bool
}

// packer fills one pack. The encrypted stream goes to a temporary file, not to
// memory, so that a backup's resident memory does not grow with the pack size or the
// number of packs waiting for upload (docs/PERFORMANCE.md §Memory).
type packer struct {
	f    *os.File
	bw   *stageWriter
	h    *blake3.Hasher
	size int64
	aw   io.WriteCloser
	pw   *pack.Writer
	t    blob.Type
	ents []pack.Entry
}

func (p *packer) Write(b []byte) (int, error) {
	n, err := p.bw.Write(b)
	p.h.Write(b[:n])
	p.size += int64(n)
	return n, err
}

func (p *packer) discard() {
	if p != nil && p.bw != nil {
		p.bw.release()
	}
	if p != nil && p.f != nil {
		name := p.f.Name()
		p.f.Close()
		os.Remove(name)
		p.f = nil
	}
}

// fileReader is a RewindReader over a finished pack file.
type fileReader struct {
	f    *os.File
	size int64
}

func (r *fileReader) Read(b []byte) (int, error) { return r.f.Read(b) }
func (r *fileReader) Rewind() error {
	_, err := r.f.Seek(0, io.SeekStart)
	return err
}
func (r *fileReader) Length() int64 { return r.size }

// File implements backend.FileBacked.
func (r *fileReader) File() *os.File { return r.f }

// NewWriter starts a write session. The index must be loaded. Write-only keys may
// write: everything is encrypted to the data recipient.
func (r *Repository) NewWriter(ctx context.Context, opts WriterOptions) *Writer {
	if opts.Uploaders <= 0 {
		opts.Uploaders = 2
	}
	if opts.Packers <= 0 {
		opts.Packers = runtime.GOMAXPROCS(0)
	}
	if opts.IndexEvery <= 0 {
		opts.IndexEvery = 4
	}
	if opts.IndexInterval <= 0 {
		opts.IndexInterval = 30 * time.Second
	}
	if sd, ok := r.be.(backend.StagingDirer); ok && opts.TempDir == "" {
		// Stage packs where the backend can adopt them without copying.
		opts.TempDir = sd.StagingDir()
	}
	w := &Writer{r: r, ctx: ctx, opts: opts, pending: map[ID]struct{}{},
		dataPackers: make(chan *packer, opts.Packers), uploads: make(chan *packer, opts.Uploaders),
		lastIndex: time.Now()}
	for i := 0; i < opts.Packers; i++ {
		w.dataPackers <- nil
	}
	for i := 0; i < opts.Uploaders; i++ {
		w.uploadWG.Add(1)
		go w.uploader()
	}
	return w
}

func (w *Writer) fail(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// Err returns the session's first error.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Known reports whether the blob is already stored or queued in this session.
func (w *Writer) Known(id ID) bool {
	if w.r.HasBlob(id) {
		return true
	}
	w.mu.Lock()
	_, ok := w.pending[id]
	w.mu.Unlock()
	return ok
}

// SaveBlob stores a blob unless the repository or this session already has it, and
// reports whether it was added. id must be the blob's MAC (Repository.NewBlobMAC).
// data is not retained.
func (w *Writer) SaveBlob(t blob.Type, id ID, data []byte) (bool, error) {
	if err := w.Err(); err != nil {
		return false, err
	}
	if w.r.HasBlob(id) {
		return false, nil
	}
	w.mu.Lock()
	if _, ok := w.pending[id]; ok {
		w.mu.Unlock()
		return false, nil
	}
	w.pending[id] = struct{}{}
	w.mu.Unlock()

	sb := storedBlobs.Get().(*storedBlob)
	defer func() {
		if cap(sb.buf) > 3<<20 {
			sb.buf = nil // keep a buffer that had to grow, unless it is unusually large
		}
		clear(sb.parts)
		storedBlobs.Put(sb)
	}()
	comp := compressTo(sb, data, t, w.r.cfg.Version >= 2)
	if t == blob.Tree {
		w.treeMu.Lock()
		p, err := w.add(w.treePacker, t, id, comp, sb, len(data))
		w.treePacker = p
		w.treeMu.Unlock()
		return err == nil, err
	}
	p := <-w.dataPackers
	p, err := w.add(p, t, id, comp, sb, len(data))
	w.dataPackers <- p
	return err == nil, err
}

func (w *Writer) add(p *packer, t blob.Type, id ID, comp uint8, stored *storedBlob, rawLen int) (*packer, error) {
	if p == nil {
		var err error
		if p, err = w.newPacker(t); err != nil {
			return nil, w.fail(err)
		}
	}
	if err := p.pw.AddParts(t, id, comp, stored.parts, rawLen); err != nil {
		p.discard()
		return nil, w.fail(fmt.Errorf("add blob to pack: %w", err))
	}
	atomic.AddInt64(&w.stats.BlobsAdded, 1)
	atomic.AddInt64(&w.stats.BytesRaw, int64(rawLen))
	atomic.AddInt64(&w.stats.BytesStored, int64(stored.n))
	if p.pw.Size() >= uint64(w.r.cfg.PackSize) {
		if err := w.finish(p); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return p, nil
}

func (w *Writer) newPacker(t blob.Type) (*packer, error) {
	sw, err := createStageFile(w.opts.TempDir)
	if err != nil {
		return nil, fmt.Errorf("start pack: %w", err)
	}
	p := &packer{t: t, f: sw.f, h: blake3.New(), bw: sw}
	aw, err := age.Encrypt(p, w.r.secrets.DataRecipient)
	if err != nil {
		p.discard()
		return nil, fmt.Errorf("start pack: %w", err)
	}
	p.aw = aw
	p.pw = pack.NewWriter(aw)
	return p, nil
}

// finish writes the pack's header, closes its age stream and queues the upload.
func (w *Writer) finish(p *packer) error {
	ents, err := p.pw.Finalize()
	if err != nil {
		return w.fail(err)
	}
	if err := p.aw.Close(); err != nil {
		p.discard()
		return w.fail(fmt.Errorf("encrypt pack: %w", err))
	}
	if err := p.bw.Flush(); err != nil {
		p.discard()
		return w.fail(fmt.Errorf("write pack: %w", err))
	}
	p.bw.release()
	p.ents = ents
	select {
	case w.uploads <- p:
		return nil
	case <-w.ctx.Done():
		p.discard()
		return w.fail(w.ctx.Err())
	}
}

func (w *Writer) uploader() {
	defer w.uploadWG.Done()
	for p := range w.uploads {
		if w.Err() != nil {
			p.discard()
			continue
		}
		var id ID
		p.h.Sum(id[:0])
		h := backend.Handle{Type: backend.PackFile, Name: id.String()}
		size := p.size
		rd := &fileReader{f: p.f, size: size}
		err := rd.Rewind()
		if err == nil {
			err = w.r.be.Save(w.ctx, h, rd)
		}
		p.discard()
		if err != nil {
			if errors.Is(err, backend.ErrExists) {
				// The same bytes are already stored: identical ciphertext means an
				// identical pack. Keep going.
			} else {
				w.fail(fmt.Errorf("save pack %s: %w", id.Short(), err))
				continue
			}
		}
		atomic.AddInt64(&w.stats.Packs, 1)
		atomic.AddInt64(&w.stats.PackBytes, size)
		w.r.Index().AddPack(id, uint64(size), p.ents)
		w.idxMu.Lock()
		w.unindexed = append(w.unindexed, index.PackRecord{ID: id, Size: uint64(size), Entries: p.ents})
		due := len(w.unindexed) >= w.opts.IndexEvery || time.Since(w.lastIndex) >= w.opts.IndexInterval
		err = nil
		if due {
			err = w.writeIndexLocked()
		}
		w.idxMu.Unlock()
		if err != nil {
			w.fail(err)
		}
	}
}

func (w *Writer) writeIndexLocked() error {
	w.lastIndex = time.Now()
	if len(w.unindexed) == 0 {
		return nil
	}
	f := &index.File{Created: time.Now().UTC(), Packs: w.unindexed}
	if _, err := w.r.SaveIndexFile(w.ctx, f); err != nil {
		return err
	}
	atomic.AddInt64(&w.stats.IndexFiles, 1)
	w.unindexed = nil
	return nil
}

// Flush finishes all open packs, waits for their uploads and writes the index for
// them. After Flush returns nil every blob saved in the session is durable and
// indexed. The Writer cannot be used afterwards.
func (w *Writer) Flush() error {
	if w.closed.Swap(true) {
		return errors.New("repo: writer already flushed")
	}
	for i := 0; i < w.opts.Packers; i++ {
		p := <-w.dataPackers
		if p != nil && w.Err() == nil {
			_ = w.finish(p)
		} else {
			p.discard()
		}
	}
	if w.treePacker != nil && w.Err() == nil {
		_ = w.finish(w.treePacker)
	} else {
		w.treePacker.discard()
	}
	w.treePacker = nil
	close(w.uploads)
	w.uploadWG.Wait()
	if err := w.Err(); err != nil {
		return err
	}
	w.idxMu.Lock()
	defer w.idxMu.Unlock()
	return w.writeIndexLocked()
}

// Abort stops the session without writing more; packs already uploaded stay (they are
// indexed if their index file was written, and reused by the next session).
func (w *Writer) Abort() {
	if w.closed.Swap(true) {
		return
	}
	w.fail(errors.New("repo: write session aborted"))
	for i := 0; i < w.opts.Packers; i++ {
		(<-w.dataPackers).discard()
	}
	w.treeMu.Lock()
	w.treePacker.discard()
	w.treePacker = nil
	w.treeMu.Unlock()
	close(w.uploads)
	w.uploadWG.Wait()
}

// Stats returns what the session stored so far.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		BlobsAdded: atomic.LoadInt64(&w.stats.BlobsAdded), BytesRaw: atomic.LoadInt64(&w.stats.BytesRaw),
		BytesStored: atomic.LoadInt64(&w.stats.BytesStored), Packs: atomic.LoadInt64(&w.stats.Packs),
		PackBytes: atomic.LoadInt64(&w.stats.PackBytes), IndexFiles: atomic.LoadInt64(&w.stats.IndexFiles),
	}
}
