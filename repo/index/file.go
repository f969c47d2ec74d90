// Package index owns the index: the binary format of index files (which blob lives in
// which pack, at what offset) and the compact in-memory table built from them
// (docs/FORMAT.md §Index). It does no I/O of its own.
package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/pack"
)

// Magic starts every index file's plaintext; its last byte is the index format version.
const Magic = "CAIRNIX\x01"

// Layout sizes (docs/FORMAT.md §Index).
const (
	entrySize   = 48
	blockerSize = 16
	// MaxCount bounds every count field a reader accepts, before checking it against
	// the remaining bytes.
	MaxCount = 1 << 26
)

// ErrInvalid is wrapped by every error about a malformed index file.
var ErrInvalid = errors.New("index: invalid index file")

// Pack flags.
const (
	// FlagObsolete marks a pack that prune has scheduled for deletion: its blobs are
	// no longer in the index, but the file may still exist (docs/FORMAT.md §Prune).
	FlagObsolete uint32 = 1
)

// BlockerID identifies a backup session (the lock session of a running backup) that
// was in progress when a pack was marked obsolete.
type BlockerID [blockerSize]byte

// PackRecord lists the blobs of one pack.
type PackRecord struct {
	ID       blob.ID
	Flags    uint32
	Size     uint64      // the pack file's stored (encrypted) size
	MarkedAt time.Time   // when it was marked obsolete (zero for live packs)
	Blockers []BlockerID // backup sessions running when it was marked
	Entries  []pack.Entry
}

// Obsolete reports whether the pack is marked for deletion.
func (p *PackRecord) Obsolete() bool { return p.Flags&FlagObsolete != 0 }

// File is the content of one index file.
type File struct {
	Created    time.Time
	Supersedes []blob.ID // index files this one replaces (written by prune)
	Packs      []PackRecord
}

// Encode returns the plaintext encoding of f.
func (f *File) Encode() []byte {
	n := len(Magic) + 8 + 4 + 32*len(f.Supersedes) + 4
	for _, p := range f.Packs {
		n += 32 + 4 + 8 + 8 + 4 + blockerSize*len(p.Blockers) + 4 + entrySize*len(p.Entries)
	}
	b := make([]byte, 0, n)
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(unixNano(f.Created)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Supersedes)))
	for _, id := range f.Supersedes {
		b = append(b, id[:]...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Packs)))
	for _, p := range f.Packs {
		b = append(b, p.ID[:]...)
		b = binary.LittleEndian.AppendUint32(b, p.Flags)
		b = binary.LittleEndian.AppendUint64(b, p.Size)
		b = binary.LittleEndian.AppendUint64(b, uint64(unixNano(p.MarkedAt)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Blockers)))
		for _, bl := range p.Blockers {
			b = append(b, bl[:]...)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Entries)))
		for _, e := range p.Entries {
			b = appendEntry(b, e)
		}
	}
	return b
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func appendEntry(b []byte, e pack.Entry) []byte {
	b = append(b, byte(e.Type), e.Compression, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, e.Offset)
	b = binary.LittleEndian.AppendUint32(b, e.Length)
	b = binary.LittleEndian.AppendUint32(b, e.RawLength)
	return append(b, e.ID[:]...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("%w: truncated", ErrInvalid)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u32() uint32 {
	p := d.take(4)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}

func (d *decoder) i64() int64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(p))
}

// count reads a count of items of size each and checks it against the bytes left.
func (d *decoder) count(size int) int {
	n := d.u32()
	if d.err == nil && (n > MaxCount || uint64(n)*uint64(size) > uint64(len(d.b))) {
		d.err = fmt.Errorf("%w: count %d exceeds the data", ErrInvalid, n)
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

// Decode parses an index file's plaintext. Every MUST of docs/FORMAT.md §Index is
// checked: magic and version, counts within the data, known blob types and
// compressions, zero reserved bytes, no trailing bytes.
func Decode(data []byte) (*File, error) {
	if len(data) < len(Magic) || string(data[:len(Magic)-1]) != Magic[:len(Magic)-1] {
		return nil, fmt.Errorf("%w: bad magic", ErrInvalid)
	}
	if v := data[len(Magic)-1]; v != Magic[len(Magic)-1] {
		return nil, fmt.Errorf("%w: unsupported index version %d", ErrInvalid, v)
	}
	d := &decoder{b: data[len(Magic):]}
	f := &File{Created: fromUnixNano(d.i64())}
	ns := d.count(32)
	for i := 0; i < ns; i++ {
		var id blob.ID
		copy(id[:], d.take(32))
		f.Supersedes = append(f.Supersedes, id)
	}
	np := d.count(32 + 4 + 8 + 8 + 4 + 4)
	if d.err == nil {
		f.Packs = make([]PackRecord, 0, np)
	}
	for i := 0; i < np && d.err == nil; i++ {
		var p PackRecord
		copy(p.ID[:], d.take(32))
		p.Flags = d.u32()
		p.Size = uint64(d.i64())
		p.MarkedAt = fromUnixNano(d.i64())
		if d.err == nil && p.Flags&^FlagObsolete != 0 {
			return nil, fmt.Errorf("%w: pack %s: unknown flags %#x", ErrInvalid, p.ID.Short(), p.Flags)
		}
		nb := d.count(blockerSize)
		for j := 0; j < nb; j++ {
			var bl BlockerID
			copy(bl[:], d.take(blockerSize))
			p.Blockers = append(p.Blockers, bl)
		}
		ne := d.count(entrySize)
		if d.err == nil {
			p.Entries = make([]pack.Entry, 0, ne)
		}
		for j := 0; j < ne && d.err == nil; j++ {
			raw := d.take(entrySize)
			if raw == nil {
				break
			}
			e := pack.Entry{Type: blob.Type(raw[0]), Compression: raw[1],
				Offset:    binary.LittleEndian.Uint32(raw[4:]),
				Length:    binary.LittleEndian.Uint32(raw[8:]),
				RawLength: binary.LittleEndian.Uint32(raw[12:])}
			copy(e.ID[:], raw[16:48])
			if raw[2] != 0 || raw[3] != 0 {
				return nil, fmt.Errorf("%w: pack %s entry %d: reserved bytes not zero", ErrInvalid, p.ID.Short(), j)
			}
			if err := e.Check(); err != nil {
				return nil, fmt.Errorf("%w: pack %s entry %d: %v", ErrInvalid, p.ID.Short(), j, err)
			}
			if uint64(e.Offset)+uint64(e.Length) > 1<<32-1 {
				return nil, fmt.Errorf("%w: pack %s entry %d: extends past 4 GiB", ErrInvalid, p.ID.Short(), j)
			}
			p.Entries = append(p.Entries, e)
		}
		f.Packs = append(f.Packs, p)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrInvalid, len(d.b))
	}
	return f, nil
}
