package restore

import (
	"bytes"
	"container/list"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"sync"
	"syscall"

	"github.com/cairn-backup/cairn/internal/directio"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/cairn-backup/cairn/repo/pack"
	"github.com/cairn-backup/cairn/snapshot"
)

// fileState is one file being restored. Its fields after mu are guarded by mu.
type fileState struct {
	rel  string // final path
	tmp  string // where content is written: a temporary name (InPlace) or rel
	node *snapshot.Node
	size int64

	mu        sync.Mutex
	fh        *os.File
	elem      *list.Element // in handleCache.lru while fh is open (guarded by handleCache.mu)
	created   bool
	remaining int // blob writes still to do
	directState
	done     bool
	failed   bool
	closeErr error // from closing an evicted handle
}

// target is one place a blob goes.
type target struct {
	f   *fileState
	off int64
}

type blobJob struct {
	loc     index.Location
	targets []target
}

type packJob struct {
	id    blob.ID
	blobs []*blobJob
}

// planFile records where each content blob of a file goes. Empty files are created
// at once. fresh says the restore created rel's directory, so no directory can be
// in the way.
func (rs *restorer) planFile(rel string, n *snapshot.Node, fresh bool) {
	if !fresh && !rs.clearDirInTheWay(rel) {
		return
	}
	locs := make([]index.Location, len(n.Content))
	var size int64
	for i, id := range n.Content {
		loc, ok := rs.r.LookupBlob(id)
		if !ok {
			rs.entryErr(rel, fmt.Errorf("content blob %s: %w", id.Short(), repo.ErrBlobNotFound))
			return
		}
		locs[i] = loc
		size += int64(loc.Entry.RawLength)
	}
	f := &fileState{rel: rel, tmp: rel, node: n, size: size, remaining: len(n.Content)}
	if rs.opts.InPlace {
		f.tmp = rs.tempName(rel)
	}
	if len(n.Content) == 0 {
		f.mu.Lock()
		if _, err := rs.acquire(f); err != nil {
			rs.failLocked(f, err)
		} else {
			rs.finishLocked(f)
		}
		f.mu.Unlock()
		return
	}
	rs.files = append(rs.files, f)
	var off int64
	for i, id := range n.Content {
		b := rs.blobs[id]
		if b == nil {
			b = &blobJob{loc: locs[i]}
			rs.blobs[id] = b
			p := rs.packs[locs[i].Pack]
			if p == nil {
				p = &packJob{id: locs[i].Pack}
				rs.packs[p.id] = p
				rs.packOrder = append(rs.packOrder, p)
			}
			p.blobs = append(p.blobs, b)
		}
		b.targets = append(b.targets, target{f: f, off: off})
		off += int64(locs[i].Entry.RawLength)
	}
}

// fetchedPack is a pack job with its pack read from storage (nil for a sparse pack,
// whose blobs are read one by one) or the error reading it.
type fetchedPack struct {
	p   *packJob
	fp  *repo.FetchedPack
	err error
}

// restoreContent reads the packs in order of first use on one goroutine and hands
// them to the workers, which decrypt them and write their blobs: the disk reads the
// next pack while the processors work on the last ones. A restore holds about
// workers+1 packs in memory.
func (rs *restorer) restoreContent() {
	rs.startDirectWriters()
	jobs := make(chan fetchedPack)
	go func() {
		defer close(jobs)
		for _, p := range rs.packOrder {
			if rs.ctx.Err() != nil {
				return
			}
			f := fetchedPack{p: p}
			if !rs.sparse(p) {
				f.fp, f.err = rs.r.FetchPack(rs.ctx, p.id)
			}
			select {
			case jobs <- f:
			case <-rs.ctx.Done():
				f.fp.Release()
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range rs.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for f := range jobs {
				buf = rs.restorePack(f, buf)
			}
		}()
	}
	wg.Wait()
	rs.finishing.Wait()
	rs.stopDirectWriters()
	// The plan is done with; let the pack and blob maps go.
	rs.blobs, rs.packs, rs.packOrder = nil, nil, nil
}

// sparseFraction: a pack of which the restore needs less than this fraction of the
// stored bytes is not downloaded whole; its blobs are read one by one with ranged
// reads (Repo.LoadBlob), so restoring one file from a large remote repository
// transfers about that file's size rather than its packs'.
const sparseFraction = 4

// packSizer is implemented by repositories that know pack sizes from their index.
type packSizer interface {
	Index() *index.Index
}

// sparse reports whether p's needed blobs are a small part of the pack.
func (rs *restorer) sparse(p *packJob) bool {
	ps, ok := rs.r.(packSizer)
	if !ok {
		return false
	}
	size, ok := ps.Index().PackSize(p.id)
	if !ok || size == 0 {
		return false
	}
	var need uint64
	for _, b := range p.blobs {
		need += uint64(b.loc.Entry.Length)
	}
	return need*sparseFraction < size
}

// restoreBlobs reads the blobs of a sparsely used pack one by one.
func (rs *restorer) restoreBlobs(p *packJob, buf []byte) []byte {
	for _, b := range p.blobs {
		if rs.ctx.Err() != nil {
			return buf
		}
		id := b.loc.Entry.ID
		data, err := rs.r.LoadBlob(rs.ctx, id, buf)
		if err != nil {
			if rs.ctx.Err() != nil {
				return buf
			}
			rs.failTargets(b, fmt.Errorf("blob %s in pack %s: %w", id.Short(), p.id.Short(), err))
			continue
		}
		buf = data
		for _, t := range b.targets {
			rs.write(t, data)
		}
	}
	return buf
}

// restorePack decrypts one fetched pack and writes each of its needed blobs to every
// place that needs it. buf is reused for blob plaintext and returned.
func (rs *restorer) restorePack(f fetchedPack, buf []byte) []byte {
	p := f.p
	if rs.ctx.Err() != nil {
		f.fp.Release()
		return buf
	}
	sort.Slice(p.blobs, func(i, j int) bool { return p.blobs[i].loc.Entry.Offset < p.blobs[j].loc.Entry.Offset })
	if f.fp == nil && f.err == nil {
		return rs.restoreBlobs(p, buf)
	}
	var pr *repo.PackReader
	err := f.err
	if err == nil {
		pr, err = rs.r.OpenPack(rs.ctx, f.fp)
	}
	if err != nil {
		if rs.ctx.Err() != nil {
			return buf
		}
		err = fmt.Errorf("read pack %s: %w", p.id.Short(), err)
		for _, b := range p.blobs {
			rs.failTargets(b, err)
		}
		return buf
	}
	defer pr.Close()
	for _, b := range p.blobs {
		if rs.ctx.Err() != nil {
			return buf
		}
		// Blobs stored uncompressed are written straight from the pack's buffer.
		data, err := pr.View(b.loc.Entry, buf)
		if err != nil {
			rs.failTargets(b, fmt.Errorf("blob %s in pack %s: %w", b.loc.Entry.ID.Short(), p.id.Short(), err))
			continue
		}
		if b.loc.Entry.Compression != pack.CompressionNone {
			buf = data // grown to hold it: keep for the next one
		}
		for _, t := range b.targets {
			rs.write(t, data)
		}
	}
	return buf
}

func (rs *restorer) failTargets(b *blobJob, err error) {
	for _, t := range b.targets {
		t.f.mu.Lock()
		rs.failLocked(t.f, err)
		t.f.mu.Unlock()
	}
}

// write writes one blob to its place in a file, finishing the file after its last.
func (rs *restorer) write(t target, data []byte) {
	f := t.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed || f.done {
		return
	}
	fh, err := rs.acquire(f)
	if err != nil {
		rs.failLocked(f, err)
		return
	}
	if f.direct && t.off == f.cursor+int64(len(f.carry)) {
		err = rs.writeDirect(f, fh, data)
	} else {
		if f.direct {
			err = rs.endDirect(f, fh)
		}
		if err == nil {
			_, err = fh.WriteAt(data, t.off)
		}
	}
	if err != nil {
		rs.writeFailed(f, err)
		return
	}
	rs.bytesDone.Add(uint64(len(data)))
	f.remaining--
	if f.remaining == 0 {
		if f.direct {
			rs.finishLater(f)
			return
		}
		rs.finishLocked(f)
	}
}

// writeFailed fails f after a write error; a full disk stops the whole restore.
func (rs *restorer) writeFailed(f *fileState, err error) {
	if isNoSpace(err) {
		rs.setFatal(fmt.Errorf("restore %q: disk full: %w", display(f.rel), err))
	}
	rs.failLocked(f, fmt.Errorf("write: %w", err))
}

// acquire returns f's open handle, creating the file on first use (sized to its
// final size if it has several blobs) and reopening it if its handle was closed to
// bound open files.
func (rs *restorer) acquire(f *fileState) (*os.File, error) {
	if f.closeErr != nil {
		return nil, f.closeErr
	}
	if f.fh != nil {
		rs.handles.touch(f)
		return f.fh, nil
	}
	rs.handles.reserve(f)
	fh, err := rs.open(f)
	if err != nil {
		rs.handles.forget(f)
		if isNoSpace(err) {
			rs.setFatal(fmt.Errorf("restore %q: disk full: %w", display(f.rel), err))
		}
		return nil, err
	}
	f.fh = fh
	return fh, nil
}

func (rs *restorer) open(f *fileState) (*os.File, error) {
	if f.created {
		return rs.reopen(f)
	}
	// O_EXCL: a file is always created, never opened through whatever was there.
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if f.size >= directMin {
		flags |= directio.Flag // 0 where the platform has no direct I/O
	}
	fh, err := rs.create(f, flags)
	if err != nil && flags&directio.Flag != 0 && errors.Is(err, syscall.EINVAL) {
		// The file system refuses direct I/O. Linux says so after it has created
		// the file (O_EXCL: the name is ours), so remove it and create it again.
		if rerr := rs.root.Remove(f.tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("create: %w", rerr)
		}
		flags &^= directio.Flag
		fh, err = rs.create(f, flags)
	}
	if err != nil {
		return nil, err
	}
	f.created = true
	f.direct = flags&directio.Flag != 0
	// A file of one blob gets its size from that blob's write; a file of several is
	// sized first, as they may come in any order.
	if f.size > 0 && len(f.node.Content) > 1 {
		if err := fh.Truncate(f.size); err != nil {
			_ = fh.Close()
			return nil, fmt.Errorf("set size: %w", err)
		}
	}
	return fh, nil
}

// create creates f.tmp with flags (O_CREATE|O_EXCL and more). Outside in-place mode,
// a file, symlink or other non-directory in the way is removed first.
func (rs *restorer) create(f *fileState, flags int) (*os.File, error) {
	fh, err := rs.openFile(f.tmp, flags, 0o600)
	if errors.Is(err, fs.ErrExist) && !rs.opts.InPlace {
		fi, lerr := rs.root.Lstat(f.tmp)
		if lerr == nil && !fi.IsDir() {
			if rerr := rs.root.Remove(f.tmp); rerr != nil {
				return nil, fmt.Errorf("remove existing %s: %w", kind(fi.Mode()), rerr)
			}
			fh, err = rs.openFile(f.tmp, flags, 0o600)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	return fh, nil
}

// reopen opens f again after its handle was closed to bound open files, in direct
// mode if it was in direct mode.
func (rs *restorer) reopen(f *fileState) (*os.File, error) {
	if f.direct {
		fh, err := rs.openFile(f.tmp, os.O_WRONLY|directio.Flag, 0)
		if err == nil {
			return fh, nil
		}
		if !errors.Is(err, syscall.EINVAL) {
			return nil, fmt.Errorf("reopen: %w", err)
		}
	}
	fh, err := rs.openFile(f.tmp, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen: %w", err)
	}
	// If direct I/O is refused now, the carried bytes go the ordinary way.
	if err := rs.endDirect(f, fh); err != nil {
		_ = fh.Close()
		return nil, fmt.Errorf("write: %w", err)
	}
	return fh, nil
}

// openFile opens name under the restore target (os.Root.OpenFile, or the test's
// stand-in).
func (rs *restorer) openFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if rs.testOpen != nil {
		return rs.testOpen(name, flag, perm)
	}
	var fh *os.File
	err := rs.parents.in(name, func(dir *os.Root, base string) (err error) {
		fh, err = dir.OpenFile(base, flag, perm)
		return err
	})
	return fh, err
}

// release closes f's handle, if open.
func (rs *restorer) release(f *fileState) error {
	if f.fh == nil {
		return nil
	}
	werr := f.waitDirect()
	err := f.fh.Close()
	f.fh = nil
	rs.handles.forget(f)
	if werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// finishLocked sets a complete file's metadata and moves it into place.
func (rs *restorer) finishLocked(f *fileState) {
	fh, err := rs.acquire(f)
	if err != nil {
		rs.failLocked(f, err)
		return
	}
	if err := rs.endDirect(f, fh); err != nil {
		rs.writeFailed(f, err)
		return
	}
	n := f.node
	if rs.opts.Verify {
		fi, err := fh.Stat()
		if err != nil {
			rs.failLocked(f, fmt.Errorf("verify: %w", err))
			return
		}
		if fi.Size() != f.size {
			rs.failLocked(f, fmt.Errorf("verify: size on disk %d, want %d", fi.Size(), f.size))
			return
		}
	}
	// The owner first: chown clears the setuid and setgid bits.
	var metaErrs []error
	if rs.opts.Owners {
		if err := fh.Chown(int(n.UID), int(n.GID)); err != nil {
			metaErrs = append(metaErrs, fmt.Errorf("set owner: %w", err))
		}
	}
	if err := fh.Chmod(n.FileMode()); err != nil {
		metaErrs = append(metaErrs, fmt.Errorf("set mode: %w", err))
	}
	// The times last: every write has been made (endDirect waited for those in
	// flight). Through the handle, as the path would be resolved again.
	timesErr := setFileTimes(fh, n.ModTime, n.ModTime)
	if rs.opts.InPlace {
		// Durable before it replaces the old file: old or new, never half.
		if err := fh.Sync(); err != nil {
			rs.failLocked(f, fmt.Errorf("sync: %w", err))
			return
		}
	}
	if err := rs.release(f); err != nil {
		rs.failLocked(f, err)
		return
	}
	if errors.Is(timesErr, errors.ErrUnsupported) {
		timesErr = rs.root.Chtimes(f.tmp, n.ModTime, n.ModTime)
	}
	if timesErr != nil {
		metaErrs = append(metaErrs, fmt.Errorf("set times: %w", timesErr))
	}
	if rs.opts.InPlace {
		// tempName put f.tmp in f.rel's directory.
		err := rs.parents.in(f.tmp, func(dir *os.Root, base string) error {
			return dir.Rename(base, path.Base(f.rel))
		})
		if err != nil {
			rs.failLocked(f, fmt.Errorf("replace with restored file: %w", err))
			return
		}
	}
	f.done = true
	rs.filesDone.Add(1)
	rs.bytesOK.Add(uint64(f.size))
	for _, err := range metaErrs {
		rs.entryErr(f.rel, err)
	}
}

// failLocked records why f could not be restored and removes what was written of it.
func (rs *restorer) failLocked(f *fileState, err error) {
	if f.done || f.failed {
		return
	}
	f.failed = true
	_ = rs.release(f)
	if f.created {
		if rerr := rs.root.Remove(f.tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("%w (and removing the incomplete file: %v)", err, rerr)
		}
	}
	rs.entryErr(f.rel, err)
}

// cleanup removes the incomplete files of a restore that was stopped.
func (rs *restorer) cleanup() {
	for _, f := range rs.files {
		f.mu.Lock()
		if !f.done && !f.failed {
			f.failed = true
			_ = rs.release(f)
			if f.created {
				_ = rs.root.Remove(f.tmp)
			}
		}
		f.mu.Unlock()
	}
}

// handleCache bounds the number of open file handles: when the limit is reached,
// the least recently used handle that no one is writing to is closed (its file is
// reopened when needed again).
type handleCache struct {
	mu    sync.Mutex
	limit int
	lru   list.List // of *fileState with open handles, least recently used first
}

// touch marks f's handle as recently used. f.mu is held.
func (c *handleCache) touch(f *fileState) {
	c.mu.Lock()
	if f.elem != nil {
		c.lru.MoveToBack(f.elem)
	}
	c.mu.Unlock()
}

// reserve makes room for f's handle, closing idle ones if at the limit. f.mu is
// held; other files' locks are only tried, never waited for, so this cannot
// deadlock. If every open file is busy the limit is exceeded briefly.
func (c *handleCache) reserve(f *fileState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil && c.lru.Len() >= c.limit; {
		next := e.Next()
		g := e.Value.(*fileState)
		if g.mu.TryLock() {
			// Its direct writes in flight go through this handle: let them finish
			// (their errors stay with g and fail it at its next write).
			g.inflight.Wait()
			if err := g.fh.Close(); err != nil && g.closeErr == nil {
				g.closeErr = fmt.Errorf("close: %w", err)
			}
			g.fh = nil
			c.lru.Remove(e)
			g.elem = nil
			g.mu.Unlock()
		}
		e = next
	}
	f.elem = c.lru.PushBack(f)
}

// forget removes f from the cache after its handle was closed (or not opened).
func (c *handleCache) forget(f *fileState) {
	c.mu.Lock()
	if f.elem != nil {
		c.lru.Remove(f.elem)
		f.elem = nil
	}
	c.mu.Unlock()
}

// jsonDecodeStrict decodes a tree without validating it, rejecting unknown fields.
func jsonDecodeStrict(data []byte, t *snapshot.Tree) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(t); err != nil {
		return fmt.Errorf("decode tree: %w", err)
	}
	return nil
}
