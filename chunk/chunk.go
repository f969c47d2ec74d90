// Package chunk splits streams into content-defined chunks with restic's Rabin
// fingerprint chunker, so that an insertion shifts chunk boundaries only locally and
// unchanged content deduplicates. It knows nothing of IDs, keys or packs.
package chunk

import (
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// Pol is a chunker polynomial. Each repository has its own, chosen at random, so that
// chunk boundaries reveal nothing comparable across repositories.
type Pol = chunker.Pol

// RandomPolynomial returns a new irreducible polynomial of degree 53.
func RandomPolynomial() (Pol, error) { return chunker.RandomPolynomial() }

// ParsePolynomial parses the hexadecimal form stored in the repository config.
func ParsePolynomial(s string) (Pol, error) {
	var p uint64
	if _, err := fmt.Sscanf(s, "%x", &p); err != nil {
		return 0, fmt.Errorf("parse polynomial %q: %w", s, err)
	}
	pol := Pol(p)
	if !pol.Irreducible() || pol.Deg() != 53 {
		return 0, fmt.Errorf("polynomial %q is not an irreducible polynomial of degree 53", s)
	}
	return pol, nil
}

// Params are a chunker's size bounds. Average is 2^AverageBits bytes.
type Params struct {
	Min, Max    uint
	AverageBits int
}

// Validate checks that the bounds make sense: a minimum of at least 64 bytes (the
// chunker's window), a maximum of at most 64 MiB and not below the minimum, and an
// average (the distance between cut points after the minimum) of 2^10 to 2^24 bytes
// that fits below the maximum. Repositories of format versions 1 and 2 also require
// the average to be at least the minimum (ValidateV2).
func (p Params) Validate() error {
	if p.Min < 64 || p.Max < p.Min || p.Max > 64<<20 || p.AverageBits < 10 || p.AverageBits > 24 ||
		uint(1)<<p.AverageBits > p.Max {
		return fmt.Errorf("invalid chunker parameters min %d avg 2^%d max %d", p.Min, p.AverageBits, p.Max)
	}
	return nil
}

// ValidateV2 is Validate with the rule of repository format versions 1 and 2, whose
// readers (cairn before format version 3) refuse an average below the minimum.
func (p Params) ValidateV2() error {
	if err := p.Validate(); err != nil {
		return err
	}
	if uint(1)<<p.AverageBits < p.Min {
		return fmt.Errorf("invalid chunker parameters min %d avg 2^%d max %d: format versions 1 and 2 need an average of at least the minimum", p.Min, p.AverageBits, p.Max)
	}
	return nil
}

// Parameter sets, chosen by measurement (docs/PERFORMANCE.md §Chunk sizes).
var (
	// Files: 2 MiB..8 MiB, cut points every 512 KiB on average after the minimum
	// (about 2.5 MiB per chunk; borg's average is 2 MiB, restic's 1.5 MiB). Media
	// files are large and never modified, so bigger chunks lose no deduplication
	// there, and the chunker does not look at the first 2 MiB of a chunk: it hashes
	// a fifth of the bytes of a large file instead of half, which takes 8 % off a
	// first backup of the benchmark's document set (docs/PERFORMANCE.md §Chunk
	// sizes). An average below the minimum needs format version 3. Repositories
	// keep the parameters they were created with (config "chunking").
	Files = Params{Min: 2 << 20, Max: 8 << 20, AverageBits: 19}
	// FilesV2 are the file parameters of new repositories of format versions 1 and
	// 2: 1 MiB..8 MiB, cut points every 1 MiB after the minimum.
	FilesV2 = Params{Min: 1 << 20, Max: 8 << 20, AverageBits: 20}
	// Database: 16 KiB..256 KiB, cut points every 32 KiB on average after the
	// minimum (about 48 KiB per chunk). Dumps change in many small places; small
	// chunks keep day-over-day growth near the changed bytes: on a 225 MB
	// PostgreSQL dump after a Paperless-like day, 5.9 MB new versus 17 MB at
	// 2^17 and 90 MB at the file defaults (docs/PERFORMANCE.md §Chunk sizes).
	Database = Params{Min: 16 << 10, Max: 256 << 10, AverageBits: 15}
)

// Chunk is one piece of a stream. Data aliases the buffer passed to Next.
type Chunk struct {
	Start  uint64
	Length uint
	Data   []byte
}

// Chunker cuts a stream into chunks.
type Chunker struct {
	c *chunker.Chunker
}

// New returns a chunker reading rd.
func New(rd io.Reader, pol Pol, p Params) *Chunker {
	c := chunker.NewWithBoundaries(rd, pol, p.Min, p.Max)
	c.SetAverageBits(p.AverageBits)
	return &Chunker{c: c}
}

// Reset starts over on a new stream, keeping the chunker's tables.
func (c *Chunker) Reset(rd io.Reader, pol Pol, p Params) {
	c.c.ResetWithBoundaries(rd, pol, p.Min, p.Max)
	c.c.SetAverageBits(p.AverageBits)
}

// Next returns the next chunk, its data stored in buf (grown if smaller than the
// maximum chunk size). At the end of the stream it returns io.EOF. Errors of the
// underlying reader are returned unchanged.
func (c *Chunker) Next(buf []byte) (Chunk, error) {
	ch, err := c.c.Next(buf)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Chunk{}, io.EOF
		}
		return Chunk{}, err
	}
	return Chunk{Start: uint64(ch.Start), Length: ch.Length, Data: ch.Data}, nil
}
