// Command dbgrowth creates and mutates the documents table used by
// bench/dbgrowth/run.sh to measure cairn's day-over-day repository growth per
// database engine.
//
//	dbgrowth -engine sqlite   -target /path/db.sqlite3 -step init
//	dbgrowth -engine postgres -target postgres://…     -step paperless -changed FILE
//	dbgrowth -engine mysql    -step random -changed FILE > day2.sql   (feed to the mariadb client)
//
// Steps: init (create the table with -rows rows), paperless (1% new rows, 36
// edits to recent rows, 12 deletions) and random (edits to 1% of the rows,
// chosen uniformly). Every row is derived from its id, so the program knows
// the changed rows without reading the database; -changed receives the sum of
// the title and content lengths of the inserted and edited rows.
//
// For sqlite and postgres the statements run through database/sql
// (modernc.org/sqlite) or pgx; for mysql they are written to standard output.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"
)

const (
	batch   = 200
	edited  = " (edited)"
	editDay = "2025-06-02 14:30:00"
)

var words = strings.Fields(`
the of and to in a is that for it as was with be by on not he this are or his
from at which but have an they you were her she there been one all we their has
would when if so no will more can out who them some these its into than time may
only other new any could very first should two also after our made what over
such before must through where most well back much then between each same down
under own while last never however another without being both those because
during against among since until about above below again further once here why
how few many every either neither number part people year day week month
payment invoice amount total due date account customer reference balance
tax return income statement annual report insurance policy premium coverage claim
contract agreement party parties terms conditions clause section page signature
signed dated address street city postal code country phone email letter dear
sincerely regards please find attached enclosed document copy original receipt
purchase order delivery shipment item quantity price unit discount net gross vat
bank transfer credit debit card interest rate loan mortgage property rent lease
tenant landlord deposit notice termination renewal period effective valid until
electricity water heating gas meter reading consumption tariff supplier provider
doctor hospital patient appointment prescription pharmacy health school tuition
salary employer employee pension contribution certificate registration vehicle`)

type row struct {
	id                int
	title, content    string
	created, modified string
}

// genRow derives row id deterministically: ~2.2 KB of Zipf-distributed words.
func genRow(id int) row {
	r := rand.New(rand.NewPCG(0xca1e, uint64(id)))
	z := rand.NewZipf(r, 1.1, 2, uint64(len(words)-1))
	word := func() string { return words[z.Uint64()] }
	var b strings.Builder
	n := 1800 + r.IntN(800)
	sentence := 0
	for b.Len() < n {
		w := word()
		if sentence == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		b.WriteString(w)
		sentence++
		switch {
		case sentence > 6 && r.IntN(10) == 0:
			b.WriteString(". ")
			sentence = 0
		case r.IntN(25) == 0:
			fmt.Fprintf(&b, " %d ", r.IntN(100000))
		default:
			b.WriteByte(' ')
		}
	}
	title := fmt.Sprintf("%s %s %s %d", word(), word(), word(), id)
	t := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(id) * 25 * time.Minute)
	ts := t.Format("2006-01-02 15:04:05")
	return row{id, strings.ToUpper(title[:1]) + title[1:], strings.TrimSpace(b.String()) + ".", ts, ts}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

type sink interface{ exec(q string) error }

type dbSink struct{ db *sql.DB }

func (s dbSink) exec(q string) error { _, err := s.db.Exec(q); return err }

type pgSink struct{ c *pgx.Conn }

func (s pgSink) exec(q string) error { _, err := s.c.Exec(context.Background(), q); return err }

type fileSink struct{ w *bufio.Writer }

func (s fileSink) exec(q string) error { _, err := io.WriteString(s.w, q+";\n"); return err }

func insertRows(s sink, from, to int) (int64, error) {
	var changed int64
	for lo := from; lo <= to; lo += batch {
		var b strings.Builder
		b.WriteString("INSERT INTO documents (id, title, content, created, modified) VALUES ")
		for id := lo; id < lo+batch && id <= to; id++ {
			r := genRow(id)
			changed += int64(len(r.title) + len(r.content))
			if id > lo {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "(%d,%s,%s,%s,%s)", r.id, quote(r.title), quote(r.content), quote(r.created), quote(r.modified))
		}
		if err := s.exec(b.String()); err != nil {
			return 0, err
		}
	}
	return changed, nil
}

// pick returns n distinct ids from [lo, hi], skipping those in skip.
func pick(r *rand.Rand, n, lo, hi int, skip map[int]bool) []int {
	seen := map[int]bool{}
	var ids []int
	for len(ids) < n {
		id := lo + r.IntN(hi-lo+1)
		if seen[id] || skip[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids
}

func editRows(s sink, ids []int) (int64, error) {
	var changed int64
	for _, id := range ids {
		r := genRow(id)
		changed += int64(len(r.title) + len(edited) + len(r.content))
		q := fmt.Sprintf("UPDATE documents SET title = %s, modified = %s WHERE id = %d", quote(r.title+edited), quote(editDay), id)
		if err := s.exec(q); err != nil {
			return 0, err
		}
	}
	return changed, nil
}

func run(engine, step string, rows int, s sink) (int64, error) {
	if err := s.exec("BEGIN"); err != nil {
		return 0, err
	}
	var changed int64
	var err error
	switch step {
	case "init":
		ts := "TIMESTAMP"
		switch engine {
		case "mysql":
			ts = "DATETIME"
		case "sqlite":
			ts = "TEXT"
		}
		if err = s.exec(fmt.Sprintf("CREATE TABLE documents (id INTEGER PRIMARY KEY, title VARCHAR(255) NOT NULL, content TEXT NOT NULL, created %s NOT NULL, modified %s NOT NULL)", ts, ts)); err != nil {
			return 0, err
		}
		changed, err = insertRows(s, 1, rows)
	case "paperless":
		r := rand.New(rand.NewPCG(2, 2))
		var c1, c2 int64
		if c1, err = insertRows(s, rows+1, rows+rows/100); err != nil {
			return 0, err
		}
		recent := pick(r, 36, rows-2*rows/100+1, rows, nil)
		if c2, err = editRows(s, recent); err != nil {
			return 0, err
		}
		skip := map[int]bool{}
		for _, id := range recent {
			skip[id] = true
		}
		var del []string
		for _, id := range pick(r, 12, 1, rows, skip) {
			del = append(del, fmt.Sprint(id))
		}
		if err = s.exec("DELETE FROM documents WHERE id IN (" + strings.Join(del, ",") + ")"); err != nil {
			return 0, err
		}
		changed = c1 + c2
	case "random":
		r := rand.New(rand.NewPCG(3, 3))
		changed, err = editRows(s, pick(r, rows/100, 1, rows, nil))
	default:
		return 0, fmt.Errorf("unknown step %q", step)
	}
	if err != nil {
		return 0, err
	}
	return changed, s.exec("COMMIT")
}

func main() {
	engine := flag.String("engine", "", "sqlite, postgres or mysql")
	target := flag.String("target", "", "sqlite: database file; postgres: DSN; mysql: unused (SQL on stdout)")
	step := flag.String("step", "", "init, paperless or random")
	rows := flag.Int("rows", 100000, "rows of day 1")
	changedFile := flag.String("changed", "", "write the changed text bytes (title+content of inserted and edited rows) here")
	flag.Parse()

	var s sink
	var flush func() error = func() error { return nil }
	switch *engine {
	case "postgres":
		c, err := pgx.Connect(context.Background(), *target)
		if err != nil {
			fail(err)
		}
		defer c.Close(context.Background())
		s = pgSink{c}
	case "sqlite":
		db, err := sql.Open("sqlite", *target)
		if err != nil {
			fail(err)
		}
		db.SetMaxOpenConns(1) // BEGIN/COMMIT must run on the same connection
		defer db.Close()
		s = dbSink{db}
	case "mysql":
		w := bufio.NewWriterSize(os.Stdout, 1<<20)
		s, flush = fileSink{w}, w.Flush
	default:
		fail(fmt.Errorf("-engine must be sqlite, postgres or mysql"))
	}
	changed, err := run(*engine, *step, *rows, s)
	if err == nil {
		err = flush()
	}
	if err != nil {
		fail(err)
	}
	if *changedFile != "" {
		if err := os.WriteFile(*changedFile, []byte(fmt.Sprintln(changed)), 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "dbgrowth:", err)
	os.Exit(1)
}
