// Package faulty owns the fault-injecting backend decorator used by tests: rules
// chosen by operation, file type, name predicate and call number make the wrapped
// backend fail, write short, report a full disk, slow down or return corrupted data.
package faulty

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/repo/backend"
)

// Op is a set of backend operations a rule applies to.
type Op uint8

// Operations; combine them with |.
const (
	OpSave Op = 1 << iota
	OpLoad
	OpStat
	OpList
	OpRemove

	OpAll = OpSave | OpLoad | OpStat | OpList | OpRemove
)

func (o Op) String() string {
	switch o {
	case OpSave:
		return "save"
	case OpLoad:
		return "load"
	case OpStat:
		return "stat"
	case OpList:
		return "list"
	case OpRemove:
		return "remove"
	}
	return fmt.Sprintf("ops(%#x)", uint8(o))
}

// Kind is what a rule does when it fires.
type Kind int

// Fault kinds.
const (
	// Fail returns Rule.Err (ErrInjected when nil) instead of calling the wrapped
	// backend, or, with Rule.After, after the wrapped call succeeded (a lost reply).
	Fail Kind = iota + 1
	// ShortWrite makes a Save hand the wrapped backend a reader that fails after
	// Rule.Bytes bytes (half the file when zero), so the wrapped Save fails midway and,
	// being atomic, must leave nothing behind. The error wraps ErrInjected.
	ShortWrite
	// NoSpace is ShortWrite for Save and Fail for other operations, with an error
	// wrapping backend.ErrNoSpace.
	NoSpace
	// Latency waits Rule.Delay (or until the context ends) and then proceeds.
	Latency
	// Corrupt makes Load flip one byte of the data fn sees, at Rule.Bytes within the
	// loaded range (clamped to its end).
	Corrupt
)

func (k Kind) String() string {
	switch k {
	case Fail:
		return "fail"
	case ShortWrite:
		return "short write"
	case NoSpace:
		return "no space"
	case Latency:
		return "latency"
	case Corrupt:
		return "corrupt"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ErrInjected is the default error of injected faults.
var ErrInjected = errors.New("faulty: injected fault")

// Rule selects calls and says what to do with them. Zero selector fields match
// everything.
type Rule struct {
	Op   Op                          // operations (0 means OpAll)
	Type backend.FileType            // file type (0 means every type)
	Name func(h backend.Handle) bool // handle predicate; List passes a handle without name
	// Nth is the first matching call (1-based) on which the rule fires; 0 means 1.
	Nth int
	// Times bounds how often the rule fires; 0 means on every call from the Nth on.
	Times int

	Kind  Kind
	Err   error         // Fail: the error to return (default ErrInjected)
	After bool          // Fail on Save/Remove: perform the call, then report Err
	Bytes int64         // ShortWrite/NoSpace: bytes passed on; Corrupt: offset of the flipped byte
	Delay time.Duration // Latency
}

// Injection tracks one added rule.
type Injection struct {
	rule    Rule
	mu      sync.Mutex
	matched int
	fired   int
	removed bool
}

// Fired returns how often the rule has fired.
func (in *Injection) Fired() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.fired
}

// fire counts a matching call and reports whether the rule fires on it.
func (in *Injection) fire(op Op, h backend.Handle) bool {
	r := &in.rule
	if r.Op != 0 && r.Op&op == 0 {
		return false
	}
	if r.Type != 0 && r.Type != h.Type {
		return false
	}
	if r.Name != nil && !r.Name(h) {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.removed {
		return false
	}
	in.matched++
	if in.matched < max(r.Nth, 1) || r.Times > 0 && in.fired >= r.Times {
		return false
	}
	in.fired++
	return true
}

// Backend wraps another backend and injects faults. It is safe for concurrent use.
type Backend struct {
	be    backend.Backend
	mu    sync.Mutex
	rules []*Injection
}

var (
	_ backend.Backend   = (*Backend)(nil)
	_ backend.Unwrapper = (*Backend)(nil)
)

// New returns a decorator of be without rules.
func New(be backend.Backend) *Backend { return &Backend{be: be} }

// Add installs a rule; rules are consulted in the order they were added.
func (b *Backend) Add(r Rule) *Injection {
	in := &Injection{rule: r}
	b.mu.Lock()
	b.rules = append(b.rules, in)
	b.mu.Unlock()
	return in
}

// Drop uninstalls a rule.
func (b *Backend) Drop(in *Injection) {
	b.mu.Lock()
	defer b.mu.Unlock()
	in.mu.Lock()
	in.removed = true
	in.mu.Unlock()
	for i, r := range b.rules {
		if r == in {
			b.rules = append(b.rules[:i], b.rules[i+1:]...)
			return
		}
	}
}

// Reset uninstalls every rule.
func (b *Backend) Reset() {
	b.mu.Lock()
	rules := b.rules
	b.rules = nil
	b.mu.Unlock()
	for _, in := range rules {
		in.mu.Lock()
		in.removed = true
		in.mu.Unlock()
	}
}

// Unwrap implements backend.Unwrapper.
func (b *Backend) Unwrap() backend.Backend { return b.be }

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.be.Location() }

// Close implements backend.Backend.
func (b *Backend) Close() error { return b.be.Close() }

// fault is the combined effect of the rules firing on one call.
type fault struct {
	fail    *Rule // Fail, ShortWrite or NoSpace; the first one wins
	corrupt *Rule
}

// consult fires matching rules, sleeps for Latency rules and returns the rest.
func (b *Backend) consult(ctx context.Context, op Op, h backend.Handle) (fault, error) {
	b.mu.Lock()
	rules := append([]*Injection(nil), b.rules...)
	b.mu.Unlock()
	var f fault
	var delay time.Duration
	for _, in := range rules {
		if !in.fire(op, h) {
			continue
		}
		r := &in.rule
		switch r.Kind {
		case Latency:
			delay += r.Delay
		case Corrupt:
			if f.corrupt == nil && op == OpLoad {
				f.corrupt = r
			}
		default:
			if f.fail == nil {
				f.fail = r
			}
		}
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return f, ctx.Err()
		}
	}
	return f, nil
}

func (r *Rule) err() error {
	if r.Kind == NoSpace {
		return fmt.Errorf("%s: %w", ErrInjected, backend.ErrNoSpace)
	}
	if r.Err != nil {
		return r.Err
	}
	return ErrInjected
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	f, err := b.consult(ctx, OpSave, h)
	if err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	if f.fail == nil {
		return b.be.Save(ctx, h, rd)
	}
	r := f.fail
	switch r.Kind {
	case ShortWrite, NoSpace:
		n := r.Bytes
		if n <= 0 {
			n = rd.Length() / 2
		}
		sr := &shortReader{RewindReader: rd, left: n, err: r.err()}
		err := b.be.Save(ctx, h, sr)
		if err == nil {
			// The wrapped backend stopped reading before the injected failure.
			return fmt.Errorf("save %s: injected %s was not reached: wrapped save succeeded", h, r.Kind)
		}
		if !errors.Is(err, sr.err) {
			err = fmt.Errorf("%w (wrapped backend: %w)", sr.err, err)
		}
		return fmt.Errorf("save %s: injected %s after %d bytes: %w", h, r.Kind, n, err)
	}
	if r.After {
		if err := b.be.Save(ctx, h, rd); err != nil {
			return err
		}
	}
	return fmt.Errorf("save %s: %w", h, r.err())
}

// shortReader passes on a limited number of bytes and then fails.
type shortReader struct {
	backend.RewindReader
	left int64
	err  error
}

func (s *shortReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, s.err
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.RewindReader.Read(p)
	s.left -= int64(n)
	if err == io.EOF {
		// The file is shorter than the cut-off: fail at its end instead.
		return n, s.err
	}
	return n, err
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	f, err := b.consult(ctx, OpLoad, h)
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	if f.fail != nil {
		return fmt.Errorf("load %s: %w", h, f.fail.err())
	}
	if f.corrupt == nil {
		return b.be.Load(ctx, h, length, offset, fn)
	}
	pos := f.corrupt.Bytes
	return b.be.Load(ctx, h, length, offset, func(rd io.Reader) error {
		buf, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if len(buf) > 0 {
			buf[min(max(pos, 0), int64(len(buf)-1))] ^= 0x01
		}
		return fn(bytes.NewReader(buf))
	})
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	f, err := b.consult(ctx, OpStat, h)
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	if f.fail != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %s: %w", h, f.fail.err())
	}
	return b.be.Stat(ctx, h)
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	f, err := b.consult(ctx, OpList, backend.Handle{Type: t})
	if err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	if f.fail != nil {
		return fmt.Errorf("list %s: %w", t, f.fail.err())
	}
	return b.be.List(ctx, t, fn)
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	f, err := b.consult(ctx, OpRemove, h)
	if err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	if f.fail == nil {
		return b.be.Remove(ctx, h)
	}
	if f.fail.After {
		if err := b.be.Remove(ctx, h); err != nil {
			return err
		}
	}
	return fmt.Errorf("remove %s: %w", h, f.fail.err())
}
