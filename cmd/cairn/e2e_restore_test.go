package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

// TestRestoreDatabaseAndInPlace covers --db-to, --db-into, --in-place, --delete and
// --all on the sample app.
func TestRestoreDatabaseAndInPlace(t *testing.T) {
	e := newE2E(t)
	app := e.sampleApp()
	media := filepath.Join(app, "media")
	dbPath := filepath.Join(app, "data", "db.sqlite3")
	id := e.backup("2026-11-21T10:00:00Z")
	wantMedia := treeState(t, media)
	wantDB := readFile(t, dbPath)
	tmp := t.TempDir()

	// --db-to: the SQLite file itself; an existing file needs --force.
	dbTo := filepath.Join(tmp, "out.sqlite3")
	out := e.ok("restore", "latest", "--db-to", dbTo)
	if !strings.Contains(out, "restored database dump of snapshot "+id[:8]+" (sqlite sqlite-file, 36.0 KiB) to "+dbTo) {
		t.Errorf("--db-to output: %s", out)
	}
	if !bytes.Equal(readFile(t, dbTo), wantDB) {
		t.Error("--db-to wrote other bytes than the backed-up database")
	}
	_, errs := e.fail(1, "restore", "latest", "--db-to", dbTo)
	if !strings.Contains(errs, dbTo+" exists; use --force") {
		t.Errorf("--db-to over an existing file: %s", errs)
	}
	e.ok("restore", "latest", "--db-to", dbTo, "--force")
	if out := e.ok("restore", "latest", "--db-to", "-"); out != string(wantDB) {
		t.Errorf("--db-to - wrote %d bytes, want the %d of the database", len(out), len(wantDB))
	}

	// --db-into: an empty target is filled, a non-empty one refused unless --force.
	into := filepath.Join(tmp, "into.sqlite3")
	e.ok("restore", "latest", "--db-into", into)
	if !bytes.Equal(readFile(t, into), wantDB) {
		t.Error("--db-into a new file: other bytes")
	}
	sqlExec(t, into, "DELETE FROM documents_tag")
	_, errs = e.fail(1, "restore", "latest", "--db-into", into)
	if !strings.Contains(errs, "target database is not empty") || !strings.Contains(errs, "use --force") {
		t.Errorf("--db-into a non-empty database: %s", errs)
	}
	e.ok("restore", "latest", "--db-into", into, "--force")
	if !bytes.Equal(readFile(t, into), wantDB) {
		t.Error("--db-into --force: other bytes")
	}

	// --in-place needs --yes without a terminal; then it restores over the originals,
	// keeping extra files unless --delete.
	changed := filepath.Join(media, "documents", "originals", "2026", "0000002.pdf")
	extra := filepath.Join(media, "documents", "extra.txt")
	writeFile(t, changed, "overwritten")
	writeFile(t, extra, "created after the backup")
	_, errs = e.fail(1, "restore", "latest", "--in-place")
	if !strings.Contains(errs, "rerun with --yes") || string(readFile(t, changed)) != "overwritten" {
		t.Errorf("--in-place without --yes: %s", errs)
	}
	_, errs = e.fail(1, "restore", "latest", "--in-place", "--target", tmp)
	if !strings.Contains(errs, "exclude each other") {
		t.Errorf("--in-place with --target: %s", errs)
	}
	e.ok("restore", "latest", "--in-place", "--yes")
	if _, err := os.Stat(extra); err != nil {
		t.Errorf("--in-place without --delete removed an extra file: %v", err)
	}
	if err := os.Remove(extra); err != nil {
		t.Fatal(err)
	}
	// Removing extra.txt changed its directory's time: compare everything else.
	got := treeState(t, media)
	want := maps.Clone(wantMedia)
	delete(got, "documents")
	delete(want, "documents")
	sameState(t, "media after --in-place", got, want)

	// --all: files and the configured database from the same snapshot.
	writeFile(t, changed, "overwritten again")
	writeFile(t, extra, "created after the backup")
	sqlExec(t, dbPath, "INSERT INTO django_migrations (app, name, applied) VALUES ('documents', '1017_x', '2026-11-22')")
	out = e.ok("restore", "--at", "2026-11-21T10:00:00Z", "--all", "--delete", "--yes", "--json")
	if !strings.Contains(out, `"deleted": 1`) || !strings.Contains(out, `"to": "sqlite `+dbPath+`"`) {
		t.Errorf("--all --json: %s", out)
	}
	sameState(t, "media after --all --delete", treeState(t, media), wantMedia)
	if !bytes.Equal(readFile(t, dbPath), wantDB) {
		t.Error("--all: database not restored")
	}

	// Flag combinations that make no sense are refused before anything is opened.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"latest"}, "nothing to restore"},
		{[]string{"latest", "--db-to", "x", "--db-into", "y"}, "only one of"},
		{[]string{"latest", "--all", "--db-to", "x"}, "only one of"},
		{[]string{"latest", "--db-to", "x", "--delete"}, "--delete and --include need"},
	} {
		if _, errs := e.fail(1, append([]string{"restore"}, c.args...)...); !strings.Contains(errs, c.want) {
			t.Errorf("restore %v: %s", c.args, errs)
		}
	}
	// A snapshot without a database.
	e.cfg = ""
	e.backup("2026-11-22T10:00:00Z", media)
	if _, errs := e.fail(1, "restore", "latest", "--db-to", filepath.Join(tmp, "none")); !strings.Contains(errs, "has no database dump") {
		t.Errorf("--db-to of a snapshot without a database: %s", errs)
	}
}

// TestRestoreFullDisk restores onto a tiny tmpfs: the error names the file.
func TestRestoreFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("full-disk test needs root to mount a small tmpfs")
	}
	target := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", target).CombinedOutput(); err != nil {
		t.Skipf("full-disk test cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", target).Run() })
	e := newE2E(t)
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "small.txt"), "fits")
	big := make([]byte, 2<<20)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	if err := os.WriteFile(filepath.Join(src, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	e.backup("2026-11-21T10:00:00Z", src)
	_, errs := e.fail(1, "restore", "latest", "--target", target)
	if !strings.Contains(errs, filepath.Join(src, "big.bin")) || !strings.Contains(errs, "disk full") ||
		!strings.Contains(errs, "restore into "+target) {
		t.Errorf("restore onto a full disk: %s", errs)
	}
	if _, err := os.Stat(filepath.Join(target, src, "big.bin")); err == nil {
		t.Error("a partial big.bin was left behind")
	}
}

// corruptPackOf damages the pack holding the first content blob of the file at path
// in snapshot id (flipping bytes in its encrypted payload) and returns the pack ID.
func corruptPackOf(t *testing.T, e *e2e, id, path string) blob.ID {
	t.Helper()
	r := e.openRepo()
	ctx := context.Background()
	sid, err := blob.ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := snapshot.Load(ctx, r, sid)
	if err != nil {
		t.Fatal(err)
	}
	n, err := snapshot.FindNode(ctx, r, sn.Tree, path)
	if err != nil || n == nil || len(n.Content) == 0 {
		t.Fatalf("find %s: %v, %v", path, n, err)
	}
	loc, ok := r.LookupBlob(n.Content[0])
	if !ok {
		t.Fatal("blob not indexed")
	}
	file := filepath.Join(e.repo, filepath.FromSlash(backend.Handle{Type: backend.PackFile, Name: loc.Pack.String()}.Path()))
	data := readFile(t, file)
	for i := len(data) / 2; i < len(data)/2+16 && i < len(data); i++ {
		data[i] ^= 0xff
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return loc.Pack
}

// TestRestoreDamagedBlobs: a damaged pack fails only the files that need it; they are
// named, the rest is restored (and dumped), and the exit status is 1.
func TestRestoreDamagedBlobs(t *testing.T) {
	e := newE2E(t)
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "a.txt"), "first backup, intact")
	writeFile(t, filepath.Join(src, "c.txt"), "also intact")
	e.backup("2026-11-21T10:00:00Z", src)
	writeFile(t, filepath.Join(src, "b.txt"), "second backup, in a pack of its own")
	id := e.backup("2026-11-22T10:00:00Z", src)
	corruptPackOf(t, e, id, filepath.Join(src, "b.txt"))

	out := filepath.Join(t.TempDir(), "out")
	_, errs := e.fail(1, "restore", "latest", "--target", out)
	if !strings.Contains(errs, fmt.Sprintf("%q", filepath.Join(src, "b.txt"))) || !strings.Contains(errs, "restore incomplete: 1 file could not be restored") {
		t.Errorf("restore with a damaged pack: %s", errs)
	}
	for _, name := range []string{"a.txt", "c.txt"} {
		if got, want := readFile(t, filepath.Join(out, src, name)), readFile(t, filepath.Join(src, name)); !bytes.Equal(got, want) {
			t.Errorf("%s not restored", name)
		}
	}
	if _, err := os.Stat(filepath.Join(out, src, "b.txt")); err == nil {
		t.Error("the damaged file was left behind")
	}

	archive := filepath.Join(t.TempDir(), "x.tar")
	_, errs = e.fail(1, "dump", "latest", "--output", archive)
	if !strings.Contains(errs, fmt.Sprintf("%q", filepath.Join(src, "b.txt"))) || !strings.Contains(errs, "zero-filled") {
		t.Errorf("dump with a damaged pack: %s", errs)
	}
	if !bytes.Contains(readFile(t, archive), []byte("first backup, intact")) {
		t.Error("the dump lacks the intact files")
	}
}

// TestRestoreCraftedNames: a snapshot whose tree holds "..", "a/b" and other invalid
// names (as a malicious writer with the key could make) restores its valid entries
// only, never writes outside the target, and says which entries it skipped.
func TestRestoreCraftedNames(t *testing.T) {
	e := newE2E(t)
	r := e.openRepo()
	ctx := context.Background()
	w := r.NewWriter(ctx, repo.WriterOptions{})
	mac := crypto.NewBlobMAC(r.Secrets().IDKey)
	save := func(typ blob.Type, data []byte) blob.ID {
		id := blob.ID(mac.Sum(data))
		if _, err := w.SaveBlob(typ, id, data); err != nil {
			t.Fatal(err)
		}
		return id
	}
	content := save(blob.Data, []byte("payload"))
	file := func(name string) string {
		return fmt.Sprintf(`{"name":%q,"type":"file","mode":420,"mtime":"2026-01-01T00:00:00Z","uid":0,"gid":0,"size":7,"content":["%s"]}`, name, content)
	}
	// Unsorted and invalid on purpose: DecodeTree rejects it, restore goes node by node.
	tree := save(blob.Tree, []byte(`{"nodes":[`+strings.Join([]string{
		file(".."), file("../escaped.txt"), file("ok.txt"), file("sub/../../escaped2.txt"), file("."), file(""),
	}, ",")+"]}\n"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	sn := &snapshot.Snapshot{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Host: "evil", Paths: []string{"/"}, Tree: tree}
	id, err := snapshot.Save(ctx, r, sn)
	if err != nil {
		t.Fatal(err)
	}

	base := t.TempDir()
	out := filepath.Join(base, "a", "out")
	_, errs := e.fail(1, "restore", id.String()[:12], "--target", out)
	for _, want := range []string{`invalid name ".."`, `invalid name "../escaped.txt"`, `invalid name "sub/../../escaped2.txt"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("restore of crafted names: stderr lacks %q:\n%s", want, errs)
		}
	}
	if got := string(readFile(t, filepath.Join(out, "ok.txt"))); got != "payload" {
		t.Errorf("ok.txt: %q", got)
	}
	err = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), "escaped") {
			t.Errorf("restore wrote %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// dump refuses the invalid tree rather than put ".." into an archive.
	archive := filepath.Join(base, "x.tar")
	if _, errs := e.fail(1, "dump", id.String()[:12], "--output", archive); !strings.Contains(errs, "invalid") {
		t.Errorf("dump of crafted names: %s", errs)
	}
	if _, err := os.Stat(archive); err == nil {
		t.Error("dump left an archive of an invalid tree")
	}
}

// TestRestoreInPlaceKill9 kills an in-place restore of many files with SIGKILL
// midway: every file must then be either its old or its new content, never a mix or
// a truncation. Running the restore again with --delete finishes the job and removes
// the temporaries the killed run left.
func TestRestoreInPlaceKill9(t *testing.T) {
	bin, err := exec.LookPath("cairn")
	if err != nil {
		t.Skipf("no cairn command in PATH (set up by testscript.Main): %v", err)
	}
	e := newE2E(t)
	src := filepath.Join(t.TempDir(), "media")
	const files = 1500
	content := func(i int, gen string) []byte {
		// Sizes differ between generations so that a truncation is never mistaken
		// for a valid state; several blocks so that half writes are visible.
		n := 6000 + i%7*1000
		if gen == "old" {
			n += 3333
		}
		return bytes.Repeat([]byte(fmt.Sprintf("%s-%05d|", gen, i)), n/10)
	}
	name := func(i int) string { return filepath.Join(src, fmt.Sprintf("d%02d", i%20), fmt.Sprintf("f%05d", i)) }
	for i := range files {
		p := name(i)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content(i, "new"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.backup("2026-11-21T10:00:00Z", src)
	for i := range files {
		if err := os.WriteFile(name(i), content(i, "old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(bin, "restore", "latest", "--in-place", "--yes")
	cmd.Env = append(os.Environ(), "CAIRN_REPOSITORY="+e.repo, "CAIRN_PASSWORD_FILE="+e.pw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Restore writes files in walk order (d00/…, d01/…): kill it once the first file
	// of d06 is new, about a third of the way.
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	killed := false
	timeout := time.After(30 * time.Second)
watch:
	for {
		select {
		case <-exited:
			break watch
		case <-timeout:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			t.Fatalf("file %s did not become new within 30 s; stderr: %s", name(6), stderr.String())
		default:
		}
		if data, err := os.ReadFile(name(6)); err == nil && bytes.HasPrefix(data, []byte("new")) {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			<-exited
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	if !killed {
		t.Logf("the restore finished before it could be killed (stderr: %s); checking its result", stderr.String())
	}
	var old, fresh, temps int
	err = filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".cairn-restore-") {
			temps++
			return nil
		}
		var i int
		if _, err := fmt.Sscanf(d.Name(), "f%05d", &i); err != nil {
			t.Errorf("unexpected file %s", p)
			return nil
		}
		switch data := readFile(t, p); {
		case bytes.Equal(data, content(i, "old")):
			old++
		case bytes.Equal(data, content(i, "new")):
			fresh++
		default:
			t.Errorf("%s is neither old nor new (%d bytes)", p, len(data))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if old+fresh != files {
		t.Errorf("%d old + %d new files, want %d", old, fresh, files)
	}
	t.Logf("after SIGKILL: %d old, %d new, %d temporaries", old, fresh, temps)
	if killed && (old == 0 || fresh == 0) {
		t.Logf("the kill did not land midway (%d old, %d new); the old-or-new check still held", old, fresh)
	}

	e.ok("restore", "latest", "--in-place", "--delete", "--yes")
	for i := range files {
		if !bytes.Equal(readFile(t, name(i)), content(i, "new")) {
			t.Fatalf("%s not new after the second restore", name(i))
		}
	}
	err = filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".cairn-restore-") {
			t.Errorf("temporary %s left after restore --delete", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
