package dbdump

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver (pure Go)
)

// sqliteEngine dumps a SQLite database file.
//
// Dump streams the database image page by page from the sqlite_dbpage virtual table
// inside one read transaction: SQLite serves every page as of the transaction's snapshot
// (from the WAL or the main file), so the image is consistent even while other processes
// keep writing, memory stays at one page, and nothing is written to disk.
type sqliteEngine struct {
	path string
	cfg  Config
}

// sqliteDSN builds a modernc.org/sqlite DSN for path (URI form, so that any character
// in the path is safe).
func sqliteDSN(path string, readOnly bool) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("sqlite path %s: %w", path, err)
	}
	q := "_pragma=busy_timeout(30000)"
	if readOnly {
		q = "mode=ro&" + q
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q}
	return u.String(), nil
}

func (e *sqliteEngine) open(readOnly bool) (*sql.DB, error) {
	st, err := os.Stat(e.path)
	if err != nil {
		return nil, fmt.Errorf("sqlite database: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("sqlite database %s is not a regular file", e.path)
	}
	dsn, err := sqliteDSN(e.path, readOnly)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite database %s: %w", e.path, err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// sqliteTx adapts a transaction to the querier interface.
type sqliteTx struct{ tx *sql.Tx }

func (s sqliteTx) tableExists(ctx context.Context, name string) (bool, error) {
	var n int
	err := s.tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", name).Scan(&n)
	return n > 0, err
}

func (s sqliteTx) rows(ctx context.Context, query string) ([][]string, error) {
	return sqlRows(ctx, s.tx, query)
}

type sqlQueryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// sqlRows runs query and returns every row as strings (NULL becomes "").
func sqlRows(ctx context.Context, q sqlQueryer, query string) ([][]string, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = v.String
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// snapshot opens a read transaction, makes SQLite take its read snapshot, and reports
// version, table count and migrations as of that snapshot.
func (e *sqliteEngine) snapshot(ctx context.Context, db *sql.DB) (*sql.Tx, Info, error) {
	info := Info{Engine: EngineSQLite, Format: FormatSQLiteFile, Database: e.path}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, info, fmt.Errorf("begin sqlite read transaction: %w", err)
	}
	// The first read takes the snapshot (shared lock, or WAL read mark).
	if err := tx.QueryRowContext(ctx,
		"SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").Scan(&info.Tables); err != nil {
		tx.Rollback()
		return nil, info, fmt.Errorf("read sqlite schema of %s: %w", e.path, err)
	}
	if err := tx.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&info.ServerVersion); err != nil {
		tx.Rollback()
		return nil, info, fmt.Errorf("read sqlite version: %w", err)
	}
	m, err := readMigrations(ctx, sqliteTx{tx}, e.cfg, e.path)
	if err != nil {
		tx.Rollback()
		return nil, info, err
	}
	info.Migrations = m
	return tx, info, nil
}

func (e *sqliteEngine) Probe(ctx context.Context) (Info, error) {
	db, err := e.open(true)
	if err != nil {
		return Info{}, err
	}
	defer db.Close()
	tx, info, err := e.snapshot(ctx, db)
	if err != nil {
		return Info{}, err
	}
	tx.Rollback()
	return info, nil
}

func (e *sqliteEngine) Dump(ctx context.Context, w io.Writer) (Info, error) {
	db, err := e.open(true)
	if err != nil {
		return Info{}, err
	}
	defer db.Close()
	tx, info, err := e.snapshot(ctx, db)
	if err != nil {
		return Info{}, err
	}
	defer tx.Rollback()

	var pageSize, pageCount int64
	if err := tx.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return Info{}, fmt.Errorf("read sqlite page size: %w", err)
	}
	if err := tx.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pageCount); err != nil {
		return Info{}, fmt.Errorf("read sqlite page count: %w", err)
	}
	rows, err := tx.QueryContext(ctx, "SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
	if err != nil {
		return Info{}, fmt.Errorf("read sqlite pages of %s: %w", e.path, err)
	}
	defer rows.Close()
	var (
		want int64 = 1
		page sql.RawBytes
		pgno int64
	)
	for rows.Next() {
		if err := rows.Scan(&pgno, &page); err != nil {
			return Info{}, fmt.Errorf("read sqlite page %d of %s: %w", want, e.path, err)
		}
		if pgno != want || int64(len(page)) != pageSize {
			return Info{}, fmt.Errorf("read sqlite pages of %s: got page %d of %d bytes, want page %d of %d bytes", e.path, pgno, len(page), want, pageSize)
		}
		if _, err := w.Write(page); err != nil {
			return Info{}, fmt.Errorf("write sqlite dump: %w", err)
		}
		want++
	}
	if err := rows.Err(); err != nil {
		return Info{}, fmt.Errorf("read sqlite pages of %s: %w", e.path, err)
	}
	if want-1 != pageCount {
		return Info{}, fmt.Errorf("read sqlite pages of %s: got %d pages, want %d", e.path, want-1, pageCount)
	}
	return info, nil
}

func (e *sqliteEngine) Restore(ctx context.Context, r io.Reader, info Info, opts RestoreOptions) error {
	if err := checkFormat(info, FormatSQLiteFile); err != nil {
		return err
	}
	st, err := os.Stat(e.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st = nil
	case err != nil:
		return fmt.Errorf("restore sqlite database: %w", err)
	case !st.Mode().IsRegular():
		return fmt.Errorf("restore sqlite database: %s is not a regular file", e.path)
	case st.Size() > 0 && !opts.Force:
		return fmt.Errorf("%w: %s exists (%d bytes)", ErrNotEmpty, e.path, st.Size())
	}

	dir, base := filepath.Split(e.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".cairn-restore-*")
	if err != nil {
		return fmt.Errorf("restore sqlite database: %w", err)
	}
	tmpName := tmp.Name()
	keep := false
	defer func() {
		if !keep {
			os.Remove(tmpName)
			removeSQLiteSidecars(tmpName)
		}
	}()
	n, err := io.Copy(tmp, contextReader{ctx, r})
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: sqlite dump stream is empty", ErrBadStream)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write restored sqlite database %s: %w", tmpName, err)
	}
	if err := sqliteIntegrityCheck(ctx, tmpName); err != nil {
		return err
	}
	mode := fs.FileMode(0o644)
	if st != nil {
		mode = st.Mode().Perm()
	}
	if err := os.Chmod(tmpName, mode); err != nil {
		return fmt.Errorf("restore sqlite database: %w", err)
	}
	// A stale WAL or hot journal of the replaced database would be applied to the new
	// file: remove them before the new file appears under the name.
	if err := removeSQLiteSidecars(e.path); err != nil {
		return fmt.Errorf("restore sqlite database: %w", err)
	}
	if err := os.Rename(tmpName, e.path); err != nil {
		return fmt.Errorf("restore sqlite database: %w", err)
	}
	keep = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func removeSQLiteSidecars(path string) error {
	for _, s := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(path + s); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// sqliteIntegrityCheck opens path and requires PRAGMA integrity_check to say "ok".
func sqliteIntegrityCheck(ctx context.Context, path string) error {
	dsn, err := sqliteDSN(path, false)
	if err != nil {
		return err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("open restored sqlite database: %w", err)
	}
	defer db.Close()
	rows, err := sqlRows(ctx, db, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check of restored sqlite database failed: %w", err)
	}
	var msgs []string
	for _, r := range rows {
		msgs = append(msgs, strings.Join(r, " "))
	}
	if len(msgs) != 1 || msgs[0] != "ok" {
		return fmt.Errorf("integrity check of restored sqlite database failed: %s", excerpt(strings.Join(msgs, "; "), 500))
	}
	return nil
}

// contextReader stops reading once ctx is done.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
