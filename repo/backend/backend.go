// Package backend defines where repository files live: the storage interface every
// store implements (local directory, memory, S3, SFTP), the file types and their
// on-storage names, and decorators (retry, fault injection). A backend moves opaque
// bytes; it never decrypts or parses them.
package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// FileType is the kind of a repository file. Its String is the on-storage directory
// name (docs/FORMAT.md §Layout); values are never reused.
type FileType int

// File types. Their order is stable and part of no on-disk encoding.
const (
	ConfigFile   FileType = 1
	KeyFile      FileType = 2
	PackFile     FileType = 3
	IndexFile    FileType = 4
	SnapshotFile FileType = 5
	LockFile     FileType = 6
)

// AllTypes lists every file type, config first.
var AllTypes = []FileType{ConfigFile, KeyFile, PackFile, IndexFile, SnapshotFile, LockFile}

func (t FileType) String() string {
	switch t {
	case ConfigFile:
		return "config"
	case KeyFile:
		return "keys"
	case PackFile:
		return "data"
	case IndexFile:
		return "index"
	case SnapshotFile:
		return "snapshots"
	case LockFile:
		return "locks"
	}
	return fmt.Sprintf("filetype(%d)", int(t))
}

// Handle names one file of a repository. For ConfigFile the Name is empty.
type Handle struct {
	Type FileType
	Name string
}

func (h Handle) String() string {
	if h.Type == ConfigFile {
		return "config"
	}
	return h.Type.String() + "/" + h.Name
}

// Path returns the file's slash-separated path relative to the repository root:
// "config", "keys/<name>", "data/<first two chars of name>/<name>", "index/<name>", ….
// Pack files are spread over 256 subdirectories so no directory grows too large.
func (h Handle) Path() string {
	switch h.Type {
	case ConfigFile:
		return "config"
	case PackFile:
		if len(h.Name) >= 2 {
			return "data/" + h.Name[:2] + "/" + h.Name
		}
	}
	return h.Type.String() + "/" + h.Name
}

// Valid reports whether the handle can name a file: a known type, and a non-empty
// name without path separators or dots at the start (names are hex IDs).
func (h Handle) Valid() error {
	if h.Type == ConfigFile {
		return nil
	}
	if h.Type < ConfigFile || h.Type > LockFile {
		return fmt.Errorf("invalid file type %d", int(h.Type))
	}
	if h.Name == "" {
		return fmt.Errorf("empty name for %s file", h.Type)
	}
	for _, c := range []byte(h.Name) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return fmt.Errorf("invalid file name %q", h.Name)
		}
	}
	return nil
}

// FileInfo describes a stored file.
type FileInfo struct {
	Name string // the Handle's Name
	Size int64
}

// RewindReader is the source of a Save: it can be read again from the start, so a
// retrying decorator can resend it.
type RewindReader interface {
	io.Reader
	// Rewind positions the reader at the start again.
	Rewind() error
	// Length is the total number of bytes the reader yields.
	Length() int64
}

// FileBacked is implemented by RewindReaders whose bytes are exactly a local file
// read from its start. A local backend may then copy the file inside the kernel
// (copy_file_range) instead of through user space; it must still check the length.
type FileBacked interface {
	File() *os.File
}

// FileLoader is implemented by backends that can read a whole file into memory more
// cheaply than through Load's stream (the local backend reads it past the page cache).
// LoadFile returns the file's bytes, in buf if it is suitable and large enough (the
// result may not alias buf; callers keep what is returned for the next call).
// Errors are as for Load.
type FileLoader interface {
	LoadFile(ctx context.Context, h Handle, buf []byte) ([]byte, error)
}

// StagingDirer is implemented by backends on the local file system. StagingDir is a
// directory whose entries named ".tmp-*" the backend ignores; a FileBacked reader
// whose file was created there is adopted by Save with a link instead of a copy.
type StagingDirer interface {
	StagingDir() string
}

// TempCleaner is implemented by backends whose interrupted Saves and staged packs can
// leave temporary files behind (a killed process cannot remove them).
// RemoveTemp deletes temporary files last modified before the cutoff and returns how
// many it removed.
type TempCleaner interface {
	RemoveTemp(ctx context.Context, before time.Time) (int, error)
}

// ByteReader is a RewindReader over a byte slice.
type ByteReader struct {
	*bytes.Reader
	buf []byte
}

// NewByteReader returns a RewindReader over buf. buf must not change until the
// reader is no longer used.
func NewByteReader(buf []byte) *ByteReader {
	return &ByteReader{Reader: bytes.NewReader(buf), buf: buf}
}

// Rewind implements RewindReader.
func (b *ByteReader) Rewind() error {
	_, err := b.Seek(0, io.SeekStart)
	return err
}

// Length implements RewindReader.
func (b *ByteReader) Length() int64 { return int64(len(b.buf)) }

// Bytes returns the underlying buffer.
func (b *ByteReader) Bytes() []byte { return b.buf }

// Errors that callers branch on. Not-found errors of every backend satisfy
// errors.Is(err, fs.ErrNotExist); ErrNotExist is that same value for convenience.
var (
	ErrNotExist = fs.ErrNotExist
	// ErrExists is returned by Save when a file with that handle already exists and the
	// backend cannot or may not replace it. Content-addressed files never need replacing.
	ErrExists = errors.New("backend: file already exists")
	// ErrRetained is wrapped by Remove when the store protects the file (S3 object
	// lock retention): the file stays, and callers carry on with what they may delete.
	ErrRetained = errors.New("backend: file is protected by a retention period")
	// ErrNoSpace is returned (wrapped) when the store is full.
	ErrNoSpace = errors.New("backend: no space left on storage")
)

// Backend is a repository store. Implementations must be safe for concurrent use.
//
// Every method takes a context; a cancelled context aborts the operation with the
// context's error. Errors name the operation and the file ("save data/ab/ab12…: …").
type Backend interface {
	// Location returns the repository location as the user wrote it, without any
	// credentials, for messages.
	Location() string

	// Save stores the file atomically: after Save returns nil the whole file is
	// durable (fsynced locally, one completed PUT remotely); after an error or a
	// crash, either no file with that handle exists or, if it existed before, the old
	// one is unchanged. Saving an existing handle returns an error wrapping ErrExists,
	// except for LockFile handles, which may be replaced. rd is read to its end; Save
	// may call rd.Rewind to retry.
	Save(ctx context.Context, h Handle, rd RewindReader) error

	// Load calls fn with a reader of length bytes of the file starting at offset
	// (length 0 means "to the end of the file"). The reader is valid only during fn.
	// If the file is shorter than offset+length, Load returns an error wrapping
	// io.ErrUnexpectedEOF. A missing file yields an error wrapping fs.ErrNotExist. fn
	// may be called more than once (a retrying decorator calls it again after a
	// transient error), so it must be idempotent; Load returns fn's error unchanged
	// (wrapped with the file name) when fn fails.
	Load(ctx context.Context, h Handle, length int, offset int64, fn func(rd io.Reader) error) error

	// Stat returns the file's size, or an error wrapping fs.ErrNotExist.
	Stat(ctx context.Context, h Handle) (FileInfo, error)

	// List calls fn for every file of type t, in no particular order. For ConfigFile
	// it reports the config file if present. An error returned by fn stops the
	// listing and is returned. Temporary files of interrupted Saves are never listed.
	List(ctx context.Context, t FileType, fn func(FileInfo) error) error

	// Remove deletes the file. Removing a missing file returns an error wrapping
	// fs.ErrNotExist.
	Remove(ctx context.Context, h Handle) error

	// Close releases connections; the backend must not be used afterwards.
	Close() error
}

// Unwrapper is implemented by decorators; Unwrap returns the wrapped backend.
type Unwrapper interface {
	Unwrap() Backend
}

// LoadAll reads a whole file into memory.
func LoadAll(ctx context.Context, be Backend, h Handle) ([]byte, error) {
	var buf []byte
	err := be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		var err error
		buf, err = io.ReadAll(rd)
		return err
	})
	return buf, err
}

// IsNotExist reports whether err says a file does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
