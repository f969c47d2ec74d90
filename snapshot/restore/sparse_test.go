package restore

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

// countingRepo counts whole-pack reads and single-blob reads of a repository.
type countingRepo struct {
	*repo.Repository
	packs, blobs atomic.Int64
}

func (c *countingRepo) FetchPack(ctx context.Context, id blob.ID) (*repo.FetchedPack, error) {
	c.packs.Add(1)
	return c.Repository.FetchPack(ctx, id)
}

func (c *countingRepo) LoadBlob(ctx context.Context, id blob.ID, dst []byte) ([]byte, error) {
	c.blobs.Add(1)
	return c.Repository.LoadBlob(ctx, id, dst)
}

// TestSparsePacksReadByBlob: restoring one small file out of a full pack reads its
// blobs with ranged reads, not the whole pack; restoring everything reads whole packs.
func TestSparsePacksReadByBlob(t *testing.T) {
	tr := newTestRepo(t)
	files := map[string]spec{
		"srv/big.bin":   {data: randBytes(1, 900<<10)},
		"srv/small.txt": {data: randBytes(2, 40<<10)},
	}
	var tree blob.ID
	tr.session(func(w *repo.Writer) { tree = tr.build(w, files) })
	if tr.packOf(tr.mustContent(t, tree, "srv/small.txt")) != tr.packOf(tr.mustContent(t, tree, "srv/big.bin")) {
		t.Fatal("test setup: both files should share one pack")
	}

	cr := &countingRepo{Repository: tr.r}
	target := t.TempDir()
	res, err := Run(context.Background(), cr, tree, Options{Target: target, Include: []string{"/srv/small.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 1 {
		t.Fatalf("restored %d files, want 1", res.Files)
	}
	checkRestored(t, target, withParents(map[string]spec{"srv/small.txt": files["srv/small.txt"]}))
	if n := cr.packs.Load(); n != 0 {
		t.Errorf("single small file: %d whole-pack reads, want 0", n)
	}
	if n := cr.blobs.Load(); n < 3 { // trees (root, srv) and the file's content
		t.Errorf("single small file: %d blob reads, want the trees plus 3 content blobs", n)
	}

	cr = &countingRepo{Repository: tr.r}
	target = t.TempDir()
	if _, err := Run(context.Background(), cr, tree, Options{Target: target}); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, target, withParents(files))
	if n := cr.packs.Load(); n != 1 {
		t.Errorf("full restore: %d whole-pack reads, want 1", n)
	}
}

// mustContent returns the first content blob of the file at p under tree.
func (tr *testRepo) mustContent(t *testing.T, tree blob.ID, p string) blob.ID {
	t.Helper()
	var found blob.ID
	err := snapshot.Walk(context.Background(), tr.r, tree, func(path string, n *snapshot.Node) error {
		if path == p && len(n.Content) > 0 {
			found = n.Content[0]
		}
		return nil
	})
	if err != nil || found.IsNull() {
		t.Fatalf("no content for %s: %v", p, err)
	}
	return found
}
