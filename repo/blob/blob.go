// Package blob is the shared vocabulary of the repository's lower layers: the ID that
// names blobs and files, and the blob types. It exists so that repo, repo/pack and
// repo/index can agree on these without importing each other.
package blob

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// ID is a 32-byte identifier: a blob's keyed BLAKE3 MAC, or a stored file's BLAKE3
// hash (docs/FORMAT.md §IDs).
type ID [32]byte

// String returns the lowercase hexadecimal form used in file names.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex digits, for display.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsNull reports whether id is all zeros.
func (id ID) IsNull() bool { return id == ID{} }

// MarshalText implements encoding.TextMarshaler (hex).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ErrInvalidID is returned by ParseID for malformed IDs.
var ErrInvalidID = errors.New("blob: invalid id")

// ParseID parses 64 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("%w %q: want 64 hex digits", ErrInvalidID, s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("%w %q: %v", ErrInvalidID, s, err)
	}
	return id, nil
}

// Type is a blob's kind. The values are stored on disk and never reused.
type Type uint8

// Blob types (docs/FORMAT.md §Packs).
const (
	Data Type = 0 // a chunk of file or dump content
	Tree Type = 1 // a directory listing
)

func (t Type) String() string {
	switch t {
	case Data:
		return "data"
	case Tree:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

// Valid reports whether t is a known type.
func (t Type) Valid() bool { return t == Data || t == Tree }

// Handle names a blob: its type and ID.
type Handle struct {
	Type Type
	ID   ID
}

func (h Handle) String() string { return h.Type.String() + " " + h.ID.String() }
