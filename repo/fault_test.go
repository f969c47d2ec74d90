package repo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/faulty"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/backend/retry"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
	cairncopy "github.com/cairn-backup/cairn/snapshot/copy"
	"github.com/cairn-backup/cairn/snapshot/restore"
)

// Fault injection (repo/backend/faulty) and hostile-storage tests: storage that fails,
// writes short, fills up, is slow, returns corrupted bytes, or is manipulated by its
// provider. Operations fail with errors that name the operation and the file, or retry
// where that is right, and no restore ever yields wrong bytes without an error.
// docs/SECURITY.md and docs/RELIABILITY.md cite these tests by name.

type ftEnv struct {
	t    *testing.T
	dir  string // repository directory
	src  string // source directory
	fb   *faulty.Backend
	want map[string][]byte // source content of the first snapshot: rel path -> bytes
	snap *snapshot.Snapshot
}

func ftCred(t testing.TB) crypto.Credential {
	t.Helper()
	c, err := crypto.NewPassphrase("faults", crypto.MinScryptWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ftData(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func ftWrite(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ftSetup makes a repository (1 MiB packs) with one snapshot of a 3 MiB source.
func ftSetup(t *testing.T) *ftEnv {
	t.Helper()
	e := &ftEnv{t: t, dir: t.TempDir(), src: t.TempDir()}
	be, err := local.Create(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(context.Background(), be, ftCred(t), repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	e.want = map[string][]byte{"a.bin": ftData(1, 1<<20+5000), "b.bin": ftData(2, 1<<20), "d/c.txt": bytes.Repeat([]byte("text "), 3000), "d/e": nil}
	ftWrite(t, e.src, e.want)
	e.snap = e.backup(nil)
	if e.snap == nil {
		t.Fatal("first backup failed")
	}
	return e
}

// open opens the repository through a fresh fault injector (e.fb) and loads the index.
func (e *ftEnv) open() *repo.Repository {
	e.t.Helper()
	be, err := local.Open(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.fb = faulty.New(be)
	r, err := repo.Open(context.Background(), e.fb, ftCred(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := r.LoadIndex(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// backup backs up e.src with the rules installed by arm and returns the snapshot, or
// nil and the error.
func (e *ftEnv) backup(arm func(fb *faulty.Backend)) *snapshot.Snapshot {
	sn, _ := e.backupErr(arm)
	return sn
}

func (e *ftEnv) backupErr(arm func(fb *faulty.Backend)) (*snapshot.Snapshot, error) {
	e.t.Helper()
	r := e.open()
	defer r.Close()
	if arm != nil {
		arm(e.fb)
	}
	res, err := backup.Run(context.Background(), r, backup.Options{Paths: []string{e.src}, Host: "faults"})
	if err != nil {
		return nil, err
	}
	return res.Snapshot, nil
}

func (e *ftEnv) snapshots() []*snapshot.Snapshot {
	e.t.Helper()
	r := e.open()
	defer r.Close()
	snaps, err := snapshot.List(context.Background(), r)
	if err != nil {
		e.t.Fatal(err)
	}
	return snaps
}

// restoreEqual restores sn and fails unless it equals want exactly.
func (e *ftEnv) restoreEqual(sn *snapshot.Snapshot, want map[string][]byte) {
	e.t.Helper()
	r := e.open()
	defer r.Close()
	target := e.t.TempDir()
	if _, err := restore.Run(context.Background(), r, sn.Tree, restore.Options{Target: target}); err != nil {
		e.t.Fatalf("restore %s: %v", sn.ID.Short(), err)
	}
	got := ftRead(e.t, filepath.Join(target, e.src))
	if d := ftDiff(want, got); d != "" {
		e.t.Fatalf("restore %s: %s", sn.ID.Short(), d)
	}
}

func ftRead(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func ftDiff(want, got map[string][]byte) string {
	var d []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			d = append(d, "missing "+p)
		} else if !bytes.Equal(g, w) {
			d = append(d, p+" differs")
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			d = append(d, "unexpected "+p)
		}
	}
	sort.Strings(d)
	return strings.Join(d, "; ")
}

// check runs the repository check with --read-data and fails on errors.
func (e *ftEnv) check() *repo.CheckResult {
	e.t.Helper()
	r := e.open()
	defer r.Close()
	res, err := r.Check(context.Background(), repo.CheckOptions{ReadData: true})
	if err != nil {
		e.t.Fatal(err)
	}
	if res.Errors() > 0 {
		e.t.Fatalf("check: %v", res.Issues)
	}
	return res
}

// TestBackupStorageFaults: every kind of failing save aborts the backup with an error
// naming the operation and file; no snapshot is written; the earlier snapshot
// restores intact; the repository checks clean; the next backup works and restores
// byte-identical.
func TestBackupStorageFaults(t *testing.T) {
	cases := []struct {
		name string
		rule faulty.Rule
		want []string // substrings of the error
		is   error
	}{
		{"pack save fails", faulty.Rule{Op: faulty.OpSave, Type: backend.PackFile, Nth: 2, Kind: faulty.Fail}, []string{"save pack", "save data/"}, faulty.ErrInjected},
		{"pack save fails after storing (lost reply)", faulty.Rule{Op: faulty.OpSave, Type: backend.PackFile, Kind: faulty.Fail, After: true}, []string{"save data/"}, faulty.ErrInjected},
		{"short write of a pack", faulty.Rule{Op: faulty.OpSave, Type: backend.PackFile, Kind: faulty.ShortWrite}, []string{"save data/", "short write"}, faulty.ErrInjected},
		{"disk full on a pack", faulty.Rule{Op: faulty.OpSave, Type: backend.PackFile, Nth: 2, Kind: faulty.NoSpace, Bytes: 4096}, []string{"save data/", "no space"}, backend.ErrNoSpace},
		{"index save fails", faulty.Rule{Op: faulty.OpSave, Type: backend.IndexFile, Kind: faulty.Fail}, []string{"save index/"}, faulty.ErrInjected},
		{"disk full on the index", faulty.Rule{Op: faulty.OpSave, Type: backend.IndexFile, Kind: faulty.NoSpace}, []string{"save index/"}, backend.ErrNoSpace},
		{"snapshot save fails", faulty.Rule{Op: faulty.OpSave, Type: backend.SnapshotFile, Kind: faulty.ShortWrite}, []string{"save snapshot", "save snapshots/"}, faulty.ErrInjected},
	}
	e := ftSetup(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			// New content each time, so that every backup must write packs.
			files := map[string][]byte{fmt.Sprintf("new%d.bin", i): ftData(uint64(100+i), 2<<20+1000)}
			ftWrite(t, e.src, files)
			before := len(e.snapshots())
			_, err := e.backupErr(func(fb *faulty.Backend) { fb.Add(c.rule) })
			if err == nil {
				t.Fatal("backup succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !errors.Is(err, c.is) {
				t.Errorf("error %v does not wrap %v", err, c.is)
			}
			if n := len(e.snapshots()); n != before {
				t.Fatalf("%d snapshots after the failed backup, want %d", n, before)
			}
			e.restoreEqual(e.snap, e.want)
			e.check()
			sn := e.backup(nil)
			if sn == nil {
				t.Fatal("next backup failed")
			}
			want := ftRead(t, e.src)
			e.restoreEqual(sn, want)
		})
	}
}

// TestBackupSlowStorage: latency on every operation slows a backup down but changes
// nothing.
func TestBackupSlowStorage(t *testing.T) {
	e := ftSetup(t)
	ftWrite(t, e.src, map[string][]byte{"slow.bin": ftData(9, 1<<20)})
	var slow *faulty.Injection
	sn := e.backup(func(fb *faulty.Backend) {
		slow = fb.Add(faulty.Rule{Kind: faulty.Latency, Delay: 20 * time.Millisecond})
	})
	if sn == nil {
		t.Fatal("backup on slow storage failed")
	}
	if slow.Fired() < 3 {
		t.Errorf("latency applied to %d operations", slow.Fired())
	}
	e.restoreEqual(sn, ftRead(t, e.src))
}

// TestBackupRetriesTransientFaults: behind the retry decorator (as every remote
// backend is), transient save failures are retried and the backup succeeds; a full
// disk is not retried.
func TestBackupRetriesTransientFaults(t *testing.T) {
	e := ftSetup(t)
	ftWrite(t, e.src, map[string][]byte{"r.bin": ftData(10, 2<<20)})
	e.open().Close()
	be, err := local.Open(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	fb := faulty.New(be)
	var retries atomic.Int32 // uploads run concurrently
	rb := retry.New(fb, retry.Options{Attempts: 3, Base: time.Millisecond, OnRetry: func(int, error, time.Duration) { retries.Add(1) }})
	rr, err := repo.Open(context.Background(), rb, ftCred(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	if err := rr.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	fb.Add(faulty.Rule{Op: faulty.OpSave, Type: backend.PackFile, Kind: faulty.Fail, Times: 2})
	fb.Add(faulty.Rule{Op: faulty.OpSave, Type: backend.IndexFile, Kind: faulty.ShortWrite, Times: 1})
	res, err := backup.Run(context.Background(), rr, backup.Options{Paths: []string{e.src}, Host: "faults"})
	if err != nil {
		t.Fatalf("backup with transient faults behind retry: %v", err)
	}
	if n := retries.Load(); n < 3 {
		t.Errorf("%d retries, want at least 3", n)
	}
	e.restoreEqual(res.Snapshot, ftRead(t, e.src))

	ftWrite(t, e.src, map[string][]byte{"r2.bin": ftData(11, 2<<20)})
	fb.Reset()
	fb.Add(faulty.Rule{Op: faulty.OpSave, Type: backend.PackFile, Kind: faulty.NoSpace})
	retries.Store(0)
	if _, err := backup.Run(context.Background(), rr, backup.Options{Paths: []string{e.src}, Host: "faults"}); !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("full disk behind retry: %v", err)
	}
	if n := retries.Load(); n != 0 {
		t.Errorf("a full disk was retried %d times", n)
	}
}

// TestRestoreCorruptedReads: storage that flips a byte of what it returns is caught
// by age authentication or the blob ID check; the error names the pack (and the
// files), and no damaged file is written.
func TestRestoreCorruptedReads(t *testing.T) {
	e := ftSetup(t)
	for _, at := range []int64{0, 100, 70000, 1 << 20} {
		r := e.open()
		e.fb.Add(faulty.Rule{Op: faulty.OpLoad, Type: backend.PackFile, Kind: faulty.Corrupt, Bytes: at})
		target := t.TempDir()
		res, err := restore.Run(context.Background(), r, e.snap.Tree, restore.Options{Target: target})
		if err == nil {
			t.Fatalf("corrupt byte at %d: restore succeeded", at)
		}
		if !strings.Contains(err.Error(), "data/") && !strings.Contains(fmt.Sprint(res.Errors), "data/") {
			t.Errorf("corrupt byte at %d: errors do not name the pack: %v %v", at, err, res.Errors)
		}
		got := ftRead(t, filepath.Join(target, e.src))
		for p, b := range got {
			if !bytes.Equal(b, e.want[p]) {
				t.Errorf("corrupt byte at %d: %s restored with wrong content", at, p)
			}
		}
		// LoadBlob returns a CorruptError naming the pack, never data.
		var ce *repo.CorruptError
		if _, err := r.LoadBlob(context.Background(), e.snap.Tree, nil); !errors.As(err, &ce) || !strings.HasPrefix(ce.Handle.String(), "data/") {
			t.Errorf("corrupt byte at %d: LoadBlob: %v", at, err)
		}
		r.Close()
	}
}

// TestCheckStorageFaults: check names the pack it could not read, and fails with an
// error naming the operation when listing fails.
func TestCheckStorageFaults(t *testing.T) {
	e := ftSetup(t)
	r := e.open()
	defer r.Close()
	e.fb.Add(faulty.Rule{Op: faulty.OpLoad, Type: backend.PackFile, Kind: faulty.Corrupt, Bytes: 5000, Times: 1})
	res, err := r.Check(context.Background(), repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors() == 0 || !strings.Contains(fmt.Sprint(res.Issues), "data/") {
		t.Fatalf("check of a corrupted read: %v", res.Issues)
	}
	r2 := e.open()
	defer r2.Close()
	e.fb.Add(faulty.Rule{Op: faulty.OpList, Kind: faulty.Fail})
	if _, err := r2.Check(context.Background(), repo.CheckOptions{}); err == nil || !strings.Contains(err.Error(), "list") {
		t.Fatalf("check with failing list: %v", err)
	}
}

// TestCopyStorageFaults: a copy whose destination fails to save, or whose source
// returns corrupted bytes, fails naming the operation and file and writes no snapshot;
// the next copy completes and restores byte-identical.
func TestCopyStorageFaults(t *testing.T) {
	e := ftSetup(t)
	dstDir := t.TempDir()
	be, err := local.Create(dstDir)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := repo.Init(context.Background(), be, ftCred(t), repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	dst.Close()
	openDst := func() (*repo.Repository, *faulty.Backend) {
		be, err := local.Open(dstDir)
		if err != nil {
			t.Fatal(err)
		}
		fb := faulty.New(be)
		r, err := repo.Open(context.Background(), fb, ftCred(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.LoadIndex(context.Background()); err != nil {
			t.Fatal(err)
		}
		return r, fb
	}
	cases := []struct {
		name  string
		src   *faulty.Rule
		dst   *faulty.Rule
		wants []string
	}{
		{"destination pack save fails", nil, &faulty.Rule{Op: faulty.OpSave, Type: backend.PackFile, Kind: faulty.Fail}, []string{"save data/"}},
		{"destination disk full on the snapshot", nil, &faulty.Rule{Op: faulty.OpSave, Type: backend.SnapshotFile, Kind: faulty.NoSpace}, []string{"save snapshots/", "no space"}},
		{"source returns corrupted bytes", &faulty.Rule{Op: faulty.OpLoad, Type: backend.PackFile, Kind: faulty.Corrupt, Bytes: 3000}, nil, []string{"data/"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			src := e.open()
			defer src.Close()
			if c.src != nil {
				e.fb.Add(*c.src)
			}
			d, dfb := openDst()
			if c.dst != nil {
				dfb.Add(*c.dst)
			}
			_, err := cairncopy.Run(context.Background(), src, d, cairncopy.Options{})
			d.Close()
			if err == nil {
				t.Fatal("copy succeeded")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			d, _ = openDst()
			if snaps, err := snapshot.List(context.Background(), d); err != nil || len(snaps) != 0 {
				t.Errorf("%d snapshots in the destination after a failed copy (%v)", len(snaps), err)
			}
			d.Close()
		})
	}
	e.t = t
	src := e.open()
	defer src.Close()
	d, _ := openDst()
	defer d.Close()
	res, err := cairncopy.Run(context.Background(), src, d, cairncopy.Options{})
	if err != nil || len(res.Copied) != 1 {
		t.Fatalf("copy after the faults: %v", err)
	}
	target := t.TempDir()
	if _, err := restore.Run(context.Background(), d, res.Copied[0].Dest.Tree, restore.Options{Target: target}); err != nil {
		t.Fatal(err)
	}
	if diff := ftDiff(e.want, ftRead(t, filepath.Join(target, e.src))); diff != "" {
		t.Fatalf("copied snapshot: %s", diff)
	}
}

// ---- Hostile storage -------------------------------------------------------------

// ftRestoreNoWrongBytes restores every snapshot the repository lists and fails if any
// restored file differs from want without an error naming it.
func (e *ftEnv) restoreNoWrongBytes(want map[string][]byte) (errs int) {
	e.t.Helper()
	r, err := func() (*repo.Repository, error) {
		be, err := local.Open(e.dir)
		if err != nil {
			return nil, err
		}
		r, err := repo.Open(context.Background(), be, ftCred(e.t))
		if err != nil {
			return nil, err
		}
		return r, r.LoadIndex(context.Background())
	}()
	if err != nil {
		return 1 // refusing to open is a (loud) error
	}
	defer r.Close()
	snaps, lerr := snapshot.List(context.Background(), r)
	if lerr != nil {
		errs++
	}
	for _, sn := range snaps {
		target := e.t.TempDir()
		res, err := restore.Run(context.Background(), r, sn.Tree, restore.Options{Target: target})
		failed := map[string]bool{}
		for _, fe := range res.Errors {
			failed[fe.Error()] = true
		}
		if err != nil {
			errs++
		}
		got := ftRead(e.t, filepath.Join(target, e.src))
		for p, b := range got {
			if w, ok := want[p]; ok && !bytes.Equal(b, w) {
				e.t.Errorf("snapshot %s: %s restored with wrong bytes (error: %v)", sn.ID.Short(), p, err)
			}
		}
	}
	return errs
}

func ftPacks(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	if err := filepath.WalkDir(filepath.Join(dir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
			out = append(out, p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestHostileStorage: a storage provider deletes, truncates, swaps or replays files.
// Restores fail loudly or restore correct bytes; never wrong bytes without an error.
func TestHostileStorage(t *testing.T) {
	cases := map[string]func(t *testing.T, e *ftEnv){
		"delete a pack": func(t *testing.T, e *ftEnv) {
			os.Remove(ftPacks(t, e.dir)[0])
		},
		"truncate a pack": func(t *testing.T, e *ftEnv) {
			p := ftPacks(t, e.dir)[0]
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		},
		"swap two packs' contents": func(t *testing.T, e *ftEnv) {
			ps := ftPacks(t, e.dir)
			a, _ := os.ReadFile(ps[0])
			b, _ := os.ReadFile(ps[1])
			os.WriteFile(ps[0], b, 0o600)
			os.WriteFile(ps[1], a, 0o600)
		},
		"replace a pack by another of the same size": func(t *testing.T, e *ftEnv) {
			// The provider cannot encrypt to the repository, but it can re-serve the
			// bytes of one pack under the name of another.
			ps := ftPacks(t, e.dir)
			a, _ := os.ReadFile(ps[0])
			b, _ := os.ReadFile(ps[1])
			n := min(len(a), len(b))
			os.WriteFile(ps[0], b[:n], 0o600)
		},
		"swap two snapshot records": func(t *testing.T, e *ftEnv) {
			ss, _ := filepath.Glob(filepath.Join(e.dir, "snapshots", "*"))
			a, _ := os.ReadFile(ss[0])
			b, _ := os.ReadFile(ss[1])
			os.WriteFile(ss[0], b, 0o600)
			os.WriteFile(ss[1], a, 0o600)
		},
		"delete every index file": func(t *testing.T, e *ftEnv) {
			is, _ := filepath.Glob(filepath.Join(e.dir, "index", "*"))
			for _, p := range is {
				os.Remove(p)
			}
		},
		"truncate an index file": func(t *testing.T, e *ftEnv) {
			is, _ := filepath.Glob(filepath.Join(e.dir, "index", "*"))
			os.Truncate(is[0], 50)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			e := ftSetup(t)
			ftWrite(t, e.src, map[string][]byte{"second.bin": ftData(77, 1<<20)})
			if e.backup(nil) == nil {
				t.Fatal("second backup failed")
			}
			want := ftRead(t, e.src)
			damage(t, e)
			if errs := e.restoreNoWrongBytes(want); errs == 0 {
				t.Errorf("no error after %s", name)
			}
		})
	}
}

// TestHostileReplayAndRollback: a provider that puts back an old index file, or rolls
// the whole repository back to an earlier file set, can hide newer snapshots (a
// rollback is indistinguishable from never having run them) but cannot make any
// snapshot restore wrong bytes.
func TestHostileReplayAndRollback(t *testing.T) {
	e := ftSetup(t)
	old := t.TempDir()
	if err := os.CopyFS(filepath.Join(old, "r"), os.DirFS(e.dir)); err != nil {
		t.Fatal(err)
	}
	first := ftRead(t, e.src)
	ftWrite(t, e.src, map[string][]byte{"a.bin": ftData(55, 1<<20+5000)}) // changed content
	if e.backup(nil) == nil {
		t.Fatal("second backup failed")
	}
	second := ftRead(t, e.src)

	// Replay: the index files of the old set replace the current ones. The second
	// snapshot then names blobs the index does not know: restoring it fails loudly.
	is, _ := filepath.Glob(filepath.Join(e.dir, "index", "*"))
	for _, p := range is {
		os.Remove(p)
	}
	olds, _ := filepath.Glob(filepath.Join(old, "r", "index", "*"))
	for _, p := range olds {
		b, _ := os.ReadFile(p)
		os.WriteFile(filepath.Join(e.dir, "index", filepath.Base(p)), b, 0o600)
	}
	r := e.open()
	snaps, err := snapshot.List(context.Background(), r)
	if err != nil || len(snaps) != 2 {
		t.Fatalf("%d snapshots, %v", len(snaps), err)
	}
	for _, sn := range snaps {
		target := t.TempDir()
		_, err := restore.Run(context.Background(), r, sn.Tree, restore.Options{Target: target})
		got := ftRead(t, filepath.Join(target, e.src))
		want := first
		if sn.ID != e.snap.ID {
			want = second
			if err == nil {
				t.Error("the second snapshot restored without its index")
			}
		} else if err != nil {
			t.Errorf("the first snapshot does not restore after the replay: %v", err)
		}
		for p, b := range got {
			if !bytes.Equal(b, want[p]) {
				t.Errorf("snapshot %s: %s restored with wrong bytes", sn.ID.Short(), p)
			}
		}
	}
	r.Close()

	// Rollback of the whole file set: the second snapshot is gone, the first is
	// complete. Nothing in the repository can tell (docs/SECURITY.md).
	os.RemoveAll(e.dir)
	if err := os.Rename(filepath.Join(old, "r"), e.dir); err != nil {
		t.Fatal(err)
	}
	if snaps := e.snapshots(); len(snaps) != 1 || snaps[0].ID != e.snap.ID {
		t.Fatalf("after rollback: %d snapshots", len(snaps))
	}
	e.restoreEqual(e.snap, first)
}
