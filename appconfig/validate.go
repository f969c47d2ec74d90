package appconfig

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// validator checks a decoded Config, resolves relative paths and fills defaults,
// collecting every problem with the line of the key it concerns.
type validator struct {
	file string
	dir  string
	pos  positions
	errs []*Error
}

func (v *validator) errorf(key, format string, args ...any) {
	v.errorfAt(key, key, format, args...)
}

// errorfAt reports a problem with key on the line of lineKey, for keys that are
// missing because of another key.
func (v *validator) errorfAt(lineKey, key, format string, args ...any) {
	line := v.pos.line(key)
	if _, ok := v.pos[key]; !ok {
		line = v.pos.line(lineKey)
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return joinErrors(v.errs)
}

// written reports whether key appears in the file (even with an empty value).
func (v *validator) written(key string) bool {
	_, ok := v.pos[key]
	return ok
}

// oneOf checks that value is in allowed, naming the choices otherwise.
func (v *validator) oneOf(key, value string, allowed ...string) bool {
	for _, a := range allowed {
		if value == a {
			return true
		}
	}
	v.errorf(key, "%q is not one of %s", value, strings.Join(allowed, ", "))
	return false
}

// nonEmpty reports an explicitly empty string value.
func (v *validator) nonEmpty(key, value string) {
	if value == "" && v.written(key) {
		v.errorf(key, "must not be empty")
	}
}

// path resolves a local path against the configuration directory.
func (v *validator) path(key string, p *string) {
	v.nonEmpty(key, *p)
	s := *p
	if s == "" {
		return
	}
	if s == "~" || strings.HasPrefix(s, "~/") {
		v.errorf(key, "%q: ~ is not expanded; use an absolute path", s)
		return
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(v.dir, s)
	}
	*p = filepath.Clean(s)
}

// atMostOne reports when more than one of the keys has a non-empty value.
func (v *validator) atMostOne(prefix string, keys []string, values ...string) {
	var set []string
	for i, val := range values {
		if val != "" {
			set = append(set, keys[i])
		}
	}
	if len(set) > 1 {
		v.errorf(join(prefix, set[1:2]), "set only one of %s (found %s)", strings.Join(keys, ", "), strings.Join(set, " and "))
	}
}

func (v *validator) config(c *Config) {
	v.repository(c)
	v.atMostOne("", []string{"password_file", "password_command", "identity_file"},
		c.PasswordFile, c.PasswordCommand, c.IdentityFile)
	v.path("password_file", &c.PasswordFile)
	v.nonEmpty("password_command", c.PasswordCommand)
	v.path("identity_file", &c.IdentityFile)
	v.nonEmpty("host", c.Host)
	v.path("cache_dir", &c.CacheDir)

	v.app(c)
	if c.Database != nil {
		v.database(c.Database)
	}
	if c.Retention != nil {
		v.retention(c.Retention)
	}
	if c.S3 != nil {
		v.s3(c.S3)
	}
	if c.SFTP != nil {
		v.path("sftp.key_file", &c.SFTP.KeyFile)
		v.path("sftp.known_hosts", &c.SFTP.KnownHosts)
	}
	if c.Schedule != nil {
		v.schedule(c.Schedule)
	}
	if c.Notify != nil {
		v.notify(c.Notify)
	}
	v.serve(&c.Serve)
}

var schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]+):`)

func (v *validator) repository(c *Config) {
	const key = "repository"
	r := c.Repository
	switch {
	case r == "":
		v.errorf(key, "required (a local path, s3:https://host/bucket[/prefix] or sftp:user@host:/path)")
	case strings.HasPrefix(r, "s3:"):
		u, err := url.Parse(r[len("s3:"):])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			strings.Trim(u.Path, "/") == "" || u.RawQuery != "" || u.Fragment != "" {
			v.errorf(key, "%q is not of the form s3:http(s)://host[:port]/bucket[/prefix]", r)
		}
	case strings.HasPrefix(r, "sftp:"):
		if !validSFTP(r[len("sftp:"):]) {
			v.errorf(key, "%q is not of the form sftp:[user@]host:/path or sftp://[user@]host[:port]/path", r)
		}
	case schemeRE.MatchString(r):
		v.errorf(key, "unsupported repository type %q (use a local path, s3:… or sftp:…; write ./%s for a local directory)",
			schemeRE.FindStringSubmatch(r)[1], r)
	default:
		v.path(key, &c.Repository)
	}
}

func validSFTP(s string) bool {
	if strings.HasPrefix(s, "//") {
		u, err := url.Parse("sftp:" + s)
		return err == nil && u.Hostname() != "" && strings.Trim(u.Path, "/") != ""
	}
	host, p, ok := "", "", false
	if i := strings.Index(s, "]:"); i >= 0 && strings.Contains(s[:i], "[") {
		host, p, ok = s[:i+1], s[i+2:], true
	} else {
		host, p, ok = strings.Cut(s, ":")
	}
	if _, h, found := strings.Cut(host, "@"); found {
		host = h
	}
	return ok && host != "" && p != "" && !strings.ContainsAny(host, "/ ")
}

func (v *validator) app(c *Config) {
	a := &c.App
	switch {
	case a.Name == "":
		v.errorf("app.name", "required (e.g. %q)", "paperless-ngx")
	case strings.ContainsAny(a.Name, "/\\") || strings.TrimSpace(a.Name) != a.Name || hasControl(a.Name):
		v.errorf("app.name", "%q must not contain slashes, control characters or surrounding spaces", a.Name)
	}
	if len(a.Paths) == 0 && c.Database == nil {
		v.errorf("app.paths", "nothing to back up: set app.paths or a [database] table")
	}
	for i := range a.Paths {
		key := fmt.Sprintf("app.paths[%d]", i)
		if a.Paths[i] == "" {
			v.errorf(key, "must not be empty")
			continue
		}
		v.path(key, &a.Paths[i])
	}
	for i, pat := range a.Exclude {
		key := fmt.Sprintf("app.exclude[%d]", i)
		if pat == "" {
			v.errorf(key, "must not be empty")
		} else if _, err := path.Match(pat, ""); err != nil {
			v.errorf(key, "%q is not a valid pattern: %v", pat, err)
		}
	}
	v.version(&a.Version)
	if a.DumpNameTemplate == "" && !v.written("app.dump_name_template") {
		a.DumpNameTemplate = DefaultDumpNameTemplate
	} else if err := checkStrftime(a.DumpNameTemplate); err != nil {
		v.errorf("app.dump_name_template", "%q: %v", a.DumpNameTemplate, err)
	}
}

func (v *validator) version(vs *VersionSource) {
	const key = "app.version"
	var set []string
	if vs.Literal != "" || v.written(key+".literal") {
		set = append(set, "literal")
	}
	if len(vs.Command) > 0 || v.written(key+".command") {
		set = append(set, "command")
	}
	if vs.File != "" || v.written(key+".file") {
		set = append(set, "file")
	}
	switch len(set) {
	case 0:
		v.errorf(key, "required: set exactly one of literal, command or file, e.g. version = { literal = %q }", "1.0")
		return
	case 1:
	default:
		v.errorf(key, "set exactly one of literal, command or file (found %s)", strings.Join(set, " and "))
		return
	}
	switch set[0] {
	case "literal":
		v.nonEmpty(key+".literal", vs.Literal)
		if vs.Regex != "" || v.written(key+".regex") {
			v.errorf(key+".regex", "only allowed with command or file")
		}
	case "command":
		if len(vs.Command) == 0 || vs.Command[0] == "" {
			v.errorf(key+".command", "must name a program: command = [\"program\", \"arg\", …]")
		}
	case "file":
		v.path(key+".file", &vs.File)
	}
	if v.written(key + ".regex") {
		if vs.Regex == "" {
			v.errorf(key+".regex", "must not be empty")
		} else if _, err := regexp.Compile(vs.Regex); err != nil {
			v.errorf(key+".regex", "does not compile: %v", err)
		}
	}
}

// strftimeOK lists the conversions accepted in dump name templates: the POSIX ones
// that produce neither slashes nor whitespace-only output.
const strftimeOK = "aAbBCdeFgGhHIjmMpRSTuUVwWyYzZ%"

func checkStrftime(t string) error {
	if t == "" {
		return errors.New("must not be empty")
	}
	if strings.ContainsAny(t, "/\\") || hasControl(t) {
		return errors.New("must not contain slashes or control characters (it names a file)")
	}
	conversions := 0
	for i := 0; i < len(t); i++ {
		if t[i] != '%' {
			continue
		}
		if i+1 == len(t) {
			return fmt.Errorf("ends with a lone %%")
		}
		i++
		if !strings.ContainsRune(strftimeOK, rune(t[i])) {
			return fmt.Errorf("unsupported conversion %%%c (use one of %%%s)", t[i], strings.Join(strings.Split(strftimeOK[:len(strftimeOK)-1], ""), " %"))
		}
		if t[i] != '%' {
			conversions++
		}
	}
	if conversions == 0 {
		return fmt.Errorf("has no %% conversion, so every dump would get the same name")
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func (v *validator) database(d *Database) {
	if d.Engine == "" {
		v.errorfAt("database", "database.engine", "required (%s, %s or %s)", EngineSQLite, EnginePostgres, EngineMySQL)
		return
	}
	if !v.oneOf("database.engine", d.Engine, EngineSQLite, EnginePostgres, EngineMySQL) {
		return
	}
	switch d.Engine {
	case EngineSQLite:
		if d.Path == "" {
			v.errorfAt("database.engine", "database.path", "required with engine %q", d.Engine)
		}
		v.path("database.path", &d.Path)
		if d.DSN != "" || v.written("database.dsn") {
			v.errorf("database.dsn", "not used with engine %q; set path instead", d.Engine)
		}
	default:
		if d.Path != "" || v.written("database.path") {
			v.errorf("database.path", "only used with engine %q; set dsn instead", EngineSQLite)
		}
		if d.DSN == "" {
			v.errorfAt("database.engine", "database.dsn", "required with engine %q", d.Engine)
		} else if err := checkDSN(d.Engine, d.DSN); err != nil {
			v.errorf("database.dsn", "%v", err)
		}
	}

	if d.Migrations != "" || v.written("database.migrations") {
		v.oneOf("database.migrations", d.Migrations, MigrationsDjango, MigrationsAlembic, MigrationsSQL)
	}
	if d.Migrations == MigrationsSQL {
		if q := strings.ToUpper(strings.TrimSpace(d.MigrationsQuery)); q == "" {
			v.errorfAt("database.migrations", "database.migrations_query", "required with migrations = %q", MigrationsSQL)
		} else if !strings.HasPrefix(q, "SELECT") && !strings.HasPrefix(q, "WITH") {
			v.errorf("database.migrations_query", "must be a SELECT (or WITH … SELECT) query")
		}
	} else if d.MigrationsQuery != "" || v.written("database.migrations_query") {
		v.errorf("database.migrations_query", "only used with migrations = %q", MigrationsSQL)
	}

	if d.Engine == EnginePostgres {
		if d.Format == "" && !v.written("database.format") {
			d.Format = FormatOrdered
		} else {
			v.oneOf("database.format", d.Format, FormatOrdered, FormatPlain)
		}
	} else if d.Format != "" || v.written("database.format") {
		v.errorf("database.format", "only used with engine %q", EnginePostgres)
	}
	for i, o := range d.DumpOptions {
		if !strings.HasPrefix(o, "-") {
			v.errorf(fmt.Sprintf("database.dump_options[%d]", i), "%q is not an option (options start with -)", o)
		}
	}
}

func checkDSN(engine, dsn string) error {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return fmt.Errorf("not a valid URL: %v", err)
		}
		want := map[string][]string{EnginePostgres: {"postgres", "postgresql"}, EngineMySQL: {"mysql"}}[engine]
		for _, s := range want {
			if u.Scheme == s {
				return nil
			}
		}
		return fmt.Errorf("URL scheme %q does not match engine %q (use %s://…)", u.Scheme, engine, want[0])
	}
	switch engine {
	case EnginePostgres:
		if !strings.Contains(dsn, "=") {
			return errors.New("not a postgres:// URL or a key=value connection string (host=… dbname=…)")
		}
	case EngineMySQL:
		if !strings.Contains(dsn, "/") {
			return errors.New("not a mysql:// URL or a user@tcp(host:port)/dbname DSN")
		}
	}
	return nil
}

// calendarDurationRE is the syntax of snapshot/policy.ParseDuration.
var calendarDurationRE = regexp.MustCompile(`^(?:[0-9]+[ymdh])+$`)

func checkCalendarDuration(s string) error {
	if !calendarDurationRE.MatchString(s) {
		return fmt.Errorf("%q is not a duration like 2d, 36h or 1y6m (units y, m, d, h)", s)
	}
	seen := map[rune]bool{}
	for _, r := range s {
		if r >= '0' && r <= '9' {
			continue
		}
		if seen[r] {
			return fmt.Errorf("%q: unit %c given twice", s, r)
		}
		seen[r] = true
	}
	return nil
}

func (v *validator) retention(r *Retention) {
	counts := []struct {
		key string
		n   int
	}{
		{"keep_last", r.KeepLast}, {"keep_hourly", r.KeepHourly}, {"keep_daily", r.KeepDaily},
		{"keep_weekly", r.KeepWeekly}, {"keep_monthly", r.KeepMonthly}, {"keep_yearly", r.KeepYearly},
	}
	hasRule := false
	for _, c := range counts {
		if c.n < -1 {
			v.errorf("retention."+c.key, "%d is invalid (use a count, 0 to disable or -1 for unlimited)", c.n)
		}
		hasRule = hasRule || c.n != 0
	}
	if r.KeepWithin != "" || v.written("retention.keep_within") {
		if err := checkCalendarDuration(r.KeepWithin); err != nil {
			v.errorf("retention.keep_within", "%v", err)
		}
		hasRule = true
	}
	for i, t := range r.KeepTag {
		if strings.TrimSpace(t) == "" {
			v.errorf(fmt.Sprintf("retention.keep_tag[%d]", i), "must not be empty")
		}
		hasRule = true
	}
	if !hasRule {
		v.errorf("retention", "no keep rule set; set at least one keep_* key or remove the table")
	}
}

func (v *validator) s3(s *S3) {
	if (s.AccessKeyID == "") != (s.SecretAccessKey == "") {
		key := "s3.secret_access_key"
		if s.AccessKeyID == "" {
			key = "s3.access_key_id"
		}
		v.errorf(key, "access_key_id and secret_access_key must be set together")
	}
	if s.ObjectLockDays < 0 {
		v.errorf("s3.object_lock_days", "%d is negative", s.ObjectLockDays)
	}
	switch {
	case s.ObjectLockMode != "" || v.written("s3.object_lock_mode"):
		if v.oneOf("s3.object_lock_mode", s.ObjectLockMode, "GOVERNANCE", "COMPLIANCE") && s.ObjectLockDays <= 0 {
			v.errorf("s3.object_lock_mode", "needs object_lock_days > 0")
		}
	case s.ObjectLockDays > 0:
		s.ObjectLockMode = "GOVERNANCE"
	}
}

func (v *validator) schedule(s *ScheduleConfig) {
	for _, j := range []struct {
		key  string
		expr string
		dst  *Schedule
	}{
		{"schedule.backup", s.Backup, &s.BackupSchedule},
		{"schedule.prune", s.Prune, &s.PruneSchedule},
		{"schedule.check", s.Check, &s.CheckSchedule},
	} {
		if j.expr == "" {
			v.nonEmpty(j.key, j.expr)
			continue
		}
		sch, err := ParseSchedule(j.expr)
		if err != nil {
			v.errorf(j.key, "%v", err)
			continue
		}
		*j.dst = sch
	}
}

func (v *validator) notify(n *Notify) {
	if n.Email == nil && n.Webhook == "" && n.Healthcheck == nil {
		v.errorf("notify", "no target: set email, webhook or healthcheck")
	}
	if e := n.Email; e != nil {
		if e.SMTP == "" {
			v.errorf("notify.email.smtp", "required (host:port)")
		} else if err := checkHostPort(e.SMTP); err != nil {
			v.errorf("notify.email.smtp", "%q: %v", e.SMTP, err)
		}
		if e.From == "" {
			v.errorf("notify.email.from", "required")
		} else if _, err := mail.ParseAddress(e.From); err != nil {
			v.errorf("notify.email.from", "%q is not an email address", e.From)
		}
		if len(e.To) == 0 {
			v.errorf("notify.email.to", "required: at least one address")
		}
		for i, to := range e.To {
			if _, err := mail.ParseAddress(to); err != nil {
				v.errorf(fmt.Sprintf("notify.email.to[%d]", i), "%q is not an email address", to)
			}
		}
		if (e.Username == "") != (e.PasswordFile == "") {
			key := "notify.email.password_file"
			if e.Username == "" {
				key = "notify.email.username"
			}
			v.errorf(key, "username and password_file must be set together")
		}
		v.path("notify.email.password_file", &e.PasswordFile)
	}
	if n.Webhook != "" || v.written("notify.webhook") {
		v.httpURL("notify.webhook", n.Webhook)
	}
	if h := n.Healthcheck; h != nil {
		if h.Start == "" && h.Success == "" && h.Fail == "" {
			v.errorf("notify.healthcheck", "set at least one of start, success or fail")
		}
		for _, u := range []struct{ key, val string }{
			{"notify.healthcheck.start", h.Start}, {"notify.healthcheck.success", h.Success}, {"notify.healthcheck.fail", h.Fail},
		} {
			if u.val != "" || v.written(u.key) {
				v.httpURL(u.key, u.val)
			}
		}
	}
}

func (v *validator) httpURL(key, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(key, "%q is not an http:// or https:// URL", s)
	}
}

func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

func (v *validator) serve(s *Serve) {
	if s.Listen == "" && !v.written("serve.listen") {
		s.Listen = DefaultListen
	}
	if err := checkHostPort(s.Listen); err != nil {
		v.errorf("serve.listen", "%q: %v", s.Listen, err)
	} else if host, _, _ := net.SplitHostPort(s.Listen); !isLoopback(host) && s.PasswordHashFile == "" && s.TokenFile == "" {
		v.errorf("serve.listen", "%q is reachable from other hosts; set password_hash_file or token_file", s.Listen)
	}
	v.atMostOne("serve", []string{"password_hash_file", "token_file"}, s.PasswordHashFile, s.TokenFile)
	v.path("serve.password_hash_file", &s.PasswordHashFile)
	v.path("serve.token_file", &s.TokenFile)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
