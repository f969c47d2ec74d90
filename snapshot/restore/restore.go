// Package restore owns writing snapshot trees back to disk: it walks the selected
// trees, creates directories, restores file content pack by pack (each pack is read
// once and its blobs are written to every file and offset that needs them), then sets
// file, symlink and directory metadata. Every file system operation goes through an
// os.Root opened on the target directory, and entry names are checked with
// snapshot.ValidName, so that no snapshot, however crafted, makes restore write
// outside its target.
package restore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/cairn-backup/cairn/snapshot"
)

// Repo is what restore needs of a repository; *repo.Repository implements it. The
// index must be loaded.
type Repo interface {
	LoadBlob(ctx context.Context, id blob.ID, dst []byte) ([]byte, error)
	FetchPack(ctx context.Context, packID blob.ID) (*repo.FetchedPack, error)
	OpenPack(ctx context.Context, fp *repo.FetchedPack) (*repo.PackReader, error)
	LookupBlob(id blob.ID) (index.Location, bool)
}

var _ Repo = (*repo.Repository)(nil)

// Options configures a restore.
type Options struct {
	// Target is the directory to restore into (created if missing). The snapshot's
	// root tree is the target itself: /srv/app/x is restored to Target/srv/app/x.
	Target string
	// Include lists absolute snapshot paths ("/srv/app/media/a.pdf" or a directory)
	// to restore, with their subtrees and the directories leading to them. Empty
	// means everything.
	Include []string
	// InPlace says Target is the live location: every file and symlink is written to
	// a temporary name in its directory and renamed over the old one, so that an
	// interrupted restore leaves each file old or new, never half written.
	InPlace bool
	// Delete removes entries the snapshot does not have from every directory that
	// is restored as a whole (everything, or the subtrees named by Include). With
	// an empty Include that includes Target itself: callers restoring in place over
	// a live system pass the snapshot's paths as Include.
	Delete bool
	// Owners restores the recorded uid and gid (the caller sets it when running as
	// root).
	Owners bool
	// Workers is the number of packs processed at once (0 = GOMAXPROCS).
	Workers int
	// Progress, if set, is called now and then from a single goroutine with the
	// number of files completed and content bytes written so far.
	Progress func(files int64, bytes uint64)
	// Verify checks every restored file's size on disk after it is written.
	Verify bool
}

// Result counts what a restore did. Errors lists every entry that could not be
// restored (or whose metadata could not be set), each naming its path.
type Result struct {
	Files, Dirs, Symlinks int64
	Bytes                 uint64
	Deleted               int64 // entries removed by Delete (a directory counts once)
	Errors                []error
}

// ErrIncomplete is wrapped by Run's error when some entries could not be restored
// and everything else was.
var ErrIncomplete = errors.New("restore incomplete")

// maxOpenFiles bounds the file handles kept open while content is written (a
// variable so that tests can make it small).
var maxOpenFiles = 256

// tempPrefix starts the names of the temporary files an in-place restore writes.
const tempPrefix = ".cairn-restore-"

// Run restores the tree with ID tree into opts.Target. Damaged or missing data fails
// only the files that need it: they are listed in Result.Errors, nothing partial of
// them is left behind, and Run returns an error wrapping ErrIncomplete after
// everything else is restored. A full disk or a cancelled context stops the restore.
func Run(ctx context.Context, r Repo, tree blob.ID, opts Options) (Result, error) {
	if opts.Target == "" {
		return Result{}, errors.New("restore: no target directory")
	}
	incls, err := parseIncludes(opts.Include)
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(opts.Target, 0o700); err != nil {
		return Result{}, fmt.Errorf("restore: create target: %w", err)
	}
	root, err := os.OpenRoot(opts.Target)
	if err != nil {
		return Result{}, fmt.Errorf("restore: open target: %w", err)
	}
	defer func() { _ = root.Close() }()

	var runID [6]byte
	if _, err := rand.Read(runID[:]); err != nil {
		return Result{}, fmt.Errorf("restore: random temporary name: %w", err)
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs := &restorer{
		r: r, opts: opts, root: root, ctx: ctx, cancel: cancel,
		runID:   hex.EncodeToString(runID[:]),
		blobs:   map[blob.ID]*blobJob{},
		packs:   map[blob.ID]*packJob{},
		failed:  map[string]struct{}{},
		handles: &handleCache{limit: maxOpenFiles},
		parents: newParentDirs(root),
		workers: workers,
	}
	defer rs.parents.closeIdle()
	stopProgress := rs.startProgress()
	defer stopProgress()

	// 1. Walk the selected trees: create directories, plan files and symlinks.
	rs.walkDir(tree, "", incls, len(incls) == 0, false)
	for _, in := range incls {
		if !in.in.found {
			rs.addErr("\x00include "+in.in.orig, fmt.Errorf("include %q: not in the snapshot", in.in.orig))
		}
	}
	// 2. Content, pack by pack.
	if err := ctx.Err(); err == nil {
		rs.restoreContent()
	}
	if err := rs.stopped(); err != nil {
		rs.cleanup()
		stopProgress()
		return rs.result(), err
	}
	// 3. Symlinks, after all content, so that no write can pass through one.
	for _, l := range rs.links {
		if ctx.Err() != nil {
			break
		}
		rs.restoreLink(l)
	}
	// 4. Directory metadata, deepest first (reverse pre-order), so that creating
	// entries does not disturb the times and modes already set.
	for i := len(rs.dirs) - 1; i >= 0 && ctx.Err() == nil; i-- {
		rs.setDirMeta(rs.dirs[i])
	}
	if err := rs.stopped(); err != nil {
		stopProgress()
		return rs.result(), err
	}
	stopProgress()
	res := rs.result()
	if len(res.Errors) > 0 {
		rs.mu.Lock()
		n := len(rs.failed)
		rs.mu.Unlock()
		noun := "files"
		if n == 1 {
			noun = "file"
		}
		return res, fmt.Errorf("%w: %d %s could not be restored (first: %v)", ErrIncomplete, n, noun, res.Errors[0])
	}
	return res, nil
}

// include is one Include path split into components.
type include struct {
	orig  string
	parts []string
	found bool
}

// incl is an include's remaining components below the directory being walked.
type incl struct {
	in   *include
	rest []string
}

func parseIncludes(paths []string) ([]incl, error) {
	var out []incl
	for _, p := range paths {
		if !path.IsAbs(p) {
			return nil, fmt.Errorf("restore: include %q is not an absolute snapshot path", p)
		}
		c := path.Clean(p)
		if c == "/" {
			return nil, nil // everything
		}
		in := &include{orig: p, parts: strings.Split(c[1:], "/")}
		out = append(out, incl{in: in, rest: in.parts})
	}
	return out, nil
}

// restorer is the state of one Run.
type restorer struct {
	r      Repo
	opts   Options
	root   *os.Root
	ctx    context.Context
	cancel context.CancelFunc
	runID  string
	tmpSeq atomic.Int64

	dirs     []*dirEntry  // pre-order
	selected int          // entries selected so far by the walk
	links    []*linkEntry // in walk order
	files    []*fileState // files with content

	blobs     map[blob.ID]*blobJob
	packs     map[blob.ID]*packJob
	packOrder []*packJob // by first use in walk order
	handles   *handleCache
	parents   *parentDirs // directories files are created in (parents.go)
	workers   int

	directJobs chan directJob // aligned writes for the direct writers (direct.go)
	directWG   sync.WaitGroup
	finishing  sync.WaitGroup // files finished off the workers (direct.go)
	// testOpen, if set, stands in for root.OpenFile (tests of file systems that
	// refuse direct I/O).
	testOpen func(name string, flag int, perm fs.FileMode) (*os.File, error)

	filesDone atomic.Int64
	bytesDone atomic.Uint64 // content bytes written
	bytesOK   atomic.Uint64 // sizes of completed files

	mu       sync.Mutex
	errs     []error
	failed   map[string]struct{} // entries with errors
	fatal    error
	dirCount int64
	symlinks int64
	deleted  int64
}

type dirEntry struct {
	rel  string
	node *snapshot.Node
}

type linkEntry struct {
	rel  string
	node *snapshot.Node
}

// display is how paths appear in errors: the absolute snapshot path.
func display(rel string) string { return "/" + rel }

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// name returns rel for Root methods, which take "." for the root itself.
func name(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// addErr records an error; key identifies the entry it is about, so that an entry
// with several errors counts once.
func (rs *restorer) addErr(key string, err error) {
	rs.mu.Lock()
	rs.errs = append(rs.errs, err)
	rs.failed[key] = struct{}{}
	rs.mu.Unlock()
}

// entryErr records an error about the entry at rel.
func (rs *restorer) entryErr(rel string, err error) {
	rs.addErr(rel, fmt.Errorf("%q: %w", display(rel), err))
}

// setFatal records the error that stops the restore and cancels the remaining work.
func (rs *restorer) setFatal(err error) {
	rs.mu.Lock()
	if rs.fatal == nil {
		rs.fatal = err
	}
	rs.mu.Unlock()
	rs.cancel()
}

// stopped returns the error that stopped the restore, if any: a fatal error or the
// caller's cancellation.
func (rs *restorer) stopped() error {
	rs.mu.Lock()
	fatal := rs.fatal
	rs.mu.Unlock()
	if fatal != nil {
		return fatal
	}
	if err := rs.ctx.Err(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

func (rs *restorer) result() Result {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return Result{
		Files: rs.filesDone.Load(), Dirs: rs.dirCount, Symlinks: rs.symlinks,
		Bytes: rs.bytesOK.Load(), Deleted: rs.deleted, Errors: append([]error(nil), rs.errs...),
	}
}

func (rs *restorer) startProgress() (stop func()) {
	if rs.opts.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				rs.opts.Progress(rs.filesDone.Load(), rs.bytesDone.Load())
			case <-done:
				rs.opts.Progress(rs.filesDone.Load(), rs.bytesDone.Load())
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-finished
		})
	}
}

func (rs *restorer) tempName(rel string) string {
	return join(path.Dir("/" + rel)[1:], fmt.Sprintf("%s%s-%d", tempPrefix, rs.runID, rs.tmpSeq.Add(1)))
}

// loadTree loads a tree blob. A tree that fails validation is checked node by node:
// invalid nodes (bad names, duplicates, malformed fields) are reported as errors
// naming them and left out, and the rest is restored.
func (rs *restorer) loadTree(id blob.ID, rel string) ([]snapshot.Node, error) {
	data, err := rs.r.LoadBlob(rs.ctx, id, nil)
	if err != nil {
		return nil, fmt.Errorf("load tree %s: %w", id.Short(), err)
	}
	t, err := snapshot.DecodeTree(data)
	if err == nil {
		return t.Nodes, nil
	}
	var lax snapshot.Tree
	if jerr := jsonDecodeStrict(data, &lax); jerr != nil {
		return nil, fmt.Errorf("tree %s: %w", id.Short(), err)
	}
	seen := make(map[string]bool, len(lax.Nodes))
	nodes := lax.Nodes[:0:0]
	for _, n := range lax.Nodes {
		// Errors name the directory and the entry; the key counts each entry once.
		key := rel + "\x00" + n.RawName()
		one := snapshot.Tree{Nodes: []snapshot.Node{n}}
		if err := one.Validate(); err != nil {
			rs.addErr(key, fmt.Errorf("%q: tree %s: entry skipped: %w", display(rel), id.Short(), err))
			continue
		}
		if seen[n.RawName()] {
			rs.addErr(key, fmt.Errorf("%q: tree %s: entry skipped: %w: duplicate name %q", display(rel), id.Short(), snapshot.ErrInvalidTree, n.RawName()))
			continue
		}
		seen[n.RawName()] = true
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// walkDir walks the tree id restored at rel. whole says the directory is selected
// as a whole; otherwise incls lists the include paths below it. fresh says this
// restore created the directory, so nothing it did not put there is in the way of
// its entries and they are created without looking first.
func (rs *restorer) walkDir(id blob.ID, rel string, incls []incl, whole, fresh bool) {
	if rs.ctx.Err() != nil {
		return
	}
	nodes, err := rs.loadTree(id, rel)
	if err != nil {
		rs.entryErr(rel, err)
		return
	}
	if whole && rs.opts.Delete {
		rs.deleteExtras(rel, nodes)
	}
	for i := range nodes {
		n := &nodes[i]
		child := join(rel, n.RawName())
		// Includes are matched even inside wholly selected directories, to tell
		// which of them name something.
		childWhole := whole
		var childIncls []incl
		for _, in := range incls {
			if in.rest[0] != n.RawName() {
				continue
			}
			if len(in.rest) == 1 {
				in.in.found = true
				childWhole = true
			} else if n.Type == snapshot.TypeDir {
				childIncls = append(childIncls, incl{in: in.in, rest: in.rest[1:]})
			}
		}
		if !childWhole && len(childIncls) == 0 {
			continue
		}
		rs.selected++
		switch n.Type {
		case snapshot.TypeDir:
			ok, created := rs.prepareDir(child, fresh)
			if !ok {
				continue
			}
			d := &dirEntry{rel: child, node: n}
			rs.dirs = append(rs.dirs, d)
			before := rs.selected
			rs.walkDir(*n.Subtree, child, childIncls, childWhole, created)
			if !childWhole && rs.selected == before && created {
				// A directory leading only to includes that name nothing: leave
				// no trace of it.
				if err := rs.root.Remove(child); err == nil {
					rs.dirs = slices.DeleteFunc(rs.dirs, func(e *dirEntry) bool { return e == d })
					rs.mu.Lock()
					rs.dirCount--
					rs.mu.Unlock()
				}
			}
		case snapshot.TypeFile:
			rs.planFile(child, n, fresh)
		case snapshot.TypeSymlink:
			if fresh || rs.clearDirInTheWay(child) {
				rs.links = append(rs.links, &linkEntry{rel: child, node: n})
			}
		}
		if rs.ctx.Err() != nil {
			return
		}
	}
}

// prepareDir makes sure rel is a directory we can write into. Whatever else is there
// (a file, or a symlink, which is never followed) is replaced. In a directory this
// restore created (fresh), it is created without looking first.
// It reports whether rel can be used and whether it was created.
func (rs *restorer) prepareDir(rel string, fresh bool) (ok, created bool) {
	if fresh {
		err := rs.root.Mkdir(rel, 0o700)
		if err == nil {
			rs.countDir()
			return true, true
		}
		if !errors.Is(err, fs.ErrExist) {
			rs.entryErr(rel, fmt.Errorf("create directory: %w", err))
			return false, false
		}
		// Something came in the way after all: look at it.
	}
	fi, err := rs.root.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		rs.entryErr(rel, fmt.Errorf("inspect existing entry: %w", err))
		return false, false
	case fi.IsDir():
		if perm := fi.Mode().Perm(); perm&0o700 != 0o700 {
			if err := rs.root.Chmod(rel, perm|0o700); err != nil {
				rs.entryErr(rel, fmt.Errorf("make existing directory writable: %w", err))
				return false, false
			}
		}
		rs.countDir()
		return true, false
	default:
		if err := rs.root.Remove(rel); err != nil {
			rs.entryErr(rel, fmt.Errorf("replace existing %s with a directory: %w", kind(fi.Mode()), err))
			return false, false
		}
	}
	if err := rs.root.Mkdir(rel, 0o700); err != nil {
		rs.entryErr(rel, fmt.Errorf("create directory: %w", err))
		return false, false
	}
	rs.countDir()
	return true, true
}

func (rs *restorer) countDir() {
	rs.mu.Lock()
	rs.dirCount++
	rs.mu.Unlock()
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	}
	return "special file"
}

// clearDirInTheWay handles an existing directory where the snapshot has a file or a
// symlink: with Delete it is removed, otherwise the entry is an error.
func (rs *restorer) clearDirInTheWay(rel string) bool {
	var fi fs.FileInfo
	err := rs.parents.in(rel, func(dir *os.Root, base string) (err error) {
		fi, err = dir.Lstat(base)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) || err == nil && !fi.IsDir() {
		return true
	}
	if err != nil {
		rs.entryErr(rel, fmt.Errorf("inspect existing entry: %w", err))
		return false
	}
	if !rs.opts.Delete {
		rs.entryErr(rel, errors.New("a directory exists where the snapshot has a file or symlink (restore with Delete to replace it)"))
		return false
	}
	if err := rs.root.RemoveAll(rel); err != nil {
		rs.entryErr(rel, fmt.Errorf("remove directory in the way: %w", err))
		return false
	}
	rs.mu.Lock()
	rs.deleted++
	rs.mu.Unlock()
	return true
}

// deleteExtras removes the entries of directory rel that nodes do not name.
func (rs *restorer) deleteExtras(rel string, nodes []snapshot.Node) {
	keep := make(map[string]bool, len(nodes))
	for i := range nodes {
		keep[nodes[i].RawName()] = true
	}
	d, err := rs.root.Open(name(rel))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			rs.entryErr(rel, fmt.Errorf("list for deletion: %w", err))
		}
		return
	}
	entries, err := d.ReadDir(-1)
	_ = d.Close()
	if err != nil {
		rs.entryErr(rel, fmt.Errorf("list for deletion: %w", err))
		return
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		p := join(rel, e.Name())
		if err := rs.root.RemoveAll(p); err != nil {
			rs.entryErr(p, fmt.Errorf("delete (not in the snapshot): %w", err))
			continue
		}
		rs.mu.Lock()
		rs.deleted++
		rs.mu.Unlock()
	}
}

// restoreLink creates a symlink (never following anything) and sets its metadata.
func (rs *restorer) restoreLink(l *linkEntry) {
	n := l.node
	dst := l.rel
	if rs.opts.InPlace {
		dst = rs.tempName(l.rel)
	}
	err := rs.root.Symlink(n.Target(), dst)
	if errors.Is(err, fs.ErrExist) && !rs.opts.InPlace {
		if fi, lerr := rs.root.Lstat(dst); lerr == nil && !fi.IsDir() {
			if rerr := rs.root.Remove(dst); rerr != nil {
				rs.entryErr(l.rel, fmt.Errorf("remove existing %s: %w", kind(fi.Mode()), rerr))
				return
			}
			err = rs.root.Symlink(n.Target(), dst)
		}
	}
	if err != nil {
		rs.entryErr(l.rel, fmt.Errorf("create symlink: %w", err))
		return
	}
	var errs []error
	if rs.opts.Owners {
		if err := rs.root.Lchown(dst, int(n.UID), int(n.GID)); err != nil {
			errs = append(errs, fmt.Errorf("set owner: %w", err))
		}
	}
	if err := lchtimes(rs.root, dst, n.ModTime, n.ModTime); err != nil {
		errs = append(errs, fmt.Errorf("set times: %w", err))
	}
	if rs.opts.InPlace {
		if err := rs.root.Rename(dst, l.rel); err != nil {
			_ = rs.root.Remove(dst)
			rs.entryErr(l.rel, fmt.Errorf("replace with restored symlink: %w", err))
			return
		}
	}
	rs.mu.Lock()
	rs.symlinks++
	rs.mu.Unlock()
	for _, err := range errs {
		rs.entryErr(l.rel, err)
	}
}

func (rs *restorer) setDirMeta(d *dirEntry) {
	n := d.node
	if rs.opts.Owners {
		if err := rs.root.Lchown(d.rel, int(n.UID), int(n.GID)); err != nil {
			rs.entryErr(d.rel, fmt.Errorf("set owner: %w", err))
		}
	}
	if err := rs.root.Chmod(d.rel, n.FileMode()&^fs.ModeDir); err != nil {
		rs.entryErr(d.rel, fmt.Errorf("set mode: %w", err))
	}
	if err := rs.root.Chtimes(d.rel, n.ModTime, n.ModTime); err != nil {
		rs.entryErr(d.rel, fmt.Errorf("set times: %w", err))
	}
}

// isNoSpace reports whether err means the disk (or quota) is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
