package repo

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestStageWriterRoundTrip(t *testing.T) {
	dirs := []string{t.TempDir()}
	rng := rand.New(rand.NewSource(1))
	for _, dir := range dirs {
		for _, size := range []int{0, 1, 4095, 4096, 4097, stageBufSize - 1, stageBufSize, stageBufSize + 1, 3*stageBufSize + 12345} {
			data := make([]byte, size)
			rng.Read(data)
			sw, err := createStageFile(dir)
			if err != nil {
				t.Fatal(err)
			}
			// Odd-sized writes cross buffer boundaries.
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1+rng.Intn(300000))
				if m, err := sw.Write(rest[:n]); err != nil || m != n {
					t.Fatalf("write %d: %d, %v", n, m, err)
				}
				rest = rest[n:]
			}
			if err := sw.Flush(); err != nil {
				t.Fatalf("%s size %d: flush: %v", dir, size, err)
			}
			got, err := os.ReadFile(sw.f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s size %d: read back %d bytes, not the %d written", dir, size, len(got), len(data))
			}
			sw.f.Close()
			os.Remove(sw.f.Name())
		}
	}
}

// TestStageWriterReportsWriteErrors: a write that fails in the background is reported
// by a later Write or by Flush, never lost.
func TestStageWriterReportsWriteErrors(t *testing.T) {
	sw, err := createStageFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	name := sw.f.Name()
	defer os.Remove(name)
	sw.f.Close() // every write from now on fails
	data := make([]byte, (stageDepth+3)*stageBufSize)
	var werr error
	for rest := data; len(rest) > 0 && werr == nil; rest = rest[min(len(rest), 100000):] {
		_, werr = sw.Write(rest[:min(len(rest), 100000)])
	}
	if werr == nil {
		t.Fatal("Write kept accepting data after its buffers failed to reach the file")
	}
	ferr := sw.Flush()
	if ferr == nil {
		t.Fatalf("Flush after failed writes returned nil (Write: %v)", werr)
	}
	if !strings.Contains(ferr.Error(), filepath.Base(name)) {
		t.Fatalf("error does not name the file: %v", ferr)
	}
	sw.release()
}

// TestStageWriterReleaseWithoutFlush: a pack given up half-written stops its write
// goroutine.
func TestStageWriterReleaseWithoutFlush(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		sw, err := createStageFile(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sw.Write(make([]byte, 2*stageBufSize+7)); err != nil {
			t.Fatal(err)
		}
		sw.release()
		sw.release() // idempotent
		sw.f.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after releasing, %d before", n, before)
	}
}
