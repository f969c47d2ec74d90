//go:build unix

package restore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

var ctx = context.Background()

func sampleFiles() map[string]spec {
	big := randBytes(1, 3<<20+123) // several packs of 1 MiB
	rep := bytes.Repeat(randBytes(2, testChunk), 5)
	t0 := baseTime.Add(-48 * time.Hour)
	return map[string]spec{
		"srv":                              {typ: snapshot.TypeDir, mode: 0o750, mtime: t0},
		"srv/app":                          {typ: snapshot.TypeDir, mode: 0o700, mtime: t0.Add(time.Second)},
		"srv/app/media/big.bin":            {data: big, mode: 0o600, mtime: t0.Add(2 * time.Second)},
		"srv/app/media/repeated.bin":       {data: rep, mtime: t0.Add(3 * time.Second)}, // one blob at five offsets
		"srv/app/media/repeated-copy.bin":  {data: rep},                                 // the same blobs in another file
		"srv/app/media/small.txt":          {data: []byte("hello\n"), mode: 0o640},
		"srv/app/media/empty":              {data: nil, mode: 0o400},
		"srv/app/media/with space.txt":     {data: []byte("space")},
		"srv/app/media/new\nline":          {data: []byte("newline")},
		"srv/app/media/bad-\xff\xfe-utf8":  {data: []byte("raw name")},
		"srv/app/media/-dash":              {data: []byte("dash")},
		"srv/app/media/ünïcødé":            {data: []byte("unicode")},
		"srv/app/media/script.sh":          {data: []byte("#!/bin/sh\necho hi\n"), mode: 0o755},
		"srv/app/media/setgid":             {data: []byte("sg"), mode: 0o2755},
		"srv/app/media/emptydir":           {typ: snapshot.TypeDir, mode: 0o711, mtime: t0.Add(4 * time.Second)},
		"srv/app/media/ro":                 {typ: snapshot.TypeDir, mode: 0o555, mtime: t0.Add(5 * time.Second)},
		"srv/app/media/ro/inside.txt":      {data: []byte("in a read-only directory"), mode: 0o444},
		"srv/app/links/rel":                {typ: snapshot.TypeSymlink, target: "../media/small.txt", mtime: t0.Add(6 * time.Second)},
		"srv/app/links/abs":                {typ: snapshot.TypeSymlink, target: "/etc/passwd", mtime: t0.Add(7 * time.Second)},
		"srv/app/links/dangling":           {typ: snapshot.TypeSymlink, target: "nowhere/\xff"},
		"srv/app/links/up":                 {typ: snapshot.TypeSymlink, target: "../../../../../../outside"},
		"srv/app/media/deep/er/and/deeper": {data: randBytes(3, 50000)},
	}
}

func TestRestoreEverything(t *testing.T) {
	tr := newTestRepo(t)
	files := sampleFiles()
	var tree blob.ID
	tr.session(func(w *repo.Writer) { tree = tr.build(w, files) })

	base := t.TempDir()
	makeRemovable(t, base)
	target := filepath.Join(base, "target")
	var calls atomic.Int64
	res, err := Run(ctx, tr.r, tree, Options{Target: target, Workers: 2, Verify: true,
		Progress: func(files int64, bytes uint64) { calls.Add(1) }})
	if err != nil {
		t.Fatalf("Run: %v (errors %v)", err, res.Errors)
	}
	checkRestored(t, target, files)

	var wantFiles, wantLinks int64
	var wantBytes uint64
	for _, s := range files {
		switch s.kind() {
		case snapshot.TypeFile:
			wantFiles++
			wantBytes += uint64(len(s.data))
		case snapshot.TypeSymlink:
			wantLinks++
		}
	}
	wantDirs := int64(0)
	for _, s := range withParents(files) {
		if s.kind() == snapshot.TypeDir {
			wantDirs++
		}
	}
	if res.Files != wantFiles || res.Symlinks != wantLinks || res.Dirs != wantDirs || res.Bytes != wantBytes || len(res.Errors) != 0 {
		t.Errorf("result %+v, want %d files, %d symlinks, %d dirs, %d bytes", res, wantFiles, wantLinks, wantDirs, wantBytes)
	}
	if calls.Load() == 0 {
		t.Error("Progress was never called")
	}
	// Nothing but the target was created next to it.
	if got := listTree(t, base); got[0] != "target" || slices.ContainsFunc(got, func(p string) bool { return !strings.HasPrefix(p, "target") }) {
		t.Errorf("entries outside the target: %q", got)
	}
	// Restoring again over the existing target (not in place) gives the same result.
	if res, err := Run(ctx, tr.r, tree, Options{Target: target}); err != nil {
		t.Fatalf("second Run: %v (errors %v)", err, res.Errors)
	}
	checkRestored(t, target, files)
}

func TestOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("restoring owners needs root")
	}
	tr := newTestRepo(t)
	files := map[string]spec{
		"d":      {typ: snapshot.TypeDir, uid: 1234, gid: 5678},
		"d/f":    {data: []byte("x"), uid: 2345, gid: 6789, mode: 0o4755},
		"d/link": {typ: snapshot.TypeSymlink, target: "f", uid: 3456, gid: 7890},
	}
	var tree blob.ID
	tr.session(func(w *repo.Writer) { tree = tr.build(w, files) })
	target := t.TempDir()
	if res, err := Run(ctx, tr.r, tree, Options{Target: target, Owners: true}); err != nil {
		t.Fatalf("Run: %v (errors %v)", err, res.Errors)
	}
	checkRestored(t, target, files) // the setuid bit survives chown
	for p, s := range files {
		uid, gid := owner(t, filepath.Join(target, p))
		if uid != s.uid || gid != s.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, uid, gid, s.uid, s.gid)
		}
	}
}

func TestInclude(t *testing.T) {
	tr := newTestRepo(t)
	files := sampleFiles()
	files["srv/other/x"] = spec{data: []byte("other")}
	files["top.txt"] = spec{data: []byte("top")}
	var tree blob.ID
	tr.session(func(w *repo.Writer) { tree = tr.build(w, files) })
	target := t.TempDir()
	makeRemovable(t, target)
	res, err := Run(ctx, tr.r, tree, Options{Target: target,
		Include: []string{"/srv/app/media/small.txt", "/srv/app/links/", "/srv/app/media/ro", "/srv/app/media/ro/inside.txt"}})
	if err != nil {
		t.Fatalf("Run: %v (errors %v)", err, res.Errors)
	}
	want := []string{"srv", "srv/app", "srv/app/links", "srv/app/links/abs", "srv/app/links/dangling",
		"srv/app/links/rel", "srv/app/links/up", "srv/app/media", "srv/app/media/ro", "srv/app/media/ro/inside.txt",
		"srv/app/media/small.txt"}
	if got := listTree(t, target); !slices.Equal(got, want) {
		t.Errorf("restored %q, want %q", got, want)
	}
	sel := map[string]spec{}
	for _, p := range want {
		s, ok := files[p]
		if !ok {
			s = spec{typ: snapshot.TypeDir}
		}
		sel[p] = s
	}
	checkRestored(t, target, sel)

	// An include that names nothing is an error; the rest is restored.
	target2 := t.TempDir()
	res, err = Run(ctx, tr.r, tree, Options{Target: target2, Include: []string{"/top.txt", "/srv/nothing/here", "/top.txt/below"}})
	if !errors.Is(err, ErrIncomplete) || len(res.Errors) != 2 || !strings.Contains(res.Errors[0].Error(), "/srv/nothing/here") ||
		!strings.Contains(res.Errors[1].Error(), "/top.txt/below") {
		t.Errorf("missing include: err %v, errors %v", err, res.Errors)
	}
	if got := listTree(t, target2); !slices.Equal(got, []string{"top.txt"}) || res.Dirs != 0 {
		t.Errorf("restored %q, want top.txt", got)
	}
	if _, err := Run(ctx, tr.r, tree, Options{Target: target2, Include: []string{"srv"}}); err == nil {
		t.Error("relative include accepted")
	}
}

// TestCraftedNames: entries whose names would leave the target are rejected with an
// error naming them, and the rest of the tree is restored.
func TestCraftedNames(t *testing.T) {
	tr := newTestRepo(t)
	var tree blob.ID
	tr.session(func(w *repo.Writer) {
		content := tr.saveData(w, []byte("evil"))
		file := func(name string) snapshot.Node {
			return snapshot.Node{Name: name, Type: snapshot.TypeFile, Mode: 0o644, ModTime: baseTime, Content: content, Size: 4}
		}
		sub := tr.saveNodes(w, []snapshot.Node{file("../../escaped-sub"), file("fine"), file("..")})
		empty := tr.saveNodes(w, nil)
		tree = tr.saveNodes(w, []snapshot.Node{
			file(".."),
			file("."),
			file("../escaped"),
			file("/abs"),
			{NameRaw: []byte("x/\xffy"), Type: snapshot.TypeFile, Mode: 0o644, ModTime: baseTime, Content: content},
			{Name: "..", Type: snapshot.TypeDir, Mode: 0o755, ModTime: baseTime, Subtree: &empty},
			file("ok"),
			{Name: "sub", Type: snapshot.TypeDir, Mode: 0o755, ModTime: baseTime, Subtree: &sub},
			{Name: "weird", Type: "fifo", ModTime: baseTime},
		})
	})
	base := t.TempDir()
	target := filepath.Join(base, "target")
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, tr.r, tree, Options{Target: target})
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Run: want ErrIncomplete, got %v", err)
	}
	msgs := errorText(res.Errors)
	for _, bad := range []string{`"weird"`, `".."`, `"."`, `"../escaped"`, `"/abs"`, `"x/\xffy"`, `"../../escaped-sub"`, `"fifo"`} {
		if !strings.Contains(msgs, bad) {
			t.Errorf("errors do not name %s:\n%s", bad, msgs)
		}
	}
	if len(res.Errors) != 9 {
		t.Errorf("%d errors, want 9:\n%s", len(res.Errors), msgs)
	}
	if got, want := listTree(t, base), []string{"outside", "target", "target/ok", "target/sub", "target/sub/fine"}; !slices.Equal(got, want) {
		t.Errorf("file system holds %q, want %q", got, want)
	}
}

// TestCraftedSymlinkAndDirectory: a symlink and a directory of the same name in one
// tree, and a symlink out of the target with "files under it": nothing is written
// through the symlinks.
func TestCraftedSymlinkAndDirectory(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := newTestRepo(t)
	var tree blob.ID
	tr.session(func(w *repo.Writer) {
		content := tr.saveData(w, []byte("root::0:0::/root:/bin/sh\n"))
		passwd := snapshot.Node{Name: "passwd", Type: snapshot.TypeFile, Mode: 0o644, ModTime: baseTime, Content: content}
		sub := tr.saveNodes(w, []snapshot.Node{passwd})
		link := func(name, target string) snapshot.Node {
			return snapshot.Node{Name: name, Type: snapshot.TypeSymlink, Mode: 0o777, ModTime: baseTime, LinkTarget: target}
		}
		dir := func(name string) snapshot.Node {
			return snapshot.Node{Name: name, Type: snapshot.TypeDir, Mode: 0o755, ModTime: baseTime, Subtree: &sub}
		}
		tree = tr.saveNodes(w, []snapshot.Node{
			link("a", outside), // absolute, out of the target
			dir("a"),           // same name: a/passwd
			link("b", "../outside"),
			dir("b"),
			dir("c"), // directory first, then a symlink of the same name
			link("c", outside),
			link("d", "../outside"),
			{Name: "d/passwd", Type: snapshot.TypeFile, Mode: 0o644, ModTime: baseTime, Content: content},
		})
	})
	for _, inPlace := range []bool{false, true} {
		target := filepath.Join(base, "target")
		_ = os.RemoveAll(target)
		res, err := Run(ctx, tr.r, tree, Options{Target: target, InPlace: inPlace})
		if !errors.Is(err, ErrIncomplete) {
			t.Fatalf("InPlace=%v: want ErrIncomplete, got %v", inPlace, err)
		}
		msgs := errorText(res.Errors)
		for _, bad := range []string{`duplicate name "a"`, `duplicate name "b"`, `duplicate name "c"`, `"d/passwd"`} {
			if !strings.Contains(msgs, bad) {
				t.Errorf("InPlace=%v: errors do not mention %s:\n%s", inPlace, bad, msgs)
			}
		}
		if got := listTree(t, outside); len(got) != 0 {
			t.Fatalf("InPlace=%v: written outside the target: %q", inPlace, got)
		}
		checkRestored(t, target, map[string]spec{
			"a":        {typ: snapshot.TypeSymlink, target: outside},
			"b":        {typ: snapshot.TypeSymlink, target: "../outside"},
			"c":        {typ: snapshot.TypeDir},
			"c/passwd": {data: []byte("root::0:0::/root:/bin/sh\n")},
			"d":        {typ: snapshot.TypeSymlink, target: "../outside"},
		})
	}
}

// TestSymlinksOnDisk: symlinks already in the target where the snapshot has a
// directory or a file are replaced, never written through.
func TestSymlinksOnDisk(t *testing.T) {
	tr := newTestRepo(t)
	files := map[string]spec{
		"srv/app/conf":     {data: []byte("new conf")},
		"srv/app/data/x":   {data: []byte("x")},
		"srv/app/link":     {typ: snapshot.TypeSymlink, target: "conf"},
		"etc/passwd":       {data: []byte("restored passwd")},
		"var/lib/mirror/y": {data: []byte("y")},
	}
	var tree blob.ID
	tr.session(func(w *repo.Writer) { tree = tr.build(w, files) })
	for _, inPlace := range []bool{false, true} {
		base := t.TempDir()
		outside := filepath.Join(base, "outside")
		target := filepath.Join(base, "target")
		for _, d := range []string{outside, filepath.Join(target, "srv", "app"), filepath.Join(target, "var", "lib")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		mustSymlink(t, filepath.Join(outside, "secret"), filepath.Join(target, "srv", "app", "conf")) // file position
		mustSymlink(t, outside, filepath.Join(target, "srv", "app", "data"))                          // directory position
		mustSymlink(t, outside, filepath.Join(target, "etc"))                                         // directory position
		mustSymlink(t, "../../../outside", filepath.Join(target, "var", "lib", "mirror"))             // relative, escaping
		mustSymlink(t, outside, filepath.Join(target, "srv", "app", "link"))                          // symlink position

		res, err := Run(ctx, tr.r, tree, Options{Target: target, InPlace: inPlace})
		if err != nil {
			t.Fatalf("InPlace=%v: Run: %v (errors %v)", inPlace, err, res.Errors)
		}
		if got := listTree(t, outside); !slices.Equal(got, []string{"secret"}) {
			t.Errorf("InPlace=%v: outside holds %q", inPlace, got)
		}
		if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "keep" {
			t.Errorf("InPlace=%v: file outside the target overwritten: %q", inPlace, b)
		}
		checkRestored(t, target, files)
	}
}

func TestInPlaceAndDelete(t *testing.T) {
	tr := newTestRepo(t)
	files := map[string]spec{
		"srv/app/a.txt":       {data: []byte("new a")},
		"srv/app/b.bin":       {data: randBytes(4, 200000)},
		"srv/app/sub/c":       {data: []byte("new c")},
		"srv/app/link":        {typ: snapshot.TypeSymlink, target: "a.txt"},
		"srv/app/was-dir":     {data: []byte("now a file")},
		"srv/app/was-file":    {typ: snapshot.TypeDir},
		"srv/app/was-file/in": {data: []byte("in")},
		"srv/keep/k":          {data: []byte("k")},
	}
	var tree blob.ID
	tr.session(func(w *repo.Writer) { tree = tr.build(w, files) })

	target := t.TempDir()
	write := func(p, content string) {
		full := filepath.Join(target, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("srv/app/a.txt", "old a")
	write("srv/app/b.bin", "old b")
	write("srv/app/sub/c", "old c")
	write("srv/app/sub/extra", "extra file")
	write("srv/app/extra-dir/x/y", "extra dir")
	write("srv/app/was-dir/z", "dir to replace")
	write("srv/app/was-file", "file to replace")
	write("srv/app/.cairn-restore-stale", "left by an interrupted restore")
	write("srv/keep/unrelated", "outside the included directory")
	write("other/untouched", "not in the snapshot, not included")
	mustSymlink(t, "b.bin", filepath.Join(target, "srv", "app", "link"))
	inoA := inode(t, filepath.Join(target, "srv/app/a.txt"))
	// A hard link to the old file must keep the old content: the file is replaced,
	// not written in place.
	if err := os.Link(filepath.Join(target, "srv/app/a.txt"), filepath.Join(target, "other/hardlink")); err != nil {
		t.Fatal(err)
	}

	res, err := Run(ctx, tr.r, tree, Options{Target: target, InPlace: true, Delete: true,
		Include: []string{"/srv/app", "/srv/keep/k"}})
	if err != nil {
		t.Fatalf("Run: %v (errors %v)", err, res.Errors)
	}
	sel := map[string]spec{}
	for p, s := range files {
		if p != "srv/keep/k" && strings.HasPrefix(p, "srv/app") {
			sel[p] = s
		}
	}
	checkRestored(t, target, sel)
	if inode(t, filepath.Join(target, "srv/app/a.txt")) == inoA {
		t.Error("a.txt keeps its inode: not replaced by rename")
	}
	if b, _ := os.ReadFile(filepath.Join(target, "other/hardlink")); string(b) != "old a" {
		t.Errorf("hard link to the old file holds %q", b)
	}
	want := []string{"other", "other/hardlink", "other/untouched", "srv", "srv/app", "srv/app/a.txt", "srv/app/b.bin",
		"srv/app/link", "srv/app/sub", "srv/app/sub/c", "srv/app/was-dir", "srv/app/was-file", "srv/app/was-file/in",
		"srv/keep", "srv/keep/k", "srv/keep/unrelated"}
	if got := listTree(t, target); !slices.Equal(got, want) {
		t.Errorf("target holds\n%q, want\n%q", got, want)
	}
	// extra, extra-dir, .cairn-restore-stale and the directory was-dir.
	if res.Deleted != 4 {
		t.Errorf("Deleted = %d, want 4", res.Deleted)
	}

	// Without Delete a directory in the way of a file is an error, not removed.
	write("srv/app/a.txt.d/x", "x")
	if err := os.Remove(filepath.Join(target, "srv/app/a.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(target, "srv/app/a.txt.d"), filepath.Join(target, "srv/app/a.txt")); err != nil {
		t.Fatal(err)
	}
	res, err = Run(ctx, tr.r, tree, Options{Target: target, InPlace: true, Include: []string{"/srv/app"}})
	if !errors.Is(err, ErrIncomplete) || len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Error(), "/srv/app/a.txt") {
		t.Errorf("directory in the way: err %v, errors %v", err, res.Errors)
	}
	if _, err := os.Stat(filepath.Join(target, "srv/app/a.txt/x")); err != nil {
		t.Errorf("directory in the way was touched: %v", err)
	}
}

// damagedSetup stores the files under "bad/" in their own packs (first session) and
// the rest of the snapshot in others, and returns the tree and the bad packs.
func damagedSetup(t *testing.T) (*testRepo, blob.ID, map[string]spec, []string) {
	tr := newTestRepo(t)
	files := map[string]spec{
		"srv/good/a":        {data: randBytes(10, 40000)},
		"srv/good/b":        {data: []byte("b")},
		"srv/good/big":      {data: randBytes(11, 1500000)},
		"srv/bad/x":         {data: randBytes(12, 30000)},
		"srv/bad/y":         {data: randBytes(13, 300)},
		"srv/mixed-looking": {data: []byte("fine")},
	}
	tr.session(func(w *repo.Writer) {
		tr.saveData(w, files["srv/bad/x"].data)
		tr.saveData(w, files["srv/bad/y"].data)
	})
	var tree blob.ID
	tr.session(func(w *repo.Writer) { tree = tr.build(w, files) })
	mac := tr.r.NewBlobMAC()
	pack := tr.packOf(blob.ID(mac.Sum(files["srv/bad/y"].data)))
	if other := tr.packOf(blob.ID(mac.Sum(files["srv/good/b"].data))); other == pack {
		t.Fatal("good and bad files share a pack")
	}
	return tr, tree, files, []string{pack}
}

// TestDamagedPack: a pack with a flipped byte, a deleted pack, and a pack whose file
// holds another valid pack of the repository (restore does not hash packs for their
// names, so the blob IDs must catch it) fail exactly the files that need them.
func TestDamagedPack(t *testing.T) {
	for _, mode := range []string{"flipped", "deleted", "swapped"} {
		for _, inPlace := range []bool{false, true} {
			tr, tree, files, packs := damagedSetup(t)
			pack := packs[0]
			switch mode {
			case "swapped":
				other, err := os.ReadFile(tr.packOf(blob.ID(tr.mac.Sum(files["srv/good/a"].data[:testChunk]))))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(pack, other, 0o600); err != nil {
					t.Fatal(err)
				}
			case "flipped":
				b, err := os.ReadFile(pack)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0x40
				if err := os.WriteFile(pack, b, 0o600); err != nil {
					t.Fatal(err)
				}
			case "deleted":
				if err := os.Remove(pack); err != nil {
					t.Fatal(err)
				}
			}
			target := t.TempDir()
			if inPlace {
				for _, p := range []string{"srv/bad/x", "srv/good/a"} {
					if err := os.MkdirAll(filepath.Join(target, filepath.Dir(p)), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(target, p), []byte("old"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			res, err := Run(ctx, tr.r, tree, Options{Target: target, InPlace: inPlace, Workers: 2})
			if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "2 files could not be restored") {
				t.Fatalf("%s, InPlace=%v: want ErrIncomplete for 2 files, got %v", mode, inPlace, err)
			}
			packID := filepath.Base(pack)[:8]
			if len(res.Errors) != 2 {
				t.Fatalf("%s: errors %v", mode, res.Errors)
			}
			msgs := errorText(res.Errors)
			for _, p := range []string{"/srv/bad/x", "/srv/bad/y"} {
				if !strings.Contains(msgs, p) {
					t.Errorf("%s: errors do not name %s: %s", mode, p, msgs)
				}
			}
			if strings.Count(msgs, packID) < 2 {
				t.Errorf("%s: errors do not name pack %s: %s", mode, packID, msgs)
			}
			if mode == "deleted" && !errors.Is(res.Errors[0], repo.ErrFileNotFound) {
				t.Errorf("deleted pack: error %v does not wrap ErrFileNotFound", res.Errors[0])
			}
			var ce *repo.CorruptError
			if mode != "deleted" && !errors.As(res.Errors[0], &ce) {
				t.Errorf("damaged pack: error %v is not a CorruptError", res.Errors[0])
			}
			good := map[string]spec{}
			for p, s := range files {
				if !strings.HasPrefix(p, "srv/bad/") {
					good[p] = s
				}
			}
			checkRestored(t, target, good)
			// Failed files leave nothing partial: the old file in place, nothing
			// when there was none, and no temporary files.
			wantBad := []string{"srv/bad"}
			if inPlace {
				wantBad = append(wantBad, "srv/bad/x")
				if b, _ := os.ReadFile(filepath.Join(target, "srv/bad/x")); string(b) != "old" {
					t.Errorf("%s: old file replaced by %d bytes", mode, len(b))
				}
			}
			var got []string
			for _, p := range listTree(t, target) {
				if strings.HasPrefix(p, "srv/bad") {
					got = append(got, p)
				}
			}
			if !slices.Equal(got, wantBad) {
				t.Errorf("%s, InPlace=%v: %q left of the failed files, want %q", mode, inPlace, got, wantBad)
			}
		}
	}
}

func TestMissingBlob(t *testing.T) {
	tr := newTestRepo(t)
	var tree blob.ID
	tr.session(func(w *repo.Writer) {
		ok := tr.saveData(w, []byte("ok"))
		tree = tr.saveNodes(w, []snapshot.Node{
			{Name: "lost", Type: snapshot.TypeFile, ModTime: baseTime, Content: []blob.ID{{1, 2, 3}}},
			{Name: "ok", Type: snapshot.TypeFile, Mode: 0o644, ModTime: baseTime, Content: ok},
			{Name: "subtree-lost", Type: snapshot.TypeDir, ModTime: baseTime, Subtree: &blob.ID{4, 5, 6}},
		})
	})
	target := t.TempDir()
	res, err := Run(ctx, tr.r, tree, Options{Target: target})
	if !errors.Is(err, ErrIncomplete) || len(res.Errors) != 2 {
		t.Fatalf("err %v, errors %v", err, res.Errors)
	}
	if !errors.Is(res.Errors[0], repo.ErrBlobNotFound) || !strings.Contains(res.Errors[0].Error(), "/lost") ||
		!strings.Contains(res.Errors[1].Error(), "/subtree-lost") {
		t.Errorf("errors %v", res.Errors)
	}
	checkRestored(t, target, map[string]spec{"ok": {data: []byte("ok")}})
}

// TestManyOpenFiles restores more files than the open-handle limit, each with blobs
// in two packs, so that handles are closed and reopened, in more directories than
// the directory-handle limit, so that those are closed and reopened too.
func TestManyOpenFiles(t *testing.T) {
	old, oldDirs := maxOpenFiles, maxParentDirs
	maxOpenFiles, maxParentDirs = 4, 2
	t.Cleanup(func() { maxOpenFiles, maxParentDirs = old, oldDirs })
	tr := newTestRepo(t)
	files := map[string]spec{}
	for i := range 40 {
		files["d/"+string(rune('a'+i%7))+"/f"+string(rune('A'+i))] = spec{data: randBytes(uint64(100+i), 2*testChunk+i)}
	}
	// First halves in one session, the rest (and the tree) in another.
	tr.session(func(w *repo.Writer) {
		for _, s := range files {
			tr.saveData(w, s.data[:testChunk])
		}
	})
	var tree blob.ID
	tr.session(func(w *repo.Writer) { tree = tr.build(w, files) })
	target := t.TempDir()
	res, err := Run(ctx, tr.r, tree, Options{Target: target, Workers: 3, Verify: true})
	if err != nil {
		t.Fatalf("Run: %v (errors %v)", err, res.Errors)
	}
	checkRestored(t, target, files)
	if res.Files != 40 {
		t.Errorf("Files = %d", res.Files)
	}
}

func TestCancel(t *testing.T) {
	tr := newTestRepo(t)
	files := map[string]spec{"a": {data: randBytes(20, 100000)}}
	var tree blob.ID
	tr.session(func(w *repo.Writer) { tree = tr.build(w, files) })
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := Run(cctx, tr.r, tree, Options{Target: t.TempDir()})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("want context.Canceled, got %v", err)
	}
}

func errorText(errs []error) string {
	var b strings.Builder
	for _, err := range errs {
		b.WriteString(err.Error())
		b.WriteByte('\n')
	}
	return b.String()
}

func mustSymlink(t *testing.T, oldname, newname string) {
	t.Helper()
	if err := os.Symlink(oldname, newname); err != nil {
		t.Fatal(err)
	}
}
