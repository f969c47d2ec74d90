package copy_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend/mem"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
	snapcopy "github.com/cairn-backup/cairn/snapshot/copy"
	"github.com/cairn-backup/cairn/snapshot/restore"
)

func newRepo(t *testing.T, pw string) *repo.Repository {
	t.Helper()
	cred, err := crypto.NewPassphrase(pw, 10)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(context.Background(), mem.New(), cred, repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func random(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCopyRewritesTreesAndSkipsPresent(t *testing.T) {
	ctx := context.Background()
	src, dst := newRepo(t, "source"), newRepo(t, "destination")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "media/a.bin"), random(1, 3<<20))
	writeFile(t, filepath.Join(dir, "media/b.txt"), bytes.Repeat([]byte("hello cairn\n"), 5000))
	writeFile(t, filepath.Join(dir, "media/sub/c.bin"), random(2, 700<<10))
	writeFile(t, filepath.Join(dir, "empty"), nil)

	first, err := backup.Run(ctx, src, backup.Options{Paths: []string{dir}, Host: "app1", Tags: []string{"nightly"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := snapcopy.Run(ctx, src, dst, snapcopy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Copied) != 1 || len(res.Present) != 0 {
		t.Fatalf("first copy: %d copied, %d present", len(res.Copied), len(res.Present))
	}
	copied := res.Copied[0].Dest
	if copied.Tree == first.Snapshot.Tree {
		t.Fatal("destination tree has the source's ID: blob IDs must be keyed per repository")
	}
	if !snapcopy.Same(first.Snapshot, copied) {
		t.Fatal("copied record differs from the source's beyond IDs")
	}
	restoreEqual(t, dst, copied, dir)

	// Nothing to do the second time, and nothing read.
	res, err = snapcopy.Run(ctx, src, dst, snapcopy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Copied) != 0 || len(res.Present) != 1 || res.BlobsRead != 0 {
		t.Fatalf("second copy: %d copied, %d present, %d blobs read", len(res.Copied), len(res.Present), res.BlobsRead)
	}

	// A new snapshot with one changed file: only that file's blobs are read, and
	// the copy's parent is the copy of the source parent.
	writeFile(t, filepath.Join(dir, "media/new.bin"), random(3, 200<<10))
	second, err := backup.Run(ctx, src, backup.Options{Paths: []string{dir}, Host: "app1", Parent: first.Snapshot})
	if err != nil {
		t.Fatal(err)
	}
	res, err = snapcopy.Run(ctx, src, dst, snapcopy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Copied) != 1 || res.Copied[0].Source.ID != second.Snapshot.ID {
		t.Fatalf("third copy: %+v", res.Copied)
	}
	if res.BlobsRead != 1 {
		t.Fatalf("third copy read %d data blobs from the source, want 1 (the new file)", res.BlobsRead)
	}
	if p := res.Copied[0].Dest.Parent; p == nil || *p != copied.ID {
		t.Fatalf("copy's parent %v, want %s", p, copied.ID.Short())
	}
	restoreEqual(t, dst, res.Copied[0].Dest, dir)

	// The destination is consistent.
	dst.ResetIndex()
	if err := dst.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	check, err := dst.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range check.Issues {
		if is.Severity == repo.SeverityError {
			t.Errorf("check: %s", is)
		}
	}
}

func restoreEqual(t *testing.T, r *repo.Repository, sn *snapshot.Snapshot, dir string) {
	t.Helper()
	target := t.TempDir()
	if _, err := restore.Run(context.Background(), r, sn.Tree, restore.Options{Target: target}); err != nil {
		t.Fatal(err)
	}
	want := readTree(t, dir)
	got := readTree(t, filepath.Join(target, dir))
	if len(got) != len(want) {
		t.Fatalf("restored %d files, want %d", len(got), len(want))
	}
	for p, w := range want {
		if !bytes.Equal(got[p], w) {
			t.Fatalf("%s differs after copy and restore", p)
		}
	}
}

func TestSame(t *testing.T) {
	a := &snapshot.Snapshot{Host: "h", Paths: []string{"/x"}, Tree: [32]byte{1}, Database: &snapshot.Database{Engine: "sqlite", Dump: [32]byte{2}}}
	b := &snapshot.Snapshot{Host: "h", Paths: []string{"/x"}, Tree: [32]byte{3}, Database: &snapshot.Database{Engine: "sqlite", Dump: [32]byte{4}}}
	if !snapcopy.Same(a, b) {
		t.Fatal("records differing only in IDs are not the same")
	}
	b.Tags = []string{"x"}
	if snapcopy.Same(a, b) {
		t.Fatal("records with different tags are the same")
	}
}
