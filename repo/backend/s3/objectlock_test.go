package s3_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/s3"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
)

// TestObjectLockRepository backs up into a repository whose backend stores files with
// object-lock retention (what cairn.toml's [s3] object_lock_days sets up) and checks
// that packs, index and snapshot files carry the retention, that config, keys and
// locks do not, and that deleting a retained pack, index or snapshot fails with
// s3.ErrObjectLocked naming the date while the repository stays complete: what prune
// and forget meet when they run against such a bucket.
func TestObjectLockRepository(t *testing.T) {
	s := testServer(t)
	ctx := context.Background()
	bucket := newBucket(t, s)
	opts := s.opts()
	opts.LockRetention = 24 * time.Hour
	be, err := s3.Create(ctx, s.loc(bucket, "repo"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	start := time.Now()

	pw, err := crypto.NewPassphrase("object lock", crypto.MinScryptWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, be, pw, repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	content := make([]byte, 3<<20)
	for i := range content {
		content[i] = byte(i*7 + i/4099)
	}
	if err := os.WriteFile(filepath.Join(src, "data.bin"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "small.txt"), []byte("small\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lock, err := r.Lock(ctx, "backup", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}, Host: "locktest"})
	if err != nil {
		t.Fatal(err)
	}

	// Which files carry a retention.
	list := func(typ backend.FileType) []backend.Handle {
		var hs []backend.Handle
		err := be.List(ctx, typ, func(fi backend.FileInfo) error {
			hs = append(hs, backend.Handle{Type: typ, Name: fi.Name})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return hs
	}
	retention := func(h backend.Handle) (string, time.Time) {
		mode, until, err := be.Client().GetObjectRetention(ctx, bucket, be.Key(h), "")
		if err != nil || mode == nil || until == nil {
			return "", time.Time{}
		}
		return string(*mode), *until
	}
	retained := map[backend.FileType][]backend.Handle{}
	for _, typ := range []backend.FileType{backend.PackFile, backend.IndexFile, backend.SnapshotFile} {
		hs := list(typ)
		if len(hs) == 0 {
			t.Fatalf("no %s files", typ)
		}
		for _, h := range hs {
			mode, until := retention(h)
			if mode != string(minio.Governance) || until.Before(start.Add(24*time.Hour-time.Minute)) {
				t.Fatalf("%s: retention %q until %v, want GOVERNANCE for 24h", h, mode, until)
			}
		}
		retained[typ] = hs
	}
	unretained := append(list(backend.KeyFile), list(backend.LockFile)...)
	unretained = append(unretained, backend.Handle{Type: backend.ConfigFile})
	if len(unretained) < 3 {
		t.Fatalf("want a key, a lock and the config, got %v", unretained)
	}
	for _, h := range unretained {
		if mode, _ := retention(h); mode != "" {
			t.Fatalf("%s has retention %s; keys, locks and the config must stay changeable", h, mode)
		}
	}
	// Locks still refresh and go away.
	if err := lock.Unlock(ctx); err != nil {
		t.Fatalf("unlock under object lock: %v", err)
	}

	// What prune would do: delete everything. Each retained file refuses, naming its
	// date; the caller reports it and carries on with the next file.
	var locked []string
	for _, typ := range []backend.FileType{backend.SnapshotFile, backend.PackFile, backend.IndexFile} {
		for _, h := range retained[typ] {
			err := be.Remove(ctx, h)
			if !errors.Is(err, s3.ErrObjectLocked) {
				t.Fatalf("remove %s: want ErrObjectLocked, got %v", h, err)
			}
			_, until := retention(h)
			if date := until.UTC().Format(time.RFC3339); !strings.Contains(err.Error(), date) || !strings.Contains(err.Error(), h.Name) {
				t.Fatalf("remove %s: %q does not name the file and the date %s", h, err, date)
			}
			locked = append(locked, err.Error())
		}
	}
	t.Logf("%d locked files, e.g. %s", len(locked), locked[0])

	// Nothing was lost: a fresh open lists the snapshot and reads every blob.
	r2, err := repo.Open(ctx, be, pw)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.List(ctx, r2)
	if err != nil || len(snaps) != 1 || snaps[0].ID != res.Snapshot.ID {
		t.Fatalf("snapshots after refused deletes: %v, %v", snaps, err)
	}
	var ids []repo.ID
	r2.Index().Each(func(l index.Location) { ids = append(ids, l.Entry.ID) })
	for _, id := range ids {
		if _, err := r2.LoadBlob(ctx, id, nil); err != nil {
			t.Fatalf("read blob %s after refused deletes: %v", id.Short(), err)
		}
	}
	if len(ids) < 4 {
		t.Fatalf("read %d blobs, want the file chunks and trees", len(ids))
	}
}
