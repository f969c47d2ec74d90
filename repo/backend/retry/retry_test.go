package retry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/backendtest"
	"github.com/cairn-backup/cairn/repo/backend/faulty"
	"github.com/cairn-backup/cairn/repo/backend/mem"
	"github.com/cairn-backup/cairn/repo/backend/retry"
)

var fast = retry.Options{Base: 10 * time.Microsecond, MaxDelay: time.Millisecond}

func pack() backend.Handle {
	return backend.Handle{Type: backend.PackFile, Name: backendtest.RandomID()}
}

// firstCall returns a handle predicate true on the first call for each handle, so
// every operation on a file fails once and then succeeds.
func firstCall() func(backend.Handle) bool {
	var seen sync.Map
	return func(h backend.Handle) bool {
		_, loaded := seen.LoadOrStore(h, true)
		return !loaded
	}
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return retry.New(mem.New(), fast) })
}

func TestConformanceTransientFaults(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		fb := faulty.New(mem.New())
		fb.Add(faulty.Rule{Op: faulty.OpLoad, Name: firstCall(), Kind: faulty.Fail})
		fb.Add(faulty.Rule{Op: faulty.OpStat, Name: firstCall(), Kind: faulty.Fail})
		fb.Add(faulty.Rule{Op: faulty.OpList, Name: firstCall(), Kind: faulty.Fail})
		fb.Add(faulty.Rule{Op: faulty.OpSave, Name: firstCall(), Kind: faulty.ShortWrite})
		return retry.New(fb, fast)
	})
}

func TestConformanceLostReplies(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		fb := faulty.New(mem.New())
		fb.Add(faulty.Rule{Op: faulty.OpSave, Name: firstCall(), Kind: faulty.Fail, After: true})
		return retry.New(fb, fast)
	})
}

func TestUnwrap(t *testing.T) {
	inner := mem.New()
	if retry.New(inner, fast).Unwrap() != inner {
		t.Fatal("unwrap does not return the wrapped backend")
	}
}

func TestSaveRetriesWithRewind(t *testing.T) {
	inner := mem.New()
	fb := faulty.New(inner)
	in := fb.Add(faulty.Rule{Op: faulty.OpSave, Kind: faulty.ShortWrite, Bytes: 100, Times: 2})
	var retries []int
	opts := fast
	opts.OnRetry = func(attempt int, err error, _ time.Duration) {
		if !errors.Is(err, faulty.ErrInjected) {
			t.Errorf("retry after attempt %d: unexpected error %v", attempt, err)
		}
		retries = append(retries, attempt)
	}
	be := retry.New(fb, opts)
	h := pack()
	data := backendtest.RandomData(10000)
	backendtest.Save(t, be, h, data)
	if in.Fired() != 2 || fmt.Sprint(retries) != "[1 2]" {
		t.Fatalf("fired %d times with retries %v, want 2 and [1 2]", in.Fired(), retries)
	}
	if got := backendtest.Load(t, inner, h); !bytes.Equal(got, data) {
		t.Fatal("stored content differs: the reader was not rewound")
	}
}

func TestGivesUp(t *testing.T) {
	for _, attempts := range []int{0, 3} {
		fb := faulty.New(mem.New())
		in := fb.Add(faulty.Rule{Op: faulty.OpStat, Kind: faulty.Fail})
		opts := fast
		opts.Attempts = attempts
		be := retry.New(fb, opts)
		h := pack()
		_, err := be.Stat(context.Background(), h)
		want := attempts
		if want == 0 {
			want = retry.DefaultAttempts
		}
		if !errors.Is(err, faulty.ErrInjected) {
			t.Fatalf("stat: want ErrInjected in the chain, got %v", err)
		}
		prefix := fmt.Sprintf("after %d attempts: stat %s: ", want, h)
		if !strings.HasPrefix(err.Error(), prefix) {
			t.Fatalf("stat: error %q does not start with %q", err, prefix)
		}
		if in.Fired() != want {
			t.Fatalf("stat: %d attempts, want %d", in.Fired(), want)
		}
	}
}

func TestPermanentErrorsNotRetried(t *testing.T) {
	cases := map[string]error{
		"not exist": fmt.Errorf("gone: %w", backend.ErrNotExist),
		"exists":    fmt.Errorf("there: %w", backend.ErrExists),
		"no space":  fmt.Errorf("full: %w", backend.ErrNoSpace),
		"cancelled": context.Canceled,
		"deadline":  context.DeadlineExceeded,
		"marked":    retry.Permanent(errors.New("bad request")),
	}
	for name, injected := range cases {
		t.Run(name, func(t *testing.T) {
			fb := faulty.New(mem.New())
			in := fb.Add(faulty.Rule{Kind: faulty.Fail, Err: injected})
			be := retry.New(fb, fast)
			h := pack()
			errs := []error{
				be.Save(context.Background(), h, backend.NewByteReader([]byte("x"))),
				be.Load(context.Background(), h, 0, 0, func(io.Reader) error { return nil }),
				be.Remove(context.Background(), h),
				be.List(context.Background(), backend.PackFile, func(backend.FileInfo) error { return nil }),
			}
			_, err := be.Stat(context.Background(), h)
			errs = append(errs, err)
			for _, err := range errs {
				if err == nil || strings.Contains(err.Error(), "attempts") {
					t.Fatalf("want the injected error without retries, got %v", err)
				}
				if name != "marked" && !errors.Is(err, injected) {
					t.Fatalf("want %v in the chain, got %v", injected, err)
				}
			}
			if in.Fired() != len(errs) {
				t.Fatalf("%d calls reached the backend, want %d (one per operation)", in.Fired(), len(errs))
			}
		})
	}
}

func TestLoadRetriesFn(t *testing.T) {
	fb := faulty.New(mem.New())
	be := retry.New(fb, fast)
	h := pack()
	data := backendtest.RandomData(5000)
	backendtest.Save(t, be, h, data)
	sum := sha256.Sum256(data)
	in := fb.Add(faulty.Rule{Op: faulty.OpLoad, Kind: faulty.Corrupt, Bytes: 77, Times: 2})
	calls := 0
	var got []byte
	err := be.Load(context.Background(), h, 0, 0, func(rd io.Reader) error {
		calls++
		buf, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if sha256.Sum256(buf) != sum {
			return errors.New("checksum mismatch")
		}
		got = buf
		return nil
	})
	if err != nil || calls != 3 || in.Fired() != 2 || !bytes.Equal(got, data) {
		t.Fatalf("load: err %v after %d calls of fn (%d corrupted), want success on the third", err, calls, in.Fired())
	}

	// fn marks its failure permanent: no retry, and the caller sees fn's error.
	calls = 0
	sentinel := errors.New("not worth retrying")
	err = be.Load(context.Background(), h, 0, 0, func(io.Reader) error {
		calls++
		return retry.Permanent(sentinel)
	})
	if !errors.Is(err, sentinel) || calls != 1 {
		t.Fatalf("load with a permanent fn error: err %v after %d calls, want the sentinel after 1", err, calls)
	}

	// A range beyond the end fails before fn runs and is not retried.
	counter := fb.Add(faulty.Rule{Op: faulty.OpLoad, Kind: faulty.Latency})
	err = be.Load(context.Background(), h, 10, 4999, func(io.Reader) error { return nil })
	if !errors.Is(err, io.ErrUnexpectedEOF) || counter.Fired() != 1 {
		t.Fatalf("load beyond the end: err %v after %d attempts, want io.ErrUnexpectedEOF after 1", err, counter.Fired())
	}
	// A stream cut inside fn (io.ErrUnexpectedEOF from fn) is retried.
	calls = 0
	err = be.Load(context.Background(), h, 0, 0, func(rd io.Reader) error {
		calls++
		if calls == 1 {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("load with a cut stream: err %v after %d calls, want success on the second", err, calls)
	}
}

func TestLostReplies(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	fb := faulty.New(inner)
	be := retry.New(fb, fast)
	fb.Add(faulty.Rule{Op: faulty.OpSave | faulty.OpRemove, Kind: faulty.Fail, After: true, Times: 2})
	h := pack()
	data := backendtest.RandomData(300)
	if err := be.Save(ctx, h, backend.NewByteReader(data)); err != nil {
		t.Fatalf("save whose first reply was lost: %v", err)
	}
	if err := be.Remove(ctx, h); err != nil {
		t.Fatalf("remove whose first reply was lost: %v", err)
	}
	if _, err := inner.Stat(ctx, h); !backend.IsNotExist(err) {
		t.Fatalf("stat after remove: want not found, got %v", err)
	}
	// A different file of the same name found on retry is still a conflict.
	backendtest.Save(t, inner, h, []byte("other content"))
	fb.Add(faulty.Rule{Op: faulty.OpSave, Kind: faulty.Fail, Times: 1})
	if err := be.Save(ctx, h, backend.NewByteReader(data)); !errors.Is(err, backend.ErrExists) {
		t.Fatalf("save over a different file: want ErrExists, got %v", err)
	}
}

// cutList is a backend whose first listing fails after reporting two files.
type cutList struct {
	backend.Backend
	mu    sync.Mutex
	calls int
}

func (c *cutList) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	c.mu.Lock()
	c.calls++
	first := c.calls == 1
	c.mu.Unlock()
	n := 0
	return c.Backend.List(ctx, t, func(fi backend.FileInfo) error {
		if first && n == 2 {
			return errors.New("connection reset")
		}
		n++
		return fn(fi)
	})
}

func TestListRetryNoDuplicates(t *testing.T) {
	inner := mem.New()
	for range 5 {
		backendtest.Save(t, inner, pack(), []byte("x"))
	}
	be := retry.New(&cutList{Backend: inner}, fast)
	seen := map[string]int{}
	err := be.List(context.Background(), backend.PackFile, func(fi backend.FileInfo) error {
		seen[fi.Name]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 5 {
		t.Fatalf("listed %d files, want 5", len(seen))
	}
	for name, n := range seen {
		if n != 1 {
			t.Fatalf("%s reported %d times", name, n)
		}
	}
	// An error of fn stops the listing without retry.
	stop := errors.New("stop")
	calls := 0
	err = be.List(context.Background(), backend.PackFile, func(backend.FileInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 || strings.Contains(err.Error(), "attempts") {
		t.Fatalf("list with a failing fn: err %v after %d calls, want the fn error after 1", err, calls)
	}
}

func TestContextEndsDuringWait(t *testing.T) {
	fb := faulty.New(mem.New())
	fb.Add(faulty.Rule{Kind: faulty.Fail})
	be := retry.New(fb, retry.Options{Base: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := be.Stat(ctx, pack())
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("stat: want DeadlineExceeded and the last error, got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "after 1 attempts: ") {
		t.Fatalf("stat: error %q does not say how many attempts ran", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stat waited %v despite the deadline", d)
	}
}

func TestBackoffGrows(t *testing.T) {
	fb := faulty.New(mem.New())
	fb.Add(faulty.Rule{Kind: faulty.Fail})
	var waits []time.Duration
	be := retry.New(fb, retry.Options{
		Attempts: 6,
		Base:     100 * time.Microsecond,
		MaxDelay: 800 * time.Microsecond,
		OnRetry:  func(_ int, _ error, d time.Duration) { waits = append(waits, d) },
	})
	_, _ = be.Stat(context.Background(), pack())
	want := []time.Duration{100, 200, 400, 800, 800}
	if len(waits) != len(want) {
		t.Fatalf("got %d waits, want %d", len(waits), len(want))
	}
	for i, w := range want {
		w *= time.Microsecond
		if waits[i] < w*3/4 || waits[i] > w*5/4 {
			t.Fatalf("wait %d is %v, want %v ±25%%", i+1, waits[i], w)
		}
	}
}

// badRewind cannot be rewound.
type badRewind struct{ *backend.ByteReader }

func (badRewind) Rewind() error { return errors.New("stream cannot rewind") }

func TestRewindFailureStops(t *testing.T) {
	fb := faulty.New(mem.New())
	in := fb.Add(faulty.Rule{Op: faulty.OpSave, Kind: faulty.Fail})
	be := retry.New(fb, fast)
	err := be.Save(context.Background(), pack(), badRewind{backend.NewByteReader([]byte("data"))})
	if err == nil || !strings.Contains(err.Error(), "rewind for retry: stream cannot rewind") || in.Fired() != 1 {
		t.Fatalf("save with an unrewindable reader: err %v after %d attempts", err, in.Fired())
	}
}
