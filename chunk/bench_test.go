package chunk_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/cairn-backup/cairn/chunk"
)

func BenchmarkChunker(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, c := range []struct {
		name string
		p    chunk.Params
	}{{"files", chunk.Files}, {"database", chunk.Database}} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, c.p.Max)
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				ch := chunk.New(bytes.NewReader(data), testPol, c.p)
				for {
					if _, err := ch.Next(buf); err == io.EOF {
						break
					}
				}
			}
		})
	}
}
