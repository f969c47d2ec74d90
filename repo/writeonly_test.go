package repo_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/mem"
	"github.com/cairn-backup/cairn/repo/blob"
)

// TestWriteOnlyRepository: a repository opened with a write-only key writes blobs and
// snapshot files, deduplicates against the index, and every method that would need
// the data identity fails with ErrWriteOnly; the full key reads what it wrote.
func TestWriteOnlyRepository(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	full, err := repo.Init(ctx, be, pass(t, "secret"), repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	cred, err := crypto.ParseIdentityFile(strings.NewReader(id.String()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := full.AddKey(ctx, cred, true); err != nil {
		t.Fatal(err)
	}
	// The full key's first blob, which the write-only key must find in the index.
	if err := full.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	shared := bytes.Repeat([]byte("shared content "), 1000)
	sharedID := blob.ID(full.NewBlobMAC().Sum(shared))
	w := full.NewWriter(ctx, repo.WriterOptions{})
	if _, err := w.SaveBlob(blob.Data, sharedID, shared); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}

	wo, err := repo.Open(ctx, be, cred)
	if err != nil {
		t.Fatal(err)
	}
	if !wo.WriteOnly() {
		t.Fatal("write-only credential opened a full key")
	}
	if err := wo.LoadIndex(ctx); err != nil {
		t.Fatalf("a write-only key must read the index: %v", err)
	}
	w = wo.NewWriter(ctx, repo.WriterOptions{})
	if added, err := w.SaveBlob(blob.Data, blob.ID(wo.NewBlobMAC().Sum(shared)), shared); err != nil || added {
		t.Fatalf("write-only save of a stored blob: added %v, %v; want deduplicated", added, err)
	}
	own := []byte("written by the backup client")
	ownID := blob.ID(wo.NewBlobMAC().Sum(own))
	if added, err := w.SaveBlob(blob.Data, ownID, own); err != nil || !added {
		t.Fatalf("write-only save: added %v, %v", added, err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	snapID, err := wo.SaveJSON(ctx, backend.SnapshotFile, map[string]string{"note": "from the write-only key"})
	if err != nil {
		t.Fatal(err)
	}

	loc, _ := wo.LookupBlob(ownID)
	var v map[string]string
	for name, err := range map[string]error{
		"LoadBlob": func() error { _, err := wo.LoadBlob(ctx, ownID, nil); return err }(),
		"ReadPack": func() error { _, err := wo.ReadPack(ctx, loc.Pack); return err }(),
		"LoadJSON": wo.LoadJSON(ctx, backend.SnapshotFile, snapID, &v),
		"AddKey":   func() error { _, err := wo.AddKey(ctx, cred, true); return err }(),
		"RemoveKey": func() error {
			_, err := wo.RemoveKey(ctx, full.KeyID()[:8])
			return err
		}(),
		"DataIdentityString": func() error { _, err := wo.Secrets().DataIdentityString(); return err }(),
	} {
		if !errors.Is(err, repo.ErrWriteOnly) {
			t.Errorf("%s with a write-only key: %v, want ErrWriteOnly", name, err)
		}
	}

	// The full key reads both.
	full.ResetIndex()
	if err := full.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := full.LoadBlob(ctx, ownID, nil)
	if err != nil || !bytes.Equal(got, own) {
		t.Fatalf("full key reads the write-only blob: %q, %v", got, err)
	}
	if err := full.LoadJSON(ctx, backend.SnapshotFile, snapID, &v); err != nil || v["note"] != "from the write-only key" {
		t.Fatalf("full key reads the write-only snapshot: %v, %v", v, err)
	}
}
