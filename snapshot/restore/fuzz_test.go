package restore_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/crashtest"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/restore"
)

// treeRepo serves tree blobs from memory; content blobs are never found, so files
// with content fail (an error path) and files without content restore empty.
type treeRepo struct{ trees map[blob.ID][]byte }

func (r *treeRepo) LoadBlob(_ context.Context, id blob.ID, dst []byte) ([]byte, error) {
	b, ok := r.trees[id]
	if !ok {
		return nil, repo.ErrBlobNotFound
	}
	return append(dst[:0], b...), nil
}

func (r *treeRepo) FetchPack(context.Context, blob.ID) (*repo.FetchedPack, error) {
	return nil, errors.New("no packs")
}

func (r *treeRepo) OpenPack(context.Context, *repo.FetchedPack) (*repo.PackReader, error) {
	return nil, errors.New("no packs")
}

func (r *treeRepo) LookupBlob(blob.ID) (index.Location, bool) { return index.Location{}, false }

// buildFuzzTree turns fuzz input into a tree of nodes with arbitrary names (any
// bytes, including "", ".", "..", "/", NUL), types, modes and symlink targets. The
// records are: kind byte, name length, name, and for symlinks target length and
// target. Kinds (mod 6): empty file, directory (later records go into it), symlink,
// file with a (missing) content blob, end of directory, node of an unknown type. Tree
// JSON is written without validation: restore must reject what is invalid itself.
func buildFuzzTree(data []byte) (blob.ID, map[blob.ID][]byte) {
	trees := map[blob.ID][]byte{}
	next := byte(1)
	take := func(n int) []byte {
		n = min(n, len(data))
		b := data[:n]
		data = data[n:]
		return b
	}
	takeString := func() string {
		l := take(1)
		if len(l) == 0 {
			return ""
		}
		return string(take(int(l[0] % 32)))
	}
	var build func(depth int) blob.ID
	build = func(depth int) blob.ID {
		var nodes []snapshot.Node
		for len(data) > 0 && len(nodes) < 32 {
			k := take(1)[0]
			n := snapshot.Node{Mode: uint32(k) << 4 & 0o7777, ModTime: time.Unix(int64(k)<<20, 0)}
			n.SetName(takeString())
			end := false
			switch k % 6 {
			case 0:
				n.Type = snapshot.TypeFile
			case 1:
				n.Type = snapshot.TypeDir
				if depth < 6 {
					id := build(depth + 1)
					n.Subtree = &id
				}
			case 2:
				n.Type = snapshot.TypeSymlink
				n.SetTarget(takeString())
			case 3:
				n.Type = snapshot.TypeFile
				n.Content = []blob.ID{{0xee, k}}
				n.Size = 10
			case 4:
				end = true
			case 5:
				n.Type = "fifo"
			}
			if end {
				break
			}
			nodes = append(nodes, n)
		}
		b, _ := json.Marshal(struct {
			Nodes []snapshot.Node `json:"nodes"`
		}{nodes})
		id := blob.ID{next}
		next++
		trees[id] = append(b, '\n')
		return id
	}
	root := build(0)
	return root, trees
}

// listOutside lists everything under parent except the target's subtree.
func listOutside(t *testing.T, parent, target string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == target {
			out = append(out, "target")
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(parent, p)
		info, _ := d.Info()
		out = append(out, rel+" "+d.Type().String()+" "+fmtSize(info))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func fmtSize(fi fs.FileInfo) string {
	if fi == nil || fi.IsDir() {
		return ""
	}
	return strings.Repeat("#", int(min(fi.Size(), 64)))
}

// FuzzRestorePaths restores fuzzed trees into a directory inside a parent holding a
// sentinel directory, a sentinel file and symlinks pointing out of the target, with
// and without InPlace/Delete. Nothing outside the target may appear, change or vanish,
// whatever the names, types and symlink targets say (docs/FORMAT.md §9, §12).
func FuzzRestorePaths(f *testing.F) {
	v := crashtest.LoadVectors(f)
	var in [][]byte
	// Real names and link targets of the vector repository, as files, dirs and links.
	for i, name := range v.Names {
		rec := []byte{byte(i % 3), byte(len(name))}
		rec = append(rec, name...)
		if i%3 == 2 {
			rec = append(rec, byte(len(name)))
			rec = append(rec, name...)
		}
		in = append(in, rec)
	}
	rec := func(k byte, name string, target ...string) []byte {
		b := append([]byte{k, byte(len(name))}, name...)
		for _, t := range target {
			b = append(append(b, byte(len(t))), t...)
		}
		return b
	}
	join := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	in = append(in,
		rec(0, ".."), rec(0, "."), rec(0, ""), rec(0, "a/b"), rec(0, "../x"), rec(0, "a\x00b"), rec(0, "\xff\xfe"),
		join(rec(2, "l", "../outside"), rec(1, "l"), rec(0, "pwned"), rec(4, "")),
		join(rec(2, "l", "/tmp"), rec(0, "l")),
		join(rec(1, "d"), rec(2, "up", "../../outside/sentinel"), rec(4, ""), rec(3, "d")),
		join(rec(0, "b"), rec(0, "a")),                          // unsorted
		join(rec(0, "a"), rec(1, "a"), rec(0, "x"), rec(4, "")), // duplicate
		join(rec(2, "esc", "../escape-link"), rec(1, "esc"), rec(0, "f"), rec(4, "")),
	)
	if len(in) == 0 {
		f.Fatal("no seeds")
	}
	for _, b := range in {
		f.Add(b, byte(0))
		f.Add(b, byte(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		root, trees := buildFuzzTree(data)
		parent := t.TempDir()
		target := filepath.Join(parent, "target")
		outside := filepath.Join(parent, "outside")
		if err := os.MkdirAll(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("sentinel"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("outside", filepath.Join(parent, "escape-link")); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if mode&1 != 0 {
			// In place over a target that has a symlink out of it.
			if err := os.Symlink("../outside", filepath.Join(target, "l")); err != nil {
				t.Fatal(err)
			}
		}
		before := listOutside(t, parent, target)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = restore.Run(ctx, &treeRepo{trees: trees}, root, restore.Options{
			Target: target, InPlace: mode&1 != 0, Delete: mode&2 != 0, Workers: 1})
		after := listOutside(t, parent, target)
		if strings.Join(before, "\n") != strings.Join(after, "\n") {
			t.Fatalf("restore changed what is outside its target:\nbefore %q\nafter  %q", before, after)
		}
		b, err := os.ReadFile(filepath.Join(outside, "sentinel"))
		if err != nil || string(b) != "sentinel" {
			t.Fatalf("sentinel changed: %q %v", b, err)
		}
		makeWritable(target)
	})
}

// makeWritable lets t.TempDir's cleanup remove directories restored without write
// permission.
func makeWritable(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
}
