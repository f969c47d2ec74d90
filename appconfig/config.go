// Package appconfig reads cairn.toml, the per-application configuration of cairn: which
// repository to use and how to unlock it, which application folders and database to
// back up, the retention policy, storage credentials, the serve schedule and
// notifications.
//
// Parse decodes and validates a document in one step. Every problem is reported with
// the file name, the line and the key, e.g.
//
//	cairn.toml:12: unknown key "databse.engine"
//	cairn.toml:9: database.engine: "oracle" is not one of sqlite, postgres, mysql
//
// Relative paths in the file are resolved against the directory of the file, so a
// Config always holds absolute local paths. Preset returns commented starting points
// for the supported applications; docs/CONFIG.md describes every key.
package appconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Sentinel errors. Every configuration error matches ErrInvalid with errors.Is; unknown
// keys also match ErrUnknownKey.
var (
	ErrInvalid    = errors.New("invalid configuration")
	ErrUnknownKey = errors.New("unknown configuration key")
)

// DefaultListen is the serve.listen address used when the key is absent.
const DefaultListen = "127.0.0.1:8467"

// Database engines, migration systems and PostgreSQL dump formats accepted in
// [database].
const (
	EngineSQLite   = "sqlite"
	EnginePostgres = "postgres"
	EngineMySQL    = "mysql"

	MigrationsDjango  = "django"
	MigrationsAlembic = "alembic"
	MigrationsSQL     = "sql"

	FormatOrdered = "ordered"
	FormatPlain   = "plain"
)

// Config is a parsed and validated cairn.toml. Optional tables are nil when absent.
type Config struct {
	// Repository is a local directory (absolute after Parse), "s3:http(s)://host/bucket[/prefix]"
	// or "sftp:user@host:/path".
	Repository string `toml:"repository"`
	// At most one of PasswordFile, PasswordCommand and IdentityFile is set.
	PasswordFile    string `toml:"password_file"`
	PasswordCommand string `toml:"password_command"`
	IdentityFile    string `toml:"identity_file"`
	// Host overrides the host name recorded in snapshots.
	Host string `toml:"host"`
	// CacheDir overrides the local cache directory.
	CacheDir string `toml:"cache_dir"`

	App       App             `toml:"app"`
	Database  *Database       `toml:"database"`
	Retention *Retention      `toml:"retention"`
	S3        *S3             `toml:"s3"`
	SFTP      *SFTP           `toml:"sftp"`
	Schedule  *ScheduleConfig `toml:"schedule"`
	Notify    *Notify         `toml:"notify"`
	Serve     Serve           `toml:"serve"`

	// Path is the absolute path of the file the configuration was read from, and Dir
	// its directory (the current directory for Parse with an empty name).
	Path string `toml:"-"`
	Dir  string `toml:"-"`
}

// App describes the application's files and version.
type App struct {
	Name    string   `toml:"name"`
	Paths   []string `toml:"paths"`
	Exclude []string `toml:"exclude"`
	// Version tells how to find the application's version, recorded in snapshots.
	Version VersionSource `toml:"version"`
	// DumpNameTemplate is a strftime pattern, applied in UTC, for default dump file names.
	DumpNameTemplate string `toml:"dump_name_template"`
}

// DefaultDumpNameTemplate is App.DumpNameTemplate when the key is absent.
const DefaultDumpNameTemplate = "%Y%m%d-%H%M%S"

// VersionSource is exactly one of Literal, Command or File. Regex, allowed with Command
// and File, extracts the version from the output or file contents.
type VersionSource struct {
	Literal string   `toml:"literal"`
	Command []string `toml:"command"`
	File    string   `toml:"file"`
	Regex   string   `toml:"regex"`
}

// Database describes the application's database.
type Database struct {
	// Engine is sqlite, postgres or mysql.
	Engine string `toml:"engine"`
	// Path is the SQLite database file (sqlite only).
	Path string `toml:"path"`
	// DSN is the connection string (postgres and mysql only).
	DSN string `toml:"dsn"`
	// Migrations is "", django, alembic or sql; MigrationsQuery goes with sql.
	Migrations      string `toml:"migrations"`
	MigrationsQuery string `toml:"migrations_query"`
	// Format is the PostgreSQL dump format, ordered (default) or plain.
	Format      string   `toml:"format"`
	DumpOptions []string `toml:"dump_options"`
}

// Retention is the default policy of "cairn forget". Counts are 0 (off), positive, or
// -1 (unlimited); KeepWithin uses the calendar duration syntax of
// snapshot/policy.ParseDuration ("2d", "1y6m", "36h").
type Retention struct {
	KeepLast    int      `toml:"keep_last"`
	KeepHourly  int      `toml:"keep_hourly"`
	KeepDaily   int      `toml:"keep_daily"`
	KeepWeekly  int      `toml:"keep_weekly"`
	KeepMonthly int      `toml:"keep_monthly"`
	KeepYearly  int      `toml:"keep_yearly"`
	KeepWithin  string   `toml:"keep_within"`
	KeepTag     []string `toml:"keep_tag"`
}

// S3 holds credentials and options for s3: repositories.
type S3 struct {
	AccessKeyID     string `toml:"access_key_id"`
	SecretAccessKey string `toml:"secret_access_key"`
	Region          string `toml:"region"`
	// ObjectLockDays > 0 asks for object-lock retention on uploaded files, in
	// ObjectLockMode (GOVERNANCE, the default, or COMPLIANCE).
	ObjectLockDays int    `toml:"object_lock_days"`
	ObjectLockMode string `toml:"object_lock_mode"`
}

// SFTP holds options for sftp: repositories.
type SFTP struct {
	KeyFile    string `toml:"key_file"`
	KnownHosts string `toml:"known_hosts"`
}

// ScheduleConfig holds the job schedules of "cairn serve". The string fields are the
// expressions as written; the Schedule fields are their parsed forms (zero when the
// expression is empty).
type ScheduleConfig struct {
	Backup string `toml:"backup"`
	Prune  string `toml:"prune"`
	Check  string `toml:"check"`

	BackupSchedule Schedule `toml:"-"`
	PruneSchedule  Schedule `toml:"-"`
	CheckSchedule  Schedule `toml:"-"`
}

// Notify configures notifications about job results. Failures are always notified;
// successes only with OnSuccess.
type Notify struct {
	OnSuccess   bool         `toml:"on_success"`
	Email       *Email       `toml:"email"`
	Webhook     string       `toml:"webhook"`
	Healthcheck *Healthcheck `toml:"healthcheck"`
}

// Email is an SMTP notification target.
type Email struct {
	SMTP         string   `toml:"smtp"`
	From         string   `toml:"from"`
	To           []string `toml:"to"`
	Username     string   `toml:"username"`
	PasswordFile string   `toml:"password_file"`
	StartTLS     bool     `toml:"starttls"`
}

// Healthcheck holds ping URLs (healthchecks.io style) for job start, success and failure.
type Healthcheck struct {
	Start   string `toml:"start"`
	Success string `toml:"success"`
	Fail    string `toml:"fail"`
}

// Serve configures the HTTP interface of "cairn serve".
type Serve struct {
	// Listen is host:port; DefaultListen when absent.
	Listen string `toml:"listen"`
	// At most one of PasswordHashFile and TokenFile is set.
	PasswordHashFile string `toml:"password_hash_file"`
	TokenFile        string `toml:"token_file"`
}

// Error is one problem in a configuration file.
type Error struct {
	File string // the name given to Parse or Load
	Line int    // 1-based; 0 when the problem has no single line
	Key  string // dotted key, e.g. "database.engine"; "" when none applies
	Msg  string // the message without file, line and key

	unknown bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" && !e.unknown {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes every Error match ErrInvalid, and unknown-key errors ErrUnknownKey.
func (e *Error) Is(target error) bool {
	return target == ErrInvalid || (e.unknown && target == ErrUnknownKey)
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a configuration. The name is used in error messages and
// its directory resolves relative paths ("" means the current directory and the name
// "config" in messages). All problems found are returned together (errors.Join when
// more than one), each as an *Error.
func Parse(data []byte, name string) (*Config, error) {
	label := name
	if label == "" {
		label = "config"
	}
	abs := ""
	dir := "."
	if name != "" {
		dir = filepath.Dir(name)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("config directory of %s: %w", label, err)
	}
	if name != "" {
		abs = filepath.Join(dir, filepath.Base(name))
	}

	pos, err := check(data, label)
	if err != nil {
		return nil, err
	}
	cfg, err := decode(data, label)
	if err != nil {
		return nil, err
	}
	cfg.Path = abs
	cfg.Dir = dir
	v := &validator{file: label, dir: dir, pos: pos}
	v.config(cfg)
	if err := v.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Find locates the configuration file: the --config flag value if not empty, else
// $CAIRN_CONFIG, else ./cairn.toml if it exists. It returns "" and no error when there
// is no configuration. A file named by the flag or the variable must exist.
func Find(flag string) (string, error) {
	for _, c := range []struct{ from, path string }{
		{"--config", flag},
		{"CAIRN_CONFIG", os.Getenv("CAIRN_CONFIG")},
	} {
		if c.path == "" {
			continue
		}
		fi, err := os.Stat(c.path)
		if err != nil {
			return "", fmt.Errorf("config file from %s: %w", c.from, err)
		}
		if fi.IsDir() {
			return "", fmt.Errorf("config file from %s: %s is a directory", c.from, c.path)
		}
		return c.path, nil
	}
	fi, err := os.Stat("cairn.toml")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("look for ./cairn.toml: %w", err)
	case fi.IsDir():
		return "", errors.New("look for ./cairn.toml: it is a directory")
	}
	return "cairn.toml", nil
}
