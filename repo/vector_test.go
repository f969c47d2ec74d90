package repo_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/restore"
)

// TestVectorRepos open the frozen repositories in testdata/vectors (made by `cairn
// init` + `cairn backup` of testdata/vectors/src, docs/FORMAT.md §13). Every later
// cairn must read them: a format change cannot slip in unnoticed.
func TestVectorRepoV1(t *testing.T) {
	testVectorRepo(t, "repo-v1", 1, 17, []string{"hello.txt", "empty", "dir/random.bin", "dir/compressible.txt"})
}

// TestVectorRepoV2 holds dir/scan.pdf, random image streams with text layers, stored
// as several zstd frames (docs/FORMAT.md §7.1).
func TestVectorRepoV2(t *testing.T) {
	testVectorRepo(t, "repo-v2", 2, 15, []string{"hello.txt", "empty", "dir/random.bin", "dir/compressible.txt", "dir/scan.pdf"})
}

// TestVectorRepoV3 has a files chunking set whose average (2^19) is below its
// minimum (2 MiB), which only version 3 allows (docs/FORMAT.md §5).
func TestVectorRepoV3(t *testing.T) {
	testVectorRepo(t, "repo-v3", 3, 15, []string{"hello.txt", "empty", "dir/random.bin", "dir/compressible.txt", "dir/scan.pdf"})
}

func testVectorRepo(t *testing.T, name string, version, dbAverageBits int, files []string) {
	ctx := context.Background()
	dir := filepath.Join("..", "testdata", "vectors", name)
	pw, err := os.ReadFile(filepath.Join("..", "testdata", "vectors", name+".password"))
	if err != nil {
		t.Fatal(err)
	}
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := crypto.NewPassphrase(string(bytes.TrimSpace(pw)), 0)
	r, err := repo.Open(ctx, be, cred)
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.Config()
	if cfg.Version != version || cfg.PackSize != 16<<20 || cfg.Chunking["database"].AverageBits != dbAverageBits {
		t.Fatalf("config: %+v", cfg)
	}
	wantFiles := repo.Chunking{Min: 512 << 10, Max: 8 << 20, AverageBits: 20} // made before 1 MiB minimums
	if version >= 3 {
		wantFiles = repo.Chunking{Min: 2 << 20, Max: 8 << 20, AverageBits: 19}
	}
	if cfg.Chunking["files"] != wantFiles {
		t.Fatalf("files chunking: %+v", cfg.Chunking["files"])
	}
	// Every index file decodes by FORMAT.md §8, and lists packs that exist.
	ids, err := r.List(ctx, backend.IndexFile)
	if err != nil || len(ids) == 0 {
		t.Fatalf("index files: %v %v", ids, err)
	}
	for _, id := range ids {
		f, err := r.LoadIndexFile(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Packs {
			fi, err := be.Stat(ctx, backend.Handle{Type: backend.PackFile, Name: p.ID.String()})
			if err != nil || uint64(fi.Size) != p.Size {
				t.Fatalf("pack %s: %v size %d vs %d", p.ID.Short(), err, fi.Size, p.Size)
			}
			if _, err := r.ReadPack(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.List(ctx, r)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %d %v", len(snaps), err)
	}
	sn := snaps[0]
	if sn.Host != "vector" || !sn.HasTag(fmt.Sprintf("v%d", version)) || sn.Time.UTC().Format("2006-01-02T15:04:05") != "2026-01-02T03:04:05" || len(sn.Paths) != 1 {
		t.Fatalf("snapshot record: %+v", sn)
	}
	target := t.TempDir()
	if _, err := restore.Run(ctx, r, sn.Tree, restore.Options{Target: target}); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join("..", "testdata", "vectors", "src")
	got := filepath.Join(target, sn.Paths[0])
	for _, name := range files {
		a, err1 := os.ReadFile(filepath.Join(want, name))
		b, err2 := os.ReadFile(filepath.Join(got, name))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs (%v, %v)", name, err1, err2)
		}
	}
	if l, err := os.Readlink(filepath.Join(got, "link")); err != nil || l != "hello.txt" {
		t.Errorf("link: %q %v", l, err)
	}
}
