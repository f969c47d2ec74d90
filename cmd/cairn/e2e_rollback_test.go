package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// appDay is the state of the sample app at a backup: its media tree and database
// bytes, and the snapshot taken then.
type appDay struct {
	id    string
	media map[string]string
	db    []byte
}

// Indexes of threeDays' states.
const (
	dayOne = iota
	dayTwoPreUpgrade
	dayTwo
	dayThree
)

// threeDays runs the sample app through three days with a backup each: day 1 as
// shipped (2.13.5); day 2 upgraded to 2.14.0 (migration documents 1017, a new
// document, a changed thumbnail, a removed note, a mode change); day 3 upgraded to
// 2.15.0 (documents 1018 and a new paperless_mail migration, more files). The
// snapshot before day 2's upgrade carries the pre-upgrade tag.
func threeDays(t *testing.T, e *e2e, app string) [4]appDay {
	media := filepath.Join(app, "media")
	dbPath := filepath.Join(app, "data", "db.sqlite3")
	var days [4]appDay
	record := func(i int, at string, tags ...string) {
		args := []string{}
		for _, tag := range tags {
			args = append(args, "--tag", tag)
		}
		days[i] = appDay{id: e.backup(at, args...), media: treeState(t, media), db: readFile(t, dbPath)}
	}
	docs := filepath.Join(media, "documents")
	mtime := func(p string, at time.Time) {
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}

	record(dayOne, "2026-11-21T22:00:00Z", "nightly")

	// Day 2: the pre-upgrade snapshot, then the upgrade to 2.14.0.
	writeFile(t, filepath.Join(docs, "originals", "2026", "0000003.pdf"), "%PDF-1.7 day two invoice")
	writeFile(t, filepath.Join(docs, "thumbnails", "0000001.webp"), strings.Repeat("W", 3100))
	if err := os.Remove(filepath.Join(docs, "originals", "2026", "with space", "note one.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(docs, "originals", "2026", "0000001.pdf"), 0o600); err != nil {
		t.Fatal(err)
	}
	sqlExec(t, dbPath,
		"INSERT INTO documents_document (correspondent_id, title, content, checksum, created) VALUES (NULL, 'Invoice 3', 'day two', 'c3', '2026-11-22')")
	record(dayTwoPreUpgrade, "2026-11-22T08:00:00Z", "pre-upgrade")
	sqlExec(t, dbPath,
		"INSERT INTO django_migrations (app, name, applied) VALUES ('documents', '1017_add_owner', '2026-11-22 09:00:00')",
		"ALTER TABLE documents_document ADD COLUMN owner_id INTEGER")
	writeFile(t, filepath.Join(app, "VERSION"), "2.14.0\n")
	writeFile(t, filepath.Join(docs, "archive", "0000003.pdf"), "archived day two")
	record(dayTwo, "2026-11-22T22:00:00Z", "nightly")

	// Day 3: upgrade to 2.15.0.
	sqlExec(t, dbPath,
		"INSERT INTO django_migrations (app, name, applied) VALUES ('documents', '1018_storage_path', '2026-11-23 09:00:00')",
		"INSERT INTO django_migrations (app, name, applied) VALUES ('paperless_mail', '0009_mailrule_assign_tags', '2026-11-23 09:00:01')",
		"UPDATE documents_document SET title = 'Invoice 3 (renamed)' WHERE checksum = 'c3'")
	writeFile(t, filepath.Join(app, "VERSION"), "2.15.0\n")
	writeFile(t, filepath.Join(docs, "originals", "2026", "0000004.pdf"), "%PDF-1.7 day three")
	writeFile(t, filepath.Join(docs, "originals", "2026", "0000003.pdf"), "%PDF-1.7 day two invoice, re-OCRed on day three")
	mtime(filepath.Join(docs, "originals", "2026", "0000002.pdf"), time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC))
	record(dayThree, "2026-11-23T22:00:00Z", "nightly")
	return days
}

// TestRollbackThreeDays is the done-when test of point-in-time rollback: three days
// of a sample app, then rollback to day one restores files and database byte for byte
// and says which version to install.
func TestRollbackThreeDays(t *testing.T) {
	e := newE2E(t)
	app := e.sampleApp()
	days := threeDays(t, e, app)
	media := filepath.Join(app, "media")
	dbPath := filepath.Join(app, "data", "db.sqlite3")

	// The snapshots record each day's version and migrations.
	var snaps []snapshotJSON
	if err := json.Unmarshal([]byte(e.ok("snapshots", "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 4 || snaps[0].App.Version != "2.13.5" || snaps[3].App.Version != "2.15.0" ||
		snaps[3].App.Migrations["documents"] != "1018_storage_path" {
		t.Fatalf("snapshots: %+v", snaps)
	}

	// Without a terminal and without --yes nothing happens.
	_, errs := e.fail(1, "rollback", "--at", "2026-11-21T23:00:00Z")
	if !strings.Contains(errs, "rerun with --yes") {
		t.Fatalf("rollback without --yes: %s", errs)
	}
	sameState(t, "media after a refused rollback", treeState(t, media), days[dayThree].media)

	// A dry run prints the plan.
	out := e.ok("rollback", "--at", "2026-11-21T23:00:00Z", "--dry-run")
	for _, want := range []string{
		"to snapshot " + days[dayOne].id[:8],
		"version:    2.15.0 installed -> 2.13.5 in the snapshot",
		"documents 1018_storage_path -> 1016_auto_20210317_1351",
		"paperless_mail 0009_mailrule_assign_tags -> 0008_auto_20210516_0940",
		"database:   sqlite " + dbPath + " replaced",
		"files:      2 changed, 1 restored, 3 deleted, 1 with metadata only",
		"restored     " + filepath.Join(media, "documents/originals/2026/with space/note one.txt"),
		"deleted      " + filepath.Join(media, "documents/archive/0000003.pdf"),
		"changed      " + filepath.Join(media, "documents/thumbnails/0000001.webp") + " (3.0 KiB -> 2.9 KiB)",
		"dry run: nothing was changed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run plan lacks %q:\n%s", want, out)
		}
	}
	sameState(t, "media after a dry run", treeState(t, media), days[dayThree].media)

	out = e.ok("rollback", "--at", "2026-11-21T23:00:00Z", "--yes")
	if !strings.HasSuffix(out, "install sample-paperless 2.13.5 before starting the app\n") {
		t.Errorf("rollback output does not end with the version to install:\n%s", out)
	}
	sameState(t, "media after rollback to day one", treeState(t, media), days[dayOne].media)
	if !bytes.Equal(readFile(t, dbPath), days[dayOne].db) {
		t.Error("database after rollback to day one is not byte-identical to day one's")
	}

	// The admin installs 2.13.5 again (the test writes VERSION). Rolling forward to
	// day three's snapshot would put migrations on the database that the installed
	// app does not know: refused, and nothing changes.
	writeFile(t, filepath.Join(app, "VERSION"), "2.13.5\n")
	_, errs = e.fail(1, "rollback", "latest", "--yes")
	for _, want := range []string{
		"the snapshot's migration documents 1018_storage_path is newer than the installed app's (1016_auto_20210317_1351)",
		"the snapshot's migration paperless_mail 0009_mailrule_assign_tags is newer",
		"rollback refused, nothing was changed",
		"--force",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("rollback to newer migrations: stderr lacks %q:\n%s", want, errs)
		}
	}
	sameState(t, "media after a refused rollback", treeState(t, media), days[dayOne].media)
	if !bytes.Equal(readFile(t, dbPath), days[dayOne].db) {
		t.Error("a refused rollback changed the database")
	}

	// --before-upgrade: the newest pre-upgrade snapshot, same migrations and version.
	out = e.ok("rollback", "--before-upgrade", "--yes")
	if !strings.Contains(out, "to snapshot "+days[dayTwoPreUpgrade].id[:8]) ||
		!strings.HasSuffix(out, "sample-paperless 2.13.5 is installed, as in the snapshot: you can start the app\n") {
		t.Errorf("rollback --before-upgrade:\n%s", out)
	}
	sameState(t, "media after rollback to the pre-upgrade snapshot", treeState(t, media), days[dayTwoPreUpgrade].media)
	if !bytes.Equal(readFile(t, dbPath), days[dayTwoPreUpgrade].db) {
		t.Error("database after rollback to the pre-upgrade snapshot differs")
	}

	// --force rolls forward anyway, and says to install 2.15.0.
	out = e.ok("rollback", days[dayThree].id[:10], "--yes", "--force", "--json")
	var plan rollbackPlan
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("rollback --json: %v\n%s", err, out)
	}
	if !plan.Done || plan.Install != "sample-paperless 2.15.0" || plan.SnapshotVersion != "2.15.0" || plan.InstalledVersion != "2.13.5" ||
		len(plan.Blockers) != 2 || len(plan.Migrations) != 2 || !plan.Migrations[0].Newer {
		t.Errorf("rollback --json plan: %+v", plan)
	}
	sameState(t, "media after rollback --force to day three", treeState(t, media), days[dayThree].media)
	if !bytes.Equal(readFile(t, dbPath), days[dayThree].db) {
		t.Error("database after rollback to day three differs")
	}
}

// TestRollbackSQLiteAmongFiles: when app.paths holds the SQLite database itself (as
// Paperless-ngx's data directory does), the file-level copy restored with the files
// must not win over the dump, nor may a stale WAL file come back next to it.
func TestRollbackSQLiteAmongFiles(t *testing.T) {
	e := newE2E(t)
	app := e.sampleApp()
	cfg := strings.Replace(string(readFile(t, e.cfg)), `paths = ["media"]`, `paths = ["media", "data"]`, 1)
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(app, "data", "db.sqlite3")
	// A leftover WAL file is backed up with the directory (SQLite ignores it: the
	// database is in rollback-journal mode).
	writeFile(t, dbPath+"-wal", "stale write-ahead log")
	e.backup("2026-11-21T22:00:00Z")
	want := readFile(t, dbPath)
	sqlExec(t, dbPath, "INSERT INTO django_migrations (app, name, applied) VALUES ('documents', '1017_x', '2026-11-22')")
	e.backup("2026-11-22T22:00:00Z")

	out := e.ok("rollback", "--at", "2026-11-21T23:00:00Z", "--yes")
	if !strings.Contains(out, "database restored") {
		t.Errorf("rollback: %s", out)
	}
	if !bytes.Equal(readFile(t, dbPath), want) {
		t.Error("database differs from the snapshot's dump")
	}
	if _, err := os.Stat(dbPath + "-wal"); err == nil {
		t.Error("the stale WAL file was restored next to the restored database")
	}
	// --all orders the same way.
	writeFile(t, dbPath+"-wal", "stale write-ahead log")
	e.ok("restore", "--at", "2026-11-21T23:00:00Z", "--all", "--delete", "--yes")
	if _, err := os.Stat(dbPath + "-wal"); err == nil {
		t.Error("restore --all left the stale WAL file next to the restored database")
	}
	if !bytes.Equal(readFile(t, dbPath), want) {
		t.Error("restore --all: database differs from the snapshot's dump")
	}
}
