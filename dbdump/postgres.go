package dbdump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgOrderedHeader is the first line of a pg-ordered-v1 stream.
const pgOrderedHeader = "-- cairn-dump pg-ordered-v1\n"

// pgOrderedEnd matches the last line of a complete pg-ordered-v1 stream.
var pgOrderedEnd = regexp.MustCompile(`\n-- cairn-end pg-ordered-v1 tables=\d+ sequences=\d+\n$`)

// pgEngine dumps a PostgreSQL database.
type pgEngine struct {
	cfg      Config
	toolDSN  string // DSN without the password, for pg_dump/psql's --dbname
	password string // handed to the tools as PGPASSWORD
	ordered  bool
}

func newPostgres(cfg Config) (*pgEngine, error) {
	if cfg.DSN == "" {
		return nil, errors.New("postgres database: dsn is empty")
	}
	if _, err := pgx.ParseConfig(cfg.DSN); err != nil {
		return nil, fmt.Errorf("parse postgres dsn: %w", err)
	}
	rest, pw, err := splitPGPassword(cfg.DSN)
	if err != nil {
		return nil, err
	}
	e := &pgEngine{cfg: cfg, toolDSN: rest, password: pw}
	switch cfg.Format {
	case "", "ordered", FormatPGOrdered:
		e.ordered = true
	case "plain", FormatPGPlain:
	default:
		return nil, fmt.Errorf("%w: postgres format %q (want ordered or plain)", ErrUnsupported, cfg.Format)
	}
	return e, nil
}

func (e *pgEngine) toolEnv() []string {
	env := []string{"PGCONNECT_TIMEOUT=15"}
	if e.password != "" {
		env = append(env, "PGPASSWORD="+e.password)
	}
	return env
}

func (e *pgEngine) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(e.cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse postgres dsn: %w", err)
	}
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = 15 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return conn, nil
}

// pgQuerier adapts a transaction to the querier interface.
type pgQuerier struct{ tx pgx.Tx }

func (q pgQuerier) tableExists(ctx context.Context, name string) (bool, error) {
	var ok bool
	err := q.tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok)
	return ok, err
}

// rows runs query with the simple protocol so that every value arrives as text.
func (q pgQuerier) rows(ctx context.Context, query string) ([][]string, error) {
	rows, err := q.tx.Query(ctx, query, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]string, len(raw))
		for i, v := range raw {
			row[i] = string(v)
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// pgUserRelations restricts pg_class c / pg_namespace n to what pg_dump dumps by default:
// no system schemas, no temporary schemas, no members of extensions.
const pgUserRelations = `n.nspname NOT IN ('pg_catalog', 'information_schema')
	AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
	AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')`

type pgTable struct {
	schema, name string
	cols, pk     []string
}

func (t pgTable) ident() string { return pgx.Identifier{t.schema, t.name}.Sanitize() }

// describe reads version, database, table count and migrations inside tx.
func (e *pgEngine) describe(ctx context.Context, tx pgx.Tx) (Info, error) {
	info := Info{Engine: EnginePostgres, Format: FormatPGPlain}
	if e.ordered {
		info.Format = FormatPGOrdered
	}
	if err := tx.QueryRow(ctx, "SELECT current_setting('server_version'), current_database()").Scan(&info.ServerVersion, &info.Database); err != nil {
		return Info{}, fmt.Errorf("read postgres server version: %w", err)
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND `+pgUserRelations).Scan(&info.Tables); err != nil {
		return Info{}, fmt.Errorf("count postgres tables: %w", err)
	}
	m, err := readMigrations(ctx, pgQuerier{tx}, e.cfg, info.Database)
	if err != nil {
		return Info{}, err
	}
	info.Migrations = m
	return info, nil
}

// begin opens the REPEATABLE READ, READ ONLY transaction every read happens in.
func (e *pgEngine) begin(ctx context.Context, conn *pgx.Conn) (pgx.Tx, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin postgres transaction: %w", err)
	}
	return tx, nil
}

func (e *pgEngine) Probe(ctx context.Context) (Info, error) {
	conn, err := e.connect(ctx)
	if err != nil {
		return Info{}, err
	}
	defer conn.Close(context.Background())
	tx, err := e.begin(ctx, conn)
	if err != nil {
		return Info{}, err
	}
	defer tx.Rollback(context.Background())
	return e.describe(ctx, tx)
}

func (e *pgEngine) Dump(ctx context.Context, w io.Writer) (Info, error) {
	if _, err := lookTool("pg_dump"); err != nil {
		return Info{}, err
	}
	conn, err := e.connect(ctx)
	if err != nil {
		return Info{}, err
	}
	defer conn.Close(context.Background())
	tx, err := e.begin(ctx, conn)
	if err != nil {
		return Info{}, err
	}
	defer tx.Rollback(context.Background())

	// The exported snapshot lets pg_dump see exactly what this transaction sees; it
	// stays valid while the transaction is open.
	var snap string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snap); err != nil {
		return Info{}, fmt.Errorf("export postgres snapshot: %w", err)
	}
	info, err := e.describe(ctx, tx)
	if err != nil {
		return Info{}, err
	}
	if !e.ordered {
		if err := e.pgDump(ctx, w, snap, "--format=plain"); err != nil {
			return Info{}, err
		}
		return info, nil
	}
	n, err := e.dumpOrdered(ctx, tx, snap, w)
	if err != nil {
		return Info{}, err
	}
	info.Tables = n
	return info, nil
}

// pgDump runs pg_dump inside the exported snapshot, streaming its output to w.
func (e *pgEngine) pgDump(ctx context.Context, w io.Writer, snap string, args ...string) error {
	a := append([]string{"--no-password", "--snapshot=" + snap}, args...)
	a = append(a, e.cfg.DumpOptions...)
	a = append(a, "--dbname="+e.toolDSN)
	return tool{name: "pg_dump", args: a, env: e.toolEnv(), stdout: w}.run(ctx)
}

// dumpOrdered writes a pg-ordered-v1 stream (see docs/DATABASES.md) and returns the
// number of tables.
func (e *pgEngine) dumpOrdered(ctx context.Context, tx pgx.Tx, snap string, w io.Writer) (int, error) {
	var lo bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata)").Scan(&lo); err != nil {
		return 0, fmt.Errorf("look for large objects: %w", err)
	}
	if lo {
		return 0, fmt.Errorf("%w: the database has large objects, which %s does not carry: use format = \"plain\"", ErrUnsupported, FormatPGOrdered)
	}
	// Fail loudly rather than dump a row-level-security-filtered subset of a table.
	if _, err := tx.Exec(ctx, "SET LOCAL row_security = off"); err != nil {
		return 0, fmt.Errorf("set row_security: %w", err)
	}
	tables, err := pgListTables(ctx, tx)
	if err != nil {
		return 0, err
	}
	// Keep the tables from being dropped or rewritten until the transaction ends.
	for i := 0; i < len(tables); i += 200 {
		names := make([]string, 0, 200)
		for _, t := range tables[i:min(i+200, len(tables))] {
			names = append(names, t.ident())
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE "+strings.Join(names, ", ")+" IN ACCESS SHARE MODE"); err != nil {
			return 0, fmt.Errorf("lock postgres tables: %w", err)
		}
	}
	seqs, err := pgListSequences(ctx, tx)
	if err != nil {
		return 0, err
	}

	if _, err := io.WriteString(w, pgOrderedHeader+"-- cairn-section pre-data\n"); err != nil {
		return 0, fmt.Errorf("write dump: %w", err)
	}
	if err := e.pgDump(ctx, w, snap, "--section=pre-data"); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(w, "-- cairn-section data\n"); err != nil {
		return 0, fmt.Errorf("write dump: %w", err)
	}
	pg := tx.Conn().PgConn()
	for _, t := range tables {
		quoted := make([]string, len(t.cols))
		for i, c := range t.cols {
			quoted[i] = pgx.Identifier{c}.Sanitize()
		}
		colList, selList := "", strings.Join(quoted, ", ")
		if len(quoted) > 0 {
			colList = " (" + selList + ")"
		}
		order := `ROW(cairn_row.*)::text COLLATE "C"`
		if len(t.pk) > 0 {
			pk := make([]string, len(t.pk))
			for i, c := range t.pk {
				pk[i] = "cairn_row." + pgx.Identifier{c}.Sanitize()
			}
			order = strings.Join(pk, ", ")
		}
		sel := make([]string, len(quoted))
		for i, q := range quoted {
			sel[i] = "cairn_row." + q
		}
		if _, err := io.WriteString(w, "COPY "+t.ident()+colList+" FROM stdin;\n"); err != nil {
			return 0, fmt.Errorf("write dump: %w", err)
		}
		q := "COPY (SELECT " + strings.Join(sel, ", ") + " FROM ONLY " + t.ident() + " AS cairn_row ORDER BY " + order + ") TO STDOUT"
		if _, err := pg.CopyTo(ctx, w, q); err != nil {
			return 0, fmt.Errorf("copy table %s: %w", t.ident(), err)
		}
		if _, err := io.WriteString(w, "\\.\n"); err != nil {
			return 0, fmt.Errorf("write dump: %w", err)
		}
	}
	for _, s := range seqs {
		var last int64
		var called bool
		if err := tx.QueryRow(ctx, "SELECT last_value, is_called FROM "+s).Scan(&last, &called); err != nil {
			return 0, fmt.Errorf("read sequence %s: %w", s, err)
		}
		line := fmt.Sprintf("SELECT pg_catalog.setval(%s, %d, %t);\n", pgLiteral(s), last, called)
		if _, err := io.WriteString(w, line); err != nil {
			return 0, fmt.Errorf("write dump: %w", err)
		}
	}
	if _, err := io.WriteString(w, "-- cairn-section post-data\n"); err != nil {
		return 0, fmt.Errorf("write dump: %w", err)
	}
	if err := e.pgDump(ctx, w, snap, "--section=post-data"); err != nil {
		return 0, err
	}
	end := fmt.Sprintf("-- cairn-end pg-ordered-v1 tables=%d sequences=%d\n", len(tables), len(seqs))
	if _, err := io.WriteString(w, end); err != nil {
		return 0, fmt.Errorf("write dump: %w", err)
	}
	return len(tables), nil
}

func pgListTables(ctx context.Context, tx pgx.Tx) ([]pgTable, error) {
	var vnum int
	if err := tx.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&vnum); err != nil {
		return nil, fmt.Errorf("read postgres server version: %w", err)
	}
	notGenerated := "true"
	if vnum >= 120000 {
		notGenerated = "a.attgenerated = ''"
	}
	rows, err := tx.Query(ctx, `SELECT n.nspname::text, c.relname::text,
		ARRAY(SELECT a.attname::text FROM pg_attribute a
			WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND `+notGenerated+`
			ORDER BY a.attnum),
		ARRAY(SELECT a.attname::text FROM pg_index i
			CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND `+pgUserRelations+`
		ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("list postgres tables: %w", err)
	}
	defer rows.Close()
	var out []pgTable
	for rows.Next() {
		var t pgTable
		if err := rows.Scan(&t.schema, &t.name, &t.cols, &t.pk); err != nil {
			return nil, fmt.Errorf("list postgres tables: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list postgres tables: %w", err)
	}
	return out, nil
}

// pgListSequences returns the quoted names of the sequences pg_dump would dump.
func pgListSequences(ctx context.Context, tx pgx.Tx) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT n.nspname::text, c.relname::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'S' AND `+pgUserRelations+`
		ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("list postgres sequences: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s, n string
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("list postgres sequences: %w", err)
		}
		out = append(out, pgx.Identifier{s, n}.Sanitize())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list postgres sequences: %w", err)
	}
	return out, nil
}

func pgLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (e *pgEngine) Restore(ctx context.Context, r io.Reader, info Info, opts RestoreOptions) error {
	if err := checkFormat(info, FormatPGOrdered, FormatPGPlain); err != nil {
		return err
	}
	if _, err := lookTool("psql"); err != nil {
		return err
	}
	conn, err := e.connect(ctx)
	if err != nil {
		return err
	}
	clean, err := pgCleanScript(ctx, conn, opts.Force)
	conn.Close(context.Background())
	if err != nil {
		return err
	}

	var src io.Reader
	if info.Format == FormatPGOrdered {
		src = &streamChecker{r: r, what: FormatPGOrdered, head: []byte(pgOrderedHeader),
			complete: func(tail []byte) bool { return pgOrderedEnd.Match(tail) }}
	} else {
		src = &streamChecker{r: r, what: FormatPGPlain, head: []byte("--\n-- PostgreSQL database dump\n"),
			complete: func(tail []byte) bool { return bytes.Contains(tail, []byte("-- PostgreSQL database dump complete")) }}
	}
	if clean != "" {
		src = io.MultiReader(strings.NewReader(clean), src)
	}
	// One transaction: a failing statement or a truncated stream leaves the target as it was.
	args := []string{"-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-", "--dbname=" + e.toolDSN}
	if err := (tool{name: "psql", args: args, env: e.toolEnv(), stdin: src}).run(ctx); err != nil {
		return fmt.Errorf("restore postgres database: %w", err)
	}
	return nil
}

// pgCleanScript checks whether the target database holds user relations. It returns
// ErrNotEmpty unless force, and then the SQL that drops every non-system schema and
// recreates an empty public schema.
func pgCleanScript(ctx context.Context, conn *pgx.Conn, force bool) (string, error) {
	var db string
	var n int
	var schemas []string
	err := conn.QueryRow(ctx, `SELECT current_database(),
		(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND `+pgUserRelations+`),
		ARRAY(SELECT n.nspname::text FROM pg_namespace n
			WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
			ORDER BY 1)`).Scan(&db, &n, &schemas)
	if err != nil {
		return "", fmt.Errorf("inspect target postgres database: %w", err)
	}
	if n == 0 {
		return "", nil
	}
	if !force {
		return "", fmt.Errorf("%w: postgres database %s has %d relations in schemas %s", ErrNotEmpty, db, n, strings.Join(schemas, ", "))
	}
	var b strings.Builder
	for _, s := range schemas {
		fmt.Fprintf(&b, "DROP SCHEMA IF EXISTS %s CASCADE;\n", pgx.Identifier{s}.Sanitize())
	}
	b.WriteString("CREATE SCHEMA public;\nGRANT USAGE ON SCHEMA public TO PUBLIC;\n")
	return b.String(), nil
}

// streamChecker passes a dump stream through, checking that it starts with head and
// that its last bytes satisfy complete; otherwise reading fails with ErrBadStream
// before the consumer sees the end of the input.
type streamChecker struct {
	r        io.Reader
	what     string
	head     []byte
	complete func(tail []byte) bool

	seen int // bytes of head checked
	tail []byte
}

const streamTailLen = 512

func (s *streamChecker) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	data := p[:n]
	if s.seen < len(s.head) && n > 0 {
		k := min(len(s.head)-s.seen, n)
		if !bytes.Equal(data[:k], s.head[s.seen:s.seen+k]) {
			return 0, fmt.Errorf("%w: not a %s stream (unexpected start)", ErrBadStream, s.what)
		}
		s.seen += k
	}
	s.tail = append(s.tail, data...)
	if len(s.tail) > streamTailLen {
		s.tail = append(s.tail[:0], s.tail[len(s.tail)-streamTailLen:]...)
	}
	if err == io.EOF {
		if s.seen < len(s.head) {
			return 0, fmt.Errorf("%w: %s stream is empty or truncated at its start", ErrBadStream, s.what)
		}
		if !s.complete(s.tail) {
			return 0, fmt.Errorf("%w: %s stream is truncated (no end marker)", ErrBadStream, s.what)
		}
	}
	return n, err
}
