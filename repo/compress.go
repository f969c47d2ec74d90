package repo

import (
	"encoding/binary"
	"runtime"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/pack"
	"github.com/klauspost/compress/zstd"
)

// zstdText compresses the stretches of data blobs that look compressible (format
// version 2): they are a small part of most media, so the default level costs little
// and gains about 1.5 % over the fastest on text.
var zstdText, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
	zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithZeroFrames(true))

// zstdWhole compresses whole data blobs in version 1 repositories, at the fastest
// level: there zstd runs over every byte of a blob that has any compressible sample.
var zstdWhole, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
	zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithZeroFrames(true))

// zstdTrees compresses tree blobs, which are small and read often.
var zstdTrees = zstdText

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

// compress returns the blob as stored and its compression code. segmented allows
// several zstd frames per blob (format version 2): only the compressible stretches of
// a data blob are run through zstd, the rest is stored in raw zstd frames, so that a
// PDF of image data with a text layer costs the encoder only its text.
func compress(data []byte, t blob.Type, segmented bool) ([]byte, uint8) {
	if len(data) < 64 {
		return data, pack.CompressionNone
	}
	if t == blob.Tree {
		return keepIfSmaller(data, zstdTrees.EncodeAll(data, make([]byte, 0, len(data))))
	}
	if !segmented {
		if len(data) >= 16<<10 && !worthCompressing(data) {
			return data, pack.CompressionNone
		}
		return keepIfSmaller(data, zstdWhole.EncodeAll(data, make([]byte, 0, len(data))))
	}
	runs := textRuns(data)
	switch {
	case len(runs) == 0:
		// Nothing looks like text; a few samples catch high-entropy data that still
		// repeats itself.
		if len(data) >= 16<<10 && !worthCompressing(data) {
			return data, pack.CompressionNone
		}
		return keepIfSmaller(data, zstdText.EncodeAll(data, make([]byte, 0, len(data))))
	case len(runs) == 1 && runs[0].start == 0 && runs[0].end == len(data):
		return keepIfSmaller(data, zstdText.EncodeAll(data, make([]byte, 0, len(data))))
	}
	out := make([]byte, 0, len(data)+len(data)/(128<<10)*3+(2*len(runs)+1)*16)
	pos := 0
	for _, r := range runs {
		out = appendRawFrame(out, data[pos:r.start])
		out = zstdText.EncodeAll(data[r.start:r.end], out)
		pos = r.end
	}
	out = appendRawFrame(out, data[pos:])
	return keepIfSmaller(data, out)
}

// keepIfSmaller stores c if it saves at least 1/128 of the blob, else the plaintext:
// a blob that barely shrinks is cheaper to read uncompressed.
func keepIfSmaller(data, c []byte) ([]byte, uint8) {
	if len(c) >= len(data)-len(data)/128 {
		return data, pack.CompressionNone
	}
	return c, pack.CompressionZstd
}

type span struct{ start, end int }

// textRuns returns the text-like stretches of data, block-aligned except at the end,
// in order. Random stretches shorter than segMinRandom between two text runs join
// them: a frame boundary costs more than zstd loses on a few KiB of noise.
func textRuns(data []byte) []span {
	var runs []span
	var seen [256]uint32
	gen := uint32(0)
	distinct := func(b []byte) int {
		gen++
		n := 0
		for _, c := range b {
			if seen[c] != gen {
				seen[c] = gen
				n++
			}
		}
		return n
	}
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
	return runs
}

// zstd frame constants (RFC 8878 §3.1.1).
const (
	zstdMagic        = 0xFD2FB528
	zstdMaxBlockSize = 128 << 10
)

// appendRawFrame appends a zstd frame holding b in raw blocks: a single-segment frame
// with a 4-byte content size, no checksum, then blocks of at most 128 KiB. An empty b
// appends nothing.
func appendRawFrame(out, b []byte) []byte {
	if len(b) == 0 {
		return out
	}
	out = binary.LittleEndian.AppendUint32(out, zstdMagic)
	// Frame_Header_Descriptor: FCS_Field_Size 2 (4 bytes), Single_Segment 1.
	out = append(out, 2<<6|1<<5)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(b)))
	for len(b) > 0 {
		n := min(len(b), zstdMaxBlockSize)
		last := uint32(0)
		if n == len(b) {
			last = 1
		}
		// Block_Header: Last_Block (1 bit), Block_Type 0 = raw (2 bits), Block_Size.
		h := last | uint32(n)<<3
		out = append(out, byte(h), byte(h>>8), byte(h>>16))
		out = append(out, b[:n]...)
		b = b[n:]
	}
	return out
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
