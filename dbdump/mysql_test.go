package dbdump

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// mysqlAdmin returns an engine on the test server's default database, or skips.
func mysqlAdmin(t *testing.T) (*mysqlEngine, string) {
	t.Helper()
	dsn := os.Getenv("CAIRN_TEST_MYSQL_DSN")
	if dsn == "" {
		t.Skip("needs a MariaDB/MySQL server: set CAIRN_TEST_MYSQL_DSN (scripts/test-all.sh starts a real server via scripts/services/mariadb.sh)")
	}
	e, err := newMySQL(Config{Engine: "mysql", DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	return e, dsn
}

func mysqlDSNWithDatabase(t *testing.T, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	return u.String()
}

// mysqlExec feeds script to the client connected to e's database.
func mysqlExec(t *testing.T, ctx context.Context, e *mysqlEngine, script string) {
	t.Helper()
	client, err := pickTool(mysqlClientTools)
	if err != nil {
		t.Fatal(err)
	}
	err = e.withClientArgs(func(args []string) error {
		args = append(args, "--batch", "--default-character-set=utf8mb4", "--database="+e.conn.database)
		return tool{name: client, args: args, stdin: strings.NewReader(script)}.run(ctx)
	})
	if err != nil {
		t.Fatalf("run script: %v", err)
	}
}

// newMySQLDatabase creates a database (dropped at the end of the test), loads script
// and returns its DSN.
func newMySQLDatabase(t *testing.T, ctx context.Context, script string) string {
	t.Helper()
	admin, dsn := mysqlAdmin(t)
	name := fmt.Sprintf("cairn_test_%d_%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	mysqlExec(t, ctx, admin, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4")
	t.Cleanup(func() { mysqlExec(t, context.Background(), admin, "DROP DATABASE IF EXISTS "+name) })
	dsn = mysqlDSNWithDatabase(t, dsn, name)
	if script != "" {
		e, err := newMySQL(Config{Engine: "mysql", DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		mysqlExec(t, ctx, e, script)
	}
	return dsn
}

func mysqlFingerprint(t *testing.T, ctx context.Context, dsn string) string {
	t.Helper()
	e, _ := newMySQL(Config{Engine: "mysql", DSN: dsn})
	tables, err := e.query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tr := range tables {
		var cs [][]string
		cs, err = e.query(ctx, "CHECKSUM TABLE "+mysqlIdent(tr[0]))
		if err != nil {
			t.Fatal(err)
		}
		n, err := e.query(ctx, "SELECT COUNT(*) FROM "+mysqlIdent(tr[0]))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %v %v\n", tr[0], n, cs[0][1:])
	}
	return b.String()
}

func TestMySQLRoundTrip(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	src := newMySQLDatabase(t, ctx, fixture(t, "django-schema.sql")+`
CREATE TABLE blobs (id INT AUTO_INCREMENT PRIMARY KEY, data LONGBLOB, note TEXT);
INSERT INTO blobs (data, note) VALUES (UNHEX('00FF0A0D5C27'), 'binary'), (NULL, 'tab\there');
CREATE VIEW doc_titles AS SELECT id, title FROM documents_document;
CREATE PROCEDURE doc_count() SELECT COUNT(*) FROM documents_document;
CREATE TRIGGER doc_title_trim BEFORE INSERT ON documents_document FOR EACH ROW SET NEW.title = TRIM(NEW.title);
`)
	want := mysqlFingerprint(t, ctx, src)
	e, err := New(Config{Engine: "mariadb", DSN: src, Migrations: "django"})
	if err != nil {
		t.Fatal(err)
	}
	data, info := dumpToBuffer(t, ctx, e)
	if info.Engine != EngineMySQL || info.Format != FormatMySQLSQL || info.Tables != 6 || info.ServerVersion == "" {
		t.Errorf("info = %+v", info)
	}
	wantMigrations(t, info.Migrations, djangoMigrations)
	if bytes.Contains(data, []byte("Dump completed on")) {
		t.Error("dump carries a date, which defeats deduplication")
	}

	dst := newMySQLDatabase(t, ctx, "")
	target, err := NewTarget("mysql", dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := mysqlFingerprint(t, ctx, dst); got != want {
		t.Errorf("restored database differs:\n got %s\nwant %s", got, want)
	}
	de, _ := newMySQL(Config{Engine: "mysql", DSN: dst})
	rows, err := de.query(ctx, "SELECT (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = DATABASE()), (SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = DATABASE())")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rows) != "[[1 1]]" {
		t.Errorf("restored routines, triggers = %v, want 1 and 1", rows)
	}

	again, _ := dumpToBuffer(t, ctx, e)
	if !bytes.Equal(again, data) {
		t.Error("two dumps of an unchanged database differ")
	}
}

func TestMySQLMigrationsAndErrors(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	dsn := newMySQLDatabase(t, ctx, fixture(t, "alembic-schema.sql"))
	e, _ := New(Config{Engine: "mysql", DSN: dsn, Migrations: "alembic"})
	info, err := e.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantMigrations(t, info.Migrations, alembicMigrations)

	e, _ = New(Config{Engine: "mysql", DSN: dsn, Migrations: "django"})
	_, err = e.Dump(ctx, io.Discard)
	wantErr(t, err, ErrMigrationTableMissing, "table django_migrations does not exist in database cairn_test_")

	u, _ := url.Parse(dsn)
	u.User = url.UserPassword(u.User.Username(), "wrong-password")
	e, _ = New(Config{Engine: "mysql", DSN: u.String()})
	_, err = e.Dump(ctx, io.Discard)
	wantErr(t, err, nil, "exited with status 1", "Access denied for user")

	e, _ = New(Config{Engine: "mysql", DSN: "mysql://cairn:x@127.0.0.1:1/cairn"})
	_, err = e.Probe(ctx)
	wantErr(t, err, nil, "exited with status 1", "Can't connect")
}

func TestMySQLDumpToolFails(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	dsn := newMySQLDatabase(t, ctx, fixture(t, "alembic-schema.sql"))
	dir := t.TempDir()
	writeScript(t, dir, "mariadb-dump", `echo "-- MariaDB dump, partial"
echo "mariadb-dump: Error 2013: Lost connection to server during query when dumping table part" >&2
exit 2
`)
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	e, _ := New(Config{Engine: "mysql", DSN: dsn})
	var out bytes.Buffer
	_, err := e.Dump(ctx, &out)
	wantErr(t, err, nil, "mariadb-dump exited with status 2", "Lost connection to server")
	if out.String() != "-- MariaDB dump, partial\n" {
		t.Errorf("output so far = %q", out.String())
	}
}

func TestMySQLRestoreRefusals(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	src := newMySQLDatabase(t, ctx, fixture(t, "django-schema.sql"))
	e, _ := New(Config{Engine: "mysql", DSN: src})
	data, info := dumpToBuffer(t, ctx, e)
	want := mysqlFingerprint(t, ctx, src)

	dst := newMySQLDatabase(t, ctx, fixture(t, "alembic-schema.sql"))
	target, _ := NewTarget("mysql", dst)
	err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{})
	wantErr(t, err, ErrNotEmpty, "has 2 tables, views or routines")
	if err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := mysqlFingerprint(t, ctx, dst); got != want {
		t.Errorf("forced restore:\n got %s\nwant %s", got, want)
	}

	empty := newMySQLDatabase(t, ctx, "")
	target, _ = NewTarget("mysql", empty)
	err = target.Restore(ctx, bytes.NewReader(data[:len(data)/2]), info, RestoreOptions{})
	wantErr(t, err, ErrBadStream, "truncated")
}

func TestMySQLConsistentWithWriter(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	src := newMySQLDatabase(t, ctx, `
CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;
CREATE TABLE history (id BIGINT AUTO_INCREMENT PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount INT NOT NULL, note TEXT NOT NULL) ENGINE=InnoDB;
INSERT INTO accounts SELECT seq, 1000 FROM seq_1_to_200;
INSERT INTO history (src, dst, amount, note) SELECT 1, 1, 0, REPEAT('h', 300) FROM seq_1_to_20000;
`)
	se, _ := newMySQL(Config{Engine: "mysql", DSN: src})

	// The writer is one client process reading an endless stream of transfers.
	client, err := pickTool(mysqlClientTools)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- se.withClientArgs(func(args []string) error {
			args = append(args, "--batch", "--database="+se.conn.database)
			cmd := exec.CommandContext(wctx, client, args...)
			cmd.Stdin = pr
			out, err := cmd.CombinedOutput()
			if err != nil && wctx.Err() == nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}()
	go func() {
		r := rand.New(rand.NewPCG(3, 4))
		for wctx.Err() == nil {
			a, b, amt := 1+r.IntN(bankAccounts), 1+r.IntN(bankAccounts), 1+r.IntN(50)
			if a > b {
				a, b, amt = b, a, -amt
			}
			_, err := fmt.Fprintf(pw, "START TRANSACTION; UPDATE accounts SET balance = balance - %d WHERE id = %d; UPDATE accounts SET balance = balance + %d WHERE id = %d; INSERT INTO history (src, dst, amount, note) VALUES (%d, %d, %d, REPEAT('n', 300)); COMMIT;\n", amt, a, amt, b, a, b, amt)
			if err != nil {
				return
			}
		}
	}()

	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		time.Sleep(200 * time.Millisecond)
		data, info := dumpToBuffer(t, ctx, se)
		dst := newMySQLDatabase(t, ctx, "")
		target, _ := NewTarget("mysql", dst)
		if err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		de, _ := newMySQL(Config{Engine: "mysql", DSN: dst})
		rows, err := de.query(ctx, "SELECT SUM(balance), COUNT(*), (SELECT COUNT(*) FROM history), ("+bankLedgerCheck+") FROM accounts")
		if err != nil {
			t.Fatal(err)
		}
		if rows[0][0] != fmt.Sprint(bankAccounts*bankBalance) || rows[0][1] != fmt.Sprint(bankAccounts) || rows[0][3] != "0" {
			t.Errorf("restored snapshot is inconsistent: sum, count, history rows, accounts disagreeing with history = %v", rows[0])
		}
		seen[rows[0][2]] = true
	}
	stop()
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if len(seen) < 2 {
		t.Errorf("the writer made too little progress (history sizes %v)", seen)
	}
}
