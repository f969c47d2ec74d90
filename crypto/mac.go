package crypto

import "github.com/zeebo/blake3"

// BlobMAC computes a blob ID: BLAKE3-256 in keyed-hash mode with the repository's ID
// key over the blob's plaintext (docs/FORMAT.md §Blob IDs). Keying hides from whoever
// holds the storage whether a known file is in the repository.
type BlobMAC struct {
	h *blake3.Hasher
}

// NewBlobMAC returns a MAC for the key. Not safe for concurrent use; make one per
// goroutine.
func NewBlobMAC(key [32]byte) *BlobMAC {
	h, err := blake3.NewKeyed(key[:])
	if err != nil {
		panic("cairn: internal error: blake3 key: " + err.Error())
	}
	return &BlobMAC{h: h}
}

// Sum returns the ID of data.
func (m *BlobMAC) Sum(data []byte) (id [32]byte) {
	m.h.Reset()
	_, _ = m.h.Write(data)
	m.h.Sum(id[:0])
	return id
}

// FileHash returns the unkeyed BLAKE3-256 of a stored file's bytes, which names it.
func FileHash(data []byte) (id [32]byte) {
	return blake3.Sum256(data)
}
