package faulty_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/backendtest"
	"github.com/cairn-backup/cairn/repo/backend/faulty"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/backend/mem"
)

func pack() backend.Handle {
	return backend.Handle{Type: backend.PackFile, Name: backendtest.RandomID()}
}

func TestConformanceWithoutRules(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return faulty.New(mem.New()) })
}

func TestConformanceWithLatency(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		fb := faulty.New(mem.New())
		fb.Add(faulty.Rule{Kind: faulty.Latency, Delay: time.Microsecond})
		return fb
	})
}

func TestUnwrap(t *testing.T) {
	inner := mem.New()
	var be backend.Backend = faulty.New(inner)
	u, ok := be.(backend.Unwrapper)
	if !ok || u.Unwrap() != inner {
		t.Fatal("unwrap does not return the wrapped backend")
	}
}

func TestFailNth(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New())
	in := fb.Add(faulty.Rule{Op: faulty.OpStat, Nth: 2, Times: 2, Kind: faulty.Fail})
	h := pack()
	backendtest.Save(t, fb, h, []byte("x"))
	want := []bool{false, true, true, false, false}
	for i, fail := range want {
		_, err := fb.Stat(ctx, h)
		if got := errors.Is(err, faulty.ErrInjected); got != fail {
			t.Fatalf("stat call %d: injected=%v (err %v), want %v", i+1, got, err, fail)
		}
		if err != nil && !strings.Contains(err.Error(), "stat "+h.String()) {
			t.Fatalf("stat call %d: error %q does not name the operation and file", i+1, err)
		}
	}
	if in.Fired() != 2 {
		t.Fatalf("fired %d times, want 2", in.Fired())
	}
}

func TestSelectors(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New())
	custom := errors.New("custom failure")
	fb.Add(faulty.Rule{
		Op:   faulty.OpSave | faulty.OpRemove,
		Type: backend.IndexFile,
		Name: func(h backend.Handle) bool { return strings.HasPrefix(h.Name, "bad") },
		Kind: faulty.Fail,
		Err:  custom,
	})
	good := backend.Handle{Type: backend.IndexFile, Name: "good1"}
	bad := backend.Handle{Type: backend.IndexFile, Name: "bad1"}
	badPack := backend.Handle{Type: backend.PackFile, Name: "bad2"}
	backendtest.Save(t, fb, good, []byte("g"))
	backendtest.Save(t, fb, badPack, []byte("p"))
	if err := fb.Save(ctx, bad, backend.NewByteReader([]byte("b"))); !errors.Is(err, custom) {
		t.Fatalf("save %s: want the custom error, got %v", bad, err)
	}
	if _, err := fb.Stat(ctx, bad); !backend.IsNotExist(err) {
		t.Fatalf("stat %s after an injected failure: want not found, got %v", bad, err)
	}
	if err := fb.List(ctx, backend.IndexFile, func(backend.FileInfo) error { return nil }); err != nil {
		t.Fatalf("list index is not selected by the rule: %v", err)
	}
	if err := fb.Remove(ctx, good); err != nil {
		t.Fatal(err)
	}
}

func TestFailAfter(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	fb := faulty.New(inner)
	fb.Add(faulty.Rule{Op: faulty.OpSave | faulty.OpRemove, Kind: faulty.Fail, After: true, Times: 2})
	h := pack()
	if err := fb.Save(ctx, h, backend.NewByteReader([]byte("lost reply"))); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("save: want ErrInjected, got %v", err)
	}
	if got := backendtest.Load(t, inner, h); string(got) != "lost reply" {
		t.Fatalf("save with After did not store the file: %q", got)
	}
	if err := fb.Remove(ctx, h); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("remove: want ErrInjected, got %v", err)
	}
	if _, err := inner.Stat(ctx, h); !backend.IsNotExist(err) {
		t.Fatalf("remove with After did not remove the file: %v", err)
	}
}

func TestShortWriteLeavesNothing(t *testing.T) {
	ctx := context.Background()
	inner, err := local.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	fb := faulty.New(inner)
	in := fb.Add(faulty.Rule{Op: faulty.OpSave, Kind: faulty.ShortWrite, Bytes: 1000, Times: 1})
	h := pack()
	data := backendtest.RandomData(100000)
	rd := backend.NewByteReader(data)
	err = fb.Save(ctx, h, rd)
	if !errors.Is(err, faulty.ErrInjected) || !strings.Contains(err.Error(), "short write") {
		t.Fatalf("save: want an injected short write, got %v", err)
	}
	if in.Fired() != 1 {
		t.Fatalf("rule fired %d times, want 1", in.Fired())
	}
	if _, err := inner.Stat(ctx, h); !backend.IsNotExist(err) {
		t.Fatalf("stat after a short write: want not found, got %v", err)
	}
	if names := backendtest.ListNames(t, inner, backend.PackFile); len(names) != 0 {
		t.Fatalf("list after a short write: %v", names)
	}
	// The rule fired once; a retry with the rewound reader stores the whole file.
	if err := rd.Rewind(); err != nil {
		t.Fatal(err)
	}
	if err := fb.Save(ctx, h, rd); err != nil {
		t.Fatal(err)
	}
	if got := backendtest.Load(t, inner, h); !bytes.Equal(got, data) {
		t.Fatal("content differs after the second save")
	}
}

func TestNoSpace(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	fb := faulty.New(inner)
	fb.Add(faulty.Rule{Kind: faulty.NoSpace, Op: faulty.OpSave | faulty.OpRemove})
	h := pack()
	err := fb.Save(ctx, h, backend.NewByteReader(make([]byte, 5000)))
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("save: want ErrNoSpace, got %v", err)
	}
	if _, err := inner.Stat(ctx, h); !backend.IsNotExist(err) {
		t.Fatalf("stat after a full-disk save: want not found, got %v", err)
	}
	// A file shorter than the cut-off fails at its end.
	if err := fb.Save(ctx, pack(), backend.NewByteReader(nil)); !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("save of an empty file: want ErrNoSpace, got %v", err)
	}
	if err := fb.Remove(ctx, h); !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("remove: want ErrNoSpace, got %v", err)
	}
}

func TestLatency(t *testing.T) {
	fb := faulty.New(mem.New())
	fb.Add(faulty.Rule{Op: faulty.OpStat, Kind: faulty.Latency, Delay: 30 * time.Millisecond})
	h := pack()
	backendtest.Save(t, fb, h, []byte("x"))
	start := time.Now()
	if _, err := fb.Stat(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("stat took %v, want at least 30ms", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	fb.Add(faulty.Rule{Op: faulty.OpStat, Kind: faulty.Latency, Delay: time.Hour})
	if _, err := fb.Stat(ctx, h); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stat with a long delay and a short deadline: want DeadlineExceeded, got %v", err)
	}
}

func TestCorrupt(t *testing.T) {
	fb := faulty.New(mem.New())
	h := pack()
	data := backendtest.RandomData(100)
	backendtest.Save(t, fb, h, data)
	in := fb.Add(faulty.Rule{Op: faulty.OpLoad, Kind: faulty.Corrupt, Bytes: 5, Times: 1})
	var got []byte
	err := fb.Load(context.Background(), h, 20, 10, func(rd io.Reader) error {
		var err error
		got, err = io.ReadAll(rd)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(data[10:30])
	want[5] ^= 0x01
	if !bytes.Equal(got, want) {
		t.Fatalf("corrupted load: got %x, want %x", got, want)
	}
	if got := backendtest.Load(t, fb, h); !bytes.Equal(got, data) {
		t.Fatal("second load is corrupted too, the rule fires once")
	}
	fb.Drop(in)
	fb.Add(faulty.Rule{Op: faulty.OpLoad, Kind: faulty.Corrupt, Bytes: 1 << 40})
	got = backendtest.Load(t, fb, h)
	if got[len(got)-1] == data[len(data)-1] || !bytes.Equal(got[:len(got)-1], data[:len(data)-1]) {
		t.Fatal("corrupting past the end did not flip exactly the last byte")
	}
	fb.Reset()
	if got := backendtest.Load(t, fb, h); !bytes.Equal(got, data) {
		t.Fatal("load after reset is corrupted")
	}
}
