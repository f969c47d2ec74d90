package repo

import (
	"bytes"
	"math/rand"
	"os"
	"testing"
)

func TestStageWriterRoundTrip(t *testing.T) {
	dirs := []string{t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		// tmpfs refuses O_DIRECT: the buffered fallback must give the same bytes.
		d, err := os.MkdirTemp("/dev/shm", "cairn-stage-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	rng := rand.New(rand.NewSource(1))
	for _, dir := range dirs {
		for _, size := range []int{0, 1, stageAlign - 1, stageAlign, stageAlign + 1, stageBufSize - 1, stageBufSize, stageBufSize + 1, 3*stageBufSize + 12345} {
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
