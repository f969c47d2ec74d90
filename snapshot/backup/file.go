package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

type fileJob struct {
	path   string
	name   string
	fi     fs.FileInfo
	parent *snapshot.Node
	node   *snapshot.Node
	wg     sync.WaitGroup  // for single jobs
	dirWG  *sync.WaitGroup // for jobs of a directory
}

func (j *fileJob) done() {
	if j.dirWG != nil {
		j.dirWG.Done()
	} else {
		j.wg.Done()
	}
}

type worker struct {
	b   *backup
	mac *crypto.BlobMAC
	ch  *chunk.Chunker
	buf []byte
}

func (b *backup) worker() {
	// The chunk buffer holds the largest chunk. (A smaller one that the chunker grows
	// for long chunks raised peak memory: each long chunk allocated a new array.)
	w := &worker{b: b, mac: b.r.NewBlobMAC(), buf: make([]byte, 0, b.r.ChunkParams("files").Max)}
	for job := range b.jobs {
		if b.failed.Load() == nil && b.ctx.Err() == nil {
			w.file(job)
		}
		job.done()
	}
}

// unchanged reports whether the parent snapshot's node describes the same file
// content: same size, mtime, ctime and inode, and all its blobs still indexed.
func (b *backup) unchanged(n, parent *snapshot.Node) bool {
	if parent == nil || parent.Type != snapshot.TypeFile || parent.Size != n.Size ||
		!parent.ModTime.Equal(n.ModTime) || !parent.ChangeTime.Equal(n.ChangeTime) || parent.Inode != n.Inode {
		return false
	}
	for _, id := range parent.Content {
		if !b.r.HasBlob(id) {
			return false
		}
	}
	return true
}

// reuseUnchanged sets job.node from the parent snapshot and reports true when the
// file is unchanged (see unchanged): such files are never opened, and the walker
// handles them itself instead of handing them to a worker.
func (b *backup) reuseUnchanged(job *fileJob) bool {
	if job.parent == nil {
		return false
	}
	n := b.nodeFromInfo(job.name, job.fi)
	n.Type = snapshot.TypeFile
	n.Size = uint64(job.fi.Size())
	if !b.unchanged(n, job.parent) {
		return false
	}
	n.Content = job.parent.Content
	job.node = n
	b.countFile(n.Size)
	b.prog.Bytes.Add(n.Size)
	b.sumMu.Lock()
	b.sum.FilesUnchanged++
	b.sumMu.Unlock()
	return true
}

func (w *worker) file(job *fileJob) {
	b := w.b
	cur := job.path
	b.prog.Current.Store(&cur)
	if b.reuseUnchanged(job) {
		return
	}
	f, err := os.OpenFile(job.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NOATIME, 0)
	if errors.Is(err, syscall.EPERM) {
		f, err = os.OpenFile(job.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			b.warn(job.path, errors.New("vanished before it could be read"))
		} else {
			b.warn(job.path, fmt.Errorf("open: %w", err))
		}
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		b.warn(job.path, fmt.Errorf("stat: %w", err))
		return
	}
	if !fi.Mode().IsRegular() {
		b.warn(job.path, errors.New("replaced by a non-regular file while being read; skipped"))
		return
	}
	n := b.nodeFromInfo(job.name, fi)
	n.Type = snapshot.TypeFile
	params := w.b.r.ChunkParams(chunkingFor(f))
	var content []blob.ID
	var size uint64
	if old := w.parentChunks(job.parent); len(old) >= 2 && fi.Size() >= int64(params.Min) {
		content, size, err = w.storeChanged(f, params, old)
	} else {
		content, size, err = w.storeParams(f, fi.Size(), params)
	}
	if err != nil {
		if b.ctx.Err() != nil || errors.Is(err, errStore) {
			b.fail(err)
			return
		}
		b.warn(job.path, fmt.Errorf("read: %w", err))
		return
	}
	n.Content = content
	n.Size = size
	if after, err := f.Stat(); err == nil && (after.Size() != fi.Size() || !after.ModTime().Equal(fi.ModTime()) || uint64(after.Size()) != size) {
		if b.opts.Warn != nil {
			b.opts.Warn(job.path, fmt.Errorf("changed while being read (%d bytes stored)", size))
		}
	}
	job.node = n
	b.countFile(size)
	b.sumMu.Lock()
	if job.parent == nil {
		b.sum.FilesNew++
	} else {
		b.sum.FilesChanged++
	}
	b.sumMu.Unlock()
}

// errStore marks failures of the repository (not of the source file): they abort the
// backup instead of skipping one file.
var errStore = errors.New("store")

type storeError struct{ err error }

func (e *storeError) Error() string   { return e.err.Error() }
func (e *storeError) Is(t error) bool { return t == errStore }
func (e *storeError) Unwrap() error   { return e.err }

// saveChunk stores one chunk of file content and counts it as read.
func (w *worker) saveChunk(data []byte) (blob.ID, error) {
	id := blob.ID(w.mac.Sum(data))
	if _, err := w.b.w.SaveBlob(blob.Data, id, data); err != nil {
		return id, &storeError{err}
	}
	w.b.prog.BytesRead.Add(uint64(len(data)))
	w.b.prog.Bytes.Add(uint64(len(data)))
	return id, nil
}

// sqliteMagic starts every SQLite 3 database file.
var sqliteMagic = []byte("SQLite format 3\x00")

// chunkingFor names the chunker parameters for a file: "database" for SQLite
// databases, which change in place a few pages at a time, so that a day's changes
// cost tens of KiB per changed spot instead of a whole 1.5 MiB media chunk
// (docs/PERFORMANCE.md §Chunk sizes); "files" for everything else.
func chunkingFor(f *os.File) string {
	var hdr [16]byte
	if n, _ := f.ReadAt(hdr[:], 0); n == len(hdr) && bytes.Equal(hdr[:], sqliteMagic) {
		return "database"
	}
	return "files"
}

func (w *worker) storeParams(rd io.Reader, sizeHint int64, p chunk.Params) ([]blob.ID, uint64, error) {
	var ids []blob.ID
	var total uint64
	save := func(data []byte) error {
		id, err := w.saveChunk(data)
		if err != nil {
			return err
		}
		ids = append(ids, id)
		total += uint64(len(data))
		return nil
	}
	// A file smaller than the minimum chunk is one chunk: skip the chunker.
	if sizeHint >= 0 && sizeHint < int64(p.Min) {
		buf := w.buf[:p.Min]
		n, err := io.ReadFull(rd, buf)
		switch {
		case err == io.EOF:
			return nil, 0, nil
		case err == io.ErrUnexpectedEOF:
			return ids, total, save(buf[:n])
		case err != nil:
			return nil, 0, err
		}
		// The file grew past the minimum while being read: chunk it all.
		rd = io.MultiReader(bytes.NewReader(append([]byte(nil), buf...)), rd)
	}
	if w.ch == nil {
		w.ch = chunk.New(rd, w.b.r.Polynomial(), p)
	} else {
		w.ch.Reset(rd, w.b.r.Polynomial(), p)
	}
	if p.Max <= pipelineMaxChunk {
		if err := w.chunkPipelined(p, save); err != nil {
			return nil, 0, err
		}
		return ids, total, nil
	}
	for {
		if err := w.b.ctx.Err(); err != nil {
			return nil, 0, err
		}
		c, err := w.ch.Next(w.buf[:cap(w.buf)])
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		if err := save(c.Data); err != nil {
			return nil, 0, err
		}
	}
	return ids, total, nil
}

// oldChunk is a content blob of a file's previous version.
type oldChunk struct {
	id   blob.ID
	off  int64
	size int64
}

// parentChunks returns the blobs of a file's previous version with their offsets, or
// nil if there is none or a blob is no longer indexed.
func (w *worker) parentChunks(parent *snapshot.Node) []oldChunk {
	if parent == nil || parent.Type != snapshot.TypeFile || len(parent.Content) < 2 {
		return nil
	}
	old := make([]oldChunk, len(parent.Content))
	var off int64
	for i, id := range parent.Content {
		loc, ok := w.b.r.LookupBlob(id)
		if !ok {
			return nil
		}
		old[i] = oldChunk{id: id, off: off, size: int64(loc.Entry.RawLength)}
		off += old[i].size
	}
	return old
}

// storeChanged stores a changed file whose previous version was stored as old. Where
// an old chunk's bytes are still there at the same offset (its blob ID matches), the
// chunk is kept without running the chunker over it; from the first chunk that
// differs, the chunker runs until it ends a chunk where an old chunk starts, and the
// comparison resumes there. Since chunk boundaries depend only on the bytes since the
// previous boundary, this gives the chunks a full pass would give, for the cost of
// hashing the unchanged parts: a SQLite database with a few changed pages, or a file
// grown at its end, is not chunked again whole (docs/PERFORMANCE.md §Changed files).
// Every chunk returned is either verified by its ID or made by the chunker, so the
// content is right even when old was chunked with other parameters.
func (w *worker) storeChanged(f *os.File, p chunk.Params, old []oldChunk) ([]blob.ID, uint64, error) {
	var ids []blob.ID
	var pos int64
	buf := w.buf[:0]
	i := 0 // next old chunk to compare
	for {
		if err := w.b.ctx.Err(); err != nil {
			return nil, 0, err
		}
		// Compare mode: old[i] starts at pos.
		for i < len(old) && old[i].off == pos && old[i].size <= int64(cap(buf)) {
			data := buf[:old[i].size]
			n, err := io.ReadFull(f, data)
			if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
				return nil, 0, err
			}
			if n < len(data) || w.mac.Sum(data) != old[i].id {
				break
			}
			if i == len(old)-1 {
				// The old last chunk ended at the old end of file, which is not a
				// chunk boundary if the file goes on.
				var one [1]byte
				if m, _ := f.ReadAt(one[:], pos+int64(n)); m > 0 {
					break
				}
			}
			if !w.b.r.HasBlob(old[i].id) {
				break
			}
			ids = append(ids, old[i].id)
			pos += int64(n)
			w.b.prog.BytesRead.Add(uint64(n))
			w.b.prog.Bytes.Add(uint64(n))
			i++
		}
		// Chunk mode from pos, until a chunk ends where an old chunk starts.
		if _, err := f.Seek(pos, io.SeekStart); err != nil {
			return nil, 0, err
		}
		if w.ch == nil {
			w.ch = chunk.New(f, w.b.r.Polynomial(), p)
		} else {
			w.ch.Reset(f, w.b.r.Polynomial(), p)
		}
		synced := false
		for !synced {
			c, err := w.ch.Next(w.buf[:cap(w.buf)])
			if err == io.EOF {
				return ids, uint64(pos), nil
			}
			if err != nil {
				return nil, 0, err
			}
			id, err := w.saveChunk(c.Data)
			if err != nil {
				return nil, 0, err
			}
			ids = append(ids, id)
			pos += int64(len(c.Data))
			for i < len(old) && old[i].off < pos {
				i++
			}
			synced = i < len(old) && old[i].off == pos
		}
		if _, err := f.Seek(pos, io.SeekStart); err != nil {
			return nil, 0, err
		}
	}
}

// pipelineMaxChunk: streams chunked with small chunks (database dumps and SQLite
// files, at most 256 KiB a chunk) are chunked on one goroutine and hashed,
// compressed and stored on another. Such a stream is usually one large file that
// would otherwise keep one core busy while the other waits for it; media chunks are
// too large to buffer several of per worker, and media comes in many files.
const pipelineMaxChunk = 1 << 20

// pipelineDepth is the number of chunk buffers in flight per pipelined stream.
const pipelineDepth = 4

// chunkPipelined reads chunks from w.ch and hands them, in order, to save on a
// second goroutine.
func (w *worker) chunkPipelined(p chunk.Params, save func([]byte) error) error {
	free := make(chan []byte, pipelineDepth)
	for i := 0; i < pipelineDepth; i++ {
		free <- make([]byte, 0, p.Max)
	}
	work := make(chan []byte, pipelineDepth)
	var saveErr error
	var failed atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for data := range work {
			if saveErr == nil {
				if saveErr = save(data); saveErr != nil {
					failed.Store(true)
				}
			}
			free <- data[:0]
		}
	}()
	var err error
	for !failed.Load() {
		if err = w.b.ctx.Err(); err != nil {
			break
		}
		buf := <-free
		var c chunk.Chunk
		c, err = w.ch.Next(buf[:cap(buf)])
		if err != nil {
			free <- buf
			if err == io.EOF {
				err = nil
			}
			break
		}
		work <- c.Data
	}
	close(work)
	<-done
	if saveErr != nil {
		return saveErr
	}
	return err
}

// dumpDatabase streams the dump into the repository as the single file of a tree.
func (b *backup) dumpDatabase() (*snapshot.Database, error) {
	pr, pw := io.Pipe()
	type result struct {
		db  *snapshot.Database
		err error
	}
	res := make(chan result, 1)
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	go func() {
		db, err := b.opts.Database(ctx, pw)
		if err != nil {
			pw.CloseWithError(err)
		} else {
			pw.Close()
		}
		res <- result{db, err}
	}()
	w := &worker{b: b, mac: b.r.NewBlobMAC(), buf: make([]byte, 0, b.r.ChunkParams("database").Max)}
	start := time.Now()
	content, size, serr := w.storeParams(pr, -1, b.r.ChunkParams("database"))
	if serr != nil {
		cancel()
		_ = pr.CloseWithError(serr)
	}
	r := <-res
	if r.err != nil {
		return nil, fmt.Errorf("database dump: %w", r.err)
	}
	if serr != nil {
		return nil, fmt.Errorf("store database dump: %w", serr)
	}
	name := b.opts.DatabaseName
	if name == "" {
		name = "database.dump"
	}
	n := snapshot.Node{Type: snapshot.TypeFile, Mode: 0o600, ModTime: start.UTC(), Size: size, Content: content}
	n.SetName(name)
	treeID, err := b.saveTree(&snapshot.Tree{Nodes: []snapshot.Node{n}})
	if err != nil {
		return nil, err
	}
	db := r.db
	if db == nil {
		db = &snapshot.Database{}
	}
	db.Size = size
	db.Dump = treeID
	return db, nil
}

type nameCache struct {
	mu     sync.Mutex
	users  map[uint32]string
	groups map[uint32]string
}

func newNameCache() *nameCache {
	return &nameCache{users: map[uint32]string{}, groups: map[uint32]string{}}
}

func (c *nameCache) user(id uint32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.users[id]; ok {
		return n
	}
	name := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(id), 10)); err == nil {
		name = u.Username
	}
	c.users[id] = name
	return name
}

func (c *nameCache) group(id uint32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.groups[id]; ok {
		return n
	}
	name := ""
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(id), 10)); err == nil {
		name = g.Name
	}
	c.groups[id] = name
	return name
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
