package dbdump

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// djangoMigrations is what testdata/apps/django-schema.sql records.
var djangoMigrations = map[string]string{
	"admin":          "0003_logentry_add_action_flag_choices",
	"auth":           "0012_alter_user_first_name_max_length",
	"contenttypes":   "0002_remove_content_type_name",
	"documents":      "1016_auto_20210317_1351",
	"paperless_mail": "0008_auto_20210516_0940",
	"sessions":       "0001_initial",
}

var alembicMigrations = map[string]string{"alembic": "4f2e9a1c7b3d"}

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "apps", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// writeScript creates an executable shell script name in dir.
func writeScript(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err error, target error, substrings ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", substrings)
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("error %q is not %v", err, target)
	}
	for _, s := range substrings {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func wantMigrations(t *testing.T, got, want map[string]string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("migrations = %v, want %v", got, want)
	}
}

// dumpToBuffer dumps e and returns the bytes and the info.
func dumpToBuffer(t *testing.T, ctx context.Context, e Engine) ([]byte, Info) {
	t.Helper()
	var buf bytes.Buffer
	info, err := e.Dump(ctx, &buf)
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return buf.Bytes(), info
}

// withBinDir puts the directory named by env (exported by a service script) in front
// of PATH.
func withBinDir(t *testing.T, env string) {
	t.Helper()
	if dir := os.Getenv(env); dir != "" {
		t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
}
