package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"
)

// cli runs cairn in-process and returns its exit code, stdout and stderr.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := cli(t, args...)
	if code != 0 {
		t.Fatalf("cairn %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		q := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(q, 0o755)
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			return os.Symlink(l, q)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(q, data, fi.Mode().Perm())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func loadSQLite(t *testing.T, path, schemaFile string) {
	t.Helper()
	schema, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(string(schema)); err != nil {
		t.Fatal(err)
	}
}

// TestAppSnapshotSQLite backs up the sample app (Django schema) and an Alembic app
// through cairn.toml and checks what `show` reports.
func TestAppSnapshotSQLite(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	copyDir(t, filepath.Join("..", "..", "testdata", "sample-app"), app)
	cfg := filepath.Join(app, "cairn.toml")
	repoDir := filepath.Join(dir, "repo")
	mustCLI(t, "--config", cfg, "--repo", repoDir, "init", "--kdf-work-factor", "10")
	out := mustCLI(t, "--config", cfg, "--repo", repoDir, "backup")
	if !strings.Contains(out, "Database:    sqlite sqlite-file dump") {
		t.Fatalf("backup output:\n%s", out)
	}
	out = mustCLI(t, "--config", cfg, "--repo", repoDir, "show", "latest")
	for _, want := range []string{"app:      sample-paperless 2.13.5", "migration documents: 1016_auto_20210317_1351",
		"migration auth: 0012_alter_user_first_name_max_length", "database: sqlite"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	out = mustCLI(t, "--config", cfg, "--repo", repoDir, "snapshots")
	if !strings.Contains(out, "sample-paperless 2.13.5 (admin 0003, auth 0012, +4 more)") {
		t.Errorf("snapshots:\n%s", out)
	}

	// Alembic: the same app with another database.
	alembicDB := filepath.Join(dir, "alembic.sqlite3")
	loadSQLite(t, alembicDB, filepath.Join("..", "..", "testdata", "apps", "alembic-schema.sql"))
	acfg := filepath.Join(dir, "alembic.toml")
	os.WriteFile(acfg, []byte(fmt.Sprintf(`repository = %q
password_file = %q
[app]
name = "inventory"
paths = [%q]
version = { literal = "1.4.0" }
[database]
engine = "sqlite"
path = %q
migrations = "alembic"
`, repoDir, filepath.Join(app, "password.txt"), filepath.Join(app, "media"), alembicDB)), 0o600)
	mustCLI(t, "--config", acfg, "backup")
	out = mustCLI(t, "--config", acfg, "show", "--json", "latest")
	if !strings.Contains(out, `"alembic": "4f2e9a1c7b3d"`) || !strings.Contains(out, `"version": "1.4.0"`) {
		t.Errorf("alembic show:\n%s", out)
	}

	// A version command that fails: no snapshot, the tool's stderr in the message.
	bad := strings.Replace(string(must(os.ReadFile(cfg))), `version = { file = "VERSION", regex = '(\d+\.\d+\.\d+)' }`,
		`version = { command = ["sh", "-c", "echo version-broken >&2; exit 3"] }`, 1)
	os.WriteFile(cfg, []byte(bad), 0o600)
	code, _, errs := cli(t, "--config", cfg, "--repo", repoDir, "backup")
	if code != 1 || !strings.Contains(errs, "version-broken") || !strings.Contains(errs, "no snapshot was written") {
		t.Fatalf("failing version command: exit %d: %s", code, errs)
	}
	out = mustCLI(t, "--config", cfg, "--repo", repoDir, "snapshots", "--json")
	if n := strings.Count(out, `"short_id"`); n != 2 {
		t.Fatalf("want 2 snapshots after the failed backup, got %d", n)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestAppSnapshotPostgres backs up a real PostgreSQL database with a Django schema.
func TestAppSnapshotPostgres(t *testing.T) {
	admin := os.Getenv("CAIRN_TEST_PG_DSN")
	if admin == "" {
		t.Skip("no PostgreSQL server: set CAIRN_TEST_PG_DSN (scripts/test-all.sh starts a real server)")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("cairn_cli_%d", os.Getpid())
	conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	u, _ := url.Parse(admin)
	u.Path = "/" + name
	dsn := u.String()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	schema := must(os.ReadFile(filepath.Join("..", "..", "testdata", "apps", "django-schema.sql")))
	if _, err := db.Exec(ctx, string(schema)); err != nil {
		t.Fatal(err)
	}
	db.Close(ctx)

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "media"), 0o755)
	os.WriteFile(filepath.Join(dir, "media", "a.pdf"), []byte("pdf"), 0o644)
	os.WriteFile(filepath.Join(dir, "pw"), []byte("pw"), 0o600)
	cfg := filepath.Join(dir, "cairn.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`repository = "repo"
password_file = "pw"
[app]
name = "paperless-ngx"
paths = ["media"]
version = { literal = "2.13.5" }
[database]
engine = "postgres"
dsn = %q
migrations = "django"
`, dsn)), 0o600)
	mustCLI(t, "--config", cfg, "init", "--kdf-work-factor", "10")
	mustCLI(t, "--config", cfg, "backup")
	out := mustCLI(t, "--config", cfg, "show", "latest")
	for _, want := range []string{"database: postgres", "pg-ordered-v1", "migration documents: 1016_auto_20210317_1351"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	// Wrong credentials: the backup fails with the server's message and writes nothing.
	bad := strings.Replace(string(must(os.ReadFile(cfg))), u.User.String()+"@", "nobody:wrong@", 1)
	os.WriteFile(cfg, []byte(bad), 0o600)
	code, _, errs := cli(t, "--config", cfg, "backup")
	if code != 1 || !strings.Contains(errs, "no snapshot was written") {
		t.Fatalf("wrong credentials: exit %d: %s", code, errs)
	}
}
