package repo

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/faulty"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
)

// Resume tests (docs/RELIABILITY.md §Resume): packs of an interrupted session are
// reused by the next one. The CLI-level counterpart is the crash harness
// (cmd/cairn/crash_test.go), which measures the same after every SIGKILL.

func rsCred(t testing.TB) crypto.Credential {
	t.Helper()
	c, err := crypto.NewPassphrase("resume", crypto.MinScryptWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rsInit(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(context.Background(), be, rsCred(t), InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	return dir
}

// rsOpen opens the repository in dir through a fault injector.
func rsOpen(t testing.TB, dir string) (*Repository, *faulty.Backend) {
	t.Helper()
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fb := faulty.New(be)
	r, err := Open(context.Background(), fb, rsCred(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r, fb
}

func rsBlobs(n, size int) [][]byte {
	rng := rand.New(rand.NewPCG(7, 11))
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		out[i] = b
	}
	return out
}

func rsPackBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(filepath.Join(dir, "data"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && !strings.HasPrefix(fi.Name(), ".") {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rsSession saves every blob in one session and returns the session's error.
func rsSession(r *Repository, blobs [][]byte) error {
	ctx := context.Background()
	w := r.NewWriter(ctx, WriterOptions{Packers: 1, Uploaders: 1})
	mac := r.NewBlobMAC()
	for _, b := range blobs {
		if _, err := w.SaveBlob(blob.Data, ID(mac.Sum(b)), b); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Flush()
}

// TestResumeAfterFailedSession: a session whose index writes fail uploads packs that
// no index names; the next session adopts them and adds under 5 % of their size.
func TestResumeAfterFailedSession(t *testing.T) {
	blobs := rsBlobs(24, 200<<10) // 4.8 MiB: five packs of 1 MiB
	for _, adopt := range []bool{true, false} {
		dir := rsInit(t)
		r, fb := rsOpen(t, dir)
		fb.Add(faulty.Rule{Op: faulty.OpSave, Type: backend.IndexFile, Kind: faulty.Fail})
		err := rsSession(r, blobs)
		if err == nil || !strings.Contains(err.Error(), "save index/") {
			t.Fatalf("first session: got %v, want an error naming the index file save", err)
		}
		r.Close()
		written := rsPackBytes(t, dir)
		if written < 3<<20 {
			t.Fatalf("the failed session wrote only %d pack bytes", written)
		}

		r, _ = rsOpen(t, dir)
		if adopt {
			res, err := r.AdoptUnindexedPacks(context.Background())
			if err != nil || res.Packs == 0 || res.Skipped != "" {
				t.Fatalf("adopt: %+v, %v", res, err)
			}
		}
		if err := rsSession(r, blobs); err != nil {
			t.Fatal(err)
		}
		r.Close()
		added := rsPackBytes(t, dir) - written
		t.Logf("adopt=%v: first session wrote %d pack bytes, second added %d (%.1f%%)", adopt, written, added, 100*float64(added)/float64(written))
		if adopt && float64(added) > 0.05*float64(written) {
			t.Errorf("with adoption the second session added %d bytes, over 5%% of %d", added, written)
		}
		if !adopt && float64(added) < 0.5*float64(written) {
			// Without adoption the packs are uploaded again: the test measures something.
			t.Errorf("without adoption the second session added only %d bytes", added)
		}
		// Every blob reads back from the reopened repository.
		r, _ = rsOpen(t, dir)
		for _, b := range blobs {
			if _, err := r.LoadBlob(context.Background(), ID(r.NewBlobMAC().Sum(b)), nil); err != nil {
				t.Fatal(err)
			}
		}
		r.Close()
	}
}

// TestAdoptRules: packs marked obsolete are never adopted, nothing is adopted while
// another process holds a live lock, a stale lock does not prevent adoption, and an
// unreadable pack is left alone.
func TestAdoptRules(t *testing.T) {
	ctx := context.Background()
	dir := rsInit(t)
	r, fb := rsOpen(t, dir)
	fb.Add(faulty.Rule{Op: faulty.OpSave, Type: backend.IndexFile, Kind: faulty.Fail})
	if err := rsSession(r, rsBlobs(18, 200<<10)); err == nil {
		t.Fatal("session without index writes succeeded")
	}
	fb.Reset()
	var packs []ID
	if err := fb.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		id, err := blob.ParseID(fi.Name)
		packs = append(packs, id)
		return err
	}); err != nil || len(packs) < 3 {
		t.Fatalf("packs %v, %v", packs, err)
	}
	// Mark the first pack obsolete, as prune does for orphans.
	pr, err := r.ReadPack(ctx, packs[0])
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := fb.Stat(ctx, backend.Handle{Type: backend.PackFile, Name: packs[0].String()})
	mark := &index.File{Created: time.Now().UTC(), Packs: []index.PackRecord{{ID: packs[0], Size: uint64(fi.Size),
		Flags: index.FlagObsolete, MarkedAt: time.Now().UTC(), Blockers: []index.BlockerID{{1}}, Entries: pr.Entries}}}
	pr.Close()
	if _, err := r.SaveIndexFile(ctx, mark); err != nil {
		t.Fatal(err)
	}
	r.Close()

	host, _ := os.Hostname()
	foreign := func(r *Repository, pid int, at time.Time) string {
		info := LockInfo{Name: randomHex(32), Session: randomHex(16), Kind: "backup", Created: at, Time: at, Host: host, PID: pid, User: "x"}
		if err := r.writeLock(ctx, info); err != nil {
			t.Fatal(err)
		}
		return info.Name
	}
	// A live lock of another process (pid 1 always runs).
	r, _ = rsOpen(t, dir)
	live := foreign(r, 1, time.Now().UTC())
	if res, err := r.AdoptUnindexedPacks(ctx); err != nil || res.Packs != 0 || res.Skipped == "" {
		t.Fatalf("adopted while another process holds a lock: %+v, %v", res, err)
	}
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: live}); err != nil {
		t.Fatal(err)
	}
	// A stale lock (not refreshed for longer than LockStaleAfter) does not count.
	foreign(r, 1, time.Now().Add(-2*LockStaleAfter).UTC())
	// A damaged pack is skipped.
	damaged := filepath.Join(dir, backend.Handle{Type: backend.PackFile, Name: packs[1].String()}.Path())
	if err := os.Truncate(damaged, 100); err != nil {
		t.Fatal(err)
	}
	res, err := r.AdoptUnindexedPacks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Packs != len(packs)-2 || res.Unreadable != 1 {
		t.Fatalf("adopted %d packs (%d unreadable) of %d, want all but the obsolete and the damaged one", res.Packs, res.Unreadable, len(packs))
	}
	r.Close()
	r, _ = rsOpen(t, dir)
	defer r.Close()
	obsolete := false
	for _, p := range r.Index().Obsolete() {
		obsolete = obsolete || p.ID == packs[0]
	}
	if _, live := r.Index().PackSize(packs[0]); live || !obsolete {
		t.Fatal("the obsolete pack was adopted")
	}
	if _, live := r.Index().PackSize(packs[1]); live {
		t.Fatal("the damaged pack was adopted")
	}
	// A second call finds nothing new.
	if res, err := r.AdoptUnindexedPacks(ctx); err != nil || res.Packs != 0 {
		t.Fatalf("second adoption: %+v, %v", res, err)
	}
}

// TestAdoptWriteOnly: a write-only key cannot read packs and adopts nothing.
func TestAdoptWriteOnly(t *testing.T) {
	dir := rsInit(t)
	r, _ := rsOpen(t, dir)
	defer r.Close()
	r.secrets = r.secrets.WriteOnlyCopy()
	res, err := r.AdoptUnindexedPacks(context.Background())
	if err != nil || res.Skipped == "" {
		t.Fatalf("write-only: %+v, %v", res, err)
	}
	if _, err := r.ReadPack(context.Background(), ID{}); !errors.Is(err, ErrWriteOnly) {
		t.Fatalf("ReadPack with a write-only key: %v", err)
	}
}

// TestWriterConcurrentSaveBlob: several goroutines save overlapping blobs into one
// session at once (as backup workers do); each blob is stored once and every one
// reads back. Run with -race.
func TestWriterConcurrentSaveBlob(t *testing.T) {
	ctx := context.Background()
	r, _ := rsOpen(t, rsInit(t))
	defer r.Close()
	blobs := rsBlobs(16, 100<<10)
	w := r.NewWriter(ctx, WriterOptions{Packers: 2, Uploaders: 2, IndexEvery: 1})
	mac := r.NewBlobMAC()
	ids := make([]ID, len(blobs))
	for i, b := range blobs {
		ids[i] = ID(mac.Sum(b))
	}
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i := range blobs {
				j := (i + g*5) % len(blobs)
				if _, err := w.SaveBlob(blob.Data, ids[j], blobs[j]); err != nil {
					errs <- err
					return
				}
				_ = w.Known(ids[j])
			}
			errs <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := w.Stats().BlobsAdded; n != int64(len(blobs)) {
		t.Fatalf("%d blobs added, want %d", n, len(blobs))
	}
	for i, id := range ids {
		got, err := r.LoadBlob(ctx, id, nil)
		if err != nil || string(got) != string(blobs[i]) {
			t.Fatalf("blob %d: %v", i, err)
		}
	}
}
