// Package pack encodes and decodes the plaintext layout of a pack file: blobs one after
// another, then a header listing them, then a fixed trailer (docs/FORMAT.md §Packs).
// Encryption and storage are the caller's business; this package does no I/O of its own.
package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/repo/blob"
)

// Layout constants (docs/FORMAT.md §Packs).
const (
	// EntrySize is the size of one header entry.
	EntrySize = 1 + 1 + 2 + 4 + 4 + 32
	// TrailerSize is the size of the trailer: header length (uint32 LE) and magic.
	TrailerSize = 4 + len(Magic)
	// Magic ends every pack's plaintext.
	Magic = "CAIRNPK\x01"
	// MaxEntries bounds the number of blobs in one pack a reader accepts.
	MaxEntries = 1 << 20
	// MaxBlobSize bounds a blob's stored and raw length.
	MaxBlobSize = 1 << 28
)

// Compression codes of an entry.
const (
	CompressionNone uint8 = 0
	CompressionZstd uint8 = 1
)

// ErrInvalid is wrapped by every error about a malformed pack.
var ErrInvalid = errors.New("pack: invalid pack")

// Entry describes one blob of a pack.
type Entry struct {
	Type        blob.Type
	Compression uint8
	ID          blob.ID
	Offset      uint32 // from the start of the pack's plaintext
	Length      uint32 // stored length
	RawLength   uint32 // length after decompression
}

// Writer appends blobs to a pack stream and finally writes the header.
type Writer struct {
	w       io.Writer
	entries []Entry
	size    uint64
}

// NewWriter returns a Writer writing the pack's plaintext to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Add appends one stored blob. data is the blob as stored (compressed or raw).
func (w *Writer) Add(t blob.Type, id blob.ID, compression uint8, data []byte, rawLength int) error {
	return w.AddParts(t, id, compression, [][]byte{data}, rawLength)
}

// AddParts appends one stored blob given in pieces: the blob as stored is their
// concatenation.
func (w *Writer) AddParts(t blob.Type, id blob.ID, compression uint8, parts [][]byte, rawLength int) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > MaxBlobSize || rawLength > MaxBlobSize {
		return fmt.Errorf("add blob %s: size %d exceeds the maximum", id.Short(), n)
	}
	if w.size+uint64(n) > 1<<32-1-uint64(EntrySize*(len(w.entries)+1)+TrailerSize) {
		return fmt.Errorf("add blob %s: pack would exceed 4 GiB", id.Short())
	}
	for _, p := range parts {
		if _, err := w.w.Write(p); err != nil {
			return fmt.Errorf("write blob %s: %w", id.Short(), err)
		}
	}
	w.entries = append(w.entries, Entry{Type: t, Compression: compression, ID: id,
		Offset: uint32(w.size), Length: uint32(n), RawLength: uint32(rawLength)})
	w.size += uint64(n)
	return nil
}

// Size is the number of plaintext bytes written so far, header not included.
func (w *Writer) Size() uint64 { return w.size }

// Count is the number of blobs added.
func (w *Writer) Count() int { return len(w.entries) }

// Finalize writes header and trailer and returns the entries.
func (w *Writer) Finalize() ([]Entry, error) {
	hdr := AppendHeader(nil, w.entries)
	if _, err := w.w.Write(hdr); err != nil {
		return nil, fmt.Errorf("write pack header: %w", err)
	}
	return w.entries, nil
}

// AppendHeader appends the encoded header and trailer for entries to dst.
func AppendHeader(dst []byte, entries []Entry) []byte {
	start := len(dst)
	for _, e := range entries {
		dst = append(dst, byte(e.Type), e.Compression, 0, 0)
		dst = binary.LittleEndian.AppendUint32(dst, e.Length)
		dst = binary.LittleEndian.AppendUint32(dst, e.RawLength)
		dst = append(dst, e.ID[:]...)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(dst)-start))
	return append(dst, Magic...)
}

// ParseTrailer parses the last TrailerSize bytes of a pack whose plaintext is
// packSize bytes long and returns the header's length.
func ParseTrailer(trailer []byte, packSize int64) (int, error) {
	if len(trailer) != TrailerSize {
		return 0, fmt.Errorf("%w: trailer of %d bytes", ErrInvalid, len(trailer))
	}
	if string(trailer[4:]) != Magic {
		return 0, fmt.Errorf("%w: bad magic", ErrInvalid)
	}
	n := binary.LittleEndian.Uint32(trailer[:4])
	if n%EntrySize != 0 || int64(n) > packSize-int64(TrailerSize) || n/EntrySize > MaxEntries {
		return 0, fmt.Errorf("%w: header length %d", ErrInvalid, n)
	}
	return int(n), nil
}

// ParseHeader decodes a header (without trailer) of a pack whose plaintext is packSize
// bytes long. It checks that the blobs exactly fill the space before the header.
func ParseHeader(hdr []byte, packSize int64) ([]Entry, error) {
	if len(hdr)%EntrySize != 0 || len(hdr)/EntrySize > MaxEntries {
		return nil, fmt.Errorf("%w: header length %d", ErrInvalid, len(hdr))
	}
	entries := make([]Entry, 0, len(hdr)/EntrySize)
	var off uint64
	for p := hdr; len(p) > 0; p = p[EntrySize:] {
		e := Entry{Type: blob.Type(p[0]), Compression: p[1], Offset: uint32(off),
			Length: binary.LittleEndian.Uint32(p[4:]), RawLength: binary.LittleEndian.Uint32(p[8:])}
		copy(e.ID[:], p[12:44])
		if p[2] != 0 || p[3] != 0 {
			return nil, fmt.Errorf("%w: entry %d: reserved bytes not zero", ErrInvalid, len(entries))
		}
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrInvalid, len(entries), err)
		}
		off += uint64(e.Length)
		entries = append(entries, e)
	}
	if int64(off)+int64(len(hdr))+int64(TrailerSize) != packSize {
		return nil, fmt.Errorf("%w: blobs (%d bytes) and header (%d bytes) do not fill the pack (%d bytes)",
			ErrInvalid, off, len(hdr), packSize)
	}
	return entries, nil
}

func (e Entry) check() error {
	if !e.Type.Valid() {
		return fmt.Errorf("unknown blob type %d", e.Type)
	}
	if e.Compression > CompressionZstd {
		return fmt.Errorf("unknown compression %d", e.Compression)
	}
	if e.Length > MaxBlobSize || e.RawLength > MaxBlobSize {
		return fmt.Errorf("blob length %d/%d too large", e.Length, e.RawLength)
	}
	if e.Compression == CompressionNone && e.Length != e.RawLength {
		return fmt.Errorf("uncompressed blob with stored length %d != raw length %d", e.Length, e.RawLength)
	}
	return nil
}

// Check validates a single entry as read from an index.
func (e Entry) Check() error { return e.check() }
