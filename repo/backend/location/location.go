// Package location owns the mapping from a repository location string to a backend:
// local paths, "s3:" and "sftp:" locations, with remote backends wrapped in the
// retrying decorator.
package location

import (
	"context"
	"fmt"
	"strings"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/backend/retry"
	"github.com/cairn-backup/cairn/repo/backend/s3"
	"github.com/cairn-backup/cairn/repo/backend/sftp"
)

// Backend kinds.
const (
	Local = "local"
	S3    = "s3"
	SFTP  = "sftp"
)

// Options configure the backends Open and Create make.
type Options struct {
	S3    s3.Options
	SFTP  sftp.Options
	Retry retry.Options
	// NoRetry leaves remote backends unwrapped.
	NoRetry bool
}

// Location is a parsed repository location.
type Location struct {
	Kind string // Local, S3 or SFTP
	// Path is the directory of a local repository (the "local:" prefix removed).
	Path string
	S3   s3.Config
	SFTP sftp.Config
}

// Parse classifies loc: "s3:…" and "sftp:…" are remote, "local:PATH" and anything
// without a scheme (absolute or relative paths, Windows drive paths) are local
// directories. Other "name:" prefixes are rejected so a typo is not taken for a
// directory name.
func Parse(loc string) (Location, error) {
	switch {
	case loc == "":
		return Location{}, fmt.Errorf("parse location: empty location")
	case strings.HasPrefix(loc, "s3:"):
		cfg, err := s3.ParseLocation(loc)
		if err != nil {
			return Location{}, err
		}
		return Location{Kind: S3, S3: cfg}, nil
	case strings.HasPrefix(loc, "sftp:"):
		cfg, err := sftp.ParseLocation(loc)
		if err != nil {
			return Location{}, err
		}
		return Location{Kind: SFTP, SFTP: cfg}, nil
	case strings.HasPrefix(loc, "local:"):
		p := strings.TrimPrefix(loc, "local:")
		if p == "" {
			return Location{}, fmt.Errorf("parse location %q: missing path", loc)
		}
		return Location{Kind: Local, Path: p}, nil
	}
	if scheme, _, ok := strings.Cut(loc, ":"); ok && len(scheme) > 1 && isScheme(scheme) {
		return Location{}, fmt.Errorf("parse location %q: unsupported backend %q (use a path, local:PATH, s3:… or sftp:…)", loc, scheme)
	}
	return Location{Kind: Local, Path: loc}, nil
}

// isScheme reports whether s looks like a URL scheme rather than part of a path.
func isScheme(s string) bool {
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// Open opens the existing repository at loc.
func Open(ctx context.Context, loc string, opts Options) (backend.Backend, error) {
	l, err := Parse(loc)
	if err != nil {
		return nil, err
	}
	switch l.Kind {
	case S3:
		be, err := s3.Open(ctx, loc, opts.S3)
		if err != nil {
			return nil, err
		}
		return wrap(be, opts), nil
	case SFTP:
		be, err := sftp.Open(ctx, loc, opts.SFTP)
		if err != nil {
			return nil, err
		}
		return wrap(be, opts), nil
	}
	be, err := local.Open(l.Path)
	if err != nil {
		return nil, err
	}
	return be.WithLocation(loc), nil
}

// Create makes the storage layout of a new repository at loc and opens it.
func Create(ctx context.Context, loc string, opts Options) (backend.Backend, error) {
	l, err := Parse(loc)
	if err != nil {
		return nil, err
	}
	switch l.Kind {
	case S3:
		be, err := s3.Create(ctx, loc, opts.S3)
		if err != nil {
			return nil, err
		}
		return wrap(be, opts), nil
	case SFTP:
		be, err := sftp.Create(ctx, loc, opts.SFTP)
		if err != nil {
			return nil, err
		}
		return wrap(be, opts), nil
	}
	be, err := local.Create(l.Path)
	if err != nil {
		return nil, err
	}
	return be.WithLocation(loc), nil
}

func wrap(be backend.Backend, opts Options) backend.Backend {
	if opts.NoRetry {
		return be
	}
	return retry.New(be, opts.Retry)
}
