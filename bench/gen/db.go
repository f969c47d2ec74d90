package main

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// djangoTime formats a time the way Django stores datetimes in SQLite.
func djangoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000000")
}

const docsSchema = `
CREATE TABLE "django_migrations" (
	"id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
	"app" varchar(255) NOT NULL,
	"name" varchar(255) NOT NULL,
	"applied" datetime NOT NULL);
CREATE TABLE "documents_document" (
	"id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
	"title" varchar(128) NOT NULL,
	"content" text NOT NULL,
	"created" datetime NOT NULL,
	"modified" datetime NOT NULL,
	"added" datetime NOT NULL,
	"checksum" varchar(32) NOT NULL UNIQUE,
	"mime_type" varchar(256) NOT NULL,
	"original_filename" varchar(1024) NULL,
	"archive_serial_number" integer unsigned NULL UNIQUE,
	"page_count" integer unsigned NULL);
CREATE INDEX "documents_document_created_bedd0818" ON "documents_document" ("created");
CREATE INDEX "documents_document_modified_2eae15bc" ON "documents_document" ("modified");
CREATE INDEX "documents_document_title_6b08e02a" ON "documents_document" ("title");
`

// migrationApps lists (app, number of migrations) roughly as in Paperless-ngx.
var migrationApps = []struct {
	app string
	n   int
}{
	{"contenttypes", 2}, {"auth", 12}, {"admin", 3}, {"documents", 120},
	{"paperless", 3}, {"paperless_mail", 29}, {"sessions", 1},
	{"django_celery_results", 11}, {"guardian", 2}, {"account", 8}, {"socialaccount", 6},
}

func openDB(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// insertDoc inserts the database row of d.
func insertDoc(stmt *sql.Stmt, d doc, added time.Time) error {
	title, content := contentFor(d.src, d.id)
	sum := seedFor(d.src, "checksum", d.id)
	_, err := stmt.Exec(d.id, title, content, djangoTime(d.created), djangoTime(added), djangoTime(added),
		fmt.Sprintf("%x", sum[:16]), "application/pdf",
		fmt.Sprintf("scan_%s_%06d.pdf", d.created.Format("20060102"), d.id), d.id, int(d.origSize/docsPageBytes)+1)
	return err
}

const insertDocSQL = `INSERT INTO documents_document
	(id, title, content, created, modified, added, checksum, mime_type, original_filename, archive_serial_number, page_count)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// buildDB creates the SQLite database with one row per document and returns
// its size.
func buildDB(path string, docs []doc) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	db, err := openDB(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if _, err := db.Exec(docsSchema); err != nil {
		return 0, fmt.Errorf("schema: %w", err)
	}
	tx, err := db.Begin()
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	applied := time.Date(docsFirstYear, 1, 1, 7, 0, 0, 0, time.UTC)
	for _, a := range migrationApps {
		for i := 1; i <= a.n; i++ {
			if _, err := tx.Exec(`INSERT INTO django_migrations (app, name, applied) VALUES (?, ?, ?)`,
				a.app, fmt.Sprintf("%04d_migration_%s_%d", i, a.app, i), djangoTime(applied)); err != nil {
				return 0, err
			}
			applied = applied.Add(37 * time.Hour)
		}
	}
	stmt, err := tx.Prepare(insertDocSQL)
	if err != nil {
		return 0, err
	}
	defer stmt.Close()
	var last time.Time
	for _, d := range docs {
		added := d.created.Add(2 * time.Hour)
		if err := insertDoc(stmt, d, added); err != nil {
			return 0, fmt.Errorf("insert %d: %w", d.id, err)
		}
		if added.After(last) {
			last = added
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	if err := db.Close(); err != nil {
		return 0, err
	}
	if err := os.Chtimes(path, last, last); err != nil {
		return 0, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// mutateDB applies one day of changes in place: inserts rows for newDocs,
// edits the content of the rows in edits (a paragraph inserted or replaced,
// sometimes a new title) and deletes the rows in deleted.
func mutateDB(path, src string, newDocs []doc, edits, deleted []int, day time.Time, r *rand.Rand) (int, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, err
	}
	db, err := openDB(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows := 0

	stmt, err := tx.Prepare(insertDocSQL)
	if err != nil {
		return 0, err
	}
	defer stmt.Close()
	for _, d := range newDocs {
		if err := insertDoc(stmt, d, d.created.Add(5*time.Minute)); err != nil {
			return 0, fmt.Errorf("insert %d: %w", d.id, err)
		}
		rows++
	}

	tg := newTextGen(newRand(src, "db-edits"))
	for i, id := range edits {
		var title, content string
		if err := tx.QueryRow(`SELECT title, content FROM documents_document WHERE id = ?`, id).Scan(&title, &content); err != nil {
			return 0, fmt.Errorf("select %d: %w", id, err)
		}
		para := string(tg.appendText(nil, 200+r.IntN(1800)))
		pos := r.IntN(len(content) + 1)
		if r.IntN(2) == 0 {
			// Insert a corrected paragraph.
			content = content[:pos] + para + " " + content[pos:]
		} else {
			// Replace a stretch of text of about the same length.
			end := min(len(content), pos+len(para))
			content = content[:pos] + para + content[end:]
		}
		if r.IntN(3) == 0 {
			title = strings.TrimSpace(tg.title())
		}
		modified := day.Add(time.Duration(3600+i*97) * time.Second)
		if _, err := tx.Exec(`UPDATE documents_document SET title = ?, content = ?, modified = ? WHERE id = ?`,
			title, content, djangoTime(modified), id); err != nil {
			return 0, fmt.Errorf("update %d: %w", id, err)
		}
		rows++
	}

	for _, id := range deleted {
		res, err := tx.Exec(`DELETE FROM documents_document WHERE id = ?`, id)
		if err != nil {
			return 0, fmt.Errorf("delete %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			rows++
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return rows, db.Close()
}
