// Package backup owns the backup pipeline: it walks source paths, chunks and stores
// changed files concurrently, streams a database dump into the repository, and saves
// the snapshot record last, only after every pack and index it needs is durable.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

// Progress holds live counters a caller may read while the backup runs.
type Progress struct {
	Files     atomic.Int64
	Bytes     atomic.Uint64 // bytes of files processed (read or unchanged)
	BytesRead atomic.Uint64
	Errors    atomic.Int64
	Current   atomic.Pointer[string]
}

// DumpFunc writes a database dump to w and returns what describes it.
type DumpFunc func(ctx context.Context, w io.Writer) (*snapshot.Database, error)

// Options configures a backup.
type Options struct {
	Paths    []string // absolute or relative source paths
	Excludes []string // glob patterns (see Excluded)
	Tags     []string
	Host     string
	Time     time.Time // snapshot time; zero means now
	Parent   *snapshot.Snapshot
	App      *snapshot.App
	// Database, if set, is called once to stream the dump into the repository.
	Database     DumpFunc
	DatabaseName string // file name of the dump inside its tree, e.g. "postgres.dump"
	Progress     *Progress
	Workers      int // files read at once (0: GOMAXPROCS)
	Writer       repo.WriterOptions
	// Warn is called for each source file that is skipped or changed (optional).
	Warn func(path string, err error)
	// ProgramVersion is recorded in the snapshot.
	ProgramVersion string
}

// Result is what a backup produced.
type Result struct {
	Snapshot *snapshot.Snapshot
	// Skipped lists source files that could not be read; the snapshot lacks them.
	Skipped []error
}

// SourceError names a source file that could not be backed up.
type SourceError struct {
	Path string
	Err  error
}

func (e *SourceError) Error() string { return fmt.Sprintf("%s: %v", e.Path, e.Err) }
func (e *SourceError) Unwrap() error { return e.Err }

type backup struct {
	ctx     context.Context
	r       *repo.Repository
	w       *repo.Writer
	opts    Options
	prog    *Progress
	jobs    chan *fileJob
	sum     snapshot.Summary
	sumMu   sync.Mutex
	skipped []error
	names   *nameCache
	failed  atomic.Pointer[error]
	// walkers limits the directories walked at once besides the first (a token per
	// extra walker): unchanged files and parent trees are handled by walkers.
	walkers chan struct{}
}

// jobQueue is how many files the walkers may queue for the workers. While every
// core is busy chunking, a walker runs only now and then; a deep queue lets it get
// far enough ahead that a worker finishing a file does not wait for the next one.
const jobQueue = 256

// Run makes a snapshot of opts.Paths (and the database, if any). The index must be
// loaded. On error no snapshot is written; data already uploaded stays in the
// repository, indexed, for the next run to reuse.
func Run(ctx context.Context, r *repo.Repository, opts Options) (*Result, error) {
	if len(opts.Paths) == 0 && opts.Database == nil {
		return nil, errors.New("nothing to back up: give at least one path")
	}
	paths, err := CleanPaths(opts.Paths)
	if err != nil {
		return nil, err
	}
	opts.Paths = paths
	if opts.Progress == nil {
		opts.Progress = &Progress{}
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	if opts.Time.IsZero() {
		opts.Time = time.Now()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := &backup{ctx: ctx, r: r, opts: opts, prog: opts.Progress, jobs: make(chan *fileJob, jobQueue), names: newNameCache(),
		walkers: make(chan struct{}, opts.Workers)}
	b.sum.Start = time.Now()
	b.w = r.NewWriter(ctx, opts.Writer)

	var wg sync.WaitGroup
	for i := 0; i < opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.worker()
		}()
	}
	var root blob.ID
	var db *snapshot.Database
	err = func() error {
		defer func() { close(b.jobs); wg.Wait() }()
		if opts.Database != nil {
			var err error
			if db, err = b.dumpDatabase(); err != nil {
				return err
			}
		}
		var err error
		root, err = b.saveRoot()
		return err
	}()
	if err == nil {
		if f := b.failed.Load(); f != nil {
			err = *f
		}
	}
	if err != nil {
		b.w.Abort()
		return nil, err
	}
	if err := b.w.Flush(); err != nil {
		return nil, fmt.Errorf("finish upload: %w", err)
	}
	st := b.w.Stats()
	b.sum.End = time.Now()
	b.sum.BlobsAdded = st.BlobsAdded
	b.sum.BytesAdded = uint64(st.BytesRaw)
	b.sum.BytesStored = uint64(st.BytesStored)
	b.sum.PacksWritten = st.Packs
	b.sum.BytesRead = b.prog.BytesRead.Load()
	sn := &snapshot.Snapshot{Time: opts.Time, Host: opts.Host, Tags: opts.Tags, Paths: opts.Paths, Tree: root,
		App: opts.App, Database: db, Summary: &b.sum, ProgramVersion: opts.ProgramVersion}
	if u := currentUser(); u != "" {
		sn.Username = u
	}
	if opts.Parent != nil {
		id := opts.Parent.ID
		sn.Parent = &id
	}
	if _, err := snapshot.Save(ctx, r, sn); err != nil {
		return nil, fmt.Errorf("save snapshot: %w", err)
	}
	return &Result{Snapshot: sn, Skipped: b.skipped}, nil
}

// CleanPaths makes source paths absolute, checks that they exist, sorts them and drops
// paths inside other given paths: the form recorded in a snapshot.
func CleanPaths(in []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range in {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", p, err)
		}
		if _, err := os.Lstat(abs); err != nil {
			return nil, fmt.Errorf("source %s: %w", p, err)
		}
		if !seen[abs] {
			seen[abs] = true
			out = append(out, abs)
		}
	}
	sort.Strings(out)
	// A path inside another given path is already covered.
	var res []string
	for _, p := range out {
		covered := false
		for _, q := range res {
			if q == "/" || strings.HasPrefix(p, q+"/") {
				covered = true
			}
		}
		if !covered {
			res = append(res, p)
		}
	}
	return res, nil
}

func (b *backup) warn(path string, err error) {
	b.prog.Errors.Add(1)
	b.sumMu.Lock()
	b.skipped = append(b.skipped, &SourceError{Path: path, Err: err})
	b.sum.FilesFailed++
	b.sumMu.Unlock()
	if b.opts.Warn != nil {
		b.opts.Warn(path, err)
	}
}

// notice reports a skipped entry that is not an error (sockets, pipes, devices).
func (b *backup) notice(path string, err error) {
	if b.opts.Warn != nil {
		b.opts.Warn(path, err)
	}
}

func (b *backup) fail(err error) {
	b.failed.CompareAndSwap(nil, &err)
}

// Excluded reports whether path matches one of the patterns. A pattern containing a
// slash is matched against the whole absolute path (and against each parent of it);
// otherwise against the base name. Patterns use filepath.Match syntax.
func Excluded(patterns []string, path string) bool {
	base := filepath.Base(path)
	for _, p := range patterns {
		if strings.Contains(p, "/") {
			for q := path; ; q = filepath.Dir(q) {
				if ok, _ := filepath.Match(p, q); ok {
					return true
				}
				if q == "/" || q == "." {
					break
				}
			}
			continue
		}
		if ok, _ := filepath.Match(p, base); ok {
			return true
		}
	}
	return false
}

// pathTrie arranges the source paths under "/".
type pathTrie struct {
	children map[string]*pathTrie
	source   bool // this path itself is a source: walk it entirely
}

func (b *backup) saveRoot() (blob.ID, error) {
	root := &pathTrie{children: map[string]*pathTrie{}}
	for _, p := range b.opts.Paths {
		t := root
		if p == "/" {
			t.source = true
			continue
		}
		for _, c := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
			next := t.children[c]
			if next == nil {
				next = &pathTrie{children: map[string]*pathTrie{}}
				t.children[c] = next
			}
			t = next
		}
		t.source = true
	}
	var parentRoot *blob.ID
	if b.opts.Parent != nil {
		parentRoot = &b.opts.Parent.Tree
	}
	if root.source {
		fi, err := os.Lstat("/")
		if err != nil {
			return blob.ID{}, fmt.Errorf("source /: %w", err)
		}
		n, err := b.saveDir("/", fi, parentRoot)
		if err != nil {
			return blob.ID{}, err
		}
		return *n.Subtree, nil
	}
	return b.saveTrie("/", root, parentRoot)
}

// saveTrie saves the synthetic directory levels leading to source paths.
func (b *backup) saveTrie(dir string, t *pathTrie, parent *blob.ID) (blob.ID, error) {
	var parentTree *snapshot.Tree
	if parent != nil {
		parentTree = b.loadParentTree(*parent)
	}
	tree := &snapshot.Tree{}
	names := make([]string, 0, len(t.children))
	for name := range t.children {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		child := t.children[name]
		path := filepath.Join(dir, name)
		var pn *snapshot.Node
		if parentTree != nil {
			pn = parentTree.Find(name)
		}
		if child.source {
			n, err := b.saveEntry(path, pn)
			if err != nil {
				return blob.ID{}, err
			}
			if n != nil {
				tree.Nodes = append(tree.Nodes, *n)
			}
			continue
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return blob.ID{}, fmt.Errorf("source %s: %w", path, err)
		}
		var psub *blob.ID
		if pn != nil && pn.Type == snapshot.TypeDir {
			psub = pn.Subtree
		}
		sub, err := b.saveTrie(path, child, psub)
		if err != nil {
			return blob.ID{}, err
		}
		n := b.nodeFromInfo(name, fi)
		n.Type = snapshot.TypeDir
		n.Subtree = &sub
		tree.Nodes = append(tree.Nodes, *n)
	}
	return b.saveTree(tree)
}

func (b *backup) loadParentTree(id blob.ID) *snapshot.Tree {
	if b.r.WriteOnly() {
		return nil
	}
	t, err := snapshot.LoadTree(b.ctx, b.r, id)
	if err != nil {
		return nil // an unreadable parent only costs re-reading files
	}
	return t
}

func (b *backup) saveTree(t *snapshot.Tree) (blob.ID, error) {
	data, err := t.Encode()
	if err != nil {
		return blob.ID{}, fmt.Errorf("encode tree: %w", err)
	}
	id := blob.ID(crypto.NewBlobMAC(b.r.Secrets().IDKey).Sum(data))
	if _, err := b.w.SaveBlob(blob.Tree, id, data); err != nil {
		return blob.ID{}, err
	}
	return id, nil
}

// saveEntry backs up one source path of any type. It returns nil for entries skipped
// with a warning.
func (b *backup) saveEntry(path string, parent *snapshot.Node) (*snapshot.Node, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", path, err)
	}
	switch {
	case fi.IsDir():
		var psub *blob.ID
		if parent != nil && parent.Type == snapshot.TypeDir {
			psub = parent.Subtree
		}
		return b.saveDir(path, fi, psub)
	case fi.Mode().IsRegular():
		job := &fileJob{path: path, name: filepath.Base(path), fi: fi, parent: parent}
		job.wg.Add(1)
		b.jobs <- job
		job.wg.Wait()
		return job.node, nil
	case fi.Mode()&fs.ModeSymlink != 0:
		return b.symlinkNode(path, filepath.Base(path), fi)
	default:
		b.notice(path, fmt.Errorf("skipped %s (not a regular file, directory or symlink)", fileKind(fi.Mode())))
		return nil, nil
	}
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

func (b *backup) symlinkNode(path, name string, fi fs.FileInfo) (*snapshot.Node, error) {
	target, err := os.Readlink(path)
	if err != nil {
		b.warn(path, fmt.Errorf("read symlink: %w", err))
		return nil, nil
	}
	n := b.nodeFromInfo(name, fi)
	n.Type = snapshot.TypeSymlink
	n.SetTarget(target)
	if target == "" {
		b.warn(path, errors.New("symlink with empty target skipped"))
		return nil, nil
	}
	b.countFile(0)
	return n, nil
}

func (b *backup) countFile(size uint64) {
	b.prog.Files.Add(1)
	b.sumMu.Lock()
	b.sum.TotalFiles++
	b.sum.TotalBytes += size
	b.sumMu.Unlock()
}

// saveDir backs up the directory at path, whose Lstat result is fi.
func (b *backup) saveDir(path string, fi fs.FileInfo, parent *blob.ID) (*snapshot.Node, error) {
	if err := b.ctx.Err(); err != nil {
		return nil, err
	}
	if f := b.failed.Load(); f != nil {
		return nil, *f
	}
	var parentTree *snapshot.Tree
	if parent != nil {
		parentTree = b.loadParentTree(*parent)
	}
	names, rerr := readDirNames(path)
	if rerr != nil {
		b.warn(path, fmt.Errorf("read directory: %w", rerr))
	}
	tree := &snapshot.Tree{}
	var jobs []*fileJob
	var wg sync.WaitGroup
	type subdir struct {
		node *snapshot.Node
		err  error
	}
	var subdirs []*subdir
	var dirWG sync.WaitGroup
	for _, name := range names {
		child := filepath.Join(path, name)
		if Excluded(b.opts.Excludes, child) {
			continue
		}
		cfi, err := os.Lstat(child)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				b.warn(child, errors.New("vanished before it could be read"))
			} else {
				b.warn(child, err)
			}
			continue
		}
		var pn *snapshot.Node
		if parentTree != nil {
			pn = parentTree.Find(name)
		}
		switch {
		case cfi.Mode().IsRegular():
			job := &fileJob{path: child, name: name, fi: cfi, parent: pn, dirWG: &wg}
			jobs = append(jobs, job)
			if b.reuseUnchanged(job) {
				continue
			}
			wg.Add(1)
			select {
			case b.jobs <- job:
			case <-b.ctx.Done():
				wg.Done()
				dirWG.Wait()
				wg.Wait()
				return nil, b.ctx.Err()
			}
		case cfi.IsDir():
			var psub *blob.ID
			if pn != nil && pn.Type == snapshot.TypeDir {
				psub = pn.Subtree
			}
			sd := &subdir{}
			subdirs = append(subdirs, sd)
			select {
			case b.walkers <- struct{}{}:
				// A spare walker: the subdirectory is walked alongside this one.
				dirWG.Add(1)
				go func() {
					defer func() { <-b.walkers; dirWG.Done() }()
					sd.node, sd.err = b.saveDir(child, cfi, psub)
				}()
			default:
				if sd.node, sd.err = b.saveDir(child, cfi, psub); sd.err != nil {
					dirWG.Wait()
					wg.Wait()
					return nil, sd.err
				}
			}
		case cfi.Mode()&fs.ModeSymlink != 0:
			n, _ := b.symlinkNode(child, name, cfi)
			if n != nil {
				tree.Nodes = append(tree.Nodes, *n)
			}
		default:
			b.notice(child, fmt.Errorf("skipped %s (not a regular file, directory or symlink)", fileKind(cfi.Mode())))
		}
	}
	dirWG.Wait()
	wg.Wait()
	for _, sd := range subdirs {
		if sd.err != nil {
			return nil, sd.err
		}
		if sd.node != nil {
			tree.Nodes = append(tree.Nodes, *sd.node)
		}
	}
	for _, j := range jobs {
		if j.node != nil {
			tree.Nodes = append(tree.Nodes, *j.node)
		}
	}
	var id blob.ID
	var err error
	if tree.Sort(); parentTree != nil && parentTree.Equal(tree) && b.r.HasBlob(*parent) {
		// Nothing in the directory changed: its tree is the parent's, already stored.
		id = *parent
	} else if id, err = b.saveTree(tree); err != nil {
		return nil, err
	}
	n := b.nodeFromInfo(filepath.Base(path), fi)
	if path == "/" {
		n.SetName("/")
	}
	n.Type = snapshot.TypeDir
	n.Subtree = &id
	b.sumMu.Lock()
	switch {
	case parent == nil:
		b.sum.DirsNew++
	case *parent == id:
		b.sum.DirsUnchanged++
	default:
		b.sum.DirsChanged++
	}
	b.sumMu.Unlock()
	return n, nil
}

func readDirNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

func (b *backup) nodeFromInfo(name string, fi fs.FileInfo) *snapshot.Node {
	n := &snapshot.Node{Mode: snapshot.UnixMode(fi.Mode()), ModTime: fi.ModTime().UTC()}
	n.SetName(name)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		n.UID, n.GID = st.Uid, st.Gid
		n.Inode, n.Device = st.Ino, uint64(st.Dev)
		n.ChangeTime = time.Unix(st.Ctim.Sec, st.Ctim.Nsec).UTC()
		n.User, n.Group = b.names.user(st.Uid), b.names.group(st.Gid)
	}
	return n
}
