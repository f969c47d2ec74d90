package dbdump

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	bankAccounts = 200
	bankBalance  = 1000
)

// bankLedgerCheck counts the accounts whose balance disagrees with the transfers logged
// in history: non-zero when a dump mixes tables from different moments.
const bankLedgerCheck = `SELECT COUNT(*) FROM accounts a
	LEFT JOIN (SELECT dst AS id, SUM(amount) AS s FROM history GROUP BY dst) i ON i.id = a.id
	LEFT JOIN (SELECT src AS id, SUM(amount) AS s FROM history GROUP BY src) o ON o.id = a.id
	WHERE a.balance <> 1000 + COALESCE(i.s, 0) - COALESCE(o.s, 0)`

// TestMain lets the test binary double as the writer process of
// TestSQLiteConsistentWithWriterProcess.
func TestMain(m *testing.M) {
	if path := os.Getenv("CAIRN_DBDUMP_SQLITE_WRITER"); path != "" {
		if err := sqliteWriterProcess(path); err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func openSQLite(t testing.TB, path string) *sql.DB {
	t.Helper()
	dsn, err := sqliteDSN(path, false)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newSQLiteFixture(t *testing.T, script string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.sqlite3")
	db := openSQLite(t, path)
	if _, err := db.Exec(script); err != nil {
		t.Fatalf("load fixture: %v", err)
	}
	db.Close()
	return path
}

func sqliteTableDump(t *testing.T, path, table string) string {
	t.Helper()
	rows, err := sqlRows(context.Background(), openSQLite(t, path), "SELECT * FROM "+table+" ORDER BY rowid")
	if err != nil {
		t.Fatalf("read %s from %s: %v", table, path, err)
	}
	return fmt.Sprint(rows)
}

func TestSQLiteRoundTrip(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	src := newSQLiteFixture(t, fixture(t, "django-schema.sql"))
	e, err := New(Config{Engine: "sqlite", Path: src, Migrations: "django"})
	if err != nil {
		t.Fatal(err)
	}
	probed, err := e.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, info := dumpToBuffer(t, ctx, e)
	if info.Engine != EngineSQLite || info.Format != FormatSQLiteFile || info.Tables != 5 || !strings.HasPrefix(info.ServerVersion, "3.") {
		t.Errorf("info = %+v", info)
	}
	wantMigrations(t, info.Migrations, djangoMigrations)
	wantMigrations(t, probed.Migrations, djangoMigrations)
	if !bytes.HasPrefix(data, []byte("SQLite format 3\x00")) {
		t.Fatalf("dump does not start with the SQLite header: %q", data[:16])
	}

	dst := filepath.Join(t.TempDir(), "restored.sqlite3")
	target, err := NewTarget("sqlite", dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"django_migrations", "documents_document", "documents_document_tags"} {
		if got, want := sqliteTableDump(t, dst, table), sqliteTableDump(t, src, table); got != want {
			t.Errorf("%s differs after restore:\n got %s\nwant %s", table, got, want)
		}
	}

	// A second dump of an unchanged database is identical, byte for byte.
	again, _ := dumpToBuffer(t, ctx, e)
	if !bytes.Equal(again, data) {
		t.Error("two dumps of an unchanged database differ")
	}
}

func TestSQLiteMigrations(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	alembic := newSQLiteFixture(t, fixture(t, "alembic-schema.sql"))
	e, _ := New(Config{Engine: "sqlite", Path: alembic, Migrations: "alembic"})
	info, err := e.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantMigrations(t, info.Migrations, alembicMigrations)

	e, _ = New(Config{Engine: "sqlite", Path: alembic, Migrations: "sql",
		MigrationsQuery: "SELECT 'schema', version_num FROM alembic_version UNION ALL SELECT 'parts', count(*) FROM part"})
	info, err = e.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantMigrations(t, info.Migrations, map[string]string{"schema": "4f2e9a1c7b3d", "parts": "3"})

	e, _ = New(Config{Engine: "sqlite", Path: alembic, Migrations: "django"})
	_, err = e.Probe(ctx)
	wantErr(t, err, ErrMigrationTableMissing, "table django_migrations does not exist")
	_, err = e.Dump(ctx, &bytes.Buffer{})
	wantErr(t, err, ErrMigrationTableMissing, "table django_migrations does not exist")

	e, _ = New(Config{Engine: "sqlite", Path: alembic, Migrations: "sql", MigrationsQuery: "SELECT key, value FROM settings"})
	_, err = e.Probe(ctx)
	wantErr(t, err, nil, "run migrations query", "no such table: settings")
}

func TestSQLiteMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.sqlite3")
	e, _ := New(Config{Engine: "sqlite", Path: missing})
	_, err := e.Dump(context.Background(), &bytes.Buffer{})
	wantErr(t, err, os.ErrNotExist, "sqlite database", "nope.sqlite3")
	if _, err := os.Stat(missing); err == nil {
		t.Error("dump created the missing database file")
	}
}

func TestSQLiteRestoreRefusals(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	src := newSQLiteFixture(t, fixture(t, "django-schema.sql"))
	e, _ := New(Config{Engine: "sqlite", Path: src})
	data, info := dumpToBuffer(t, ctx, e)

	dst := newSQLiteFixture(t, fixture(t, "alembic-schema.sql"))
	// A stale WAL of the old database must not be applied to the restored one.
	if err := os.WriteFile(dst+"-wal", []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	target, _ := NewTarget("sqlite", dst)
	err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{})
	wantErr(t, err, ErrNotEmpty, dst)
	if got := sqliteTableDump(t, dst, "part"); !strings.Contains(got, "Resistor") {
		t.Errorf("refused restore changed the target: %s", got)
	}

	if err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := sqliteTableDump(t, dst, "documents_document"), sqliteTableDump(t, src, "documents_document"); got != want {
		t.Errorf("forced restore: got %s, want %s", got, want)
	}

	err = target.Restore(ctx, bytes.NewReader(data), Info{Format: FormatPGPlain}, RestoreOptions{Force: true})
	wantErr(t, err, ErrUnsupported, `cannot restore format "pg-plain"`)
}

func TestSQLiteRestoreCorrupt(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	src := newSQLiteFixture(t, fixture(t, "django-schema.sql"))
	e, _ := New(Config{Engine: "sqlite", Path: src})
	data, info := dumpToBuffer(t, ctx, e)

	dir := t.TempDir()
	dst := filepath.Join(dir, "restored.sqlite3")
	target, _ := NewTarget("sqlite", dst)

	damaged := bytes.Clone(data)
	for i := 4096; i < len(damaged) && i < 4096+2000; i++ {
		damaged[i] ^= 0x5a // scramble the second page (a b-tree page)
	}
	err := target.Restore(ctx, bytes.NewReader(damaged), info, RestoreOptions{})
	wantErr(t, err, nil, "integrity check of restored sqlite database failed")

	err = target.Restore(ctx, bytes.NewReader([]byte("this is not a database, just text")), info, RestoreOptions{})
	wantErr(t, err, nil, "integrity check of restored sqlite database failed")

	err = target.Restore(ctx, bytes.NewReader(nil), info, RestoreOptions{})
	wantErr(t, err, ErrBadStream, "empty")

	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed restores left files behind: %v", entries)
	}
}

// bankSetup creates the transfer workload's tables: the balances always sum to
// bankAccounts*bankBalance.
const sqliteBankSchema = `
CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
CREATE TABLE history (id INTEGER PRIMARY KEY, src INTEGER NOT NULL, dst INTEGER NOT NULL, amount INTEGER NOT NULL, note TEXT NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO accounts (id, balance) SELECT i, 1000 FROM n;
`

// sqliteTransfer moves a random amount between two accounts and logs it in history.
func sqliteTransfer(ctx context.Context, db *sql.DB, r *rand.Rand) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	a, b, amt := 1+r.IntN(bankAccounts), 1+r.IntN(bankAccounts), 1+r.IntN(50)
	_, err = conn.ExecContext(ctx, "UPDATE accounts SET balance = balance - ? WHERE id = ?", amt, a)
	if err == nil {
		_, err = conn.ExecContext(ctx, "UPDATE accounts SET balance = balance + ? WHERE id = ?", amt, b)
	}
	if err == nil {
		_, err = conn.ExecContext(ctx, "INSERT INTO history (src, dst, amount, note) VALUES (?, ?, ?, ?)", a, b, amt, strings.Repeat("n", 200+r.IntN(300)))
	}
	if err != nil {
		conn.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return err
}

// sqliteWriterProcess runs transfers until its stdin closes (run in a child process).
func sqliteWriterProcess(path string) error {
	dsn, err := sqliteDSN(path, false)
	if err != nil {
		return err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	stop := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		close(stop)
	}()
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), 1))
	fmt.Println("ready")
	for n := 0; ; n++ {
		select {
		case <-stop:
			fmt.Fprintf(os.Stderr, "%d transfers\n", n)
			return nil
		default:
		}
		if err := sqliteTransfer(context.Background(), db, r); err != nil {
			return err
		}
	}
}

// checkSQLiteBank restores dump into a fresh file and checks the invariant; it returns
// the number of history rows.
func checkSQLiteBank(t *testing.T, ctx context.Context, data []byte, info Info) int {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "restored.sqlite3")
	target, _ := NewTarget("sqlite", dst)
	if err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	db := openSQLite(t, dst)
	var sum, n, hist, bad int
	if err := db.QueryRow("SELECT sum(balance), count(*), (SELECT count(*) FROM history), ("+bankLedgerCheck+") FROM accounts").Scan(&sum, &n, &hist, &bad); err != nil {
		t.Fatal(err)
	}
	if sum != bankAccounts*bankBalance || n != bankAccounts || bad != 0 {
		t.Errorf("restored snapshot is inconsistent: %d accounts with a sum of %d (want %d and %d), %d disagree with history", n, sum, bankAccounts, bankAccounts*bankBalance, bad)
	}
	return hist
}

func TestSQLiteConsistentWithWriter(t *testing.T) {
	for _, mode := range []string{"wal", "delete"} {
		t.Run(mode, func(t *testing.T) {
			ctx := testContext(t, 60*time.Second)
			path := newSQLiteFixture(t, "PRAGMA journal_mode="+mode+";"+sqliteBankSchema)
			wdb := openSQLite(t, path)

			wctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			var transfers int
			var werr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(1, 2))
				for wctx.Err() == nil {
					if err := sqliteTransfer(wctx, wdb, r); err != nil && wctx.Err() == nil {
						werr = err
						return
					}
					transfers++
				}
			}()

			e, _ := New(Config{Engine: "sqlite", Path: path})
			seen := map[int]bool{}
			for i := 0; i < 6; i++ {
				time.Sleep(50 * time.Millisecond)
				data, info := dumpToBuffer(t, ctx, e)
				seen[checkSQLiteBank(t, ctx, data, info)] = true
			}
			stop()
			wg.Wait()
			if werr != nil {
				t.Fatalf("writer: %v", werr)
			}
			if len(seen) < 3 {
				t.Errorf("the writer made too little progress between dumps (%d transfers, history sizes %v)", transfers, seen)
			}
		})
	}
}

func TestSQLiteConsistentWithWriterProcess(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	path := newSQLiteFixture(t, "PRAGMA journal_mode=wal;"+sqliteBankSchema)

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CAIRN_DBDUMP_SQLITE_WRITER="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("writer process did not start: %q %v %s", line, err, stderr.String())
	}

	e, _ := New(Config{Engine: "sqlite", Path: path})
	seen := map[int]bool{}
	for i := 0; i < 6; i++ {
		time.Sleep(50 * time.Millisecond)
		data, info := dumpToBuffer(t, ctx, e)
		seen[checkSQLiteBank(t, ctx, data, info)] = true
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("writer process: %v: %s", err, stderr.String())
	}
	if len(seen) < 3 {
		t.Errorf("the writer process made too little progress between dumps (history sizes %v; %s)", seen, stderr.String())
	}
}
