package repo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
	"github.com/cairn-backup/cairn/snapshot/policy"
	"github.com/cairn-backup/cairn/snapshot/restore"
)

// Lifecycle tests: prune with concurrent backups, prune killed at every step, size
// after prune. Helpers are prefixed lc to stay apart from the package's other tests.

const lcPassword = "lifecycle"

func lcCred(t testing.TB) crypto.Credential {
	t.Helper()
	c, err := crypto.NewPassphrase(lcPassword, crypto.MinScryptWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func lcInit(t testing.TB, dir string) {
	t.Helper()
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(context.Background(), be, lcCred(t), repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

func lcOpen(t testing.TB, dir string) *repo.Repository {
	t.Helper()
	r, err := lcOpenErr(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func lcOpenErr(dir string) (*repo.Repository, error) {
	be, err := local.Open(dir)
	if err != nil {
		return nil, err
	}
	cred, err := crypto.NewPassphrase(lcPassword, crypto.MinScryptWorkFactor)
	if err != nil {
		return nil, err
	}
	return repo.Open(context.Background(), be, cred)
}

// lcData returns n deterministic pseudo-random bytes for a seed.
func lcData(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed*7+1))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// lcFiles is the expected content of a source directory: relative name -> bytes.
type lcFiles map[string][]byte

func lcWrite(t testing.TB, dir string, files lcFiles) {
	t.Helper()
	if err := lcWriteErr(dir, files); err != nil {
		t.Fatal(err)
	}
}

func lcWriteErr(dir string, files lcFiles) error {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// lcBackup runs one backup the way the CLI does: shared "backup" lock first, then the
// index, then the parent, then the backup.
func lcBackup(ctx context.Context, dir, src, host string, at time.Time) (*snapshot.Snapshot, error) {
	be, err := local.Open(dir)
	if err != nil {
		return nil, err
	}
	cred, err := crypto.NewPassphrase(lcPassword, crypto.MinScryptWorkFactor)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, be, cred)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	l, err := r.Lock(ctx, "backup", false)
	if err != nil {
		return nil, err
	}
	defer l.Unlock(context.Background())
	if err := r.LoadIndex(ctx); err != nil {
		return nil, err
	}
	snaps, err := snapshot.List(ctx, r)
	if err != nil {
		return nil, err
	}
	var parent *snapshot.Snapshot
	for _, sn := range snaps {
		if sn.Host == host {
			parent = sn
		}
	}
	res, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}, Host: host, Time: at, Parent: parent,
		Writer: repo.WriterOptions{Uploaders: 1, Packers: 1}, Workers: 1})
	if err != nil {
		return nil, err
	}
	return res.Snapshot, nil
}

func lcUsed(r *repo.Repository) repo.UsedBlobsFunc {
	return func(ctx context.Context, bl repo.BlobLoader, used repo.BlobSet, done map[repo.ID]bool) error {
		return snapshot.UsedBlobs(ctx, r, bl, used, done)
	}
}

// lcPrune runs a prune the way the CLI does.
func lcPrune(ctx context.Context, r *repo.Repository, limit repo.UnusedLimit) (*repo.PruneResult, error) {
	l, err := r.LockKind(ctx, "prune")
	if err != nil {
		return nil, err
	}
	defer l.Unlock(context.Background())
	return r.Prune(ctx, repo.PruneOptions{MaxUnused: limit, Lock: l, UsedBlobs: lcUsed(r)})
}

// lcForget keeps the newest keep snapshots of each host.
func lcForget(ctx context.Context, r *repo.Repository, keep int) ([]blob.ID, error) {
	l, err := r.LockKind(ctx, "forget")
	if err != nil {
		return nil, err
	}
	defer l.Unlock(context.Background())
	snaps, err := snapshot.List(ctx, r)
	if err != nil {
		return nil, err
	}
	ds, err := snapshot.ApplyPolicy(snapshot.GroupSnapshots(snaps, snapshot.GroupBy{Host: true}), policy.Policy{Last: keep}, time.Now())
	if err != nil {
		return nil, err
	}
	var ids []blob.ID
	for _, d := range ds {
		for _, x := range d.Remove {
			ids = append(ids, x.Snapshot.ID)
		}
	}
	return ids, snapshot.Forget(ctx, r, ids)
}

// lcCheck runs check --read-data and fails the test on any error.
func lcCheck(t testing.TB, r *repo.Repository) *repo.CheckResult {
	t.Helper()
	ctx := context.Background()
	res, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	_, issues, err := snapshot.CheckSnapshots(ctx, r, res, res.BlobStatus)
	if err != nil {
		t.Errorf("check snapshots: %v", err)
	}
	for _, i := range res.Issues {
		if i.Severity == repo.SeverityError {
			t.Errorf("check: %s", i)
		}
	}
	for _, i := range issues {
		if i.Severity == repo.SeverityError {
			t.Errorf("check: snapshot %s %s: %s", i.ID[:8], i.Path, i.Message)
		}
	}
	return res
}

// lcRestoreAll restores every snapshot and compares it with want[snapshot ID].
func lcRestoreAll(t testing.TB, r *repo.Repository, want map[blob.ID]lcFiles, srcOf map[blob.ID]string) int {
	t.Helper()
	ctx := context.Background()
	r.ResetIndex()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.List(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range snaps {
		files, ok := want[sn.ID]
		if !ok {
			t.Errorf("snapshot %s was not made by the test", sn.ID.Short())
			continue
		}
		target := t.TempDir()
		if _, err := restore.Run(ctx, r, sn.Tree, restore.Options{Target: target}); err != nil {
			t.Errorf("restore %s: %v", sn.ID.Short(), err)
			continue
		}
		dir := filepath.Join(target, srcOf[sn.ID])
		n := 0
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		if n != len(files) {
			t.Errorf("snapshot %s: restored %d files, want %d", sn.ID.Short(), n, len(files))
		}
		for name, data := range files {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("snapshot %s: %s differs after restore (%v)", sn.ID.Short(), name, err)
			}
		}
	}
	return len(snaps)
}

func TestPruneConcurrentBackups(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lcInit(t, dir)
	var mu sync.Mutex
	want := map[blob.ID]lcFiles{}
	srcOf := map[blob.ID]string{}
	const workers, rounds = 2, 8
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, workers+1)
	for w := 0; w < workers; w++ {
		src := t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				files := lcFiles{
					"stable.bin": lcData(uint64(w+1), 300<<10),
					// New every round: the old version becomes garbage once forgotten.
					"changing.bin": lcData(uint64(1000+w*100+i), 400<<10),
					// Changes every other round, so that the parent's copy is reused.
					"slow.bin": lcData(uint64(2000+w*100+i/2), 200<<10),
				}
				if err := lcWriteErr(src, files); err != nil {
					errc <- err
					return
				}
				sn, err := lcBackup(ctx, dir, src, fmt.Sprintf("host%d", w), time.Now())
				if err != nil {
					errc <- fmt.Errorf("backup %d/%d: %w", w, i, err)
					return
				}
				mu.Lock()
				want[sn.ID] = files
				srcOf[sn.ID] = src
				mu.Unlock()
			}
		}()
	}
	prunes, deleted, blocked := 0, 0, 0
	var pwg sync.WaitGroup
	pwg.Add(1)
	go func() {
		defer pwg.Done()
		r, err := lcOpenErr(dir)
		if err != nil {
			errc <- err
			return
		}
		defer r.Close()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := lcForget(ctx, r, 2); err != nil {
				errc <- fmt.Errorf("forget: %w", err)
				return
			}
			res, err := lcPrune(ctx, r, repo.UnusedLimit{Percent: 0})
			if err != nil {
				errc <- fmt.Errorf("prune: %w", err)
				return
			}
			prunes++
			deleted += res.PacksDeleted
			if len(res.Pending) > 0 {
				blocked++
			}
		}
	}()
	wg.Wait()
	close(stop)
	pwg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	// Everything settles once no backup runs.
	r := lcOpen(t, dir)
	defer r.Close()
	if _, err := lcForget(ctx, r, 2); err != nil {
		t.Fatal(err)
	}
	res, err := lcPrune(ctx, r, repo.UnusedLimit{Percent: 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pending) != 0 {
		t.Errorf("packs still pending with no backup running: %+v", res.Pending)
	}
	t.Logf("%d prunes during the backups deleted %d packs (%d left packs waiting for a backup); final prune deleted %d",
		prunes, deleted, blocked, res.PacksDeleted)
	if prunes < 2 {
		t.Errorf("only %d prunes ran concurrently", prunes)
	}
	c := lcCheck(t, r)
	if c.OrphanPacks != 0 || c.ObsoletePacks != 0 {
		t.Errorf("after the final prune: %d orphans, %d obsolete packs", c.OrphanPacks, c.ObsoletePacks)
	}
	if n := lcRestoreAll(t, r, want, srcOf); n != 2*workers {
		t.Errorf("%d snapshots left, want %d", n, 2*workers)
	}
}

func TestPruneSizeAfterForget(t *testing.T) {
	ctx := context.Background()
	dir, fresh, src := t.TempDir(), t.TempDir(), t.TempDir()
	lcInit(t, dir)
	lcInit(t, fresh)
	var files lcFiles
	for i := 0; i < 5; i++ {
		files = lcFiles{"stable.bin": lcData(1, 700<<10), "changing.bin": lcData(uint64(10+i), 900<<10),
			"small.txt": bytes.Repeat([]byte(strconv.Itoa(i)), 5000)}
		lcWrite(t, src, files)
		if _, err := lcBackup(ctx, dir, src, "h", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	r := lcOpen(t, dir)
	defer r.Close()
	if _, err := lcForget(ctx, r, 1); err != nil {
		t.Fatal(err)
	}
	res, err := lcPrune(ctx, r, repo.DefaultUnusedLimit)
	if err != nil {
		t.Fatal(err)
	}
	if res.PacksDeleted == 0 {
		t.Errorf("prune deleted nothing: %+v", res)
	}
	if _, err := lcBackup(ctx, fresh, src, "h", time.Now()); err != nil {
		t.Fatal(err)
	}
	got, base := lcDirSize(t, dir), lcDirSize(t, fresh)
	t.Logf("after prune %d bytes, fresh backup %d bytes", got, base)
	if float64(got) > float64(base)*1.10 || float64(got) < float64(base)*0.90 {
		t.Errorf("pruned repository is %d bytes, a fresh backup %d: not within 10%%", got, base)
	}
	lcCheck(t, r)
}

func lcDirSize(t testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && filepath.Base(filepath.Dir(p)) != "locks" {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLockKinds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lcInit(t, dir)
	r := lcOpen(t, dir)
	defer r.Close()
	b, err := r.Lock(ctx, "backup", false)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.LockKind(ctx, "prune")
	if err != nil {
		t.Fatalf("prune must not conflict with a backup: %v", err)
	}
	b2, err := r.Lock(ctx, "backup", false)
	if err != nil {
		t.Fatalf("a backup must start while prune runs: %v", err)
	}
	for _, kind := range []string{"prune", "check", "repair"} {
		if _, err := r.LockKind(ctx, kind); !errors.Is(err, repo.ErrLocked) {
			t.Errorf("%s lock during prune: %v, want ErrLocked", kind, err)
		}
	}
	if _, err := r.Lock(ctx, "key", true); !errors.Is(err, repo.ErrLocked) {
		t.Errorf("key lock during prune: %v, want ErrLocked", err)
	}
	for _, l := range []*repo.Lock{b, p, b2} {
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.LockKind(ctx, "prune"); err != nil {
		t.Fatal(err)
	}
}

func TestParseUnusedLimit(t *testing.T) {
	for in, want := range map[string]uint64{"5%": 50, "0%": 0, "1K": 1024, "2M": 2 << 20, "100": 100, "1.5KiB": 1536} {
		l, err := repo.ParseUnusedLimit(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := l.Max(1000); got != want {
			t.Errorf("%s: Max(1000) = %d, want %d", in, got, want)
		}
	}
	if l, _ := repo.ParseUnusedLimit("unlimited"); l.Max(1) != ^uint64(0) {
		t.Error("unlimited")
	}
	for _, bad := range []string{"", "x", "-1", "101%", "5%%"} {
		if _, err := repo.ParseUnusedLimit(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestPruneBlockedByRunningBackup: a pack marked while a backup lock is live is not
// deleted until the lock is gone, and a snapshot that turns out to need it resurrects it.
func TestPruneBlockedByRunningBackup(t *testing.T) {
	ctx := context.Background()
	dir, src := t.TempDir(), t.TempDir()
	lcInit(t, dir)
	files := lcFiles{"a.bin": lcData(5, 300<<10)}
	lcWrite(t, src, files)
	first, err := lcBackup(ctx, dir, src, "h", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A "running backup": it loaded the index (which lists a.bin's pack live) ...
	r := lcOpen(t, dir)
	defer r.Close()
	bl, err := r.Lock(ctx, "backup", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	// ... then the snapshot is forgotten and pruned meanwhile.
	pr := lcOpen(t, dir)
	defer pr.Close()
	if err := snapshot.Forget(ctx, pr, []blob.ID{first.ID}); err != nil {
		t.Fatal(err)
	}
	res, err := lcPrune(ctx, pr, repo.DefaultUnusedLimit)
	if err != nil {
		t.Fatal(err)
	}
	if res.PacksDeleted != 0 || len(res.Pending) == 0 || res.PacksMarked == 0 {
		t.Fatalf("prune with a running backup: %+v", res)
	}
	// The backup finishes with a snapshot reusing the blobs through its old index.
	sn, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}, Host: "h", Parent: first})
	if err != nil {
		t.Fatal(err)
	}
	if sn.Snapshot.Summary.FilesUnchanged != 1 {
		t.Fatalf("the backup should reuse the parent's blobs: %+v", sn.Snapshot.Summary)
	}
	if err := bl.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	res, err = lcPrune(ctx, pr, repo.DefaultUnusedLimit)
	if err != nil {
		t.Fatal(err)
	}
	if res.PacksResurrected == 0 || len(res.Pending) != 0 {
		t.Fatalf("second prune should resurrect the needed pack: %+v", res)
	}
	lcCheck(t, pr)
	lcRestoreAll(t, pr, map[blob.ID]lcFiles{sn.Snapshot.ID: files}, map[blob.ID]string{sn.Snapshot.ID: src})
}

// ---- SIGKILL test ------------------------------------------------------------------

const lcHelperEnv = "CAIRN_LIFECYCLE_PRUNE_HELPER"

// TestPruneHelperProcess is the child of TestPruneKilled: a real process that prunes
// the repository in $CAIRN_LIFECYCLE_PRUNE_HELPER (and is killed by the hook).
func TestPruneHelperProcess(t *testing.T) {
	dir := os.Getenv(lcHelperEnv)
	if dir == "" {
		t.Skip("helper process for TestPruneKilled")
	}
	r := lcOpen(t, dir)
	if _, err := lcPrune(context.Background(), r, repo.UnusedLimit{Percent: 0}); err != nil {
		fmt.Fprintln(os.Stderr, "prune:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

func TestPruneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	ctx := context.Background()
	tmpl, src := t.TempDir(), t.TempDir()
	lcInit(t, tmpl)
	want := map[blob.ID]lcFiles{}
	srcOf := map[blob.ID]string{}
	var ids []blob.ID
	for i := 0; i < 6; i++ {
		files := lcFiles{"keep.bin": lcData(7, 200<<10), "v.bin": lcData(uint64(100+i), 250<<10),
			"tiny.txt": []byte(strconv.Itoa(i))}
		lcWrite(t, src, files)
		sn, err := lcBackup(ctx, tmpl, src, "h", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		want[sn.ID], srcOf[sn.ID] = files, src
		ids = append(ids, sn.ID)
	}
	// An interrupted backup: packs uploaded, index never written (orphans).
	r := lcOpen(t, tmpl)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	before, _ := r.List(ctx, backend.IndexFile)
	w := r.NewWriter(ctx, repo.WriterOptions{})
	data := lcData(999, 200<<10)
	if _, err := w.SaveBlob(blob.Data, blob.ID(r.NewBlobMAC().Sum(data)), data); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	after, _ := r.List(ctx, backend.IndexFile)
	for _, id := range after {
		if !containsID(before, id) {
			os.Remove(filepath.Join(tmpl, "index", id.String()))
		}
	}
	// Forget four of six snapshots: packs become unused or partly used.
	if err := snapshot.Forget(ctx, r, ids[:4]); err != nil {
		t.Fatal(err)
	}
	res, err := r.Prune(ctx, repo.PruneOptions{MaxUnused: repo.UnusedLimit{Percent: 0}, DryRun: true, UsedBlobs: lcUsed(r)})
	if err != nil || res.PacksUnused == 0 || res.PacksRepacked == 0 {
		t.Fatalf("the scenario should delete and repack packs: %+v, %v", res, err)
	}
	r.Close()

	points, finished := 0, false
	for n := 1; n < 200 && !finished; n++ {
		dir := filepath.Join(t.TempDir(), "repo")
		if err := os.CopyFS(dir, os.DirFS(tmpl)); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestPruneHelperProcess$")
		cmd.Env = append(os.Environ(), lcHelperEnv+"="+dir, repo.KillAfterOpsEnv+"="+strconv.Itoa(n))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			finished = true
		case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
			points++
		default:
			t.Fatalf("prune helper (kill after %d): %v\n%s", n, err, out)
		}
		r := lcOpen(t, dir)
		lcCheck(t, r)
		lcRestoreAll(t, r, want, srcOf)
		// Prune again finishes the job.
		res, err := lcPrune(ctx, r, repo.UnusedLimit{Percent: 0})
		if err != nil {
			t.Fatalf("prune after kill at %d: %v", n, err)
		}
		c := lcCheck(t, r)
		if c.OrphanPacks != 0 || c.ObsoletePacks != 0 || len(res.Pending) != 0 {
			t.Errorf("kill at %d: after a second prune %d orphans, %d obsolete packs remain", n, c.OrphanPacks, c.ObsoletePacks)
		}
		if n := lcRestoreAll(t, r, want, srcOf); n != 2 {
			t.Errorf("%d snapshots, want 2", n)
		}
		r.Close()
		if t.Failed() {
			t.Fatalf("failed after kill at mutation %d", n)
		}
	}
	if !finished {
		t.Fatal("prune never finished")
	}
	t.Logf("killed prune at %d distinct points", points)
	if points < 20 {
		t.Errorf("only %d kill points; want at least 20", points)
	}
}

func containsID(list []blob.ID, id blob.ID) bool {
	for _, x := range list {
		if x == id {
			return true
		}
	}
	return false
}
