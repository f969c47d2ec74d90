package dbdump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// versionLimit bounds how much of a version command's output or version file is read.
const versionLimit = 1 << 20

// VersionSource says where the application's version comes from: a literal, the output
// of a command, or a file, optionally narrowed by a regular expression.
type VersionSource struct {
	Literal string   `toml:"literal"`
	Command []string `toml:"command"` // program and arguments, run without a shell
	File    string   `toml:"file"`
	// Regex picks the version out of the text: its first capture group if it has one,
	// else the whole match. Without Regex the trimmed text is the version.
	Regex string `toml:"regex"`
}

// Resolve returns the version. A failing command's error carries its exit status and
// stderr; a regex that does not match gives ErrVersionNoMatch.
func (v VersionSource) Resolve(ctx context.Context) (string, error) {
	set := 0
	for _, b := range []bool{v.Literal != "", len(v.Command) > 0, v.File != ""} {
		if b {
			set++
		}
	}
	if set == 0 {
		return "", errors.New("version source: none of literal, command, file is set")
	}
	if set > 1 {
		return "", errors.New("version source: set only one of literal, command, file")
	}

	var text, from string
	switch {
	case v.Literal != "":
		text, from = v.Literal, "literal"
	case len(v.Command) > 0:
		var out strings.Builder
		t := tool{name: v.Command[0], args: v.Command[1:], stdout: &limitWriter{w: &out, n: versionLimit}}
		if err := t.run(ctx); err != nil {
			return "", fmt.Errorf("version command %q: %w", strings.Join(v.Command, " "), err)
		}
		text, from = out.String(), fmt.Sprintf("the output of %q", strings.Join(v.Command, " "))
	default:
		f, err := os.Open(v.File)
		if err != nil {
			return "", fmt.Errorf("read version file: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(f, versionLimit))
		f.Close()
		if err != nil {
			return "", fmt.Errorf("read version file %s: %w", v.File, err)
		}
		text, from = string(b), "file "+v.File
	}

	if v.Regex == "" {
		s := strings.TrimSpace(text)
		if s == "" {
			return "", fmt.Errorf("version from %s is empty", from)
		}
		return s, nil
	}
	re, err := regexp.Compile(v.Regex)
	if err != nil {
		return "", fmt.Errorf("version regex %q: %w", v.Regex, err)
	}
	m := re.FindStringSubmatch(text)
	if m == nil {
		return "", fmt.Errorf("%w: %q in %s: %q", ErrVersionNoMatch, v.Regex, from, excerpt(text, 200))
	}
	s := m[0]
	if len(m) > 1 {
		s = m[1]
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("version regex %q matched an empty string in %s", v.Regex, from)
	}
	return s, nil
}

// limitWriter keeps the first n bytes and silently discards the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	k := min(len(p), l.n)
	if k > 0 {
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.n -= k
	}
	return len(p), nil
}

func excerpt(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
