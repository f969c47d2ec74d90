package repo_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

// lcTemplate makes a repository with two keys and two snapshots of two files each;
// b.txt is the same in both, so both snapshots use the first backup's pack.
func lcTemplate(t *testing.T) (dir string, want map[blob.ID]lcFiles, srcOf map[blob.ID]string) {
	t.Helper()
	ctx := context.Background()
	dir, src := t.TempDir(), t.TempDir()
	lcInit(t, dir)
	want, srcOf = map[blob.ID]lcFiles{}, map[blob.ID]string{}
	for i := 0; i < 2; i++ {
		files := lcFiles{"a.bin": lcData(uint64(50+i), 150<<10), "b.txt": []byte(strings.Repeat("cairn ", 1000))}
		lcWrite(t, src, files)
		sn, err := lcBackup(ctx, dir, src, "h", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		want[sn.ID], srcOf[sn.ID] = files, src
	}
	r := lcOpen(t, dir)
	defer r.Close()
	other, err := crypto.NewPassphrase("another", crypto.MinScryptWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddKey(ctx, other, false); err != nil {
		t.Fatal(err)
	}
	return dir, want, srcOf
}

// lcIssues runs the full check (as the CLI does) and returns the files named in
// errors, and the snapshot issues.
func lcIssues(t *testing.T, dir string) (map[string]bool, []snapshot.SnapshotIssue) {
	t.Helper()
	ctx := context.Background()
	r := lcOpen(t, dir)
	defer r.Close()
	res, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	_, sissues, listErr := snapshot.CheckSnapshots(ctx, r, res, res.BlobStatus)
	files := map[string]bool{}
	for _, i := range res.Issues {
		if i.Severity == repo.SeverityError {
			files[i.File] = true
		}
	}
	var ce *repo.CorruptError
	if errors.As(listErr, &ce) {
		files[ce.Handle.String()] = true
	}
	for _, i := range sissues {
		if i.Severity == repo.SeverityError {
			files[i.File] = true
		}
	}
	return files, sissues
}

func lcFlip(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func lcFilesOf(t *testing.T, dir string, ft backend.FileType) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, ft.String()), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCheckNamesFlippedByte(t *testing.T) {
	tmpl, _, _ := lcTemplate(t)
	r := lcOpen(t, tmpl)
	current := r.KeyID()
	r.Close()
	files, _ := lcIssues(t, tmpl)
	if len(files) != 0 {
		t.Fatalf("clean repository has errors: %v", files)
	}
	for _, ft := range []backend.FileType{backend.PackFile, backend.IndexFile, backend.SnapshotFile, backend.KeyFile} {
		for _, p := range lcFilesOf(t, tmpl, ft) {
			name := filepath.Base(p)
			if ft == backend.KeyFile && name == current {
				continue // the only key that opens the repository; Open names it
			}
			dir := filepath.Join(t.TempDir(), "repo")
			if err := os.CopyFS(dir, os.DirFS(tmpl)); err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(tmpl, p)
			lcFlip(t, filepath.Join(dir, rel))
			files, _ := lcIssues(t, dir)
			h := backend.Handle{Type: ft, Name: name}.String()
			if !files[h] {
				t.Errorf("flipped a byte in %s: check names %v", h, files)
			}
		}
	}
}

func TestCheckMissingPackAndRepairSnapshots(t *testing.T) {
	ctx := context.Background()
	dir, want, srcOf := lcTemplate(t)
	r := lcOpen(t, dir)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.List(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	// Delete the pack holding b.txt (used by both snapshots).
	var victim blob.ID
	err = snapshot.Walk(ctx, r, snaps[1].Tree, func(p string, n *snapshot.Node) error {
		if n.Name == "b.txt" {
			loc, _ := r.LookupBlob(n.Content[0])
			victim = loc.Pack
		}
		return nil
	})
	if err != nil || victim.IsNull() {
		t.Fatalf("find pack: %v", err)
	}
	// Which files each snapshot loses.
	lost := map[blob.ID]map[string]bool{}
	for _, sn := range snaps {
		lost[sn.ID] = map[string]bool{}
		err := snapshot.Walk(ctx, r, sn.Tree, func(p string, n *snapshot.Node) error {
			for _, c := range n.Content {
				if loc, _ := r.LookupBlob(c); loc.Pack == victim {
					lost[sn.ID][n.Name] = true
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !lost[snaps[1].ID]["b.txt"] || lost[snaps[1].ID]["a.bin"] {
		t.Fatalf("unexpected layout: %v", lost)
	}
	r.Close()
	h := backend.Handle{Type: backend.PackFile, Name: victim.String()}
	if err := os.Remove(filepath.Join(dir, h.Path())); err != nil {
		t.Fatal(err)
	}
	files, sissues := lcIssues(t, dir)
	if !files[h.String()] {
		t.Fatalf("missing pack not named: %v", files)
	}
	found := false
	for _, i := range sissues {
		if i.ID == snaps[1].ID.String() && strings.HasSuffix(i.Path, "/b.txt") && i.File == h.String() {
			found = true
		}
	}
	if !found {
		t.Fatalf("the snapshot losing b.txt is not named: %+v", sissues)
	}

	// Repair: the newest snapshot loses a.bin, keeps b.txt.
	r = lcOpen(t, dir)
	defer r.Close()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := r.Check(ctx, repo.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(id blob.ID) bool { s, _, _ := res.BlobStatus(id); return s != repo.SeverityError }
	results, err := snapshot.RepairSnapshots(ctx, r, res, snaps, ok, false)
	if err != nil {
		t.Fatal(err)
	}
	var repaired []*snapshot.Snapshot
	for _, rr := range results {
		if rr.Repaired == nil {
			continue
		}
		if len(rr.Dropped) != len(lost[rr.Original.ID]) {
			t.Errorf("dropped %v, want %v", rr.Dropped, lost[rr.Original.ID])
		}
		if *rr.Repaired.Original != rr.Original.ID || !rr.Repaired.HasTag(snapshot.RepairTag) {
			t.Errorf("repaired record: %+v", rr.Repaired)
		}
		repaired = append(repaired, rr.Repaired)
		if err := snapshot.Forget(ctx, r, []blob.ID{rr.Original.ID}); err != nil {
			t.Fatal(err)
		}
		files := lcFiles{}
		for name, data := range want[rr.Original.ID] {
			if !lost[rr.Original.ID][name] {
				files[name] = data
			}
		}
		want[rr.Repaired.ID] = files
		srcOf[rr.Repaired.ID] = srcOf[rr.Original.ID]
	}
	if len(repaired) == 0 {
		t.Fatal("nothing repaired")
	}
	if _, err := lcPrune(ctx, r, repo.DefaultUnusedLimit); err != nil {
		t.Fatal(err)
	}
	lcCheck(t, r)
	lcRestoreAll(t, r, want, srcOf)
}

func TestCheckDamagedIndexRepairIndex(t *testing.T) {
	ctx := context.Background()
	dir, want, srcOf := lcTemplate(t)
	idx := lcFilesOf(t, dir, backend.IndexFile)
	lcFlip(t, idx[0])
	files, sissues := lcIssues(t, dir)
	h := backend.Handle{Type: backend.IndexFile, Name: filepath.Base(idx[0])}.String()
	if !files[h] {
		t.Fatalf("damaged index not named: %v", files)
	}
	explained := false
	for _, i := range sissues {
		if strings.Contains(i.Message, "repair index") {
			explained = true
		}
	}
	if !explained {
		t.Errorf("check does not point to repair index: %+v", sissues)
	}
	r := lcOpen(t, dir)
	defer r.Close()
	l, err := r.LockKind(ctx, "repair")
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.RepairIndex(ctx, repo.RepairIndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock(ctx)
	if res.Packs == 0 || len(res.RemovedIndex) != len(idx) || len(res.UnreadablePack) != 0 {
		t.Errorf("repair index: %+v", res)
	}
	if len(lcFilesOf(t, dir, backend.IndexFile)) != 1 {
		t.Error("old index files left")
	}
	lcCheck(t, r)
	lcRestoreAll(t, r, want, srcOf)
}

func TestParseSubset(t *testing.T) {
	var ids []blob.ID
	for i := 0; i < 50; i++ {
		ids = append(ids, blob.ID(crypto.FileHash([]byte{byte(i)})))
	}
	seen := map[blob.ID]int{}
	for n := 1; n <= 3; n++ {
		s, err := repo.ParseSubset(strings.Join([]string{string(rune('0' + n)), "3"}, "/"))
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if s.Selects(id) {
				seen[id]++
			}
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("n/3 subsets do not partition the packs: %d", seen[id])
		}
	}
	if s, err := repo.ParseSubset("10%"); err != nil || s.Percent != 10 {
		t.Errorf("10%%: %v %v", s, err)
	}
	for _, bad := range []string{"0/3", "4/3", "0%", "x", "1/0"} {
		if _, err := repo.ParseSubset(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
