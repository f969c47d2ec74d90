package restore

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

// spec describes one entry of a test snapshot.
type spec struct {
	typ    string // snapshot.TypeFile when empty
	data   []byte
	mode   uint32 // 0: 0o644 for files, 0o755 for directories, 0o777 for symlinks
	mtime  time.Time
	target string
	uid    uint32
	gid    uint32
}

func (s spec) kind() string {
	if s.typ == "" {
		return snapshot.TypeFile
	}
	return s.typ
}

func (s spec) perm() uint32 {
	if s.mode != 0 {
		return s.mode
	}
	switch s.kind() {
	case snapshot.TypeDir:
		return 0o755
	case snapshot.TypeSymlink:
		return 0o777
	}
	return 0o644
}

var baseTime = time.Date(2023, 11, 14, 22, 13, 20, 123456789, time.UTC)

func (s spec) time() time.Time {
	if s.mtime.IsZero() {
		return baseTime
	}
	return s.mtime
}

// testRepo is a real repository in a temporary directory (local backend).
type testRepo struct {
	t   *testing.T
	r   *repo.Repository
	dir string
	mac *crypto.BlobMAC
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	dir := t.TempDir()
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := crypto.NewPassphrase("pw", 10)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(context.Background(), be, cred, repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return &testRepo{t: t, r: r, dir: dir, mac: r.NewBlobMAC()}
}

// session runs fn in one write session: the blobs it saves end up in their own packs.
func (tr *testRepo) session(fn func(w *repo.Writer)) {
	tr.t.Helper()
	w := tr.r.NewWriter(context.Background(), repo.WriterOptions{Packers: 1})
	fn(w)
	if err := w.Flush(); err != nil {
		tr.t.Fatal(err)
	}
}

const testChunk = 16 << 10

// saveData stores data as fixed-size chunks and returns their IDs.
func (tr *testRepo) saveData(w *repo.Writer, data []byte) []blob.ID {
	tr.t.Helper()
	var ids []blob.ID
	for len(data) > 0 {
		n := min(len(data), testChunk)
		id := blob.ID(tr.mac.Sum(data[:n]))
		if _, err := w.SaveBlob(blob.Data, id, data[:n]); err != nil {
			tr.t.Fatal(err)
		}
		ids = append(ids, id)
		data = data[n:]
	}
	return ids
}

// saveNodes stores a tree holding nodes exactly in the order given (crafted trees).
func (tr *testRepo) saveNodes(w *repo.Writer, nodes []snapshot.Node) blob.ID {
	tr.t.Helper()
	if nodes == nil {
		nodes = []snapshot.Node{}
	}
	data, err := json.Marshal(snapshot.Tree{Nodes: nodes})
	if err != nil {
		tr.t.Fatal(err)
	}
	id := blob.ID(tr.mac.Sum(data))
	if _, err := w.SaveBlob(blob.Tree, id, data); err != nil {
		tr.t.Fatal(err)
	}
	return id
}

func (tr *testRepo) saveTree(w *repo.Writer, t *snapshot.Tree) blob.ID {
	tr.t.Helper()
	data, err := t.Encode()
	if err != nil {
		tr.t.Fatal(err)
	}
	id := blob.ID(tr.mac.Sum(data))
	if _, err := w.SaveBlob(blob.Tree, id, data); err != nil {
		tr.t.Fatal(err)
	}
	return id
}

type dirBuild struct {
	spec     spec
	children map[string]*dirBuild
}

// build stores a snapshot of files (slash-separated paths relative to "/";
// directories leading to them are added with default metadata) and returns its
// root tree.
func (tr *testRepo) build(w *repo.Writer, files map[string]spec) blob.ID {
	tr.t.Helper()
	root := &dirBuild{spec: spec{typ: snapshot.TypeDir}, children: map[string]*dirBuild{}}
	for p, s := range files {
		d := root
		parts := strings.Split(p, "/")
		for _, c := range parts[:len(parts)-1] {
			next := d.children[c]
			if next == nil {
				next = &dirBuild{spec: spec{typ: snapshot.TypeDir}, children: map[string]*dirBuild{}}
				d.children[c] = next
			}
			d = next
		}
		last := parts[len(parts)-1]
		if old := d.children[last]; old != nil {
			old.spec = s
		} else {
			d.children[last] = &dirBuild{spec: s, children: map[string]*dirBuild{}}
		}
	}
	return tr.saveDir(w, root)
}

func (tr *testRepo) saveDir(w *repo.Writer, d *dirBuild) blob.ID {
	var t snapshot.Tree
	for name, c := range d.children {
		n := snapshot.Node{Type: c.spec.kind(), Mode: c.spec.perm(), ModTime: c.spec.time(), UID: c.spec.uid, GID: c.spec.gid}
		n.SetName(name)
		switch n.Type {
		case snapshot.TypeFile:
			n.Content = tr.saveData(w, c.spec.data)
			n.Size = uint64(len(c.spec.data))
		case snapshot.TypeDir:
			id := tr.saveDir(w, c)
			n.Subtree = &id
		case snapshot.TypeSymlink:
			n.SetTarget(c.spec.target)
		}
		t.Nodes = append(t.Nodes, n)
	}
	return tr.saveTree(w, &t)
}

// packOf returns the pack file holding blob id.
func (tr *testRepo) packOf(id blob.ID) string {
	tr.t.Helper()
	loc, ok := tr.r.LookupBlob(id)
	if !ok {
		tr.t.Fatalf("blob %s not in index", id.Short())
	}
	h := backend.Handle{Type: backend.PackFile, Name: loc.Pack.String()}
	return filepath.Join(tr.dir, filepath.FromSlash(h.Path()))
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// allDirs returns the directories leading to the paths of files, with default specs,
// merged with the explicit ones.
func withParents(files map[string]spec) map[string]spec {
	out := map[string]spec{}
	for p, s := range files {
		out[p] = s
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			if _, ok := files[d]; !ok {
				out[d] = spec{typ: snapshot.TypeDir}
			}
		}
	}
	return out
}

// checkRestored compares what is on disk under target with files (and the
// directories leading to them).
func checkRestored(t *testing.T, target string, files map[string]spec) {
	t.Helper()
	for p, s := range withParents(files) {
		full := filepath.Join(target, filepath.FromSlash(p))
		fi, err := os.Lstat(full)
		if err != nil {
			t.Errorf("%q: %v", p, err)
			continue
		}
		switch s.kind() {
		case snapshot.TypeFile:
			if !fi.Mode().IsRegular() {
				t.Errorf("%q: mode %v, want a regular file", p, fi.Mode())
				continue
			}
			got, err := os.ReadFile(full)
			if err != nil {
				t.Errorf("%q: %v", p, err)
			} else if !bytes.Equal(got, s.data) {
				t.Errorf("%q: content differs (%d bytes, want %d)", p, len(got), len(s.data))
			}
		case snapshot.TypeDir:
			if !fi.IsDir() {
				t.Errorf("%q: mode %v, want a directory", p, fi.Mode())
				continue
			}
		case snapshot.TypeSymlink:
			if fi.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("%q: mode %v, want a symlink", p, fi.Mode())
				continue
			}
			got, err := os.Readlink(full)
			if err != nil || got != s.target {
				t.Errorf("%q: link target %q (%v), want %q", p, got, err, s.target)
			}
		}
		if s.kind() != snapshot.TypeSymlink {
			if got := snapshot.UnixMode(fi.Mode()); got != s.perm() {
				t.Errorf("%q: mode %o, want %o", p, got, s.perm())
			}
		}
		if !fi.ModTime().Equal(s.time()) {
			t.Errorf("%q: mtime %v, want %v", p, fi.ModTime(), s.time())
		}
	}
}

// listTree returns every path under dir, sorted, slash-separated.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// makeRemovable restores write permission on everything under dir at cleanup, so
// that t.TempDir can delete read-only directories a test restored.
func makeRemovable(t *testing.T, dir string) {
	t.Cleanup(func() {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}
