package index_test

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/cairn-backup/cairn/repo/pack"
)

func sample() *index.File {
	return &index.File{
		Created:    time.Unix(1700000000, 5).UTC(),
		Supersedes: []blob.ID{{9}},
		Packs: []index.PackRecord{
			{ID: blob.ID{1}, Size: 1234, Entries: []pack.Entry{
				{Type: blob.Data, Compression: pack.CompressionZstd, ID: blob.ID{2}, Offset: 0, Length: 10, RawLength: 20},
				{Type: blob.Tree, ID: blob.ID{3}, Offset: 10, Length: 5, RawLength: 5},
			}},
			{ID: blob.ID{4}, Flags: index.FlagObsolete, Size: 99, MarkedAt: time.Unix(1700000100, 0).UTC(),
				Blockers: []index.BlockerID{{7}}, Entries: []pack.Entry{{ID: blob.ID{5}, Length: 1, RawLength: 1}}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	f := sample()
	got, err := index.Decode(f.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Encode()) != string(f.Encode()) {
		t.Fatal("re-encoding differs")
	}
	x := index.New()
	x.AddFile(blob.ID{42}, got)
	loc, ok := x.Lookup(blob.ID{3})
	if !ok || loc.Pack != (blob.ID{1}) || loc.Entry.Offset != 10 || loc.Entry.Type != blob.Tree {
		t.Fatalf("lookup: %+v %v", loc, ok)
	}
	if loc, ok := x.Lookup(blob.ID{2}); !ok || loc.Entry.Compression != pack.CompressionZstd || loc.Entry.RawLength != 20 {
		t.Fatalf("lookup zstd blob: %+v", loc)
	}
	if x.Has(blob.ID{5}) {
		t.Fatal("blob of an obsolete pack is live")
	}
	if len(x.Obsolete()) != 1 {
		t.Fatal("obsolete pack not recorded")
	}
	if n, _ := x.PackSize(blob.ID{1}); n != 1234 {
		t.Fatalf("pack size %d", n)
	}
}

func TestRejects(t *testing.T) {
	good := sample().Encode()
	for name, mut := range map[string]func([]byte) []byte{
		"magic":    func(b []byte) []byte { b[0] = 'X'; return b },
		"version":  func(b []byte) []byte { b[7] = 2; return b },
		"trailing": func(b []byte) []byte { return append(b, 0) },
		"truncate": func(b []byte) []byte { return b[:len(b)-1] },
		"count":    func(b []byte) []byte { b[16] = 0xff; return b },
	} {
		t.Run(name, func(t *testing.T) {
			b := mut(append([]byte(nil), good...))
			if _, err := index.Decode(b); !errors.Is(err, index.ErrInvalid) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sample().Encode())
	f.Add((&index.File{}).Encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := index.Decode(data)
		if err != nil {
			if !errors.Is(err, index.ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		again, err := index.Decode(got.Encode())
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again.Packs) != len(got.Packs) {
			t.Fatal("round trip changed pack count")
		}
		x := index.New()
		x.AddFile(blob.ID{}, got)
		x.Sort()
	})
}

// BenchmarkIndexMemory loads a synthetic index of 5 million blobs and reports the
// resident bytes per blob once sorted (target ≤ 48, docs/PERFORMANCE.md), and as
// load-bytes/blob the heap before Sort, when loading peaks (Sort works in place).
func BenchmarkIndexMemory(b *testing.B) {
	const blobs = 5_000_000
	const perPack = 5000
	for i := 0; i < b.N; i++ {
		var before runtimeMem
		before.read()
		x := index.New()
		x.Grow(blobs)
		var id blob.ID
		for p := 0; p < blobs/perPack; p++ {
			rec := index.PackRecord{ID: blob.ID{byte(p), byte(p >> 8), byte(p >> 16), 0xAA}, Size: 16 << 20}
			rec.Entries = make([]pack.Entry, perPack)
			for j := range rec.Entries {
				n := p*perPack + j
				id[0], id[1], id[2], id[3] = byte(n*7919), byte(n>>8), byte(n>>16), byte(n>>24)
				id[4] = byte(n * 31)
				rec.Entries[j] = pack.Entry{ID: id, Offset: uint32(j * 3000), Length: 3000, RawLength: 3000}
			}
			x.AddFile(blob.ID{byte(p), byte(p >> 8), 1}, &index.File{Packs: []index.PackRecord{rec}})
		}
		var loaded runtimeMem
		loaded.read()
		b.ReportMetric(float64(loaded.heap-before.heap)/blobs, "load-bytes/blob")
		x.Sort()
		var after runtimeMem
		after.read()
		b.ReportMetric(float64(after.heap-before.heap)/blobs, "bytes/blob")
		// Lookups stay fast: measure a few.
		if !x.Has(id) {
			b.Fatal("last blob missing")
		}
	}
}

// BenchmarkLookup builds an index of 1 million random blob IDs and reports the time per
// Lookup of a present blob and per Has of an absent one (each op is 1 million of each,
// so that -benchtime 1x gives a meaningful figure).
func BenchmarkLookup(b *testing.B) {
	const blobs = 1_000_000
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]blob.ID, blobs)
	x := index.New()
	x.Grow(blobs)
	for p := 0; p < blobs/5000; p++ {
		rec := index.PackRecord{ID: blob.ID{byte(p), byte(p >> 8), 0xBB}, Size: 16 << 20}
		for j := 0; j < 5000; j++ {
			id := &ids[p*5000+j]
			for k := 0; k < len(id); k += 8 {
				binary.LittleEndian.PutUint64(id[k:], rng.Uint64())
			}
			rec.Entries = append(rec.Entries, pack.Entry{ID: *id, Offset: uint32(j * 3000), Length: 3000, RawLength: 3000})
		}
		x.AddFile(blob.ID{byte(p), byte(p >> 8), 2}, &index.File{Packs: []index.PackRecord{rec}})
	}
	x.Sort()
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		for _, id := range ids {
			if _, ok := x.Lookup(id); !ok {
				b.Fatal("blob missing")
			}
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/blobs, "ns/lookup")
		start = time.Now()
		for _, id := range ids {
			id[31] ^= 0x55
			if x.Has(id) {
				b.Fatal("absent blob found")
			}
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/blobs, "ns/miss")
	}
}
