package dbdump

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgAdminDSN returns the DSN tests create databases with, or skips.
func pgAdminDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("CAIRN_TEST_PG_ADMIN_DSN")
	if dsn == "" {
		dsn = os.Getenv("CAIRN_TEST_PG_DSN")
	}
	if dsn == "" {
		t.Skip("needs a PostgreSQL server: set CAIRN_TEST_PG_DSN (scripts/test-all.sh starts a real server via scripts/services/postgres.sh)")
	}
	if w, ok := t.(*testing.T); ok {
		withBinDir(w, "CAIRN_TEST_PG_BIN")
	} else if dir := os.Getenv("CAIRN_TEST_PG_BIN"); dir != "" {
		os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	return dsn
}

func pgDSNWithDatabase(t testing.TB, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	return u.String()
}

func pgConnect(t testing.TB, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// newPGDatabase creates an empty database (dropped at the end of the test), loads
// script into it if not empty, and returns its DSN.
func newPGDatabase(t testing.TB, ctx context.Context, script string) string {
	t.Helper()
	admin := pgAdminDSN(t)
	name := fmt.Sprintf("cairn_test_%d_%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	conn := pgConnect(t, ctx, admin)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	dsn := pgDSNWithDatabase(t, admin, name)
	if script != "" {
		conn := pgConnect(t, ctx, dsn)
		if _, err := conn.Exec(ctx, script); err != nil {
			t.Fatalf("load script: %v", err)
		}
		conn.Close(ctx)
	}
	return dsn
}

const pgRichSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name text NOT NULL,
	mood mood,
	data jsonb,
	tags text[],
	price numeric(10, 2),
	name_upper text GENERATED ALWAYS AS (upper(name)) STORED,
	raw bytea
);
CREATE INDEX items_name ON items (name);
CREATE TABLE events (seq serial, at timestamptz NOT NULL, payload json);
CREATE TABLE pairs (a int, b int, v text, PRIMARY KEY (b, a));
CREATE TABLE measurements (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE measurements_eu PARTITION OF measurements FOR VALUES IN ('eu');
CREATE TABLE measurements_us PARTITION OF measurements FOR VALUES IN ('us');
CREATE VIEW item_names AS SELECT id, name FROM items;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := NEW.name; RETURN NEW; END $$;
CREATE TRIGGER items_touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE fk_child (id int PRIMARY KEY, item_id bigint NOT NULL REFERENCES items (id));
CREATE SCHEMA "Other Schema";
CREATE TABLE "Other Schema"."Weird ""Name""" ("Col A" int PRIMARY KEY, "b\c" text);
CREATE SEQUENCE standalone_seq START 100;

INSERT INTO items (name, mood, data, tags, price, raw)
SELECT 'item ' || i, (ARRAY['sad', 'ok', 'happy'])[1 + i % 3]::mood, jsonb_build_object('i', i, 'even', i % 2 = 0),
	ARRAY['t' || i, 'x'], i * 1.25, decode(md5(i::text), 'hex')
FROM generate_series(1, 300) i;
INSERT INTO items (name, data) VALUES (E'tab\there, newline\nthere, backslash \\ and \\.', 'null'), (E'\\.', NULL);
UPDATE items SET name = name || ' (edited)' WHERE id % 7 = 0;
DELETE FROM items WHERE id % 11 = 0;
INSERT INTO events (at, payload) SELECT '2024-01-01'::timestamptz + i * interval '1 hour', json_build_object('n', i)
FROM generate_series(1, 50) i;
INSERT INTO events (at, payload) VALUES ('2024-01-01', '{"n": 1}'), ('2024-01-01', '{"n": 1}');
INSERT INTO pairs SELECT i % 10, i / 10, 'v' || i FROM generate_series(0, 99) i;
INSERT INTO measurements SELECT i, CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END, i * i FROM generate_series(1, 40) i;
INSERT INTO fk_child SELECT i, i FROM generate_series(1, 10) i;
INSERT INTO "Other Schema"."Weird ""Name""" VALUES (1, 'a'), (2, NULL);
SELECT nextval('standalone_seq'), nextval('standalone_seq');
`

// pgFingerprint describes a database's user data and schema objects for comparisons.
func pgFingerprint(t *testing.T, ctx context.Context, dsn string) string {
	t.Helper()
	conn := pgConnect(t, ctx, dsn)
	var b strings.Builder
	rows, err := conn.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'v', 'S', 'i') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	type rel struct{ name, kind string }
	var rels []rel
	for rows.Next() {
		var r rel
		if err := rows.Scan(&r.name, &r.kind); err != nil {
			t.Fatal(err)
		}
		rels = append(rels, r)
	}
	rows.Close()
	for _, r := range rels {
		var v string
		switch r.kind {
		case "r", "p", "v":
			err = conn.QueryRow(ctx, "SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') FROM "+r.name+" x").Scan(&v)
		case "S":
			err = conn.QueryRow(ctx, "SELECT last_value || ' ' || is_called FROM "+r.name).Scan(&v)
		default:
			v = "index"
		}
		if err != nil {
			t.Fatalf("fingerprint %s: %v", r.name, err)
		}
		fmt.Fprintf(&b, "%s %s %s\n", r.kind, r.name, v)
	}
	var cons, trig string
	if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(conname || ':' || contype::text, ',' ORDER BY conname), '') FROM pg_constraint c
		JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')`).Scan(&cons); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(tgname, ',' ORDER BY tgname), '') FROM pg_trigger WHERE NOT tgisinternal`).Scan(&trig); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "constraints %s\ntriggers %s\n", cons, trig)
	return b.String()
}

func TestPostgresRoundTrip(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	src := newPGDatabase(t, ctx, fixture(t, "django-schema.sql")+pgRichSchema)
	want := pgFingerprint(t, ctx, src)
	for _, format := range []string{"", "plain"} {
		t.Run("format="+format, func(t *testing.T) {
			e, err := New(Config{Engine: "postgres", DSN: src, Format: format, Migrations: "django"})
			if err != nil {
				t.Fatal(err)
			}
			data, info := dumpToBuffer(t, ctx, e)
			wantFormat := FormatPGOrdered
			if format == "plain" {
				wantFormat = FormatPGPlain
			}
			if info.Engine != EnginePostgres || info.Format != wantFormat || info.Tables != 12 ||
				!strings.HasPrefix(info.ServerVersion, "1") || !strings.HasPrefix(info.Database, "cairn_test_") {
				t.Errorf("info = %+v", info)
			}
			wantMigrations(t, info.Migrations, djangoMigrations)

			dst := newPGDatabase(t, ctx, "")
			target, err := NewTarget("postgres", dst)
			if err != nil {
				t.Fatal(err)
			}
			if err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := pgFingerprint(t, ctx, dst); got != want {
				t.Errorf("restored database differs:\n got %s\nwant %s", got, want)
			}
			probed, err := target.Probe(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if probed.Tables != info.Tables {
				t.Errorf("restored database has %d tables, want %d", probed.Tables, info.Tables)
			}

			// The restored database works: identity and serial columns go on after the
			// restored values.
			conn := pgConnect(t, ctx, dst)
			var id int64
			if err := conn.QueryRow(ctx, "INSERT INTO items (name) VALUES ('after restore') RETURNING id").Scan(&id); err != nil {
				t.Fatal(err)
			}
			if id != 303 {
				t.Errorf("next identity value after restore = %d, want 303", id)
			}
		})
	}
}

func TestPostgresOrderedIsStable(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	src := newPGDatabase(t, ctx, fixture(t, "django-schema.sql")+pgRichSchema)
	e, _ := New(Config{Engine: "postgres", DSN: src})
	first, _ := dumpToBuffer(t, ctx, e)

	// Rewrite every row in place: heap order changes, the ordered dump must not.
	conn := pgConnect(t, ctx, src)
	for _, q := range []string{"UPDATE pairs SET v = v", "UPDATE events SET at = at", "UPDATE django_migrations SET app = app", "VACUUM FULL pairs"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	second, _ := dumpToBuffer(t, ctx, e)
	// pg_dump (since 17.6, 16.10, 15.14, …) brackets its output with \restrict and
	// \unrestrict lines carrying a random key: the only bytes allowed to differ.
	restrict := regexp.MustCompile(`(?m)^\\(un)?restrict [0-9A-Za-z]+$`)
	if n := len(restrict.FindAll(first, -1)); n != 0 && n != 4 {
		t.Errorf("found %d \\restrict/\\unrestrict lines, want 0 or 4", n)
	}
	norm := func(b []byte) []byte { return restrict.ReplaceAll(b, []byte(`\restrict KEY`)) }
	if !bytes.Equal(norm(first), norm(second)) {
		t.Error("ordered dumps of the same data differ")
	}
	for _, s := range []string{pgOrderedHeader, "-- cairn-section pre-data\n", "-- cairn-section data\n",
		"COPY \"Other Schema\".\"Weird \"\"Name\"\"\" (\"Col A\", \"b\\c\") FROM stdin;\n1\ta\n2\t\\N\n\\.\n",
		"-- cairn-section post-data\n", "\n-- cairn-end pg-ordered-v1 tables=12 sequences=3\n"} {
		if !bytes.Contains(first, []byte(s)) {
			t.Errorf("dump lacks %q", s)
		}
	}
}

func TestPostgresMigrations(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	dsn := newPGDatabase(t, ctx, fixture(t, "alembic-schema.sql"))
	e, _ := New(Config{Engine: "postgres", DSN: dsn, Migrations: "alembic"})
	info, err := e.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantMigrations(t, info.Migrations, alembicMigrations)
	if info.Tables != 2 {
		t.Errorf("tables = %d, want 2", info.Tables)
	}

	e, _ = New(Config{Engine: "postgres", DSN: dsn, Migrations: "sql", MigrationsQuery: "SELECT 'stock', sum(stock) FROM part"})
	info, err = e.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantMigrations(t, info.Migrations, map[string]string{"stock": "6500"})

	e, _ = New(Config{Engine: "postgres", DSN: dsn, Migrations: "django"})
	_, err = e.Probe(ctx)
	wantErr(t, err, ErrMigrationTableMissing, "table django_migrations does not exist in database cairn_test_")
	_, err = e.Dump(ctx, &bytes.Buffer{})
	wantErr(t, err, ErrMigrationTableMissing, "table django_migrations does not exist")
}

func TestPostgresConnectionErrors(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	dsn := pgAdminDSN(t)
	u, _ := url.Parse(dsn)
	u.User = url.UserPassword(u.User.Username(), "wrong-password")
	e, _ := New(Config{Engine: "postgres", DSN: u.String()})
	_, err := e.Probe(ctx)
	wantErr(t, err, nil, "connect to postgres", "password authentication failed")
	_, err = e.Dump(ctx, &bytes.Buffer{})
	wantErr(t, err, nil, "connect to postgres", "password authentication failed")

	e, _ = New(Config{Engine: "postgres", DSN: "postgres://cairn:x@127.0.0.1:1/postgres?sslmode=disable"})
	_, err = e.Dump(ctx, &bytes.Buffer{})
	wantErr(t, err, nil, "connect to postgres", "connection refused")
}

func TestPostgresDumpToolFails(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	dsn := newPGDatabase(t, ctx, fixture(t, "alembic-schema.sql"))
	dir := t.TempDir()
	writeScript(t, dir, "pg_dump", `echo "-- partial dump"
echo "pg_dump: error: query failed: server closed the connection unexpectedly" >&2
exit 2
`)
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, format := range []string{"ordered", "plain"} {
		e, _ := New(Config{Engine: "postgres", DSN: dsn, Format: format})
		var out bytes.Buffer
		_, err := e.Dump(ctx, &out)
		wantErr(t, err, nil, "pg_dump exited with status 2", "server closed the connection unexpectedly")
		if !strings.Contains(out.String(), "-- partial dump") {
			t.Errorf("format %s: output so far = %q", format, out.String())
		}
	}
}

func TestPostgresRestoreRefusals(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	src := newPGDatabase(t, ctx, fixture(t, "django-schema.sql"))
	e, _ := New(Config{Engine: "postgres", DSN: src})
	data, info := dumpToBuffer(t, ctx, e)
	want := pgFingerprint(t, ctx, src)

	dst := newPGDatabase(t, ctx, fixture(t, "alembic-schema.sql")+"CREATE SCHEMA extra; CREATE TABLE extra.t (x int);")
	target, _ := NewTarget("postgresql", dst)
	err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{})
	wantErr(t, err, ErrNotEmpty, "has 3 relations in schemas extra, public")

	if err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := pgFingerprint(t, ctx, dst); got != want {
		t.Errorf("forced restore:\n got %s\nwant %s", got, want)
	}

	// A truncated stream is refused and the target stays empty.
	empty := newPGDatabase(t, ctx, "")
	target, _ = NewTarget("postgres", empty)
	cut := data[:len(data)*2/3]
	err = target.Restore(ctx, bytes.NewReader(cut), info, RestoreOptions{})
	wantErr(t, err, ErrBadStream, "truncated")
	if got := pgFingerprint(t, ctx, empty); got != "constraints \ntriggers \n" {
		t.Errorf("failed restore left data behind:\n%s", got)
	}

	// A failing statement (here: garbage in a COPY) rolls everything back.
	bad := bytes.Replace(data, []byte("\n1\tcontenttypes\t"), []byte("\nnot-a-number\tcontenttypes\t"), 1)
	err = target.Restore(ctx, bytes.NewReader(bad), info, RestoreOptions{})
	wantErr(t, err, nil, "psql exited with status 3", "invalid input syntax for type integer")
	if got := pgFingerprint(t, ctx, empty); got != "constraints \ntriggers \n" {
		t.Errorf("failed restore left data behind:\n%s", got)
	}
}

const pgBankSchema = `
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE history (id bigserial PRIMARY KEY, src int NOT NULL, dst int NOT NULL, amount int NOT NULL, note text NOT NULL);
INSERT INTO accounts SELECT i, 1000 FROM generate_series(1, 200) i;
INSERT INTO history (src, dst, amount, note) SELECT 1, 1, 0, repeat('h', 300) FROM generate_series(1, 20000);
`

func TestPostgresConsistentWithWriter(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	src := newPGDatabase(t, ctx, pgBankSchema)

	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var transfers atomic.Int64
	errs := make(chan error, 4)
	for w := 0; w < 2; w++ {
		conn := pgConnect(t, ctx, src)
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 7))
			for wctx.Err() == nil {
				a, b, amt := 1+r.IntN(bankAccounts), 1+r.IntN(bankAccounts), 1+r.IntN(50)
				err := pgx.BeginFunc(wctx, conn, func(tx pgx.Tx) error {
					lo, hi, d := a, b, -amt
					if lo > hi {
						lo, hi, d = b, a, amt
					}
					if _, err := tx.Exec(wctx, "UPDATE accounts SET balance = balance + $1 WHERE id = $2", d, lo); err != nil {
						return err
					}
					if _, err := tx.Exec(wctx, "UPDATE accounts SET balance = balance - $1 WHERE id = $2", d, hi); err != nil {
						return err
					}
					_, err := tx.Exec(wctx, "INSERT INTO history (src, dst, amount, note) VALUES ($1, $2, $3, repeat('n', 300))", a, b, amt)
					return err
				})
				if err != nil {
					if wctx.Err() == nil {
						errs <- err
					}
					return
				}
				transfers.Add(1)
			}
		}(uint64(w))
	}

	seen := map[int64]bool{}
	for _, format := range []string{"", "plain", ""} {
		time.Sleep(100 * time.Millisecond)
		e, _ := New(Config{Engine: "postgres", DSN: src, Format: format})
		before := transfers.Load()
		data, info := dumpToBuffer(t, ctx, e)
		if transfers.Load() == before {
			t.Logf("no transfer committed during the %s dump", info.Format)
		}
		dst := newPGDatabase(t, ctx, "")
		target, _ := NewTarget("postgres", dst)
		if err := target.Restore(ctx, bytes.NewReader(data), info, RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		var sum, n, hist, bad int64
		if err := pgConnect(t, ctx, dst).QueryRow(ctx, "SELECT sum(balance), count(*), (SELECT count(*) FROM history), ("+bankLedgerCheck+") FROM accounts").Scan(&sum, &n, &hist, &bad); err != nil {
			t.Fatal(err)
		}
		if sum != bankAccounts*bankBalance || n != bankAccounts || bad != 0 {
			t.Errorf("%s: restored snapshot is inconsistent: %d accounts with a sum of %d, %d disagree with history", info.Format, n, sum, bad)
		}
		seen[hist] = true
	}
	stop()
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("writer: %v", err)
	default:
	}
	if len(seen) < 2 {
		t.Errorf("the writers made too little progress (%d transfers, history sizes %v)", transfers.Load(), seen)
	}
}
