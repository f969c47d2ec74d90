package crypto_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"github.com/cairn-backup/cairn/crypto"
)

// BenchmarkBlobID compares the keyed BLAKE3 blob MAC cairn uses with HMAC-SHA256
// (docs/PERFORMANCE.md §Stages).
func BenchmarkBlobID(b *testing.B) {
	data := make([]byte, 1<<20)
	var key [32]byte
	b.Run("blake3-keyed", func(b *testing.B) {
		m := crypto.NewBlobMAC(key)
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			m.Sum(data)
		}
	})
	b.Run("hmac-sha256", func(b *testing.B) {
		h := hmac.New(sha256.New, key[:])
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			h.Reset()
			h.Write(data)
			h.Sum(nil)
		}
	})
}
