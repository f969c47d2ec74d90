// Package backendtest owns the conformance suite every backend.Backend must pass: Run
// checks each clause of the storage contract in repo/backend/backend.go.
package backendtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/repo/backend"
)

// Run runs the conformance suite. newBackend must return a fresh, empty backend for
// every call (each subtest calls it once) and arrange its cleanup with t.Cleanup;
// Run closes nothing itself.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, be backend.Backend)
	}{
		{"SaveLoadEveryType", testSaveLoadEveryType},
		{"EmptyFile", testEmptyFile},
		{"SaveCopiesData", testSaveCopiesData},
		{"SaveExisting", testSaveExisting},
		{"LockReplace", testLockReplace},
		{"RangedLoad", testRangedLoad},
		{"NotFound", testNotFound},
		{"InvalidHandle", testInvalidHandle},
		{"FnError", testFnError},
		{"FnPartialRead", testFnPartialRead},
		{"AtomicSave", testAtomicSave},
		{"AtomicLockReplace", testAtomicLockReplace},
		{"List", testList},
		{"ListStop", testListStop},
		{"Remove", testRemove},
		{"CancelledContext", testCancelledContext},
		{"Concurrency", testConcurrency},
		{"ConcurrentSameHandle", testConcurrentSameHandle},
		{"Location", testLocation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newBackend(t))
		})
	}
}

// RandomID returns a random 64-character hex name, like the content IDs the
// repository uses.
func RandomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RandomData returns n random bytes.
func RandomData(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Save stores data under h and fails the test on error.
func Save(t testing.TB, be backend.Backend, h backend.Handle, data []byte) {
	t.Helper()
	if err := be.Save(context.Background(), h, backend.NewByteReader(data)); err != nil {
		t.Fatalf("save %s: %v", h, err)
	}
}

// Load returns the whole file and fails the test on error.
func Load(t testing.TB, be backend.Backend, h backend.Handle) []byte {
	t.Helper()
	data, err := backend.LoadAll(context.Background(), be, h)
	if err != nil {
		t.Fatalf("load %s: %v", h, err)
	}
	return data
}

// ListNames returns the sorted names List reports for t.
func ListNames(tb testing.TB, be backend.Backend, t backend.FileType) []string {
	tb.Helper()
	var names []string
	err := be.List(context.Background(), t, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	})
	if err != nil {
		tb.Fatalf("list %s: %v", t, err)
	}
	slices.Sort(names)
	return names
}

func assertNotExist(t *testing.T, be backend.Backend, h backend.Handle) {
	t.Helper()
	if _, err := be.Stat(context.Background(), h); !backend.IsNotExist(err) {
		t.Fatalf("stat %s: want an error wrapping fs.ErrNotExist, got %v", h, err)
	}
}

func handleOf(typ backend.FileType) backend.Handle {
	if typ == backend.ConfigFile {
		return backend.Handle{Type: typ}
	}
	return backend.Handle{Type: typ, Name: RandomID()}
}

func testSaveLoadEveryType(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	for i, typ := range backend.AllTypes {
		h := handleOf(typ)
		data := RandomData(1000 + 37*i)
		Save(t, be, h, data)
		if got := Load(t, be, h); !bytes.Equal(got, data) {
			t.Fatalf("load %s: content differs (got %d bytes, want %d)", h, len(got), len(data))
		}
		fi, err := be.Stat(ctx, h)
		if err != nil {
			t.Fatalf("stat %s: %v", h, err)
		}
		if fi.Size != int64(len(data)) || fi.Name != h.Name {
			t.Fatalf("stat %s: got %+v, want name %q size %d", h, fi, h.Name, len(data))
		}
		var infos []backend.FileInfo
		if err := be.List(ctx, typ, func(fi backend.FileInfo) error {
			infos = append(infos, fi)
			return nil
		}); err != nil {
			t.Fatalf("list %s: %v", typ, err)
		}
		if len(infos) != 1 || infos[0].Name != h.Name || infos[0].Size != int64(len(data)) {
			t.Fatalf("list %s: got %+v, want one file %q of %d bytes", typ, infos, h.Name, len(data))
		}
	}
	// A larger file crossing typical buffer and part sizes.
	h := handleOf(backend.PackFile)
	data := RandomData(3<<20 + 17)
	Save(t, be, h, data)
	if got := Load(t, be, h); !bytes.Equal(got, data) {
		t.Fatalf("load %s: content of large file differs", h)
	}
}

func testEmptyFile(t *testing.T, be backend.Backend) {
	h := handleOf(backend.SnapshotFile)
	Save(t, be, h, nil)
	if got := Load(t, be, h); len(got) != 0 {
		t.Fatalf("load %s: got %d bytes, want 0", h, len(got))
	}
	fi, err := be.Stat(context.Background(), h)
	if err != nil || fi.Size != 0 {
		t.Fatalf("stat %s: got %+v, %v; want size 0", h, fi, err)
	}
	if names := ListNames(t, be, backend.SnapshotFile); !slices.Equal(names, []string{h.Name}) {
		t.Fatalf("list snapshots: got %v, want [%s]", names, h.Name)
	}
}

func testSaveCopiesData(t *testing.T, be backend.Backend) {
	h := handleOf(backend.IndexFile)
	data := RandomData(4096)
	want := bytes.Clone(data)
	Save(t, be, h, data)
	for i := range data {
		data[i] ^= 0xff
	}
	if got := Load(t, be, h); !bytes.Equal(got, want) {
		t.Fatalf("load %s: content changed when the caller's buffer changed after Save", h)
	}
}

func testSaveExisting(t *testing.T, be backend.Backend) {
	for _, typ := range backend.AllTypes {
		if typ == backend.LockFile {
			continue
		}
		h := handleOf(typ)
		first := RandomData(500)
		Save(t, be, h, first)
		err := be.Save(context.Background(), h, backend.NewByteReader(RandomData(600)))
		if !errors.Is(err, backend.ErrExists) {
			t.Fatalf("second save %s: want an error wrapping ErrExists, got %v", h, err)
		}
		if got := Load(t, be, h); !bytes.Equal(got, first) {
			t.Fatalf("load %s: a refused save changed the file", h)
		}
	}
}

func testLockReplace(t *testing.T, be backend.Backend) {
	h := handleOf(backend.LockFile)
	Save(t, be, h, []byte("first lock content"))
	second := []byte("second, longer lock content")
	Save(t, be, h, second)
	if got := Load(t, be, h); !bytes.Equal(got, second) {
		t.Fatalf("load %s: got %q, want the replacement %q", h, got, second)
	}
	third := []byte("3rd")
	Save(t, be, h, third)
	if got := Load(t, be, h); !bytes.Equal(got, third) {
		t.Fatalf("load %s: got %q, want the shorter replacement %q", h, got, third)
	}
	if names := ListNames(t, be, backend.LockFile); len(names) != 1 {
		t.Fatalf("list locks: got %v, want one lock", names)
	}
}

func testRangedLoad(t *testing.T, be backend.Backend) {
	const size = 10000
	h := handleOf(backend.PackFile)
	data := RandomData(size)
	Save(t, be, h, data)
	tests := []struct {
		length  int
		offset  int64
		wantEOF bool
	}{
		{0, 0, false},
		{0, 1234, false},
		{0, size - 1, false},
		{0, size, false}, // empty tail
		{1, 0, false},
		{100, 0, false},
		{100, 5000, false},
		{size, 0, false},
		{1, size - 1, false},
		{size - 10, 10, false},
		{size + 1, 0, true},
		{11, size - 10, true},
		{1, size, true},
		{0, size + 1, true},
		{10, size + 100, true},
	}
	for _, tc := range tests {
		var got []byte
		calls := 0
		err := be.Load(context.Background(), h, tc.length, tc.offset, func(rd io.Reader) error {
			calls++
			var err error
			got, err = io.ReadAll(rd)
			return err
		})
		if tc.wantEOF {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("load %s length %d offset %d: want an error wrapping io.ErrUnexpectedEOF, got %v",
					h, tc.length, tc.offset, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("load %s length %d offset %d: %v", h, tc.length, tc.offset, err)
		}
		if calls == 0 {
			t.Fatalf("load %s length %d offset %d: fn was not called", h, tc.length, tc.offset)
		}
		end := int64(size)
		if tc.length > 0 {
			end = tc.offset + int64(tc.length)
		}
		if want := data[tc.offset:end]; !bytes.Equal(got, want) {
			t.Fatalf("load %s length %d offset %d: got %d bytes, want %d (content differs)",
				h, tc.length, tc.offset, len(got), len(want))
		}
	}
	for _, bad := range []struct {
		length int
		offset int64
	}{{-1, 0}, {0, -1}} {
		err := be.Load(context.Background(), h, bad.length, bad.offset, func(io.Reader) error { return nil })
		if err == nil {
			t.Fatalf("load %s length %d offset %d: want an error for a negative range", h, bad.length, bad.offset)
		}
	}
}

func testNotFound(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	for _, typ := range backend.AllTypes {
		h := handleOf(typ)
		called := false
		err := be.Load(ctx, h, 0, 0, func(io.Reader) error { called = true; return nil })
		if !backend.IsNotExist(err) {
			t.Fatalf("load missing %s: want an error wrapping fs.ErrNotExist, got %v", h, err)
		}
		if called {
			t.Fatalf("load missing %s: fn was called", h)
		}
		err = be.Load(ctx, h, 10, 5, func(io.Reader) error { called = true; return nil })
		if !backend.IsNotExist(err) || called {
			t.Fatalf("ranged load missing %s: want an error wrapping fs.ErrNotExist without calling fn, got %v", h, err)
		}
		assertNotExist(t, be, h)
		if err := be.Remove(ctx, h); !backend.IsNotExist(err) {
			t.Fatalf("remove missing %s: want an error wrapping fs.ErrNotExist, got %v", h, err)
		}
		if names := ListNames(t, be, typ); len(names) != 0 {
			t.Fatalf("list %s of an empty repository: got %v", typ, names)
		}
	}
}

func testInvalidHandle(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	for _, h := range []backend.Handle{
		{Type: backend.PackFile, Name: ""},
		{Type: backend.KeyFile, Name: "../escape"},
		{Type: backend.IndexFile, Name: ".tmp-x"},
		{Type: backend.FileType(99), Name: "ab"},
	} {
		err := be.Save(ctx, h, backend.NewByteReader([]byte("x")))
		if err == nil || errors.Is(err, backend.ErrExists) {
			t.Fatalf("save invalid handle %+v: want a validation error, got %v", h, err)
		}
		if err := be.Load(ctx, h, 0, 0, func(io.Reader) error { return nil }); err == nil {
			t.Fatalf("load invalid handle %+v: want an error", h)
		}
		if _, err := be.Stat(ctx, h); err == nil {
			t.Fatalf("stat invalid handle %+v: want an error", h)
		}
		if err := be.Remove(ctx, h); err == nil {
			t.Fatalf("remove invalid handle %+v: want an error", h)
		}
	}
	if names := ListNames(t, be, backend.KeyFile); len(names) != 0 {
		t.Fatalf("list keys after invalid saves: got %v", names)
	}
}

func testFnError(t *testing.T, be backend.Backend) {
	h := handleOf(backend.IndexFile)
	Save(t, be, h, RandomData(100))
	sentinel := errors.New("fn failed on purpose")
	err := be.Load(context.Background(), h, 0, 0, func(rd io.Reader) error {
		_, _ = io.CopyN(io.Discard, rd, 10)
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("load %s: want fn's error in the chain, got %v", h, err)
	}
}

func testFnPartialRead(t *testing.T, be backend.Backend) {
	h := handleOf(backend.PackFile)
	data := RandomData(200000)
	Save(t, be, h, data)
	// fn may stop reading early; the backend must cope and stay usable, and every call
	// of fn (a decorator may call it more than once) must see the same bytes.
	for range 3 {
		var seen [][]byte
		err := be.Load(context.Background(), h, 0, 100, func(rd io.Reader) error {
			buf := make([]byte, 16)
			if _, err := io.ReadFull(rd, buf); err != nil {
				return err
			}
			seen = append(seen, buf)
			return nil
		})
		if err != nil {
			t.Fatalf("load %s reading 16 bytes: %v", h, err)
		}
		for _, s := range seen {
			if !bytes.Equal(s, data[100:116]) {
				t.Fatalf("load %s: fn saw %x, want %x", h, s, data[100:116])
			}
		}
	}
	if got := Load(t, be, h); !bytes.Equal(got, data) {
		t.Fatalf("load %s after partial reads: content differs", h)
	}
}

// failingReader yields part of its data, then an error.
type failingReader struct {
	data  []byte
	after int
	pos   int
}

var errInjected = errors.New("reader failed on purpose")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.pos >= f.after {
		return 0, errInjected
	}
	n := copy(p, f.data[f.pos:f.after])
	f.pos += n
	return n, nil
}

func (f *failingReader) Rewind() error { f.pos = 0; return nil }
func (f *failingReader) Length() int64 { return int64(len(f.data)) }

func testAtomicSave(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	for _, typ := range []backend.FileType{backend.PackFile, backend.SnapshotFile, backend.ConfigFile} {
		h := handleOf(typ)
		rd := &failingReader{data: RandomData(300000), after: 150000}
		if err := be.Save(ctx, h, rd); err == nil {
			t.Fatalf("save %s from a failing reader: want an error", h)
		}
		assertNotExist(t, be, h)
		if names := ListNames(t, be, typ); len(names) != 0 {
			t.Fatalf("list %s after a failed save: got %v, want nothing", typ, names)
		}
		// The handle is still free.
		data := RandomData(1234)
		Save(t, be, h, data)
		if got := Load(t, be, h); !bytes.Equal(got, data) {
			t.Fatalf("load %s after a failed then successful save: content differs", h)
		}
	}
}

func testAtomicLockReplace(t *testing.T, be backend.Backend) {
	h := handleOf(backend.LockFile)
	old := []byte("the old lock")
	Save(t, be, h, old)
	rd := &failingReader{data: RandomData(100000), after: 50000}
	if err := be.Save(context.Background(), h, rd); err == nil {
		t.Fatalf("replace %s from a failing reader: want an error", h)
	}
	if got := Load(t, be, h); !bytes.Equal(got, old) {
		t.Fatalf("load %s after a failed replace: got %d bytes, want the old content", h, len(got))
	}
}

func testList(t *testing.T, be backend.Backend) {
	want := map[backend.FileType][]string{}
	sizes := map[string]int64{}
	for _, typ := range []backend.FileType{backend.PackFile, backend.IndexFile, backend.KeyFile} {
		n := 3
		if typ == backend.PackFile {
			n = 12 // several data/<xx>/ prefixes
		}
		for i := range n {
			h := handleOf(typ)
			data := RandomData(10 + i)
			Save(t, be, h, data)
			want[typ] = append(want[typ], h.Name)
			sizes[h.Name] = int64(len(data))
		}
		slices.Sort(want[typ])
	}
	// Two packs sharing a prefix.
	a := backend.Handle{Type: backend.PackFile, Name: "ab" + RandomID()[2:]}
	b := backend.Handle{Type: backend.PackFile, Name: "ab" + RandomID()[2:]}
	for _, h := range []backend.Handle{a, b} {
		Save(t, be, h, []byte(h.Name))
		want[backend.PackFile] = append(want[backend.PackFile], h.Name)
		sizes[h.Name] = int64(len(h.Name))
	}
	slices.Sort(want[backend.PackFile])

	for _, typ := range backend.AllTypes {
		var got []string
		err := be.List(context.Background(), typ, func(fi backend.FileInfo) error {
			if fi.Size != sizes[fi.Name] {
				return fmt.Errorf("%s/%s listed with size %d, want %d", typ, fi.Name, fi.Size, sizes[fi.Name])
			}
			got = append(got, fi.Name)
			return nil
		})
		if err != nil {
			t.Fatalf("list %s: %v", typ, err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want[typ]) {
			t.Fatalf("list %s: got %v, want %v", typ, got, want[typ])
		}
	}
}

func testListStop(t *testing.T, be backend.Backend) {
	for range 5 {
		Save(t, be, handleOf(backend.SnapshotFile), RandomData(10))
	}
	stop := errors.New("stop listing")
	calls := 0
	err := be.List(context.Background(), backend.SnapshotFile, func(backend.FileInfo) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("list snapshots: want fn's error, got %v", err)
	}
	if calls != 1 {
		t.Fatalf("list snapshots: fn called %d times after returning an error, want 1", calls)
	}
}

func testRemove(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	for _, typ := range backend.AllTypes {
		h := handleOf(typ)
		keep := handleOf(typ)
		Save(t, be, h, RandomData(50))
		if typ != backend.ConfigFile {
			Save(t, be, keep, RandomData(60))
		}
		if err := be.Remove(ctx, h); err != nil {
			t.Fatalf("remove %s: %v", h, err)
		}
		assertNotExist(t, be, h)
		if err := be.Remove(ctx, h); !backend.IsNotExist(err) {
			t.Fatalf("second remove %s: want an error wrapping fs.ErrNotExist, got %v", h, err)
		}
		names := ListNames(t, be, typ)
		if typ == backend.ConfigFile {
			if len(names) != 0 {
				t.Fatalf("list config after removing it: got %v", names)
			}
		} else if !slices.Equal(names, []string{keep.Name}) {
			t.Fatalf("list %s after remove: got %v, want [%s]", typ, names, keep.Name)
		}
		// A removed content-addressed file can be saved again.
		data := RandomData(70)
		Save(t, be, h, data)
		if got := Load(t, be, h); !bytes.Equal(got, data) {
			t.Fatalf("load %s saved again after remove: content differs", h)
		}
	}
}

func testCancelledContext(t *testing.T, be backend.Backend) {
	h := handleOf(backend.PackFile)
	Save(t, be, h, RandomData(100))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fresh := handleOf(backend.PackFile)
	if err := be.Save(ctx, fresh, backend.NewByteReader(RandomData(10))); !errors.Is(err, context.Canceled) {
		t.Fatalf("save with a cancelled context: want context.Canceled, got %v", err)
	}
	if err := be.Load(ctx, h, 0, 0, func(io.Reader) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("load with a cancelled context: want context.Canceled, got %v", err)
	}
	if _, err := be.Stat(ctx, h); !errors.Is(err, context.Canceled) {
		t.Fatalf("stat with a cancelled context: want context.Canceled, got %v", err)
	}
	if err := be.List(ctx, backend.PackFile, func(backend.FileInfo) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("list with a cancelled context: want context.Canceled, got %v", err)
	}
	if err := be.Remove(ctx, h); !errors.Is(err, context.Canceled) {
		t.Fatalf("remove with a cancelled context: want context.Canceled, got %v", err)
	}
	assertNotExist(t, be, fresh)
	if _, err := be.Stat(context.Background(), h); err != nil {
		t.Fatalf("stat %s: a remove with a cancelled context removed it: %v", h, err)
	}
}

func testConcurrency(t *testing.T, be backend.Backend) {
	const workers, perWorker = 8, 4
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				h := handleOf(backend.PackFile)
				if w%2 == 1 {
					h = handleOf(backend.LockFile)
				}
				data := RandomData(1000 * (i + 1))
				if err := be.Save(ctx, h, backend.NewByteReader(data)); err != nil {
					errs <- err
					return
				}
				got, err := backend.LoadAll(ctx, be, h)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("load %s: content differs", h)
					return
				}
				err = be.Load(ctx, h, 10, 20, func(rd io.Reader) error {
					part, err := io.ReadAll(rd)
					if err == nil && !bytes.Equal(part, data[20:30]) {
						err = fmt.Errorf("ranged load %s: content differs", h)
					}
					return err
				})
				if err != nil {
					errs <- err
					return
				}
				if err := be.List(ctx, h.Type, func(backend.FileInfo) error { return nil }); err != nil {
					errs <- err
					return
				}
				if w%4 == 3 {
					if err := be.Remove(ctx, h); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	packs := ListNames(t, be, backend.PackFile)
	locks := ListNames(t, be, backend.LockFile)
	if len(packs) != workers/2*perWorker || len(locks) != workers/4*perWorker {
		t.Fatalf("after concurrent saves: %d packs and %d locks, want %d and %d",
			len(packs), len(locks), workers/2*perWorker, workers/4*perWorker)
	}
}

func testConcurrentSameHandle(t *testing.T, be backend.Backend) {
	const workers = 6
	h := handleOf(backend.PackFile)
	data := RandomData(100000)
	var wg sync.WaitGroup
	results := make([]error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = be.Save(context.Background(), h, backend.NewByteReader(data))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range results {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, backend.ErrExists):
			t.Fatalf("concurrent save %s: want success or ErrExists, got %v", h, err)
		}
	}
	if ok == 0 {
		t.Fatalf("concurrent saves of %s: none succeeded", h)
	}
	if got := Load(t, be, h); !bytes.Equal(got, data) {
		t.Fatalf("load %s after concurrent saves: content differs", h)
	}
	if names := ListNames(t, be, backend.PackFile); !slices.Equal(names, []string{h.Name}) {
		t.Fatalf("list packs after concurrent saves: got %v, want [%s]", names, h.Name)
	}
}

func testLocation(t *testing.T, be backend.Backend) {
	if be.Location() == "" {
		t.Fatal("location is empty")
	}
}
