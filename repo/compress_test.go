package repo

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/pack"
	"github.com/klauspost/compress/zstd"
)

func TestTextRuns(t *testing.T) {
	if runs := textRuns(benchData(false)); len(runs) != 0 {
		t.Fatalf("random data has text runs %v", runs)
	}
	text := benchData(true)
	if runs := textRuns(text); len(runs) != 1 || runs[0] != (span{0, len(text)}) {
		t.Fatalf("text: runs %v, want one covering all", runs)
	}
	data := pdfLike()
	runs := textRuns(data)
	// Every text stretch of pdfLike lies inside one run, and runs hold little else.
	inRuns := 0
	for _, r := range runs {
		inRuns += r.end - r.start
	}
	stretches := 0
	for off := 40 << 10; off+6000 < len(data); off += 80 << 10 {
		stretches++
		covered := false
		for _, r := range runs {
			if r.start <= off && off+6000 <= r.end {
				covered = true
			}
		}
		if !covered {
			t.Errorf("text at %d..%d not inside one run of %v", off, off+6000, runs)
		}
	}
	if len(runs) != stretches || inRuns > stretches*(6000+2*segBlock) {
		t.Errorf("%d runs of %d bytes for %d stretches of 6000 bytes", len(runs), inRuns, stretches)
	}
}

func TestCompressRoundTrip(t *testing.T) {
	var key [32]byte
	mac := crypto.NewBlobMAC(key)
	text, random, pdf := benchData(true), benchData(false), pdfLike()
	cases := map[string][]byte{
		"empty": {}, "tiny": []byte("hello"), "text": text, "random": random, "pdf": pdf,
		"text-then-random": append(append([]byte{}, text[:300<<10]...), random[:700<<10]...),
		"random-then-text": append(append([]byte{}, random[:700<<10]...), text[:300<<10]...),
		"short-mixed":      append(append([]byte{}, random[:5000]...), text[:20000]...),
		"odd-length":       pdf[:len(pdf)-777],
	}
	for name, data := range cases {
		for _, segmented := range []bool{false, true} {
			stored, comp := compress(nil, data, blob.Data, segmented)
			e := pack.Entry{ID: mac.Sum(data), Compression: comp, Length: uint32(len(stored)), RawLength: uint32(len(data))}
			got, err := DecodeBlob(e, stored, nil, mac)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s (segmented %v): %v", name, segmented, err)
			}
			if comp == pack.CompressionZstd && !segmented {
				// Version 1 blobs are one frame: the first frame holds all of it.
				var h zstd.Header
				if err := h.Decode(stored); err != nil || !h.HasFCS || h.FrameContentSize != uint64(len(data)) {
					t.Fatalf("%s: v1 blob is not one frame: %+v %v", name, h, err)
				}
			}
		}
	}
	// Mixed blobs in version 2 are compressed, in several frames, and smaller than
	// version 1 makes them.
	s2, c2 := compress(nil, pdf, blob.Data, true)
	s1, _ := compress(nil, pdf, blob.Data, false)
	var h zstd.Header
	if c2 != pack.CompressionZstd || h.Decode(s2) != nil || h.FrameContentSize >= uint64(len(pdf)) || len(s2) >= len(s1) {
		t.Fatalf("pdf v2: compression %d, first frame %d bytes, %d stored vs v1 %d", c2, h.FrameContentSize, len(s2), len(s1))
	}
	// Random data is stored as it is.
	if _, c := compress(nil, random, blob.Data, true); c != pack.CompressionNone {
		t.Fatalf("random data compressed (%d)", c)
	}
}

// TestCompressToReuse: a storedBlob reused from blob to blob, as the writer's pool
// does, gives the same stored bytes as a fresh one, and the raw stretches of a mixed
// blob are pieces of the plaintext itself, not copies.
func TestCompressToReuse(t *testing.T) {
	text, random, pdf := benchData(true), benchData(false), pdfLike()
	var s storedBlob
	for i, data := range [][]byte{pdf, text, random, pdf[:len(pdf)/3], []byte("tiny"), text[:5000], pdf} {
		want, wantComp := compress(nil, data, blob.Data, true)
		comp := compressTo(&s, data, blob.Data, true)
		if got := bytes.Join(s.parts, nil); comp != wantComp || s.n != len(want) || !bytes.Equal(got, want) {
			t.Fatalf("blob %d: compression %d, %d bytes in %d parts; want %d, %d bytes", i, comp, s.n, len(s.parts), wantComp, len(want))
		}
	}
	d := bytes.Clone(pdf)
	compressTo(&s, d, blob.Data, true)
	before := bytes.Join(s.parts, nil)
	for i := range d {
		d[i] ^= 0xff
	}
	after := bytes.Join(s.parts, nil)
	changed := 0
	for i := range before {
		if before[i] != after[i] {
			changed++
		}
	}
	if changed < len(d)/2 {
		t.Fatalf("%d of %d stored bytes follow the plaintext: raw stretches were copied", changed, len(before))
	}
}

// TestRawFramesStandardDecoder checks the multi-frame form against the reference zstd
// implementation, when it is installed: an independent reader decodes it with any
// RFC 8878 decoder.
func TestRawFramesStandardDecoder(t *testing.T) {
	zstdCmd, err := exec.LookPath("zstd")
	if err != nil {
		t.Skip("zstd command not installed (apt-get install zstd)")
	}
	pdf := pdfLike()
	stored, _ := compress(nil, pdf, blob.Data, true)
	cmd := exec.Command(zstdCmd, "-d", "-c")
	cmd.Stdin = bytes.NewReader(stored)
	out, err := cmd.Output()
	if err != nil || !bytes.Equal(out, pdf) {
		t.Fatalf("zstd -d: %d bytes, %v", len(out), err)
	}
}

// TestVectorRepoV2HasFrames makes sure the frozen version 2 repository exercises what
// version 2 added: a blob of several zstd frames.
func TestVectorRepoV2HasFrames(t *testing.T) {
	ctx := context.Background()
	pw, err := os.ReadFile(filepath.Join("..", "testdata", "vectors", "repo-v2.password"))
	if err != nil {
		t.Fatal(err)
	}
	be, err := local.Open(filepath.Join("..", "testdata", "vectors", "repo-v2"))
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := crypto.NewPassphrase(string(bytes.TrimSpace(pw)), 0)
	r, err := Open(ctx, be, cred)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	multi := 0
	for _, p := range r.Index().Packs() {
		pr, err := r.ReadPack(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range pr.Entries {
			var h zstd.Header
			if e.Compression == pack.CompressionZstd && h.Decode(pr.plain[e.Offset:e.Offset+e.Length]) == nil && h.FrameContentSize < uint64(e.RawLength) {
				multi++
			}
		}
		pr.Close()
	}
	if multi == 0 {
		t.Fatal("no blob of several frames in testdata/vectors/repo-v2")
	}
}

// FuzzDecodeBlob feeds stored blob bytes to the decoder: no input may panic, decode
// past RawLength or return bytes that do not match the blob ID.
func FuzzDecodeBlob(f *testing.F) {
	var key [32]byte
	mac := crypto.NewBlobMAC(key)
	mixed := append(append(append([]byte{}, benchData(false)[:9000]...), benchData(true)[:3000]...), benchData(false)[:9000]...)
	for _, data := range [][]byte{benchData(true)[:3000], mixed, []byte("hello, world, hello, world, hello, world, hello, world, hello")} {
		stored, comp := compress(nil, data, blob.Data, true)
		f.Add(stored, comp, uint32(len(data)))
	}
	f.Add(appendRawFrame(nil, []byte("raw frame")), uint8(1), uint32(9))
	f.Fuzz(func(t *testing.T, stored []byte, comp uint8, rawLen uint32) {
		rawLen %= 1 << 16
		// Decoding succeeds only for the blob whose ID is given: here the stored bytes
		// themselves, so only a stored form that decodes to itself may pass.
		e := pack.Entry{ID: mac.Sum(stored), Compression: comp, Length: uint32(len(stored)), RawLength: rawLen}
		out, err := DecodeBlob(e, stored, nil, mac)
		if err != nil {
			return
		}
		if len(out) != int(rawLen) || blob.ID(mac.Sum(out)) != e.ID {
			t.Fatalf("decoded %d bytes (RawLength %d) not matching the ID", len(out), rawLen)
		}
	})
}

// TestDistinctBytes checks the bitmap count against a map on random samples of
// every length up to a sample and a half, from alphabets of several sizes.
func TestDistinctBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n <= segSample*3/2; n++ {
		for _, alphabet := range []int{1, 2, 30, 64, 256} {
			b := make([]byte, n)
			want := map[byte]bool{}
			for i := range b {
				b[i] = byte(rng.IntN(alphabet) * (256 / alphabet))
				want[b[i]] = true
			}
			if got := distinctBytes(b); got != len(want) {
				t.Fatalf("%d bytes from %d values: %d distinct, want %d", n, alphabet, got, len(want))
			}
		}
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	if got := distinctBytes(all); got != 256 {
		t.Fatalf("all values: %d", got)
	}
}

func BenchmarkTextRuns(b *testing.B) {
	data := benchData(false)
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		textRuns(data)
	}
}

// appendRawFrame appends a zstd frame holding b in raw blocks: a single-segment frame
// with a 4-byte content size, no checksum, then blocks of at most 128 KiB. An empty b
// appends nothing.
func appendRawFrame(out, b []byte) []byte {
	if len(b) == 0 {
		return out
	}
	out = appendRawFrameHeader(out, len(b))
	for len(b) > 0 {
		n := min(len(b), zstdMaxBlockSize)
		out = appendRawBlockHeader(out, n, n == len(b))
		out = append(out, b[:n]...)
		b = b[n:]
	}
	return out
}

// compress is compressTo with the blob as stored in one piece, for tests: the
// compressed form is appended to dst[:0] (grown if needed); the result is either data
// itself or that buffer.
func compress(dst, data []byte, t blob.Type, segmented bool) ([]byte, uint8) {
	s := storedBlob{buf: dst}
	comp := compressTo(&s, data, t, segmented)
	if len(s.parts) == 1 {
		return s.parts[0], comp
	}
	out := make([]byte, 0, s.n)
	for _, p := range s.parts {
		out = append(out, p...)
	}
	return out, comp
}
