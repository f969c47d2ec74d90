package dbdump

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestVersionSource(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	file := filepath.Join(t.TempDir(), "version.py")
	if err := os.WriteFile(file, []byte("# generated\n__version__ = (2, 7, 2)\n__full_version_str__ = \"2.7.2\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		src  VersionSource
		want string
	}{
		{"literal", VersionSource{Literal: " 1.4.0 "}, "1.4.0"},
		{"literal regex whole match", VersionSource{Literal: "InvenTree v0.13.5 stable", Regex: `v\d+\.\d+\.\d+`}, "v0.13.5"},
		{"command", VersionSource{Command: []string{"sh", "-c", "echo 'paperless-ngx 2.7.2 (build abc)'"}, Regex: `(\d+\.\d+\.\d+)`}, "2.7.2"},
		{"command trimmed", VersionSource{Command: []string{"echo", "3.0"}}, "3.0"},
		{"file", VersionSource{File: file, Regex: `__full_version_str__ = "([^"]+)"`}, "2.7.2"},
	} {
		got, err := tc.src.Resolve(ctx)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestVersionSourceErrors(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	_, err := VersionSource{Command: []string{"sh", "-c", "echo 'manage.py: settings module not found' >&2; exit 3"}}.Resolve(ctx)
	wantErr(t, err, nil, "version command", "exited with status 3", "settings module not found")

	_, err = VersionSource{Command: []string{"cairn-no-such-version-tool"}}.Resolve(ctx)
	wantErr(t, err, ErrToolNotFound, "cairn-no-such-version-tool not found in PATH")

	_, err = VersionSource{Command: []string{"echo", "no digits here"}, Regex: `(\d+\.\d+)`}.Resolve(ctx)
	wantErr(t, err, ErrVersionNoMatch, `"(\\d+\\.\\d+)"`, "no digits here")

	_, err = VersionSource{File: filepath.Join(t.TempDir(), "missing")}.Resolve(ctx)
	wantErr(t, err, os.ErrNotExist, "read version file")

	_, err = VersionSource{Literal: "1", File: "x"}.Resolve(ctx)
	wantErr(t, err, nil, "set only one")

	_, err = VersionSource{}.Resolve(ctx)
	wantErr(t, err, nil, "none of literal, command, file")

	_, err = VersionSource{Literal: "1.0", Regex: "("}.Resolve(ctx)
	wantErr(t, err, nil, "version regex")
}
