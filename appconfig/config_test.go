package appconfig

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const fullConfig = `repository = "/srv/backups/paperless"
password_file = "secrets/password"
host = "paperless-prod"
cache_dir = "/var/cache/cairn"

[app]
name = "paperless-ngx"
paths = ["/srv/paperless/media", "data"]
exclude = ["*.tmp"]
version = { command = ["cat", "/srv/paperless/VERSION"] }
dump_name_template = "paperless-%Y%m%d"

[database]
engine = "postgres"
dsn = "postgres://paperless@127.0.0.1:5432/paperless"
migrations = "django"
dump_options = ["--exclude-table=documents_log"]

[retention]
keep_last = 3
keep_hourly = 24
keep_daily = 7
keep_weekly = 4
keep_monthly = 6
keep_yearly = 2
keep_within = "2d"
keep_tag = ["pre-upgrade"]

[s3]
access_key_id = "AKID"
secret_access_key = "SECRET"
region = "eu-west-1"
object_lock_days = 30

[sftp]
key_file = "keys/id_ed25519"
known_hosts = "/etc/cairn/known_hosts"

[schedule]
backup = "hourly"
prune = "weekly"
check = "@every 15m"

[notify]
on_success = true
email = { smtp = "127.0.0.1:25", from = "cairn@example.org", to = ["ops@example.org"], username = "cairn", password_file = "smtp.pw", starttls = true }
webhook = "http://127.0.0.1:9000/hook"
healthcheck = { start = "https://hc.example.org/ping/x/start", success = "https://hc.example.org/ping/x", fail = "https://hc.example.org/ping/x/fail" }

[serve]
listen = "127.0.0.1:9999"
password_hash_file = "serve.hash"
`

func TestParseFull(t *testing.T) {
	cfg, err := Parse([]byte(fullConfig), "/etc/cairn/cairn.toml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Config{
		Repository:   "/srv/backups/paperless",
		PasswordFile: "/etc/cairn/secrets/password",
		Host:         "paperless-prod",
		CacheDir:     "/var/cache/cairn",
		App: App{
			Name:             "paperless-ngx",
			Paths:            []string{"/srv/paperless/media", "/etc/cairn/data"},
			Exclude:          []string{"*.tmp"},
			Version:          VersionSource{Command: []string{"cat", "/srv/paperless/VERSION"}},
			DumpNameTemplate: "paperless-%Y%m%d",
		},
		Database: &Database{
			Engine:      "postgres",
			DSN:         "postgres://paperless@127.0.0.1:5432/paperless",
			Migrations:  "django",
			Format:      "ordered",
			DumpOptions: []string{"--exclude-table=documents_log"},
		},
		Retention: &Retention{
			KeepLast: 3, KeepHourly: 24, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6, KeepYearly: 2,
			KeepWithin: "2d", KeepTag: []string{"pre-upgrade"},
		},
		S3: &S3{AccessKeyID: "AKID", SecretAccessKey: "SECRET", Region: "eu-west-1",
			ObjectLockDays: 30, ObjectLockMode: "GOVERNANCE"},
		SFTP: &SFTP{KeyFile: "/etc/cairn/keys/id_ed25519", KnownHosts: "/etc/cairn/known_hosts"},
		Schedule: &ScheduleConfig{
			Backup: "hourly", Prune: "weekly", Check: "@every 15m",
			BackupSchedule: MustParseSchedule("hourly"),
			PruneSchedule:  MustParseSchedule("weekly"),
			CheckSchedule:  MustParseSchedule("@every 15m"),
		},
		Notify: &Notify{
			OnSuccess: true,
			Email: &Email{SMTP: "127.0.0.1:25", From: "cairn@example.org", To: []string{"ops@example.org"},
				Username: "cairn", PasswordFile: "/etc/cairn/smtp.pw", StartTLS: true},
			Webhook: "http://127.0.0.1:9000/hook",
			Healthcheck: &Healthcheck{Start: "https://hc.example.org/ping/x/start",
				Success: "https://hc.example.org/ping/x", Fail: "https://hc.example.org/ping/x/fail"},
		},
		Serve: Serve{Listen: "127.0.0.1:9999", PasswordHashFile: "/etc/cairn/serve.hash"},
		Path:  "/etc/cairn/cairn.toml",
		Dir:   "/etc/cairn",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse:\n got  %+v\n want %+v", cfg, want)
		for _, pair := range [][2]any{
			{cfg.App, want.App}, {*cfg.Database, *want.Database}, {*cfg.Retention, *want.Retention},
			{*cfg.S3, *want.S3}, {*cfg.SFTP, *want.SFTP}, {*cfg.Notify.Email, *want.Notify.Email}, {cfg.Serve, want.Serve},
		} {
			if !reflect.DeepEqual(pair[0], pair[1]) {
				t.Errorf("differs:\n got  %+v\n want %+v", pair[0], pair[1])
			}
		}
	}
}

func TestParseDefaults(t *testing.T) {
	src := `repository = "backups"
[app]
name = "app"
paths = ["media"]
version = { literal = "1.2.3" }
`
	cfg, err := Parse([]byte(src), "/srv/app/cairn.toml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"repository", cfg.Repository, "/srv/app/backups"},
		{"paths", cfg.App.Paths, []string{"/srv/app/media"}},
		{"dump_name_template", cfg.App.DumpNameTemplate, DefaultDumpNameTemplate},
		{"listen", cfg.Serve.Listen, DefaultListen},
		{"database", cfg.Database, (*Database)(nil)},
		{"retention", cfg.Retention, (*Retention)(nil)},
		{"schedule", cfg.Schedule, (*ScheduleConfig)(nil)},
		{"notify", cfg.Notify, (*Notify)(nil)},
		{"dir", cfg.Dir, "/srv/app"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.what, c.got, c.want)
		}
	}
}

func TestParseRelativeName(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	src := "repository = \"repo\"\n[database]\nengine = \"sqlite\"\npath = \"db.sqlite3\"\n[app]\nname = \"a\"\nversion = { file = \"VERSION\" }\n"
	cfg, err := Parse([]byte(src), "cairn.toml")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if cfg.Repository != filepath.Join(wd, "repo") || cfg.Database.Path != filepath.Join(wd, "db.sqlite3") ||
		cfg.App.Version.File != filepath.Join(wd, "VERSION") || cfg.Path != filepath.Join(wd, "cairn.toml") {
		t.Errorf("paths not resolved against %s: %+v %+v", wd, cfg, cfg.Database)
	}
}

// base is a valid configuration that the error cases extend; it has 6 lines.
const base = `repository = "/srv/backups"
[app]
name = "app"
paths = ["/srv/app"]
version = { literal = "1.0" }
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // the error lines, in order
	}{
		{"unknown key in unknown table", base + "[databse]\nengine = \"postgres\"\n",
			[]string{`cairn.toml:7: unknown key "databse.engine"`}},
		{"unknown empty table", base + "[databse]\n",
			[]string{`cairn.toml:6: unknown key "databse"`}},
		{"unknown dotted key", "databse.engine = \"postgres\"\n" + base,
			[]string{`cairn.toml:1: unknown key "databse.engine"`}},
		{"unknown top-level key", "repositry = \"/x\"\n" + base,
			[]string{`cairn.toml:1: unknown key "repositry"`}},
		{"unknown key in table", base + "[database]\nengine = \"postgres\"\ndsn = \"postgres://x@h/db\"\nengin = \"x\"\n",
			[]string{`cairn.toml:9: unknown key "database.engin"`}},
		{"unknown key in inline table", base + "[notify]\nemail = { smtp = \"h:25\", from = \"a@b.c\", tox = [\"x\"] }\n",
			[]string{`cairn.toml:7: unknown key "notify.email.tox"`}},
		{"unknown key in multi-line inline table", base + "[notify]\nemail = {\n  smtp = \"h:25\",\n  from = \"a@b.c\",\n  tox = [\"x\"]\n}\n",
			[]string{`cairn.toml:10: unknown key "notify.email.tox"`}},
		{"bad engine", base + "[database]\n\nengine = \"oracle\"\n",
			[]string{`cairn.toml:8: database.engine: "oracle" is not one of sqlite, postgres, mysql`}},
		{"wrong type", base + "[retention]\nkeep_daily = \"7\"\n",
			[]string{`cairn.toml:7: retention.keep_daily: expected an integer, got a string`}},
		{"float for int", base + "[retention]\nkeep_daily = 7.5\n",
			[]string{`cairn.toml:7: retention.keep_daily: expected an integer, got a float`}},
		{"string for array", strings.Replace(base, `paths = ["/srv/app"]`, `paths = "/srv/app"`, 1),
			[]string{`cairn.toml:4: app.paths: expected an array of strings, got a string`}},
		{"wrong array element on its own line", strings.Replace(base, `paths = ["/srv/app"]`, "paths = [\n  \"/a\",\n  3,\n]", 1),
			[]string{`cairn.toml:6: app.paths[1]: expected a string, got an integer`}},
		{"scalar for table", "schedule = \"daily\"\n" + base,
			[]string{`cairn.toml:1: schedule: expected a table, got a string`}},
		{"table for scalar", base + "[repository]\n",
			[]string{`cairn.toml:6: repository: expected a string, got a table`}},
		{"array of tables", base + "[[database]]\nengine = \"sqlite\"\n",
			[]string{`cairn.toml:6: database: expected a table, got an array of tables ([[database]]); use [database]`}},
		{"duplicate key", "repository = \"/y\"\n" + base,
			[]string{`cairn.toml:2: repository: key set twice (first on line 1)`}},
		{"duplicate table", base + "[serve]\n[serve]\n",
			[]string{`cairn.toml:7: serve: table defined twice (first on line 6)`}},
		{"syntax error", base + "[database\n", []string{`cairn.toml:6: `}},
		{"missing repository", strings.Replace(base, "repository = \"/srv/backups\"\n", "", 1),
			[]string{`cairn.toml: repository: required (a local path, s3:https://host/bucket[/prefix] or sftp:user@host:/path)`}},
		{"no version", strings.Replace(base, "version = { literal = \"1.0\" }\n", "", 1),
			[]string{`cairn.toml:2: app.version: required: set exactly one of literal, command or file, e.g. version = { literal = "1.0" }`}},
		{"two versions", strings.Replace(base, `{ literal = "1.0" }`, `{ literal = "1.0", file = "/v" }`, 1),
			[]string{`cairn.toml:5: app.version: set exactly one of literal, command or file (found literal and file)`}},
		{"empty version table", strings.Replace(base, `{ literal = "1.0" }`, `{}`, 1),
			[]string{`cairn.toml:5: app.version: required: set exactly one of literal, command or file, e.g. version = { literal = "1.0" }`}},
		{"empty command", strings.Replace(base, `{ literal = "1.0" }`, `{ command = [] }`, 1),
			[]string{`cairn.toml:5: app.version.command: must name a program: command = ["program", "arg", …]`}},
		{"regex with literal", strings.Replace(base, `{ literal = "1.0" }`, `{ literal = "1.0", regex = "x" }`, 1),
			[]string{`cairn.toml:5: app.version.regex: only allowed with command or file`}},
		{"bad regex", strings.Replace(base, `{ literal = "1.0" }`, `{ file = "/v", regex = "(" }`, 1),
			[]string{"cairn.toml:5: app.version.regex: does not compile: error parsing regexp: missing closing ): `(`"}},
		{"engine missing", base + "[database]\ndsn = \"postgres://h/db\"\n",
			[]string{`cairn.toml:6: database.engine: required (sqlite, postgres or mysql)`}},
		{"sqlite needs path", base + "[database]\nengine = \"sqlite\"\n",
			[]string{`cairn.toml:7: database.path: required with engine "sqlite"`}},
		{"sqlite with dsn", base + "[database]\nengine = \"sqlite\"\npath = \"/db\"\ndsn = \"x\"\n",
			[]string{`cairn.toml:9: database.dsn: not used with engine "sqlite"; set path instead`}},
		{"postgres needs dsn", base + "[database]\nengine = \"postgres\"\n",
			[]string{`cairn.toml:7: database.dsn: required with engine "postgres"`}},
		{"postgres with path", base + "[database]\nengine = \"postgres\"\ndsn = \"host=x dbname=y\"\npath = \"/db\"\n",
			[]string{`cairn.toml:9: database.path: only used with engine "sqlite"; set dsn instead`}},
		{"dsn scheme mismatch", base + "[database]\nengine = \"mysql\"\ndsn = \"postgres://h/db\"\n",
			[]string{`cairn.toml:8: database.dsn: URL scheme "postgres" does not match engine "mysql" (use mysql://…)`}},
		{"sql needs query", base + "[database]\nengine = \"postgres\"\ndsn = \"postgres://h/db\"\nmigrations = \"sql\"\n",
			[]string{`cairn.toml:9: database.migrations_query: required with migrations = "sql"`}},
		{"query without sql", base + "[database]\nengine = \"postgres\"\ndsn = \"postgres://h/db\"\nmigrations_query = \"SELECT 1\"\n",
			[]string{`cairn.toml:9: database.migrations_query: only used with migrations = "sql"`}},
		{"bad migrations", base + "[database]\nengine = \"postgres\"\ndsn = \"postgres://h/db\"\nmigrations = \"flyway\"\n",
			[]string{`cairn.toml:9: database.migrations: "flyway" is not one of django, alembic, sql`}},
		{"format for mysql", base + "[database]\nengine = \"mysql\"\ndsn = \"u@tcp(h:3306)/db\"\nformat = \"plain\"\n",
			[]string{`cairn.toml:9: database.format: only used with engine "postgres"`}},
		{"bad format", base + "[database]\nengine = \"postgres\"\ndsn = \"postgres://h/db\"\nformat = \"custom\"\n",
			[]string{`cairn.toml:9: database.format: "custom" is not one of ordered, plain`}},
		{"dump option not an option", base + "[database]\nengine = \"postgres\"\ndsn = \"postgres://h/db\"\ndump_options = [\"otherdb\"]\n",
			[]string{`cairn.toml:9: database.dump_options[0]: "otherdb" is not an option (options start with -)`}},
		{"empty path", strings.Replace(base, `["/srv/app"]`, `["/srv/app", ""]`, 1),
			[]string{`cairn.toml:4: app.paths[1]: must not be empty`}},
		{"nothing to back up", strings.Replace(base, "paths = [\"/srv/app\"]\n", "", 1),
			[]string{`cairn.toml:2: app.paths: nothing to back up: set app.paths or a [database] table`}},
		{"tilde path", strings.Replace(base, `["/srv/app"]`, `["~/app"]`, 1),
			[]string{`cairn.toml:4: app.paths[0]: "~/app": ~ is not expanded; use an absolute path`}},
		{"unknown subtable", base + "[app.more]\n",
			[]string{`cairn.toml:6: unknown key "app.more"`}},
		{"bad exclude", strings.Replace(base, "[app]\n", "[app]\nexclude = [\"*.tmp\", \"[a\"]\n", 1),
			[]string{`cairn.toml:3: app.exclude[1]: "[a" is not a valid pattern: syntax error in pattern`}},
		{"bad template", strings.Replace(base, "[app]\n", "[app]\ndump_name_template = \"%Y/%m\"\n", 1),
			[]string{`cairn.toml:3: app.dump_name_template: "%Y/%m": must not contain slashes or control characters (it names a file)`}},
		{"template without conversion", strings.Replace(base, "[app]\n", "[app]\ndump_name_template = \"dump\"\n", 1),
			[]string{`cairn.toml:3: app.dump_name_template: "dump": has no % conversion, so every dump would get the same name`}},
		{"unsupported conversion", strings.Replace(base, "[app]\n", "[app]\ndump_name_template = \"%Y%Q\"\n", 1),
			[]string{`cairn.toml:3: app.dump_name_template: "%Y%Q": unsupported conversion %Q (use one of %a %A %b %B %C %d %e %F %g %G %h %H %I %j %m %M %p %R %S %T %u %U %V %w %W %y %Y %z %Z)`}},
		{"two passwords", "password_file = \"/p\"\npassword_command = \"pass x\"\n" + base,
			[]string{`cairn.toml:2: password_command: set only one of password_file, password_command, identity_file (found password_file and password_command)`}},
		{"unsupported repository", strings.Replace(base, `"/srv/backups"`, `"rest:http://h/"`, 1),
			[]string{`cairn.toml:1: repository: unsupported repository type "rest" (use a local path, s3:… or sftp:…; write ./rest:http://h/ for a local directory)`}},
		{"bad s3 repository", strings.Replace(base, `"/srv/backups"`, `"s3:bucket"`, 1),
			[]string{`cairn.toml:1: repository: "s3:bucket" is not of the form s3:http(s)://host[:port]/bucket[/prefix]`}},
		{"bad sftp repository", strings.Replace(base, `"/srv/backups"`, `"sftp:host"`, 1),
			[]string{`cairn.toml:1: repository: "sftp:host" is not of the form sftp:[user@]host:/path or sftp://[user@]host[:port]/path`}},
		{"retention below -1", base + "[retention]\nkeep_daily = -2\n",
			[]string{`cairn.toml:7: retention.keep_daily: -2 is invalid (use a count, 0 to disable or -1 for unlimited)`}},
		{"retention empty", base + "[retention]\n",
			[]string{`cairn.toml:6: retention: no keep rule set; set at least one keep_* key or remove the table`}},
		{"retention zeros", base + "[retention]\nkeep_daily = 0\n",
			[]string{`cairn.toml:6: retention: no keep rule set; set at least one keep_* key or remove the table`}},
		{"bad keep_within", base + "[retention]\nkeep_within = \"2 days\"\n",
			[]string{`cairn.toml:7: retention.keep_within: "2 days" is not a duration like 2d, 36h or 1y6m (units y, m, d, h)`}},
		{"keep_within unit twice", base + "[retention]\nkeep_within = \"2d3d\"\n",
			[]string{`cairn.toml:7: retention.keep_within: "2d3d": unit d given twice`}},
		{"s3 half credentials", base + "[s3]\naccess_key_id = \"x\"\n",
			[]string{`cairn.toml:6: s3.secret_access_key: access_key_id and secret_access_key must be set together`}},
		{"s3 lock mode without days", base + "[s3]\nobject_lock_mode = \"COMPLIANCE\"\n",
			[]string{`cairn.toml:7: s3.object_lock_mode: needs object_lock_days > 0`}},
		{"s3 bad lock mode", base + "[s3]\nobject_lock_days = 3\nobject_lock_mode = \"governance\"\n",
			[]string{`cairn.toml:8: s3.object_lock_mode: "governance" is not one of GOVERNANCE, COMPLIANCE`}},
		{"bad schedule", base + "[schedule]\nbackup = \"daily\"\nprune = \"61 * * * *\"\n",
			[]string{`cairn.toml:8: schedule.prune: invalid schedule "61 * * * *": minute field "61": 61 is outside 0-59`}},
		{"notify without target", base + "[notify]\non_success = true\n",
			[]string{`cairn.toml:6: notify: no target: set email, webhook or healthcheck`}},
		{"bad email", base + "[notify]\nemail = { smtp = \"mail\", from = \"nobody\", to = [] }\n",
			[]string{
				`cairn.toml:7: notify.email.smtp: "mail": not host:port`,
				`cairn.toml:7: notify.email.from: "nobody" is not an email address`,
				`cairn.toml:7: notify.email.to: required: at least one address`,
			}},
		{"bad webhook", base + "[notify]\nwebhook = \"ftp://x\"\n",
			[]string{`cairn.toml:7: notify.webhook: "ftp://x" is not an http:// or https:// URL`}},
		{"empty healthcheck", base + "[notify]\nhealthcheck = {}\n",
			[]string{`cairn.toml:7: notify.healthcheck: set at least one of start, success or fail`}},
		{"serve public without auth", base + "[serve]\nlisten = \":8467\"\n",
			[]string{`cairn.toml:7: serve.listen: ":8467" is reachable from other hosts; set password_hash_file or token_file`}},
		{"serve two auths", base + "[serve]\npassword_hash_file = \"/a\"\ntoken_file = \"/b\"\n",
			[]string{`cairn.toml:8: serve.token_file: set only one of password_hash_file, token_file (found password_hash_file and token_file)`}},
		{"serve bad port", base + "[serve]\nlisten = \"127.0.0.1:http\"\n",
			[]string{`cairn.toml:7: serve.listen: "127.0.0.1:http": port "http" is not a number from 1 to 65535`}},
		{"several errors sorted by line", "repository = \"\"\n[app]\nname = \"\"\npaths = [\"/a\"]\nversion = { literal = \"1\" }\n[database]\nengine = \"oracle\"\n",
			[]string{
				`cairn.toml:1: repository: required (a local path, s3:https://host/bucket[/prefix] or sftp:user@host:/path)`,
				`cairn.toml:3: app.name: required (e.g. "paperless-ngx")`,
				`cairn.toml:7: database.engine: "oracle" is not one of sqlite, postgres, mysql`,
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.src), "cairn.toml")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", cfg)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			got := strings.Split(err.Error(), "\n")
			if tc.name == "syntax error" {
				if len(got) != 1 || !strings.HasPrefix(got[0], tc.want[0]) {
					t.Errorf("got %q, want prefix %q", got, tc.want[0])
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestErrorDetails(t *testing.T) {
	_, err := Parse([]byte(base+"[databse]\nengine = \"postgres\"\n"), "cairn.toml")
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 7 || e.Key != "databse.engine" || e.File != "cairn.toml" {
		t.Errorf("Error = %+v", e)
	}
	_, err = Parse([]byte(base+"[database]\nengine = \"oracle\"\n"), "")
	if errors.Is(err, ErrUnknownKey) {
		t.Errorf("value error %v matches ErrUnknownKey", err)
	}
	if !strings.HasPrefix(err.Error(), "config:7: ") {
		t.Errorf("unnamed config error %q", err)
	}
}

func TestParseValidVariants(t *testing.T) {
	tests := []struct{ name, src string }{
		{"sqlite only", "repository = \"/r\"\n[app]\nname = \"a\"\nversion = { literal = \"1\" }\n[database]\nengine = \"sqlite\"\npath = \"/db.sqlite3\"\n"},
		{"mysql dsn", base + "[database]\nengine = \"mysql\"\ndsn = \"cairn@tcp(127.0.0.1:3306)/app\"\n"},
		{"mysql url", base + "[database]\nengine = \"mysql\"\ndsn = \"mysql://cairn@127.0.0.1:3306/app\"\n"},
		{"postgres conninfo", base + "[database]\nengine = \"postgres\"\ndsn = \"host=/run/postgresql dbname=app\"\nformat = \"plain\"\n"},
		{"sql migrations", base + "[database]\nengine = \"postgres\"\ndsn = \"postgresql://h/db\"\nmigrations = \"sql\"\nmigrations_query = \"select max(id) from schema_version\"\n"},
		{"s3 repository", strings.Replace(base, `"/srv/backups"`, `"s3:http://127.0.0.1:9000/bucket/prefix"`, 1)},
		{"sftp repository", strings.Replace(base, `"/srv/backups"`, `"sftp:backup@host.example:/srv/backups"`, 1)},
		{"sftp relative path", strings.Replace(base, `"/srv/backups"`, `"sftp:host:backups"`, 1)},
		{"sftp ipv6", strings.Replace(base, `"/srv/backups"`, `"sftp:u@[::1]:/srv"`, 1)},
		{"sftp url", strings.Replace(base, `"/srv/backups"`, `"sftp://u@host:2222/srv/backups"`, 1)},
		{"identity file", "identity_file = \"/etc/cairn/key.age\"\n" + base},
		{"password command", "password_command = \"pass show x\"\n" + base},
		{"version file with regex", strings.Replace(base, `{ literal = "1.0" }`, `{ file = "/v", regex = 'v(\d+)' }`, 1)},
		{"version table", strings.Replace(base, `version = { literal = "1.0" }`, "[app.version]\ncommand = [\"app\", \"--version\"]\nregex = '\\d+'", 1)},
		{"dotted keys", "repository = \"/r\"\napp.name = \"a\"\napp.paths = [\"/a\"]\napp.version.literal = \"1\"\nserve.listen = \"[::1]:8467\"\n"},
		{"unlimited retention", base + "[retention]\nkeep_daily = -1\n"},
		{"tag-only retention", base + "[retention]\nkeep_tag = [\"keep\"]\n"},
		{"public serve with token", base + "[serve]\nlisten = \"0.0.0.0:8467\"\ntoken_file = \"/t\"\n"},
		{"cron schedule", base + "[schedule]\nbackup = \"*/15 8-18 * * mon-fri\"\n"},
		{"webhook only", base + "[notify]\nwebhook = \"https://h/x\"\n"},
		{"comments and blank lines", "# comment\n\n" + base + "# end\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.src), "/etc/cairn/cairn.toml"); err != nil {
				t.Errorf("Parse: %v", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cairn.toml")
	if err := os.WriteFile(p, []byte(strings.Replace(base, `"/srv/backups"`, `"repo"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Repository != filepath.Join(dir, "repo") || cfg.Path != p {
		t.Errorf("Load: repository %q path %q", cfg.Repository, cfg.Path)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte(base+"x = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":6: ") {
		t.Errorf("Load(bad) = %v", err)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	flagFile := filepath.Join(dir, "flag.toml")
	envFile := filepath.Join(dir, "env.toml")
	for _, f := range []string{flagFile, envFile} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	withLocal := t.TempDir()
	if err := os.WriteFile(filepath.Join(withLocal, "cairn.toml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()

	tests := []struct {
		name, flag, env, cwd string
		want                 string
		wantErr              error
	}{
		{"flag wins", flagFile, envFile, withLocal, flagFile, nil},
		{"env next", "", envFile, withLocal, envFile, nil},
		{"local file", "", "", withLocal, "cairn.toml", nil},
		{"nothing", "", "", empty, "", nil},
		{"missing flag file", filepath.Join(dir, "nope.toml"), envFile, withLocal, "", os.ErrNotExist},
		{"missing env file", "", filepath.Join(dir, "nope.toml"), withLocal, "", os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CAIRN_CONFIG", tc.env)
			t.Chdir(tc.cwd)
			got, err := Find(tc.flag)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Find = %q, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Find = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		t.Setenv("CAIRN_CONFIG", "")
		if _, err := Find(dir); err == nil {
			t.Error("Find(directory) succeeded")
		}
	})
}
