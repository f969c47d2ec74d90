package chunk_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/cairn-backup/cairn/chunk"
)

const testPol = chunk.Pol(0x3DA3358B4DC173)

func split(t *testing.T, data []byte, p chunk.Params) [][]byte {
	t.Helper()
	c := chunk.New(bytes.NewReader(data), testPol, p)
	var out [][]byte
	buf := make([]byte, p.Max)
	for {
		ch, err := c.Next(buf)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(ch.Data))
	}
}

func TestBoundsAndLocality(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, p := range []chunk.Params{chunk.Files, chunk.Database} {
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		a := split(t, data, p)
		if !bytes.Equal(bytes.Join(a, nil), data) {
			t.Fatal("chunks do not reassemble the input")
		}
		for i, c := range a {
			if len(c) > int(p.Max) || (len(c) < int(p.Min) && i != len(a)-1) {
				t.Fatalf("chunk %d of %d bytes outside [%d, %d]", i, len(c), p.Min, p.Max)
			}
		}
		// Insert 100 bytes near the start: only the chunks around it change.
		ins := append(append(append([]byte{}, data[:1000]...), bytes.Repeat([]byte("x"), 100)...), data[1000:]...)
		b := split(t, ins, p)
		old := map[string]bool{}
		for _, c := range a {
			old[string(c)] = true
		}
		changed := 0
		for _, c := range b {
			if !old[string(c)] {
				changed++
			}
		}
		if changed > 2 {
			t.Errorf("params %+v: an insertion changed %d chunks", p, changed)
		}
	}
}

func TestParsePolynomial(t *testing.T) {
	if _, err := chunk.ParsePolynomial("3da3358b4dc173"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "zz", "3", "3da3358b4dc172"} {
		if _, err := chunk.ParsePolynomial(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
