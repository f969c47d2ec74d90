package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend/local"
	_ "modernc.org/sqlite"
)

// e2e runs the CLI in-process against one repository.
type e2e struct {
	t    *testing.T
	repo string
	pw   string // password file
	cfg  string // cairn.toml, if any
}

const e2ePassphrase = "correct horse battery"

// newE2E creates a repository in a temporary directory. The environment names it, so
// that every command finds it.
func newE2E(t *testing.T) *e2e {
	t.Helper()
	dir := t.TempDir()
	e := &e2e{t: t, repo: filepath.Join(dir, "repo"), pw: filepath.Join(dir, "pw")}
	if err := os.WriteFile(e.pw, []byte(e2ePassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CAIRN_REPOSITORY", e.repo)
	t.Setenv("CAIRN_PASSWORD_FILE", e.pw)
	t.Setenv("CAIRN_PASSWORD_COMMAND", "")
	t.Setenv("CAIRN_IDENTITY_FILE", "")
	t.Setenv("CAIRN_CONFIG", "")
	e.ok("init", "--kdf-work-factor", "10")
	return e
}

// run runs cairn with args (and --config when the test set one).
func (e *e2e) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	if e.cfg != "" {
		args = append([]string{"--config", e.cfg}, args...)
	}
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// ok runs cairn and fails the test unless it exits 0.
func (e *e2e) ok(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("cairn %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fail runs cairn, requires exit status code and returns stdout and stderr.
func (e *e2e) fail(code int, args ...string) (string, string) {
	e.t.Helper()
	out, errs, got := e.run(args...)
	if got != code {
		e.t.Fatalf("cairn %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), got, code, out, errs)
	}
	return out, errs
}

// backup makes a snapshot with a fixed time and returns its ID.
func (e *e2e) backup(at string, args ...string) string {
	e.t.Helper()
	out := e.ok(append([]string{"backup", "--json", "--time", at}, args...)...)
	var res struct {
		SnapshotID string `json:"snapshot_id"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		e.t.Fatalf("backup --json: %v\n%s", err, out)
	}
	return res.SnapshotID
}

// openRepo opens the test repository through the library, for tests that inspect or
// damage it.
func (e *e2e) openRepo() *repo.Repository {
	e.t.Helper()
	be, err := local.Open(e.repo)
	if err != nil {
		e.t.Fatal(err)
	}
	cred, err := crypto.NewPassphrase(e2ePassphrase, 10)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := repo.Open(context.Background(), be, cred)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = r.Close() })
	if err := r.LoadIndex(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// sampleApp copies testdata/sample-app into a temporary directory, points its
// cairn.toml at the test repository and makes it the config of e.
func (e *e2e) sampleApp() string {
	e.t.Helper()
	app := filepath.Join(e.t.TempDir(), "app")
	copyTree(e.t, filepath.Join("..", "..", "testdata", "sample-app"), app)
	cfgPath := filepath.Join(app, "cairn.toml")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		e.t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "repository") {
			l = fmt.Sprintf("repository = %q", e.repo)
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(cfgPath, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "password.txt"), []byte(e2ePassphrase+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.cfg = cfgPath
	return app
}

// copyTree copies files, directories and symlinks with their modes and times.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, rel)
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(to, data, fi.Mode().Perm()); err != nil {
				return err
			}
			return os.Chtimes(to, fi.ModTime(), fi.ModTime())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		fi, err := os.Stat(filepath.Join(src, dirs[i]))
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, dirs[i])
		if err := os.Chmod(to, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(to, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

// treeState describes every entry under root: type, mode, size, mtime and a content
// hash (files) or target (symlinks), for comparing directory trees exactly.
func treeState(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v mtime=%s", fi.Mode(), fi.ModTime().UTC().Format(time.RFC3339Nano))
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			desc += fmt.Sprintf(" size=%d sha=%s", len(data), hex.EncodeToString(sum[:8]))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc = fmt.Sprintf("%v -> %s", fi.Mode(), target) // symlink times are not compared
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameState reports the differences between two treeState results.
func sameState(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	var diffs []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, "missing "+k)
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s:\n    got  %s\n    want %s", k, g, w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, "extra "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s differs:\n  %s", what, strings.Join(diffs, "\n  "))
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sqlExec runs statements on a SQLite database file.
func sqlExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestPITSelection covers snapshot selection on the command line: ID prefixes,
// latest, --at and @TIME at and around snapshot times, filters, and the errors.
func TestPITSelection(t *testing.T) {
	e := newE2E(t)
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "f.txt"), "one")
	id1 := e.backup("2026-11-21T10:00:00Z", "--host", "a", src)
	writeFile(t, filepath.Join(src, "f.txt"), "two")
	id2 := e.backup("2026-11-22T10:00:00Z", "--host", "b", src)
	writeFile(t, filepath.Join(src, "f.txt"), "three")
	id3 := e.backup("2026-11-23T10:00:00Z", "--host", "a", "--tag", "pre-upgrade", src)

	restored := func(args ...string) string {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out")
		e.ok(append([]string{"restore", "--target", out}, args...)...)
		return string(readFile(t, filepath.Join(out, src, "f.txt")))
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"latest"}, "three"},
		{[]string{id1[:6]}, "one"},
		{[]string{strings.ToUpper(id2)}, "two"},
		{[]string{"--at", "2026-11-21T10:00:00Z"}, "one"}, // exactly at the snapshot
		{[]string{"--at", "2026-11-22T09:59:59Z"}, "one"},
		{[]string{"--at", "2026-11-22T10:00:00Z"}, "two"},
		{[]string{"--at", "2026-11-22T11:00:00+01:00"}, "two"}, // the same instant
		{[]string{"--at", "2026-11-22T10:59:59+01:00"}, "one"},
		{[]string{"--at", "2030-01-01T00:00:00Z"}, "three"},
		{[]string{"--at", "2026-11-23T09:00:00Z", "--host", "a"}, "one"},
		{[]string{"latest", "--host", "b"}, "two"},
		{[]string{"latest", "--tag", "pre-upgrade"}, "three"},
		{[]string{"@2026-11-22T12:00:00Z"}, "two"},
	} {
		if got := restored(c.args...); got != c.want {
			t.Errorf("restore %v: got %q, want %q", c.args, got, c.want)
		}
	}
	_, errs := e.fail(1, "restore", "--target", t.TempDir(), "--at", "2026-11-21T09:59:59Z")
	if !strings.Contains(errs, "is before the first snapshot ("+id1[:8]) {
		t.Errorf("a time before the first snapshot: %s", errs)
	}
	_, errs = e.fail(1, "restore", "--target", t.TempDir(), "--at", "2026-11-22T12:00:00Z", "--host", "nope")
	if !strings.Contains(errs, "no snapshot matches the filter") {
		t.Errorf("a filter matching nothing: %s", errs)
	}
	_, errs = e.fail(1, "restore", "--target", t.TempDir(), "--at", "next tuesday")
	if !strings.Contains(errs, `invalid time "next tuesday"`) {
		t.Errorf("a bad time: %s", errs)
	}
	_, errs = e.fail(1, "restore", "--target", t.TempDir(), "latest", "--at", "2026-11-22T12:00:00Z")
	if !strings.Contains(errs, "not both") {
		t.Errorf("a snapshot and --at: %s", errs)
	}
	_, errs = e.fail(1, "restore", "--target", t.TempDir())
	if !strings.Contains(errs, "no snapshot given") {
		t.Errorf("no snapshot: %s", errs)
	}
	_, errs = e.fail(1, "restore", "--target", t.TempDir(), "abc")
	if !strings.Contains(errs, "too short") {
		t.Errorf("short prefix: %s", errs)
	}
	// dump and diff take the same references.
	out := e.ok("diff", "@2026-11-21T12:00:00Z", id3[:8])
	if !strings.Contains(out, "M "+filepath.Join(src, "f.txt")+"  (3 -> 5 bytes") {
		t.Errorf("diff: %s", out)
	}
	dumpFile := filepath.Join(t.TempDir(), "x.tar")
	e.ok("dump", "--at", "2026-11-22T10:00:00Z", "--output", dumpFile)
	if !bytes.Contains(readFile(t, dumpFile), []byte("two")) {
		t.Error("dump --at wrote another snapshot")
	}
}

// TestPITSelectionLocalTime checks "YYYY-MM-DD[ HH:MM]" in the local zone around
// midnight, with the process's zone set to UTC+9 for the test.
func TestPITSelectionLocalTime(t *testing.T) {
	saved := time.Local
	time.Local = time.FixedZone("JST", 9*3600)
	t.Cleanup(func() { time.Local = saved })
	e := newE2E(t)
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "f.txt"), "late on the 21st (local)")
	e.backup("2026-11-21T14:59:00Z", src) // 23:59 local
	writeFile(t, filepath.Join(src, "f.txt"), "just after midnight local")
	e.backup("2026-11-21T15:00:00Z", src) // 00:00 local on the 22nd

	for _, c := range []struct{ at, want string }{
		{"2026-11-21 23:59", "late on the 21st (local)"},
		{"2026-11-22", "just after midnight local"}, // a date is its 00:00, inclusive
		{"2026-11-22 00:00", "just after midnight local"},
		{"2026-11-22T00:00:00+09:00", "just after midnight local"},
		{"2026-11-21T23:59:59+09:00", "late on the 21st (local)"},
	} {
		out := filepath.Join(t.TempDir(), "out")
		e.ok("restore", "--target", out, "--at", c.at)
		if got := string(readFile(t, filepath.Join(out, src, "f.txt"))); got != c.want {
			t.Errorf("--at %q: got %q, want %q", c.at, got, c.want)
		}
	}
	_, errs := e.fail(1, "restore", "--target", t.TempDir(), "--at", "2026-11-21 23:58")
	if !strings.Contains(errs, "2026-11-21T23:58:00+09:00 is before the first snapshot") {
		t.Errorf("before the first snapshot, local: %s", errs)
	}
}
