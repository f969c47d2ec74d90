package repo

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/repo/blob"
)

func benchData(compressible bool) []byte {
	rng := rand.New(rand.NewPCG(5, 6))
	if compressible {
		words := []string{"invoice", "total", "due", "the", "customer", "amount", "tax", "paid",
			"document", "date", "number", "of", "and", "for", "EUR", "account", "reference"}
		var b bytes.Buffer
		for b.Len() < 1<<20 {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(" \n"[rng.IntN(2)])
		}
		return b.Bytes()[:1<<20]
	}
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	return data
}

// pdfLike is a 1 MiB blob shaped like a scanned PDF: image streams of random bytes
// with a 6 KB text layer every 80 KB (7.5 % text).
func pdfLike() []byte {
	data := benchData(false)
	text := benchData(true)
	for off := 40 << 10; off+6000 < len(data); off += 80 << 10 {
		copy(data[off:off+6000], text[off:])
	}
	return data
}

// BenchmarkCompress measures the compression stage including the checks that skip
// incompressible data: v1 compresses whole blobs, v2 only their text-like stretches.
func BenchmarkCompress(b *testing.B) {
	for _, c := range []struct {
		name string
		data []byte
	}{{"text", benchData(true)}, {"random", benchData(false)}, {"pdf", pdfLike()}} {
		for _, v := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/v%d", c.name, v), func(b *testing.B) {
				b.SetBytes(int64(len(c.data)))
				var out []byte
				for i := 0; i < b.N; i++ {
					out, _ = compress(nil, c.data, blob.Data, v >= 2)
				}
				b.ReportMetric(float64(len(out))/float64(len(c.data)), "ratio")
			})
		}
	}
}

func BenchmarkAgeEncrypt(b *testing.B) {
	id, _ := age.GenerateX25519Identity()
	data := benchData(false)
	b.SetBytes(int64(len(data)) * 16)
	for i := 0; i < b.N; i++ {
		w, _ := age.Encrypt(io.Discard, id.Recipient())
		for j := 0; j < 16; j++ {
			w.Write(data)
		}
		w.Close()
	}
}

func BenchmarkAgeDecrypt(b *testing.B) {
	id, _ := age.GenerateX25519Identity()
	data := benchData(false)
	var enc bytes.Buffer
	w, _ := age.Encrypt(&enc, id.Recipient())
	for j := 0; j < 16; j++ {
		w.Write(data)
	}
	w.Close()
	b.SetBytes(int64(len(data)) * 16)
	for i := 0; i < b.N; i++ {
		r, _ := age.Decrypt(bytes.NewReader(enc.Bytes()), id)
		io.Copy(io.Discard, r)
	}
}
