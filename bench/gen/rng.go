package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// seedFor derives an independent 32-byte seed from a list of labels. Every
// file (and every stream inside a file) gets its own seed, so output does not
// depend on generation order and files can be produced in parallel.
func seedFor(parts ...any) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%v\x00", p)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// newChaCha returns a ChaCha8 stream for the given labels; its Read method is
// the fast path for incompressible bytes (well above 1 GB/s per core).
func newChaCha(parts ...any) *rand.ChaCha8 {
	return rand.NewChaCha8(seedFor(parts...))
}

// newRand returns a PCG-backed generator for the given labels, used for
// decisions (sizes, choices) rather than bulk bytes.
func newRand(parts ...any) *rand.Rand {
	s := seedFor(parts...)
	var a, b uint64
	for i := 0; i < 8; i++ {
		a = a<<8 | uint64(s[i])
		b = b<<8 | uint64(s[8+i])
	}
	return rand.New(rand.NewPCG(a, b))
}

// logNormal draws from a log-normal distribution with the given median and
// sigma, clamped to [lo, hi].
func logNormal(r *rand.Rand, median, sigma, lo, hi float64) float64 {
	v := median * math.Exp(sigma*r.NormFloat64())
	return math.Max(lo, math.Min(hi, v))
}

// logUniform draws uniformly in log space between lo and hi.
func logUniform(r *rand.Rand, lo, hi float64) float64 {
	return math.Exp(math.Log(lo) + r.Float64()*(math.Log(hi)-math.Log(lo)))
}

// countingWriter tracks the offset, which PDF xref tables need.
type countingWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) WriteString(s string) (int, error) {
	n, err := c.w.WriteString(s)
	c.n += int64(n)
	return n, err
}

// writeRandom writes n bytes from the ChaCha8 stream to w.
func writeRandom(w *countingWriter, src *rand.ChaCha8, n int64, buf []byte) error {
	for n > 0 {
		k := int64(len(buf))
		if k > n {
			k = n
		}
		_, _ = src.Read(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// writeFile creates path (and its parents), lets fill write the content, and
// sets the modification time so the data set is reproducible down to mtimes.
func writeFile(path string, mtime time.Time, fill func(w *countingWriter) error) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	cw := &countingWriter{w: bufio.NewWriterSize(f, 256<<10)}
	if err := fill(cw); err != nil {
		f.Close()
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if err := cw.w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			return 0, err
		}
	}
	return cw.n, nil
}
