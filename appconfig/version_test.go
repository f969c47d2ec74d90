package appconfig

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestVersionExtract(t *testing.T) {
	tests := []struct {
		name  string
		regex string
		in    string
		want  string
		err   error
	}{
		{"trimmed", "", "2.13.5\n", "2.13.5", nil},
		{"empty", "", " \n", "", ErrNoVersion},
		{"several lines", "", "a\nb\n", "", ErrNoVersion},
		{"whole match", `\d+\.\d+\.\d+`, "InvenTree 0.16.5 (stable)", "0.16.5", nil},
		{"one group", `(?m)^Version: (\S+)`, "Name: x\nVersion: 4.9.0\n", "4.9.0", nil},
		{"groups joined", `__version__[^=]*=\s*\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)`,
			"from typing import Final\n\n__version__: Final[tuple[int, int, int]] = (2, 13, 5)\n", "2.13.5", nil},
		{"optional group skipped", `v(\d+)(?:-(rc\d+))?`, "v3", "3", nil},
		{"no match", `\d+`, "none", "", ErrNoVersion},
		{"empty match", `x*`, "abc", "", ErrNoVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := VersionSource{Regex: tc.regex}.Extract([]byte(tc.in))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Extract = %q, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Extract = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestVersionResolve(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "VERSION")
	if err := os.WriteFile(file, []byte("release 1.4.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  VersionSource
		want string
		fail bool
	}{
		{"literal", VersionSource{Literal: "2.0"}, "2.0", false},
		{"file", VersionSource{File: file, Regex: `[\d.]+`}, "1.4.2", false},
		{"file without regex", VersionSource{File: file}, "release 1.4.2", false},
		{"missing file", VersionSource{File: filepath.Join(dir, "nope")}, "", true},
		{"command", VersionSource{Command: []string{"echo", "3.1.0"}}, "3.1.0", false},
		{"command with regex", VersionSource{Command: []string{"echo", "app version 3.1.0"}, Regex: `version (\S+)`}, "3.1.0", false},
		{"failing command", VersionSource{Command: []string{"sh", "-c", "echo broken >&2; exit 3"}}, "", true},
		{"missing program", VersionSource{Command: []string{filepath.Join(dir, "no-such-program")}}, "", true},
		{"nothing", VersionSource{}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.src.Resolve(context.Background())
			if tc.fail {
				if err == nil {
					t.Fatalf("Resolve = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Resolve = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
