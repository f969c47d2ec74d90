package dbdump

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "database engine is empty"},
		{Config{Engine: "oracle"}, `database engine "oracle"`},
		{Config{Engine: "sqlite"}, "sqlite database: path is empty"},
		{Config{Engine: "postgres"}, "postgres database: dsn is empty"},
		{Config{Engine: "postgres", DSN: "postgres://u@h/db", Format: "custom"}, `postgres format "custom"`},
		{Config{Engine: "mysql"}, "mysql database: dsn is empty"},
		{Config{Engine: "mysql", DSN: "mysql://u:p@h:3306/"}, "want one database name"},
		{Config{Engine: "mysql", DSN: "postgres://u:p@h:3306/db"}, `scheme "postgres"`},
		{Config{Engine: "sqlite", Path: "x.db", Migrations: "rails"}, `migrations "rails"`},
		{Config{Engine: "sqlite", Path: "x.db", Migrations: "sql"}, "needs migrations_query"},
	} {
		_, err := New(tc.cfg)
		wantErr(t, err, nil, tc.want)
	}
	for _, e := range []string{"sqlite", "postgres", "postgresql", "mysql", "mariadb"} {
		arg := "postgres://u:p@127.0.0.1:5432/db"
		switch e {
		case "sqlite":
			arg = "x.db"
		case "mysql", "mariadb":
			arg = "mysql://u:p@127.0.0.1:3306/db"
		}
		if _, err := NewTarget(e, arg); err != nil {
			t.Errorf("NewTarget(%q): %v", e, err)
		}
	}
}

func TestSplitPGPassword(t *testing.T) {
	for _, tc := range []struct{ in, rest, pw string }{
		{"postgres://u:s3cret@127.0.0.1:5432/db?sslmode=disable", "postgres://u@127.0.0.1:5432/db?sslmode=disable", "s3cret"},
		{"postgresql://u@h/db?password=p%40ss&sslmode=require", "postgresql://u@h/db?sslmode=require", "p@ss"},
		{"postgres://h/db", "postgres://h/db", ""},
		{"host=127.0.0.1 port=5432 user=u password='it''s' dbname=db", "", ""},
		{`host=127.0.0.1 user=u password='a b\'c' dbname=db`, "host=127.0.0.1 user=u dbname=db", "a b'c"},
		{"host=h password=plain dbname='my db'", "host=h dbname='my db'", "plain"},
	} {
		rest, pw, err := splitPGPassword(tc.in)
		if tc.rest == "" {
			if err == nil {
				t.Errorf("splitPGPassword(%q): no error for a malformed string", tc.in)
			}
			continue
		}
		if err != nil || rest != tc.rest || pw != tc.pw {
			t.Errorf("splitPGPassword(%q) = %q, %q, %v; want %q, %q", tc.in, rest, pw, err, tc.rest, tc.pw)
		}
	}
}

func TestParseMySQLDSN(t *testing.T) {
	c, err := parseMySQLDSN("mysql://cairn:p%3Aw@127.0.0.1:3307/inventree")
	if err != nil {
		t.Fatal(err)
	}
	if c.user != "cairn" || c.password != "p:w" || c.host != "127.0.0.1" || c.port != "3307" || c.database != "inventree" {
		t.Errorf("parsed %+v", c)
	}
	c, err = parseMySQLDSN("mariadb://root@/app?socket=/run/mysqld/mysqld.sock")
	if err != nil {
		t.Fatal(err)
	}
	if c.socket != "/run/mysqld/mysqld.sock" || c.host != "" || c.database != "app" {
		t.Errorf("parsed %+v", c)
	}
}

func TestToolMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ctx := testContext(t, 30*time.Second)

	pg, err := New(Config{Engine: "postgres", DSN: "postgres://u:p@127.0.0.1:1/db"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = pg.Dump(ctx, io.Discard)
	wantErr(t, err, ErrToolNotFound, "pg_dump not found in PATH")
	err = pg.Restore(ctx, strings.NewReader(""), Info{Format: FormatPGOrdered}, RestoreOptions{})
	wantErr(t, err, ErrToolNotFound, "psql not found in PATH")

	my, err := New(Config{Engine: "mysql", DSN: "mysql://u:p@127.0.0.1:1/db"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = my.Dump(ctx, io.Discard)
	wantErr(t, err, ErrToolNotFound, "mariadb-dump not found in PATH (nor mysqldump)")
	err = my.Restore(ctx, strings.NewReader(""), Info{Format: FormatMySQLSQL}, RestoreOptions{})
	wantErr(t, err, ErrToolNotFound, "mariadb not found in PATH (nor mysql)")
}

func TestToolFailingHalfway(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "fake-dump", `echo "-- first part of the dump"
echo "fake-dump: error: connection to server lost" >&2
exit 2
`)
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out bytes.Buffer
	err := tool{name: "fake-dump", stdout: &out}.run(testContext(t, 30*time.Second))
	wantErr(t, err, nil, "fake-dump exited with status 2", "connection to server lost")
	if out.String() != "-- first part of the dump\n" {
		t.Errorf("stdout = %q", out.String())
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("repository read failed")
	}
	k := min(len(p), f.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

// A failing input must kill the tool before it sees the end of its input: a psql
// --single-transaction would otherwise commit a partial restore.
func TestToolInputFailureKillsTool(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "committed")
	writeScript(t, dir, "fake-load", "cat >/dev/null && touch "+marker+"\n")
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	err := tool{name: "fake-load", stdin: &failingReader{n: 100000}}.run(testContext(t, 30*time.Second))
	wantErr(t, err, nil, "read input", "repository read failed")
	if _, err := os.Stat(marker); err == nil {
		t.Error("the tool saw the end of its input although reading it failed")
	}
}

func TestStreamChecker(t *testing.T) {
	good := pgOrderedHeader + "-- cairn-section pre-data\nSET x = 1;\n-- cairn-end pg-ordered-v1 tables=1 sequences=0\n"
	check := func(s string) error {
		_, err := io.ReadAll(&streamChecker{r: strings.NewReader(s), what: FormatPGOrdered, head: []byte(pgOrderedHeader),
			complete: func(tail []byte) bool { return pgOrderedEnd.Match(tail) }})
		return err
	}
	if err := check(good); err != nil {
		t.Errorf("complete stream: %v", err)
	}
	wantErr(t, check(good[:len(good)-10]), ErrBadStream, "truncated (no end marker)")
	wantErr(t, check("-- PostgreSQL database dump\n"+good), ErrBadStream, "unexpected start")
	wantErr(t, check(""), ErrBadStream, "empty or truncated")
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 20}
	b.Write([]byte("0123456789"))
	b.Write([]byte("abcdefghijklmnopqrstuvwxyz"))
	if got := b.String(); got != "0123456789\n[…]\nqrstuvwxyz" {
		t.Errorf("got %q", got)
	}
}
