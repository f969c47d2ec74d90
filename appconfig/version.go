package appconfig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// ErrNoVersion means the command output or file did not yield a version.
var ErrNoVersion = errors.New("no version found")

// Resolve returns the application version: the literal, or the output of the command
// (run without a shell) or the contents of the file, narrowed by Regex (see Extract).
func (v VersionSource) Resolve(ctx context.Context) (string, error) {
	switch {
	case v.Literal != "":
		return v.Literal, nil
	case len(v.Command) > 0:
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, v.Command[0], v.Command[1:]...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			msg := strings.TrimSpace(stderr.String())
			if len(msg) > 500 {
				msg = msg[:500] + "…"
			}
			if msg != "" {
				return "", fmt.Errorf("version command %q: %w: %s", strings.Join(v.Command, " "), err, msg)
			}
			return "", fmt.Errorf("version command %q: %w", strings.Join(v.Command, " "), err)
		}
		ver, err := v.Extract(out)
		if err != nil {
			return "", fmt.Errorf("version command %q: %w", strings.Join(v.Command, " "), err)
		}
		return ver, nil
	case v.File != "":
		data, err := os.ReadFile(v.File)
		if err != nil {
			return "", fmt.Errorf("version file: %w", err)
		}
		ver, err := v.Extract(data)
		if err != nil {
			return "", fmt.Errorf("version file %s: %w", v.File, err)
		}
		return ver, nil
	}
	return "", fmt.Errorf("version source: %w: none of literal, command or file is set", ErrNoVersion)
}

// Extract narrows raw command output or file contents to the version. Without Regex
// it is the trimmed text. With Regex it is the first match: the whole match if the
// expression has no capturing group, otherwise its non-empty groups joined with "."
// (so `\((\d+), (\d+), (\d+)\)` turns "(2, 13, 5)" into "2.13.5"). It returns an error
// wrapping ErrNoVersion when nothing is left.
func (v VersionSource) Extract(raw []byte) (string, error) {
	if v.Regex == "" {
		s := strings.TrimSpace(string(raw))
		if s == "" {
			return "", fmt.Errorf("empty output: %w", ErrNoVersion)
		}
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			return "", fmt.Errorf("%d lines of output, want one (set regex to pick the version): %w", strings.Count(s, "\n")+1, ErrNoVersion)
		}
		return s, nil
	}
	re, err := regexp.Compile(v.Regex)
	if err != nil {
		return "", fmt.Errorf("version regex: %w", err)
	}
	m := re.FindSubmatch(raw)
	if m == nil {
		return "", fmt.Errorf("regex %q does not match: %w", v.Regex, ErrNoVersion)
	}
	var s string
	if len(m) == 1 {
		s = string(m[0])
	} else {
		var parts []string
		for _, g := range m[1:] {
			if len(g) > 0 {
				parts = append(parts, string(g))
			}
		}
		s = strings.Join(parts, ".")
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("regex %q matched an empty string: %w", v.Regex, ErrNoVersion)
	}
	return s, nil
}
