package dbdump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mysqlEngine dumps a MariaDB or MySQL database with mariadb-dump (or mysqldump) and
// restores it with the mariadb (or mysql) client. The password reaches the tools through
// a private defaults-extra-file (mode 0600, removed afterwards), never through argv.
type mysqlEngine struct {
	cfg  Config
	conn mysqlConn
}

var (
	mysqlDumpTools   = []string{"mariadb-dump", "mysqldump"}
	mysqlClientTools = []string{"mariadb", "mysql"}
)

func newMySQL(cfg Config) (*mysqlEngine, error) {
	if cfg.DSN == "" {
		return nil, errors.New("mysql database: dsn is empty")
	}
	if cfg.Format != "" && cfg.Format != "sql" && cfg.Format != FormatMySQLSQL {
		return nil, fmt.Errorf("%w: mysql format %q (only %q)", ErrUnsupported, cfg.Format, FormatMySQLSQL)
	}
	c, err := parseMySQLDSN(cfg.DSN)
	if err != nil {
		return nil, err
	}
	return &mysqlEngine{cfg: cfg, conn: c}, nil
}

// pickTool returns the first of names found in PATH.
func pickTool(names []string) (string, error) {
	for _, n := range names {
		if _, err := lookTool(n); err == nil {
			return n, nil
		}
	}
	_, err := lookTool(names[0], names[1:]...)
	return "", err
}

// withClientArgs writes the password file and calls fn with the connection arguments
// (the first being --defaults-extra-file, which the tools require in first position).
func (e *mysqlEngine) withClientArgs(fn func(args []string) error) error {
	dir, err := os.MkdirTemp("", "cairn-mysql-")
	if err != nil {
		return fmt.Errorf("mysql credentials: %w", err)
	}
	defer os.RemoveAll(dir)
	f := filepath.Join(dir, "client.cnf")
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(e.conn.password)
	if err := os.WriteFile(f, []byte("[client]\npassword=\""+esc+"\"\n"), 0o600); err != nil {
		return fmt.Errorf("mysql credentials: %w", err)
	}
	args := []string{"--defaults-extra-file=" + f}
	if e.conn.socket != "" {
		args = append(args, "--protocol=SOCKET", "--socket="+e.conn.socket)
	} else {
		args = append(args, "--protocol=TCP", "--host="+e.conn.host)
		if e.conn.port != "" {
			args = append(args, "--port="+e.conn.port)
		}
	}
	if e.conn.user != "" {
		args = append(args, "--user="+e.conn.user)
	}
	return fn(args)
}

// query runs sql with the client in batch mode and returns the rows (tab-separated,
// batch escapes undone; NULL reads as "NULL").
func (e *mysqlEngine) query(ctx context.Context, sql string) ([][]string, error) {
	client, err := pickTool(mysqlClientTools)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	err = e.withClientArgs(func(args []string) error {
		args = append(args, "--batch", "--skip-column-names", "--default-character-set=utf8mb4",
			"--database="+e.conn.database, "--execute="+sql)
		return tool{name: client, args: args, stdout: &limitWriter{w: &out, n: 64 << 20}}.run(ctx)
	})
	if err != nil {
		return nil, err
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		fields := strings.Split(line, "\t")
		for i, f := range fields {
			fields[i] = mysqlUnescape(f)
		}
		rows = append(rows, fields)
	}
	return rows, nil
}

func mysqlUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return strings.NewReplacer(`\\`, `\`, `\t`, "\t", `\n`, "\n", `\0`, "\x00").Replace(s)
}

func mysqlLiteral(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

func mysqlIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

type mysqlQuerier struct{ e *mysqlEngine }

func (q mysqlQuerier) tableExists(ctx context.Context, name string) (bool, error) {
	rows, err := q.e.query(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = "+mysqlLiteral(name))
	if err != nil {
		return false, err
	}
	return len(rows) == 1 && len(rows[0]) == 1 && rows[0][0] != "0", nil
}

func (q mysqlQuerier) rows(ctx context.Context, query string) ([][]string, error) {
	return q.e.query(ctx, query)
}

func (e *mysqlEngine) Probe(ctx context.Context) (Info, error) {
	rows, err := e.query(ctx, "SELECT VERSION(), DATABASE(), (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE')")
	if err != nil {
		return Info{}, fmt.Errorf("probe mysql: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 3 {
		return Info{}, fmt.Errorf("probe mysql: unexpected answer %q", rows)
	}
	info := Info{Engine: EngineMySQL, Format: FormatMySQLSQL, ServerVersion: rows[0][0], Database: rows[0][1]}
	if info.Tables, err = strconv.Atoi(rows[0][2]); err != nil {
		return Info{}, fmt.Errorf("probe mysql: table count %q: %w", rows[0][2], err)
	}
	if info.Migrations, err = readMigrations(ctx, mysqlQuerier{e}, e.cfg, info.Database); err != nil {
		return Info{}, err
	}
	return info, nil
}

// Dump probes first (version, migrations) and then runs the dump tool in one
// consistent InnoDB snapshot (--single-transaction).
func (e *mysqlEngine) Dump(ctx context.Context, w io.Writer) (Info, error) {
	dumper, err := pickTool(mysqlDumpTools)
	if err != nil {
		return Info{}, err
	}
	info, err := e.Probe(ctx)
	if err != nil {
		return Info{}, err
	}
	err = e.withClientArgs(func(args []string) error {
		args = append(args, "--single-transaction", "--order-by-primary", "--routines", "--triggers",
			"--hex-blob", "--skip-dump-date", "--no-tablespaces", "--default-character-set=utf8mb4")
		args = append(args, e.cfg.DumpOptions...)
		args = append(args, e.conn.database)
		return tool{name: dumper, args: args, stdout: w}.run(ctx)
	})
	if err != nil {
		return Info{}, err
	}
	return info, nil
}

func (e *mysqlEngine) Restore(ctx context.Context, r io.Reader, info Info, opts RestoreOptions) error {
	if err := checkFormat(info, FormatMySQLSQL); err != nil {
		return err
	}
	client, err := pickTool(mysqlClientTools)
	if err != nil {
		return err
	}
	objs, err := e.query(ctx, `SELECT IF(table_type = 'VIEW', 'VIEW', 'TABLE'), table_name FROM information_schema.tables WHERE table_schema = DATABASE()
		UNION ALL SELECT routine_type, routine_name FROM information_schema.routines WHERE routine_schema = DATABASE()`)
	if err != nil {
		return fmt.Errorf("inspect target mysql database: %w", err)
	}
	var clean strings.Builder
	if len(objs) > 0 {
		if !opts.Force {
			return fmt.Errorf("%w: mysql database %s has %d tables, views or routines", ErrNotEmpty, e.conn.database, len(objs))
		}
		clean.WriteString("SET FOREIGN_KEY_CHECKS=0;\n")
		for _, o := range objs {
			if len(o) == 2 {
				fmt.Fprintf(&clean, "DROP %s IF EXISTS %s;\n", o[0], mysqlIdent(o[1]))
			}
		}
		clean.WriteString("SET FOREIGN_KEY_CHECKS=1;\n")
	}
	src := io.MultiReader(strings.NewReader(clean.String()), &streamChecker{r: r, what: FormatMySQLSQL,
		complete: func(tail []byte) bool { return bytes.Contains(tail, []byte("-- Dump completed")) }})
	err = e.withClientArgs(func(args []string) error {
		args = append(args, "--batch", "--binary-mode", "--default-character-set=utf8mb4", "--database="+e.conn.database)
		return tool{name: client, args: args, stdin: src}.run(ctx)
	})
	if err != nil {
		return fmt.Errorf("restore mysql database %s (it may be partly restored): %w", e.conn.database, err)
	}
	return nil
}
