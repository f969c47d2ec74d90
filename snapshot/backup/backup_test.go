package backup_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/faulty"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
	"github.com/cairn-backup/cairn/snapshot/restore"
)

const marker = "CAIRN-PLAINTEXT-MARKER-7f3a"

func openRepo(t *testing.T, be backend.Backend) *repo.Repository {
	t.Helper()
	cred, _ := crypto.NewPassphrase("pw", crypto.MinScryptWorkFactor)
	r, err := repo.Open(context.Background(), be, cred)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func newRepo(t *testing.T) (string, backend.Backend) {
	t.Helper()
	dir := t.TempDir()
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := crypto.NewPassphrase("pw", crypto.MinScryptWorkFactor)
	if _, err := repo.Init(context.Background(), be, cred, repo.InitOptions{PackSize: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	return dir, be
}

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// makeSource builds a tree with every kind of entry the backup must keep.
func makeSource(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	mt := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	writeFile(t, filepath.Join(src, "small.txt"), []byte("hello "+marker+"\n"), 0o640, mt)
	writeFile(t, filepath.Join(src, "empty"), nil, 0o600, mt)
	writeFile(t, filepath.Join(src, "secret-name-4d1c"), []byte("x"), 0o600, mt)
	writeFile(t, filepath.Join(src, "big.bin"), randBytes(rng, 3<<20+12345), 0o644, mt)
	writeFile(t, filepath.Join(src, "text.log"), bytes.Repeat([]byte(marker+" compressible line\n"), 200000), 0o644, mt)
	writeFile(t, filepath.Join(src, "dir with space", "new\nline"), []byte("newline name"), 0o755, mt)
	writeFile(t, filepath.Join(src, "bad\xff\xfename"), []byte("non-utf8 name"), 0o644, mt)
	writeFile(t, filepath.Join(src, "sub", "deeper", "x"), []byte("x"), 0o444, mt)
	if err := os.MkdirAll(filepath.Join(src, "emptydir"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/deeper/x", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/target", filepath.Join(src, "dangling")); err != nil {
		t.Fatal(err)
	}
	return src
}

// compareTrees checks content, mode, mtime and symlink targets.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		q := filepath.Join(got, rel)
		wi, _ := os.Lstat(p)
		gi, err := os.Lstat(q)
		if err != nil {
			t.Errorf("%s: missing in restore: %v", rel, err)
			return nil
		}
		n++
		if wi.Mode() != gi.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wi.Mode())
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(q)
			if a != b {
				t.Errorf("%s: link %q, want %q", rel, b, a)
			}
		case wi.Mode().IsRegular():
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(q)
			if !bytes.Equal(a, b) {
				t.Errorf("%s: content differs", rel)
			}
			if !wi.ModTime().Equal(gi.ModTime()) {
				t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
			}
		case wi.IsDir() && rel != ".":
			if !wi.ModTime().Equal(gi.ModTime()) {
				t.Errorf("%s: dir mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("compared only %d entries", n)
	}
}

func runBackup(t *testing.T, r *repo.Repository, paths []string, parent *snapshot.Snapshot) *backup.Result {
	t.Helper()
	res, err := backup.Run(context.Background(), r, backup.Options{Paths: paths, Parent: parent, Host: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func repoSize(t *testing.T, dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			n += fi.Size()
		}
		return nil
	})
	return n
}

func TestBackupRestoreIdentical(t *testing.T) {
	ctx := context.Background()
	src := makeSource(t)
	dir, be := newRepo(t)
	r := openRepo(t, be)
	res := runBackup(t, r, []string{src}, nil)
	if len(res.Skipped) != 0 {
		t.Fatalf("skipped: %v", res.Skipped)
	}
	r2 := openRepo(t, be)
	target := t.TempDir()
	if _, err := restore.Run(ctx, r2, res.Snapshot.Tree, restore.Options{Target: target}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, filepath.Join(target, src))

	// Unchanged second backup: nothing read, almost nothing added.
	before := repoSize(t, dir)
	res2 := runBackup(t, openRepo(t, be), []string{src}, res.Snapshot)
	s := res2.Snapshot.Summary
	if s.BytesRead != 0 || s.FilesUnchanged != s.TotalFiles-2 /* symlinks are not files with content */ {
		t.Errorf("second backup read %d bytes, %d/%d unchanged", s.BytesRead, s.FilesUnchanged, s.TotalFiles)
	}
	added := repoSize(t, dir) - before
	if float64(added) > 0.001*float64(s.TotalBytes)+16<<10 {
		t.Errorf("unchanged backup added %d bytes of %d", added, s.TotalBytes)
	}
	r3 := openRepo(t, be)
	if a, b := subtreeOf(t, r3, res.Snapshot, src), subtreeOf(t, r3, res2.Snapshot, src); a != b {
		t.Error("unchanged directory got a different tree ID")
	}

	// No plaintext anywhere in the repository: names and contents are encrypted.
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, _ := os.ReadFile(p)
		for _, needle := range []string{marker, "small.txt", "dir with space", "secret-name-4d1c"} {
			if bytes.Contains(data, []byte(needle)) {
				t.Errorf("%s contains plaintext %q", p, needle)
			}
		}
		return nil
	})

	// Every file except key files opens with the exported data identity, as with `age -d -i`.
	idText, err := r2.Secrets().DataIdentityString()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(strings.NewReader(idText))
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.Contains(p, string(filepath.Separator)+"keys"+string(filepath.Separator)) {
			return err
		}
		f, _ := os.Open(p)
		defer f.Close()
		rd, err := age.Decrypt(f, ids...)
		if err == nil {
			_, err = io.Copy(io.Discard, rd)
		}
		if err != nil {
			t.Errorf("age cannot decrypt %s: %v", p, err)
		}
		files++
		return nil
	})
	if files < 4 {
		t.Fatalf("decrypted only %d files", files)
	}
}

func TestAppendAddsLittle(t *testing.T) {
	size := 64 << 20
	if os.Getenv("CAIRN_BIG_TESTS") != "" {
		size = 1 << 30
	}
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 1))
	f, err := os.Create(filepath.Join(src, "big"))
	if err != nil {
		t.Fatal(err)
	}
	for written := 0; written < size; written += 8 << 20 {
		if _, err := f.Write(randBytes(rng, 8<<20)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	dir, be := newRepo(t)
	res := runBackup(t, openRepo(t, be), []string{src}, nil)
	before := repoSize(t, dir)
	f, _ = os.OpenFile(filepath.Join(src, "big"), os.O_APPEND|os.O_WRONLY, 0)
	f.Write(randBytes(rng, 1<<20))
	f.Close()
	runBackup(t, openRepo(t, be), []string{src}, res.Snapshot)
	if added := repoSize(t, dir) - before; added > 10<<20 {
		t.Fatalf("appending 1 MiB to %d MiB added %d bytes", size>>20, added)
	}
}

func TestFullDiskLeavesNoSnapshot(t *testing.T) {
	ctx := context.Background()
	src := makeSource(t)
	_, be := newRepo(t)
	first := runBackup(t, openRepo(t, be), []string{src}, nil)

	writeFile(t, filepath.Join(src, "new.bin"), randBytes(rand.New(rand.NewPCG(3, 3)), 5<<20), 0o644, time.Now())
	fb := faulty.New(be)
	fb.Add(faulty.Rule{Op: faulty.OpSave, Type: backend.PackFile, Kind: faulty.NoSpace, Bytes: 1000})
	r := openRepo(t, fb)
	_, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}, Host: "test", Parent: first.Snapshot})
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("backup on a full disk: %v", err)
	}
	snaps, err := snapshot.List(ctx, openRepo(t, be))
	if err != nil || len(snaps) != 1 {
		t.Fatalf("after failed backup: %d snapshots, %v", len(snaps), err)
	}
	// Earlier snapshot intact, and the next backup works.
	fb.Reset()
	target := t.TempDir()
	if _, err := restore.Run(ctx, openRepo(t, be), first.Snapshot.Tree, restore.Options{Target: target}); err != nil {
		t.Fatal(err)
	}
	runBackup(t, openRepo(t, be), []string{src}, first.Snapshot)
}

func TestUnreadableAndSpecialFiles(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "ok"), []byte("fine"), 0o644, time.Now())
	if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, be := newRepo(t)
	var warned []string
	res, err := backup.Run(context.Background(), openRepo(t, be), backup.Options{
		Paths: []string{src, "/proc/1/mem"}, Host: "test",
		Warn: func(p string, err error) { warned = append(warned, p+": "+err.Error()) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0].Error(), "/proc/1/mem") {
		t.Fatalf("skipped = %v, want /proc/1/mem only", res.Skipped)
	}
	if len(warned) != 2 || !strings.Contains(strings.Join(warned, "\n"), "skipped named pipe") {
		t.Fatalf("warnings = %q", warned)
	}
}

func TestMissingSourceFails(t *testing.T) {
	_, be := newRepo(t)
	_, err := backup.Run(context.Background(), openRepo(t, be), backup.Options{Paths: []string{"/does/not/exist"}})
	if err == nil || !strings.Contains(err.Error(), "source /does/not/exist") {
		t.Fatalf("got %v", err)
	}
}

func TestExcluded(t *testing.T) {
	for _, c := range []struct {
		pat, path string
		want      bool
	}{
		{"*.tmp", "/a/b/c.tmp", true},
		{"*.tmp", "/a/b/c.tmpx", false},
		{"/a/b", "/a/b/c", true},
		{"/a/*/c", "/a/b/c", true},
		{"cache", "/srv/app/cache", true},
		{"/srv/*.log", "/srv/app/x.log", false},
	} {
		if got := backup.Excluded([]string{c.pat}, c.path); got != c.want {
			t.Errorf("Excluded(%q, %q) = %v", c.pat, c.path, got)
		}
	}
}

func subtreeOf(t *testing.T, r *repo.Repository, sn *snapshot.Snapshot, path string) string {
	t.Helper()
	var id string
	err := snapshot.Walk(context.Background(), r, sn.Tree, func(p string, n *snapshot.Node) error {
		if "/"+p == path {
			id = n.Subtree.String()
		}
		return nil
	})
	if err != nil || id == "" {
		t.Fatalf("find %s in snapshot: %v", path, err)
	}
	return id
}

// TestSQLiteFilesUseDatabaseChunking: a SQLite database changed in one place costs a
// few database-sized chunks, not a 1.5 MiB media chunk; other files keep the media
// chunking.
func TestSQLiteFilesUseDatabaseChunking(t *testing.T) {
	for _, c := range []struct {
		name     string
		magic    string
		maxAdded int64
		minAdded int64
	}{
		{"sqlite", "SQLite format 3\x00", 600 << 10, 0},
		{"other", "not a database!!", 16 << 20, 600 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := t.TempDir()
			data := make([]byte, 6<<20)
			rng := rand.New(rand.NewPCG(3, 4))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			copy(data, c.magic)
			path := filepath.Join(src, "db.sqlite3")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			dir, be := newRepo(t)
			res := runBackup(t, openRepo(t, be), []string{src}, nil)
			before := repoSize(t, dir)
			copy(data[3<<20:], "a changed row in the middle of the file")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			runBackup(t, openRepo(t, be), []string{src}, res.Snapshot)
			added := repoSize(t, dir) - before
			if added > c.maxAdded || added < c.minAdded {
				t.Fatalf("one changed spot added %d bytes (want %d..%d)", added, c.minAdded, c.maxAdded)
			}
		})
	}
}

// TestChangedFileChunksLikeFullPass: a changed file is stored by comparing its old
// chunks and chunking only from where it differs; the chunks must be the ones a full
// pass makes, whatever the change: bytes rewritten in place, appended, cut off,
// inserted or removed in the middle, or everything replaced.
func TestChangedFileChunksLikeFullPass(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	edits := map[string]func([]byte) []byte{
		"in place": func(b []byte) []byte {
			for k := 0; k < 5; k++ {
				copy(b[rng.IntN(len(b)-100):], random(100))
			}
			return b
		},
		"appended":  func(b []byte) []byte { return append(b, random(300000)...) },
		"cut":       func(b []byte) []byte { return b[:len(b)-123457] },
		"inserted":  func(b []byte) []byte { i := len(b) / 3; return append(b[:i:i], append(random(5000), b[i:]...)...) },
		"removed":   func(b []byte) []byte { i := len(b) / 2; return append(b[:i:i], b[i+7777:]...) },
		"replaced":  func(b []byte) []byte { copy(b[16:], random(len(b)-16)); return b },
		"unchanged": func(b []byte) []byte { return b },
		"first":     func(b []byte) []byte { b[20] ^= 1; return b },
		"last":      func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			src := t.TempDir()
			path := filepath.Join(src, "db.sqlite3")
			// A SQLite header gives the small database chunks: many chunks per file.
			data := append([]byte("SQLite format 3\x00"), random(3<<20)...)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, be := newRepo(t)
			first := runBackup(t, openRepo(t, be), []string{src}, nil)
			data = edit(append([]byte(nil), data...))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			// Defeat the unchanged-file check for "unchanged": a new mtime.
			if err := os.Chtimes(path, time.Now(), time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			incremental := runBackup(t, openRepo(t, be), []string{src}, first.Snapshot)
			full := runBackup(t, openRepo(t, be), []string{src}, nil)
			r := openRepo(t, be)
			a, b := fileContent(t, r, incremental.Snapshot, path), fileContent(t, r, full.Snapshot, path)
			if len(a) < 10 || !slices.Equal(a, b) {
				t.Fatalf("chunks after the change: %d from comparing, %d from a full pass, equal %v", len(a), len(b), slices.Equal(a, b))
			}
			target := t.TempDir()
			if _, err := restore.Run(context.Background(), r, incremental.Snapshot.Tree, restore.Options{Target: target}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(target, path))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("restored %d bytes, want %d identical (%v)", len(got), len(data), err)
			}
		})
	}
}

func fileContent(t *testing.T, r *repo.Repository, sn *snapshot.Snapshot, path string) []blob.ID {
	t.Helper()
	var ids []blob.ID
	found := false
	err := snapshot.Walk(context.Background(), r, sn.Tree, func(p string, n *snapshot.Node) error {
		if "/"+p == path {
			ids, found = n.Content, true
		}
		return nil
	})
	if err != nil || !found {
		t.Fatalf("find %s in snapshot: %v", path, err)
	}
	return ids
}
