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

// compress returns the blob as stored and its compression code. segmented allows
// several zstd frames per blob (format versions 2 and later): only the compressible stretches of
// a data blob are run through zstd, the rest is stored in raw zstd frames, so that a
// PDF of image data with a text layer costs the encoder only its text.
//
// The compressed form is appended to dst[:0] (grown if needed); the result is either
// data itself or that buffer.
func compress(dst, data []byte, t blob.Type, segmented bool) ([]byte, uint8) {
	if len(data) < 64 {
		return data, pack.CompressionNone
	}
	if need := len(data) + len(data)/(128<<10)*3 + 1024; cap(dst) < need {
		dst = make([]byte, 0, need)
	}
	dst = dst[:0]
	if t == blob.Tree {
		return keepIfSmaller(data, zstdDefault.EncodeAll(data, dst))
	}
	if !segmented {
		if len(data) >= 16<<10 && !worthCompressing(data) {
			return data, pack.CompressionNone
		}
		return keepIfSmaller(data, zstdText.EncodeAll(data, dst))
	}
	runs := textRuns(data)
	switch {
	case len(runs) == 0:
		// Nothing looks like text; a few samples catch high-entropy data that still
		// repeats itself.
		if len(data) >= 16<<10 && !worthCompressing(data) {
			return data, pack.CompressionNone
		}
		return keepIfSmaller(data, zstdText.EncodeAll(data, dst))
	case len(runs) == 1 && runs[0].start == 0 && runs[0].end == len(data):
		if len(data) < smallTextBlob {
			return keepIfSmaller(data, zstdDefault.EncodeAll(data, dst))
		}
		return keepIfSmaller(data, zstdText.EncodeAll(data, dst))
	}
	out := dst
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
