package dbdump

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/restic/chunker"
)

// TestPostgresDedupFigures measures how much of a day-2 dump is new at chunk level
// compared with the day-1 dump, for pg-ordered-v1 and pg-plain, in two scenarios:
//
//   - "paperless": a paperless-like documents table of ≥200 MB, aged (5% of the rows
//     deleted at random and vacuumed before day 1), then 1% new rows, a few dozen edited
//     rows and a few deleted ones, then VACUUM (as autovacuum would);
//   - "random1pct": uniformly random edits to 1% of the rows, then VACUUM.
//
// It only runs with CAIRN_BENCH_PG=1 (and a server: CAIRN_TEST_PG_DSN). The dump files
// stay in CAIRN_BENCH_DIR if set (else a temporary directory) for measuring with
// cairn's own chunker. CAIRN_BENCH_ROWS overrides the row count (default 110000).
//
//	CAIRN_BENCH_PG=1 CAIRN_BENCH_DIR=/tmp/pgbench go test -run TestPostgresDedupFigures -v -timeout 30m ./dbdump
func TestPostgresDedupFigures(t *testing.T) {
	if os.Getenv("CAIRN_BENCH_PG") != "1" {
		t.Skip("benchmark: set CAIRN_BENCH_PG=1 (and CAIRN_TEST_PG_DSN) to run")
	}
	ctx := testContext(t, 30*time.Minute)
	rows := 110000
	if s := os.Getenv("CAIRN_BENCH_ROWS"); s != "" {
		if _, err := fmt.Sscan(s, &rows); err != nil {
			t.Fatalf("CAIRN_BENCH_ROWS: %v", err)
		}
	}
	dir := os.Getenv("CAIRN_BENCH_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	base := newPGDatabase(t, ctx, fmt.Sprintf(`
CREATE TABLE documents_correspondent (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
INSERT INTO documents_correspondent (name) SELECT 'correspondent ' || i FROM generate_series(1, 200) i;
CREATE TABLE documents_document (
	id serial PRIMARY KEY,
	correspondent_id int REFERENCES documents_correspondent (id),
	title varchar(128) NOT NULL,
	content text NOT NULL,
	created timestamptz NOT NULL,
	modified timestamptz NOT NULL,
	added timestamptz NOT NULL,
	checksum varchar(32) NOT NULL UNIQUE,
	archive_serial_number int UNIQUE,
	filename varchar(1024),
	mime_type varchar(256) NOT NULL
);
INSERT INTO documents_document (correspondent_id, title, content, created, modified, added, checksum, archive_serial_number, filename, mime_type)
SELECT 1 + i %% 200, 'Document ' || i,
	(SELECT string_agg(md5(i::text || '-' || j), ' ') FROM generate_series(1, 60) j),
	'2015-01-01'::timestamptz + i * interval '37 minutes', '2020-01-01'::timestamptz + i * interval '1 minute',
	'2020-01-01'::timestamptz + i * interval '1 minute', md5(i::text), i, 'documents/originals/' || lpad(i::text, 7, '0') || '.pdf',
	'application/pdf'
FROM generate_series(1, %d) i;
CREATE INDEX ON documents_document (created);
`, rows))
	// Age the table the way a document store ages: documents deleted over time leave
	// free space all over the heap, which VACUUM hands to later inserts and updates.
	vc := pgConnect(t, ctx, base)
	for _, q := range []string{"SELECT setseed(0.17)", "DELETE FROM documents_document WHERE random() < 0.05", "VACUUM ANALYZE"} {
		if _, err := vc.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	vc.Close(ctx)
	t.Logf("loaded %d rows in %s", rows, time.Since(start).Round(time.Second))

	// Scenario "random1pct" starts from a copy of day 1.
	adminConn := pgConnect(t, ctx, pgAdminDSN(t))
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	baseName := strings.TrimPrefix(u.Path, "/")
	cloneName := baseName + "_r"
	if _, err := adminConn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", cloneName, baseName)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adminConn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cloneName+" WITH (FORCE)") })
	clone := pgDSNWithDatabase(t, base, cloneName)

	dump := func(dsn, format, name string) string {
		e, err := New(Config{Engine: "postgres", DSN: dsn, Format: format})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		t0 := time.Now()
		if _, err := e.Dump(ctx, bw); err != nil {
			t.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(path)
		t.Logf("dumped %s: %.1f MB in %s", name, float64(st.Size())/1e6, time.Since(t0).Round(100*time.Millisecond))
		return path
	}
	day1 := map[string]string{"ordered": dump(base, "ordered", "day1-ordered.sql"), "plain": dump(base, "plain", "day1-plain.sql")}

	exec := func(dsn string, stmts ...string) {
		conn := pgConnect(t, ctx, dsn)
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	newRows := rows / 100
	exec(base,
		fmt.Sprintf(`INSERT INTO documents_document (correspondent_id, title, content, created, modified, added, checksum, archive_serial_number, filename, mime_type)
		SELECT 1 + i %% 200, 'New document ' || i, (SELECT string_agg(md5('new' || i::text || '-' || j), ' ') FROM generate_series(1, 60) j),
			now(), now(), now(), md5('new' || i), NULL, 'documents/originals/new-' || i || '.pdf', 'application/pdf'
		FROM generate_series(1, %d) i`, newRows),
		`UPDATE documents_document SET title = title || ' (edited)', modified = now() WHERE id IN (SELECT id FROM documents_document WHERE id <= `+fmt.Sprint(rows)+` ORDER BY md5(id::text) LIMIT 36)`,
		`DELETE FROM documents_document WHERE id IN (SELECT id FROM documents_document WHERE id <= `+fmt.Sprint(rows)+` ORDER BY md5('d' || id::text) LIMIT 12)`,
		"VACUUM ANALYZE documents_document")
	exec(clone,
		"SELECT setseed(0.42)",
		"UPDATE documents_document SET modified = now(), title = title || ' *' WHERE random() < 0.01",
		"VACUUM ANALYZE documents_document")

	type result struct{ scenario, format, day1, day2 string }
	var results []result
	for _, f := range []string{"ordered", "plain"} {
		results = append(results,
			result{"paperless", f, day1[f], dump(base, f, "day2-paperless-"+f+".sql")},
			result{"random1pct", f, day1[f], dump(clone, f, "day2-random1pct-"+f+".sql")})
	}

	t.Logf("%-11s %-8s %10s %10s %14s %14s", "scenario", "format", "day1 MB", "day2 MB", "new @1MiB avg", "new @64KiB avg")
	for _, r := range results {
		s1, s2 := fileSize(t, r.day1), fileSize(t, r.day2)
		var cols []string
		for _, cfg := range []struct {
			bits     int
			min, max uint
		}{{20, 512 << 10, 8 << 20}, {16, 16 << 10, 512 << 10}} {
			newBytes := newChunkBytes(t, r.day1, r.day2, cfg.bits, cfg.min, cfg.max)
			cols = append(cols, fmt.Sprintf("%.1f MB %4.1f%%", float64(newBytes)/1e6, 100*float64(newBytes)/float64(s2)))
		}
		t.Logf("%-11s %-8s %10.1f %10.1f %14s %14s", r.scenario, r.format, float64(s1)/1e6, float64(s2)/1e6, cols[0], cols[1])
	}
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// newChunkBytes chunks both files with content-defined chunking (restic's chunker) and
// returns how many bytes of day2 are in chunks that day1 does not have.
func newChunkBytes(t *testing.T, day1, day2 string, bits int, min, max uint) int64 {
	const pol = chunker.Pol(0x3DA3358B4DC173)
	chunks := func(path string, fn func(sum [32]byte, n int)) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		c := chunker.NewWithBoundaries(f, pol, min, max)
		c.SetAverageBits(bits)
		buf := make([]byte, max)
		for {
			ch, err := c.Next(buf)
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fn(sha256.Sum256(ch.Data), len(ch.Data))
		}
	}
	seen := map[[32]byte]bool{}
	chunks(day1, func(sum [32]byte, _ int) { seen[sum] = true })
	var n int64
	chunks(day2, func(sum [32]byte, size int) {
		if !seen[sum] {
			n += int64(size)
			seen[sum] = true
		}
	})
	return n
}
