package repo_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/blob"
)

func pass(t testing.TB, pw string) crypto.Credential {
	t.Helper()
	c, err := crypto.NewPassphrase(pw, crypto.MinScryptWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newRepo(t *testing.T) (*repo.Repository, string) {
	t.Helper()
	dir := t.TempDir()
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(context.Background(), be, pass(t, "secret"), repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return r, dir
}

func reopen(t *testing.T, dir, pw string) (*repo.Repository, error) {
	t.Helper()
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return repo.Open(context.Background(), be, pass(t, pw))
}

func TestBlobRoundTrip(t *testing.T) {
	ctx := context.Background()
	r, dir := newRepo(t)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	w := r.NewWriter(ctx, repo.WriterOptions{})
	mac := r.NewBlobMAC()
	rng := rand.New(rand.NewPCG(1, 2))
	var blobs [][]byte
	var ids []blob.ID
	for i := 0; i < 300; i++ {
		data := make([]byte, 1+rng.IntN(64<<10))
		if i%2 == 0 {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		} else {
			for j := range data {
				data[j] = "abcdefgh"[j%8]
			}
			data[0] = byte(i)
			data[len(data)-1] = byte(i >> 8)
		}
		id := blob.ID(mac.Sum(data))
		if _, err := w.SaveBlob(blob.Data, id, data); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, data)
		ids = append(ids, id)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.Stats().Packs < 2 {
		t.Fatalf("want several packs with 1 MiB pack size, got %d", w.Stats().Packs)
	}
	r2, err := reopen(t, dir, "secret")
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		got, err := r2.LoadBlob(ctx, id, nil)
		if err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		if !bytes.Equal(got, blobs[i]) {
			t.Fatalf("blob %d differs", i)
		}
	}
	// Pack-wise reading gives the same blobs.
	for _, p := range r2.Index().Packs() {
		pr, err := r2.ReadPack(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range pr.Entries {
			if _, err := pr.Blob(e, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestWrongPassword(t *testing.T) {
	_, dir := newRepo(t)
	_, err := reopen(t, dir, "wrong")
	if !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("got %v, want ErrWrongPassword", err)
	}
}

func TestNotRepository(t *testing.T) {
	be, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = repo.Open(context.Background(), be, pass(t, "x"))
	if !errors.Is(err, repo.ErrNotRepository) {
		t.Fatalf("got %v", err)
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	r, dir := newRepo(t)
	id2, err := r.AddKey(ctx, pass(t, "second"), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reopen(t, dir, "second"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RemoveKey(ctx, r.KeyID()); err != nil {
		t.Fatal(err)
	}
	if _, err := reopen(t, dir, "secret"); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("removed key still opens: %v", err)
	}
	r2, err := reopen(t, dir, "second")
	if err != nil {
		t.Fatal(err)
	}
	if r2.KeyID() != id2 {
		t.Fatal("wrong key id")
	}
	if _, err := r2.RemoveKey(ctx, id2); !errors.Is(err, repo.ErrLastKey) {
		t.Fatalf("removing last key: %v", err)
	}
}

func TestCorruptPackDetected(t *testing.T) {
	ctx := context.Background()
	r, dir := newRepo(t)
	_ = r.LoadIndex(ctx)
	w := r.NewWriter(ctx, repo.WriterOptions{})
	data := bytes.Repeat([]byte("hello world "), 1000)
	id := blob.ID(r.NewBlobMAC().Sum(data))
	if _, err := w.SaveBlob(blob.Data, id, data); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "data", "*", "*"))
	if len(packs) != 1 {
		t.Fatalf("packs: %v", packs)
	}
	buf, _ := os.ReadFile(packs[0])
	buf[len(buf)/2] ^= 1
	if err := os.WriteFile(packs[0], buf, 0o600); err != nil {
		t.Fatal(err)
	}
	r2, _ := reopen(t, dir, "secret")
	_ = r2.LoadIndex(ctx)
	_, err := r2.LoadBlob(ctx, id, nil)
	var ce *repo.CorruptError
	if !errors.As(err, &ce) || ce.Handle.Type != backend.PackFile {
		t.Fatalf("got %v, want CorruptError naming the pack", err)
	}
	if _, err := r2.ReadPack(ctx, r2.Index().Packs()[0]); !errors.As(err, &ce) {
		t.Fatalf("ReadPack: %v", err)
	}
}

// TestInitChunkingByVersion: a new repository of version 3 chunks files with
// chunk.Files (an average below the minimum); versions 1 and 2 get chunk.FilesV2,
// which their older readers accept (docs/FORMAT.md §5, §13).
func TestInitChunkingByVersion(t *testing.T) {
	for version, want := range map[int]chunk.Params{1: chunk.FilesV2, 2: chunk.FilesV2, 3: chunk.Files} {
		dir := t.TempDir()
		be, err := local.Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Init(context.Background(), be, pass(t, "secret"), repo.InitOptions{Version: version}); err != nil {
			t.Fatal(err)
		}
		r, err := reopen(t, dir, "secret")
		if err != nil {
			t.Fatal(err)
		}
		cfg := r.Config()
		if got := cfg.Chunking["files"].Params(); cfg.Version != version || got != want {
			t.Errorf("version %d: config version %d, files chunking %+v, want %+v", version, cfg.Version, got, want)
		}
		if got := cfg.Chunking["database"].Params(); got != chunk.Database {
			t.Errorf("version %d: database chunking %+v", version, got)
		}
	}
	if chunk.FilesV2.ValidateV2() != nil || chunk.Files.ValidateV2() == nil || chunk.Files.Validate() != nil {
		t.Fatal("chunk.Files needs format version 3 and chunk.FilesV2 does not")
	}
}
