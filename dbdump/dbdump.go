// Package dbdump makes consistent, streaming dumps of the database behind a self-hosted
// web application (SQLite, PostgreSQL, MariaDB/MySQL), restores them, and probes the
// server version and the applied schema migrations (Django, Alembic or a custom query)
// so that a snapshot records which application state the dump belongs to.
//
// Dumps are streamed to an io.Writer with bounded memory. The PostgreSQL format
// "pg-ordered-v1" writes every table's rows in primary-key order so that consecutive
// dumps of a slowly changing database share almost all of their bytes, which is what a
// deduplicating repository needs. docs/DATABASES.md describes the formats, the
// consistency guarantees and the restore steps.
//
// This package imports no other cairn package.
package dbdump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Engine dumps, restores and probes one database.
type Engine interface {
	// Dump writes a consistent dump of the database to w, streaming (bounded memory,
	// no temp copy on disk) and returns what it learned. A failing dump tool's exit status
	// and stderr are in the error.
	Dump(ctx context.Context, w io.Writer) (Info, error)
	// Restore loads a dump produced by Dump (format given by info.Format) into the target.
	// Refuses a non-empty target database unless opts.Force, with ErrNotEmpty.
	Restore(ctx context.Context, r io.Reader, info Info, opts RestoreOptions) error
	// Probe connects and reports server version and migrations without dumping.
	Probe(ctx context.Context) (Info, error)
}

// Info describes a dump: where it came from and how to read it back.
type Info struct {
	Engine        string            `json:"engine"`         // "sqlite", "postgres", "mysql"
	ServerVersion string            `json:"server_version"` // server (or SQLite library) version
	Format        string            `json:"format"`         // see the Format* constants
	Database      string            `json:"database,omitempty"`
	Migrations    map[string]string `json:"migrations,omitempty"` // django: app -> latest applied name; alembic: "alembic" -> version(s); sql: key->value
	Tables        int               `json:"tables,omitempty"`
}

// Config is the [database] section of cairn.toml.
type Config struct {
	// Engine is "sqlite", "postgres" (or "postgresql") or "mysql" (or "mariadb").
	Engine string `toml:"engine"`
	// Path is the SQLite database file.
	Path string `toml:"path"`
	// DSN is the server connection string: postgres://user:pass@host:port/db (or a
	// libpq keyword/value string) or mysql://user:pass@host:port/db.
	DSN string `toml:"dsn"`
	// Format selects the dump format where an engine has several: for PostgreSQL ""
	// or "ordered" (pg-ordered-v1, the default) and "plain" (pg-plain).
	Format string `toml:"format"`
	// Migrations is "", "django", "alembic" or "sql" (MigrationsQuery returns key, value rows).
	Migrations string `toml:"migrations"`
	// MigrationsQuery is the query for Migrations = "sql".
	MigrationsQuery string `toml:"migrations_query"`
	// DumpOptions are extra arguments for the dump tool (pg_dump, mariadb-dump).
	DumpOptions []string `toml:"dump_options"`
}

// RestoreOptions tunes Restore.
type RestoreOptions struct {
	// Force restores into a non-empty target: a SQLite file is replaced, a PostgreSQL
	// database loses all its non-system schemas first, a MySQL database all its tables,
	// views and routines.
	Force bool
}

// Engine names as they appear in Info.Engine.
const (
	EngineSQLite   = "sqlite"
	EnginePostgres = "postgres"
	EngineMySQL    = "mysql"
)

// Dump formats as they appear in Info.Format.
const (
	FormatSQLiteFile = "sqlite-file"   // the database file image, page by page
	FormatPGOrdered  = "pg-ordered-v1" // psql script: pg_dump pre-data, ordered COPY data, post-data
	FormatPGPlain    = "pg-plain"      // pg_dump --format=plain
	FormatMySQLSQL   = "mysql-sql"     // mariadb-dump / mysqldump SQL script
)

// Sentinel errors callers test with errors.Is.
var (
	// ErrNotEmpty: Restore refused a target that already holds data (see RestoreOptions.Force).
	ErrNotEmpty = errors.New("target database is not empty")
	// ErrToolNotFound: an external program (pg_dump, psql, mariadb-dump, …) is not in PATH.
	ErrToolNotFound = errors.New("tool not found")
	// ErrMigrationTableMissing: the migration table named by Config.Migrations does not exist.
	ErrMigrationTableMissing = errors.New("migration table missing")
	// ErrBadStream: a dump stream is truncated or not of the announced format.
	ErrBadStream = errors.New("bad dump stream")
	// ErrUnsupported: an engine, format or configuration this package does not handle.
	ErrUnsupported = errors.New("unsupported")
	// ErrVersionNoMatch: a VersionSource regex did not match.
	ErrVersionNoMatch = errors.New("version regex did not match")
)

// New returns the engine described by cfg.
func New(cfg Config) (Engine, error) {
	if err := checkMigrations(cfg); err != nil {
		return nil, err
	}
	switch normalizeEngine(cfg.Engine) {
	case EngineSQLite:
		if cfg.Path == "" {
			return nil, errors.New("sqlite database: path is empty")
		}
		if cfg.Format != "" && cfg.Format != "file" && cfg.Format != FormatSQLiteFile {
			return nil, fmt.Errorf("%w: sqlite format %q (only %q)", ErrUnsupported, cfg.Format, FormatSQLiteFile)
		}
		return &sqliteEngine{path: cfg.Path, cfg: cfg}, nil
	case EnginePostgres:
		return newPostgres(cfg)
	case EngineMySQL:
		return newMySQL(cfg)
	case "":
		return nil, errors.New("database engine is empty (want sqlite, postgres or mysql)")
	default:
		return nil, fmt.Errorf("%w: database engine %q (want sqlite, postgres or mysql)", ErrUnsupported, cfg.Engine)
	}
}

// NewTarget returns an engine for restoring into another place than the configured
// database (cairn's --db-into): dsnOrPath is a file path for SQLite and a DSN for the
// servers. The returned engine can also Probe the target.
func NewTarget(engine, dsnOrPath string) (Engine, error) {
	cfg := Config{Engine: engine}
	if normalizeEngine(engine) == EngineSQLite {
		cfg.Path = dsnOrPath
	} else {
		cfg.DSN = dsnOrPath
	}
	return New(cfg)
}

func normalizeEngine(e string) string {
	switch strings.ToLower(strings.TrimSpace(e)) {
	case "sqlite", "sqlite3":
		return EngineSQLite
	case "postgres", "postgresql", "pg":
		return EnginePostgres
	case "mysql", "mariadb":
		return EngineMySQL
	default:
		return strings.ToLower(strings.TrimSpace(e))
	}
}

func checkMigrations(cfg Config) error {
	switch cfg.Migrations {
	case "", "django", "alembic":
		return nil
	case "sql":
		if strings.TrimSpace(cfg.MigrationsQuery) == "" {
			return errors.New(`migrations = "sql" needs migrations_query`)
		}
		return nil
	default:
		return fmt.Errorf("%w: migrations %q (want django, alembic or sql)", ErrUnsupported, cfg.Migrations)
	}
}

func checkFormat(info Info, want ...string) error {
	for _, f := range want {
		if info.Format == f {
			return nil
		}
	}
	return fmt.Errorf("%w: cannot restore format %q with this engine (want %s)", ErrUnsupported, info.Format, strings.Join(want, " or "))
}
