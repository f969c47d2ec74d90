package snapshot_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

func changeList(t *testing.T, run func(fn func(snapshot.Change) error) error) []string {
	t.Helper()
	var out []string
	err := run(func(c snapshot.Change) error {
		s := c.Kind.String() + " " + c.Path
		if len(c.Meta) > 0 {
			s += " [" + strings.Join(c.Meta, ",") + "]"
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDiff(t *testing.T) {
	m := newMemStore()
	later := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	shared := dir("shared", m.file("big.bin", "unchanged content"), dir("deep", m.file("x", "x")))
	a := m.tree(t,
		shared,
		m.file("changed.txt", "old"),
		m.file("same-size.txt", "abc"),
		m.file("removed.txt", "gone"),
		entry{name: "chmod.txt", content: "c", mode: 0o644},
		entry{name: "chown.txt", content: "c", uid: 1},
		entry{name: "touch.txt", content: "t"},
		entry{name: "link", target: "a"},
		m.file("was-file", "f"),
		dir("old-dir", m.file("inner", "i")),
	)
	b := m.tree(t,
		shared,
		m.file("changed.txt", "newer"),
		m.file("same-size.txt", "xyz"),
		m.file("added.txt", "new!"),
		entry{name: "chmod.txt", content: "c", mode: 0o600},
		entry{name: "chown.txt", content: "c", uid: 2},
		entry{name: "touch.txt", content: "t", mtime: later},
		entry{name: "link", target: "b"},
		dir("was-file", m.file("now-inside", "n")),
		dir("new-dir", dir("sub", m.file("f", "f"))),
	)
	clear(m.loads)
	got := changeList(t, func(fn func(snapshot.Change) error) error {
		return snapshot.Diff(context.Background(), m, a, b, fn)
	})
	want := []string{
		"added /added.txt",
		"changed /changed.txt",
		"metadata /chmod.txt [mode]",
		"metadata /chown.txt [owner]",
		"changed /link",
		"added /new-dir",
		"added /new-dir/sub",
		"added /new-dir/sub/f",
		"removed /old-dir",
		"removed /old-dir/inner",
		"removed /removed.txt",
		"changed /same-size.txt",
		"metadata /touch.txt [mtime]",
		"type changed /was-file",
		"added /was-file/now-inside",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Diff:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	for id, n := range m.loads {
		if n > 1 {
			t.Errorf("tree %s loaded %d times", id.Short(), n)
		}
	}
	sharedLoaded := 0
	for id := range m.loads {
		if strings.Contains(string(m.blobs[id]), `"big.bin"`) {
			sharedLoaded++
		}
	}
	if sharedLoaded != 0 {
		t.Error("the unchanged subtree was read")
	}
	if got := changeList(t, func(fn func(snapshot.Change) error) error {
		return snapshot.Diff(context.Background(), m, a, a, fn)
	}); len(got) != 0 {
		t.Errorf("Diff of a tree with itself: %v", got)
	}
}

func TestDiffLive(t *testing.T) {
	m := newMemStore()
	live := t.TempDir()
	mt := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	write := func(rel, content string, mode os.FileMode) {
		p := filepath.Join(live, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	write("media/same.txt", "same", 0o644)
	write("media/grown.txt", "grown since", 0o644)
	write("media/extra.txt", "created after the snapshot", 0o644)
	write("media/modes.txt", "m", 0o600)
	write("media/sub/deep.txt", "d", 0o644)
	if err := os.Symlink("same.txt", filepath.Join(live, "media/link")); err != nil {
		t.Fatal(err)
	}

	uid := uint32(os.Getuid())
	media := dir("media",
		entry{name: "gone.txt", content: "deleted after the snapshot", mtime: mt, uid: uid},
		entry{name: "grown.txt", content: "grown", mtime: mt, uid: uid},
		entry{name: "link", target: "gone.txt", mtime: mt, uid: uid},
		entry{name: "modes.txt", content: "m", mtime: mt, mode: 0o644, uid: uid},
		entry{name: "same.txt", content: "same", mtime: mt, uid: uid},
	)
	// The live directory's own metadata is not under test: mirror it.
	fi, err := os.Lstat(filepath.Join(live, "media"))
	if err != nil {
		t.Fatal(err)
	}
	media.mtime, media.mode, media.uid = fi.ModTime(), snapshot.UnixMode(fi.Mode()), uid
	parts := strings.Split(strings.Trim(filepath.ToSlash(live), "/"), "/")
	root := media
	for i := len(parts) - 1; i >= 0; i-- {
		root = dir(parts[i], root)
	}
	tree := m.tree(t, root)
	mediaPath := filepath.ToSlash(filepath.Join(live, "media"))
	got := changeList(t, func(fn func(snapshot.Change) error) error {
		return snapshot.DiffLive(context.Background(), m, tree, []string{mediaPath}, fn)
	})
	for i := range got {
		got[i] = strings.Replace(got[i], mediaPath, "M", 1)
	}
	sort.Strings(got)
	want := []string{
		"added M/gone.txt",
		"changed M/grown.txt",
		"changed M/link [mtime]", // the live symlink keeps its creation time
		"metadata M/modes.txt [mode]",
		"removed M/extra.txt",
		"removed M/sub",
		"removed M/sub/deep.txt",
	}
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("DiffLive:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}

	// A path missing on disk is restored as a whole.
	if err := os.RemoveAll(filepath.Join(live, "media")); err != nil {
		t.Fatal(err)
	}
	got = changeList(t, func(fn func(snapshot.Change) error) error {
		return snapshot.DiffLive(context.Background(), m, tree, []string{mediaPath}, fn)
	})
	if len(got) != 6 || got[0] != "added "+mediaPath {
		t.Errorf("DiffLive of a missing path: %v", got)
	}
}

func TestMigrations(t *testing.T) {
	got := snapshot.DiffMigrations(
		map[string]string{"auth": "0012_a", "documents": "1016_x", "old": "0001_initial"},
		map[string]string{"auth": "0012_a", "documents": "1018_y", "mail": "0001_initial"})
	if fmt.Sprint(got) != "[{documents 1016_x 1018_y} {mail  0001_initial} {old 0001_initial }]" {
		t.Errorf("DiffMigrations: %v", got)
	}
	for _, c := range []struct {
		a, b string
		cmp  int
		ok   bool
	}{
		{"1016_x", "1018_y", -1, true},
		{"1018_y", "1016_x", 1, true},
		{"0012_a", "0012_b", 0, true},
		{"0010_a", "0009_z", 1, true}, // numbers, not strings
		{"", "0001_initial", -1, true},
		{"0001_initial", "", 1, true},
		{"same", "same", 0, true},
		{"initial", "0002_x", 0, false},
	} {
		cmp, ok := snapshot.CompareDjangoMigrations(c.a, c.b)
		if cmp != c.cmp || ok != c.ok {
			t.Errorf("CompareDjangoMigrations(%q, %q) = %d, %v; want %d, %v", c.a, c.b, cmp, ok, c.cmp, c.ok)
		}
	}
}
