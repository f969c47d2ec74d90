// Package retry owns the retrying backend decorator: transient errors of the wrapped
// backend (network failures, server errors) are retried with exponential backoff and
// a bounded number of attempts; permanent errors (missing or existing files, a full
// disk, cancelled contexts) are returned at once.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/repo/backend"
)

// Defaults of Options.
const (
	DefaultAttempts = 5
	DefaultBase     = 200 * time.Millisecond
	DefaultMaxDelay = 30 * time.Second
)

// Options configure the decorator. Zero fields take the defaults.
type Options struct {
	Attempts int           // total attempts per operation, the first included
	Base     time.Duration // wait before the second attempt; doubled for each further one
	MaxDelay time.Duration // upper bound of one wait
	// OnRetry, when set, is called before each wait with the failed attempt's number
	// and error (which names the operation and file).
	// It may be called from several goroutines at once: the backend is used concurrently.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// Backend retries the operations of a wrapped backend.
type Backend struct {
	be   backend.Backend
	opts Options
}

var (
	_ backend.Backend   = (*Backend)(nil)
	_ backend.Unwrapper = (*Backend)(nil)
)

// New wraps be.
func New(be backend.Backend, opts Options) *Backend {
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.Base <= 0 {
		opts.Base = DefaultBase
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	return &Backend{be: be, opts: opts}
}

// permanentError marks an error that must not be retried.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err so the decorator does not retry it; a Load callback returns
// Permanent(err) for failures that reading again cannot fix. The mark is invisible
// to errors.Is and errors.As on the wrapped error. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether retrying err is pointless: the error says a file is
// missing or already present, storage is full, the context ended, or it was marked
// with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p) ||
		errors.Is(err, backend.ErrNotExist) ||
		errors.Is(err, backend.ErrExists) ||
		errors.Is(err, backend.ErrNoSpace) ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

// unmark strips the Permanent marks off the top of err for the caller.
func unmark(err error) error {
	for {
		p, ok := err.(*permanentError)
		if !ok {
			return err
		}
		err = p.err
	}
}

// do runs op until it succeeds, fails permanently or runs out of attempts.
// op gets the attempt number (1-based).
func (b *Backend) do(ctx context.Context, op func(attempt int) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = op(attempt)
		if err == nil {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return fmt.Errorf("after %d attempts: %w (last error: %w)", attempt, cerr, unmark(err))
		}
		if IsPermanent(err) {
			if attempt > 1 {
				return fmt.Errorf("after %d attempts: %w", attempt, unmark(err))
			}
			return unmark(err)
		}
		if attempt >= b.opts.Attempts {
			return fmt.Errorf("after %d attempts: %w", attempt, err)
		}
		wait := b.backoff(attempt)
		if b.opts.OnRetry != nil {
			b.opts.OnRetry(attempt, err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("after %d attempts: %w (last error: %w)", attempt, ctx.Err(), err)
		}
	}
}

// backoff returns the wait after the given failed attempt: Base·2^(attempt-1), capped
// at MaxDelay, with ±25% jitter so parallel clients spread out.
func (b *Backend) backoff(attempt int) time.Duration {
	d := b.opts.Base
	for i := 1; i < attempt && d < b.opts.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, b.opts.MaxDelay)
	return d - d/4 + rand.N(d/2+1)
}

// Unwrap implements backend.Unwrapper.
func (b *Backend) Unwrap() backend.Backend { return b.be }

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.be.Location() }

// Close implements backend.Backend.
func (b *Backend) Close() error { return b.be.Close() }

// Save implements backend.Backend. The reader is rewound before every retry. When a
// retry of a content-addressed file finds it already stored with the expected size,
// an earlier attempt succeeded without its reply arriving, and Save succeeds.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	return b.do(ctx, func(attempt int) error {
		if attempt > 1 {
			if err := rd.Rewind(); err != nil {
				return Permanent(fmt.Errorf("save %s: rewind for retry: %w", h, err))
			}
		}
		err := b.be.Save(ctx, h, rd)
		if attempt > 1 && h.Type != backend.LockFile && errors.Is(err, backend.ErrExists) {
			fi, serr := b.be.Stat(ctx, h)
			if serr == nil && fi.Size == rd.Length() {
				return nil
			}
		}
		return err
	})
}

// Load implements backend.Backend. fn is called again after a transient error;
// errors fn returns are retried unless marked with Permanent. A range beyond the end
// of the file, reported before fn runs, is not retried.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	return b.do(ctx, func(int) error {
		called := false
		err := b.be.Load(ctx, h, length, offset, func(rd io.Reader) error {
			called = true
			return fn(rd)
		})
		if err != nil && !called && errors.Is(err, io.ErrUnexpectedEOF) {
			return Permanent(err)
		}
		return err
	})
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	var fi backend.FileInfo
	err := b.do(ctx, func(int) error {
		var err error
		fi, err = b.be.Stat(ctx, h)
		return err
	})
	return fi, err
}

// List implements backend.Backend. A retried listing does not report files again
// that an earlier attempt already passed to fn; an error fn returns is not retried.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	var mu sync.Mutex
	seen := make(map[string]bool)
	return b.do(ctx, func(int) error {
		var fnErr error
		err := b.be.List(ctx, t, func(fi backend.FileInfo) error {
			mu.Lock()
			dup := seen[fi.Name]
			seen[fi.Name] = true
			mu.Unlock()
			if dup {
				return nil
			}
			fnErr = fn(fi)
			return fnErr
		})
		if err != nil && fnErr != nil {
			return Permanent(err)
		}
		return err
	})
}

// Remove implements backend.Backend. When a retry finds the file gone, an earlier
// attempt removed it without its reply arriving, and Remove succeeds.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	return b.do(ctx, func(attempt int) error {
		err := b.be.Remove(ctx, h)
		if attempt > 1 && backend.IsNotExist(err) {
			return nil
		}
		return err
	})
}
