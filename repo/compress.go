package repo

import (
	"encoding/binary"
	"math/bits"
	"runtime"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/pack"
	"github.com/klauspost/compress/zstd"
)

// zstdText compresses the text-like stretches of data blobs (format versions 2 and later) and
// whole data blobs in version 1 repositories, at zstd's fastest level. Once random
// bytes are kept out of its frames, the fastest level compresses a document set's text
// layers better than the default level does whole blobs (docs/PERFORMANCE.md
// §Compression), at a fraction of the time. Frames carry no content checksum: every
// blob is verified against its keyed BLAKE3 ID, so zstd's own xxhash would cost
// 4 bytes per frame and protect nothing more.
var zstdText, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
	zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithZeroFrames(true),
	zstd.WithWindowSize(textWindow), zstd.WithEncoderCRC(false))

// textWindow bounds how far back zstd looks for matches, and so the history each
// encoder keeps (about twice the window). 1 MiB, the average data blob, changes the
// ratio on the benchmark's text by less than 0.01 % and saves 12 MiB of a backup's
// peak memory.
const textWindow = 1 << 20

// zstdDefault compresses tree blobs, which are few and read often, and small blobs
// that are text through and through (small files): default level. On inputs of a
// few KiB the fastest level finds too little to match; on the benchmark's data set of
// 40,000 small files the default level stores 4 % less (docs/PERFORMANCE.md
// §Compression).
var zstdDefault, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault),
	zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithZeroFrames(true),
	zstd.WithWindowSize(textWindow), zstd.WithEncoderCRC(false))

// zstdSampler tries small samples as cheaply as possible.
var zstdSampler, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
	zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithLowerEncoderMem(true))

// Segment classification (docs/PERFORMANCE.md §Compression). A data blob is looked at
// in blocks of segBlock bytes; a block is "text-like" when a sample at its start or
// at its end has few distinct byte values. Uniformly random bytes (JPEG and JBIG2
// image streams, WebP, already compressed or encrypted data) show about 57 distinct
// values in 64 bytes, English text about 30, base64 about 40, binary records fewer.
const (
	segBlock     = 2048
	segSample    = 64
	segDistinct  = 46 // fewer distinct values than this in a sample: text-like
	segMinRandom = 4 * segBlock
)

// storedBlob is a blob as stored, in pieces to be written one after the other:
// slices of buf (zstd frame and block headers, compressed frames) and of the
// plaintext (the raw blocks of random stretches, or the whole blob if it is stored
// uncompressed). A raw stretch of a PDF's image data thus goes from the plaintext
// straight to the pack's encryption, without another copy.
type storedBlob struct {
	buf   []byte
	parts [][]byte
	n     int // total length
}

// compressTo sets s to the blob as stored and returns its compression code.
// segmented allows several zstd frames per blob (format versions 2 and later): only
// the compressible stretches of a data blob are run through zstd, the rest is stored
// in raw zstd frames, so that a PDF of image data with a text layer costs the encoder
// only its text. s.buf is reused and grown as needed.
func compressTo(s *storedBlob, data []byte, t blob.Type, segmented bool) uint8 {
	s.parts, s.n = s.parts[:0], 0
	if len(data) < 64 {
		return s.keep(data, nil)
	}
	if t == blob.Tree {
		return s.keep(data, zstdDefault.EncodeAll(data, s.dst(len(data))))
	}
	if !segmented {
		if len(data) >= 16<<10 && !worthCompressing(data) {
			return s.keep(data, nil)
		}
		return s.keep(data, zstdText.EncodeAll(data, s.dst(len(data))))
	}
	runs := textRuns(data)
	switch {
	case len(runs) == 0:
		// Nothing looks like text; a few samples catch high-entropy data that still
		// repeats itself.
		if len(data) >= 16<<10 && !worthCompressing(data) {
			return s.keep(data, nil)
		}
		return s.keep(data, zstdText.EncodeAll(data, s.dst(len(data))))
	case len(runs) == 1 && runs[0].start == 0 && runs[0].end == len(data):
		if len(data) < smallTextBlob {
			return s.keep(data, zstdDefault.EncodeAll(data, s.dst(len(data))))
		}
		return s.keep(data, zstdText.EncodeAll(data, s.dst(len(data))))
	}
	// Pieces are recorded as offsets, into out (which may still grow) or into the
	// plaintext, and turned into slices at the end.
	type piece struct {
		plain    bool
		from, to int
	}
	pieces := make([]piece, 0, 2*len(runs)+8)
	text := 0
	for _, r := range runs {
		text += r.end - r.start
	}
	out := s.dst(text + 64*len(runs) + (len(data)-text)/zstdMaxBlockSize*3)
	raw := func(b []byte, at int) {
		if len(b) == 0 {
			return
		}
		start := len(out)
		out = appendRawFrameHeader(out, len(b))
		for off := 0; off < len(b); off += zstdMaxBlockSize {
			n := min(len(b)-off, zstdMaxBlockSize)
			if off > 0 {
				start = len(out)
			}
			out = appendRawBlockHeader(out, n, off+n == len(b))
			pieces = append(pieces, piece{false, start, len(out)}, piece{true, at + off, at + off + n})
		}
	}
	pos := 0
	for _, r := range runs {
		raw(data[pos:r.start], pos)
		start := len(out)
		out = zstdText.EncodeAll(data[r.start:r.end], out)
		pieces = append(pieces, piece{false, start, len(out)})
		pos = r.end
	}
	raw(data[pos:], pos)
	total := 0
	for _, p := range pieces {
		total += p.to - p.from
	}
	s.buf = out
	if !saves(len(data), total) {
		return s.keep(data, nil)
	}
	for _, p := range pieces {
		if p.plain {
			s.add(data[p.from:p.to])
		} else {
			s.add(out[p.from:p.to])
		}
	}
	return pack.CompressionZstd
}

// keep sets s to c, the blob compressed into s.buf, if it saves at least 1/128 of
// the blob, else to the plaintext (a blob that barely shrinks is cheaper to read
// uncompressed), and returns the compression code. c == nil means not compressed.
func (s *storedBlob) keep(data, c []byte) uint8 {
	if c != nil {
		s.buf = c[:0] // the encoder may have grown it
	}
	if c == nil || !saves(len(data), len(c)) {
		s.add(data)
		return pack.CompressionNone
	}
	s.add(c)
	return pack.CompressionZstd
}

// saves reports whether storing n bytes instead of raw saves at least 1/128.
func saves(raw, n int) bool { return n < raw-raw/128 }

// dst returns s.buf emptied, with room for n bytes compressed.
func (s *storedBlob) dst(n int) []byte {
	if need := n + n/(128<<10)*3 + 1024; cap(s.buf) < need {
		s.buf = make([]byte, 0, need)
	}
	return s.buf[:0]
}

func (s *storedBlob) add(b []byte) {
	s.parts = append(s.parts, b)
	s.n += len(b)
}

type span struct{ start, end int }

// textRuns returns the text-like stretches of data, block-aligned except at the end,
// in order. Random stretches shorter than segMinRandom between two text runs join
// them: a frame boundary costs more than zstd loses on a few KiB of noise.
func textRuns(data []byte) []span {
	var runs []span
	distinct := distinctBytes
	for off := 0; off < len(data); off += segBlock {
		end := min(off+segBlock, len(data))
		blk := data[off:end]
		text := distinct(blk[:min(segSample, len(blk))]) < segDistinct
		if !text && len(blk) > segSample {
			text = distinct(blk[len(blk)-segSample:]) < segDistinct
		}
		if !text {
			continue
		}
		if n := len(runs); n > 0 && off-runs[n-1].end < segMinRandom {
			runs[n-1].end = end
		} else {
			runs = append(runs, span{off, end})
		}
	}
	// A random tail shorter than segMinRandom joins the last run; so does a random
	// head before the first.
	if n := len(runs); n > 0 {
		if len(data)-runs[n-1].end < segMinRandom {
			runs[n-1].end = len(data)
		}
		if runs[0].start < segMinRandom {
			runs[0].start = 0
		}
	}
	// A run's first and last blocks are often partly random: trim them to the first
	// and last text-like sample, so the encoder does not spend time on noise.
	for i := range runs {
		r := &runs[i]
		if r.start > 0 {
			for off := r.start; off+segSample <= r.start+segBlock && off+segSample <= r.end; off += segSample {
				if distinct(data[off:off+segSample]) < segDistinct {
					r.start = off
					break
				}
			}
		}
		if r.end < len(data) {
			for off := r.end - segSample; off >= r.end-segBlock && off >= r.start; off -= segSample {
				if distinct(data[off:off+segSample]) < segDistinct {
					r.end = off + segSample
					break
				}
			}
		}
	}
	return runs
}

// distinctBytes returns how many distinct byte values b holds: a bit per value, set
// without a branch, then counted. On the benchmark's document data this makes
// textRuns 1.7 times as fast as marking values in a table, whose compare-and-branch
// per byte the processor cannot predict.
func distinctBytes(b []byte) int {
	var m [4]uint64
	for _, c := range b {
		m[c>>6] |= 1 << (c & 63)
	}
	return bits.OnesCount64(m[0]) + bits.OnesCount64(m[1]) + bits.OnesCount64(m[2]) + bits.OnesCount64(m[3])
}

// smallTextBlob: text blobs smaller than this use the default level. Database chunks
// (16 KiB and more) stay at the fastest level.
const smallTextBlob = 16 << 10

// zstd frame constants (RFC 8878 §3.1.1).
const (
	zstdMagic        = 0xFD2FB528
	zstdMaxBlockSize = 128 << 10
)

// appendRawFrameHeader appends the header of a frame of raw blocks holding n bytes.
func appendRawFrameHeader(out []byte, n int) []byte {
	out = binary.LittleEndian.AppendUint32(out, zstdMagic)
	// Frame_Header_Descriptor: FCS_Field_Size 2 (4 bytes), Single_Segment 1.
	out = append(out, 2<<6|1<<5)
	return binary.LittleEndian.AppendUint32(out, uint32(n))
}

// appendRawBlockHeader appends the header of a raw block of n bytes.
func appendRawBlockHeader(out []byte, n int, last bool) []byte {
	// Block_Header: Last_Block (1 bit), Block_Type 0 = raw (2 bits), Block_Size.
	h := uint32(n) << 3
	if last {
		h |= 1
	}
	return append(out, byte(h), byte(h>>8), byte(h>>16))
}

func worthCompressing(data []byte) bool {
	const n, size = 4, 1024
	var sample [size]byte
	var dst [2 * size]byte
	step := (len(data) - size) / (n - 1)
	for i := 0; i < n; i++ {
		copy(sample[:], data[i*step:])
		c := zstdSampler.EncodeAll(sample[:], dst[:0])
		if len(c) < size*7/8 {
			return true
		}
	}
	return false
}
