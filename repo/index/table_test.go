package index_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/cairn-backup/cairn/repo/pack"
)

// model is the expected content of an index: the first location added for each blob.
type model map[blob.ID]index.Location

// add records f's live blobs in the order AddFile sees them.
func (m model) add(f *index.File) {
	for _, p := range f.Packs {
		if p.Obsolete() {
			continue
		}
		for _, e := range p.Entries {
			if _, ok := m[e.ID]; !ok {
				m[e.ID] = index.Location{Pack: p.ID, Entry: e}
			}
		}
	}
}

// check compares x with m through Lookup, Has, Len and Each.
func (m model) check(t *testing.T, x *index.Index) {
	t.Helper()
	for id, want := range m {
		got, ok := x.Lookup(id)
		if !ok {
			t.Fatalf("Lookup(%v): missing", id)
		}
		if got != want {
			t.Fatalf("Lookup(%v) = %+v, want %+v", id, got, want)
		}
		if !x.Has(id) {
			t.Fatalf("Has(%v) = false", id)
		}
	}
	if n := x.Len(); n != len(m) {
		t.Fatalf("Len = %d, want %d", n, len(m))
	}
	seen := map[blob.ID]bool{}
	x.Each(func(l index.Location) {
		if seen[l.Entry.ID] {
			t.Fatalf("Each visits %v twice", l.Entry.ID)
		}
		seen[l.Entry.ID] = true
		if want, ok := m[l.Entry.ID]; !ok || l != want {
			t.Fatalf("Each: %+v, want %+v (%v)", l, want, ok)
		}
	})
	if len(seen) != len(m) {
		t.Fatalf("Each visits %d blobs, want %d", len(seen), len(m))
	}
}

// absent fails if any of ids is found.
func absent(t *testing.T, x *index.Index, ids ...blob.ID) {
	t.Helper()
	for _, id := range ids {
		if l, ok := x.Lookup(id); ok {
			t.Fatalf("Lookup(%v) found %+v", id, l)
		}
		if x.Has(id) {
			t.Fatalf("Has(%v) = true", id)
		}
	}
}

// idOf returns an ID with the given first two bytes, byte 2 = mid and byte 31 = last.
func idOf(b0, b1, mid, last byte) blob.ID {
	var id blob.ID
	id[0], id[1], id[2], id[31] = b0, b1, mid, last
	for i := 3; i < 31; i++ {
		id[i] = 0x5A
	}
	return id
}

// packOf returns a live pack record holding ids at increasing offsets, with varied
// types, compression and lengths so that every field of a location is checked.
func packOf(packID blob.ID, ids ...blob.ID) index.PackRecord {
	p := index.PackRecord{ID: packID, Size: 1000 + uint64(packID[0])}
	for i, id := range ids {
		e := pack.Entry{Type: blob.Data, ID: id, Offset: uint32(100 * i), Length: uint32(10 + i),
			RawLength: uint32(1<<29 - 1 - i)}
		if i%2 == 1 {
			e.Type = blob.Tree
		}
		if i%3 == 1 {
			e.Compression = pack.CompressionZstd
		}
		p.Entries = append(p.Entries, e)
	}
	return p
}

func fileOf(packs ...index.PackRecord) *index.File { return &index.File{Packs: packs} }

// TestTableEdges looks up every blob after loading and after merging a second file,
// with IDs that share the 2-byte prefix or differ only in byte 0, 1 or 31, while the
// first and last buckets are empty and then after blobs land in them.
func TestTableEdges(t *testing.T) {
	first := []blob.ID{
		idOf(0x12, 0x34, 0, 0), idOf(0x12, 0x34, 0, 1), idOf(0x12, 0x34, 0, 0xFF), // byte 31
		idOf(0x12, 0x34, 1, 0), idOf(0x12, 0x34, 0xFF, 0xFF), // same prefix
		idOf(0x13, 0x34, 0, 0), idOf(0x11, 0x34, 0, 0), // byte 0
		idOf(0x12, 0x35, 0, 0), idOf(0x12, 0x33, 0, 0), // byte 1
		idOf(0x00, 0x01, 0, 0), idOf(0xFF, 0xFE, 0xFF, 0xFF), idOf(0x01, 0x00, 0, 0), idOf(0xFE, 0xFF, 0, 0),
	}
	x := index.New()
	m := model{}
	f := fileOf(packOf(blob.ID{1}, first[:7]...), packOf(blob.ID{2}, first[7:]...))
	x.AddFile(blob.ID{100}, f)
	m.add(f)
	x.Sort()
	m.check(t, x)
	// Empty buckets 0x0000 and 0xFFFF, and neighbours of stored IDs.
	absent(t, x, blob.ID{}, idOf(0, 0, 0xFF, 0xFF), idOf(0xFF, 0xFF, 0, 0), idOf(0xFF, 0xFF, 0xFF, 0xFF),
		idOf(0x12, 0x34, 0, 2), idOf(0x12, 0x34, 0, 0xFE), idOf(0x14, 0x34, 0, 0), idOf(0x12, 0x36, 0, 0),
		idOf(0x12, 0x34, 0x80, 0), idOf(0x00, 0x01, 0, 1), idOf(0xFF, 0xFE, 0xFF, 0xFE))

	// A second file after Sort merges into the table: blobs before, between and after
	// the loaded ones in their buckets, in new buckets, and in the first and last.
	second := []blob.ID{
		{}, idOf(0, 0, 0xFF, 0xFF), idOf(0xFF, 0xFF, 0, 0), idOf(0xFF, 0xFF, 0xFF, 0xFF),
		idOf(0x12, 0x34, 0, 2), idOf(0x12, 0x34, 0, 0xFE), idOf(0x12, 0x34, 0x80, 0),
		idOf(0x12, 0x34, 0xFF, 0xFF) /* duplicate */, idOf(0x14, 0x34, 0, 0), idOf(0x12, 0x36, 0, 0),
		idOf(0x00, 0x01, 0, 1), idOf(0x00, 0x01, 0, 0) /* duplicate */, idOf(0xFF, 0xFE, 0xFF, 0xFE),
	}
	f2 := fileOf(packOf(blob.ID{3}, second[:5]...), packOf(blob.ID{4}, second[5:]...))
	x.AddFile(blob.ID{101}, f2)
	m.add(f2)
	x.Sort()
	m.check(t, x)
	absent(t, x, idOf(0, 0, 0, 1), idOf(0xFF, 0xFF, 0xFF, 0xFE), idOf(0x12, 0x34, 0x7F, 0))
	if l, _ := x.Lookup(idOf(0x12, 0x34, 0xFF, 0xFF)); l.Pack != (blob.ID{1}) {
		t.Fatalf("duplicate from the merged file replaced the loaded one: %+v", l)
	}

	// Lookup without an explicit Sort sees a third file at once.
	f3 := fileOf(packOf(blob.ID{5}, idOf(0x12, 0x34, 0x40, 0), idOf(0x77, 0x77, 0, 0)))
	x.AddFile(blob.ID{102}, f3)
	m.add(f3)
	m.check(t, x)
}

// TestFirstLocationWins checks which copy of a duplicate blob is kept, in one file,
// across files loaded together, and across a merge into a sorted table.
func TestFirstLocationWins(t *testing.T) {
	a, b, c, d := idOf(1, 2, 3, 4), idOf(1, 2, 3, 5), idOf(9, 9, 9, 9), idOf(1, 2, 3, 3)
	entry := func(id blob.ID, off uint32) pack.Entry {
		return pack.Entry{ID: id, Offset: off, Length: 7, RawLength: 7 + off}
	}
	live := func(packID byte, es ...pack.Entry) index.PackRecord {
		return index.PackRecord{ID: blob.ID{packID}, Size: 1, Entries: es}
	}
	cases := []struct {
		name  string
		files [][]index.PackRecord
		sort  []bool // Sort after file i
	}{
		{"same pack, increasing offsets", [][]index.PackRecord{
			{live(1, entry(a, 0), entry(b, 10), entry(a, 20))}}, nil},
		{"same pack, decreasing offsets", [][]index.PackRecord{
			{live(1, entry(a, 50), entry(b, 10), entry(a, 0), entry(a, 5))}}, nil},
		{"same pack, equal offsets", [][]index.PackRecord{
			{live(1, entry(a, 50), entry(a, 50), pack.Entry{ID: a, Offset: 50, Length: 1})}}, nil},
		// Enough equal (ID, offset) pairs for the bucket sort to be more than an
		// insertion sort.
		{"same pack, one offset", [][]index.PackRecord{{sameOffset(1, a, 0, 200)}}, nil},
		{"two packs in one file", [][]index.PackRecord{
			{live(2, entry(d, 0), entry(a, 90)), live(1, entry(a, 10), entry(c, 20))}}, nil},
		{"across files", [][]index.PackRecord{
			{live(2, entry(c, 0), entry(a, 90))}, {live(1, entry(a, 10))}, {live(3, entry(a, 0))}}, nil},
		// The pack of the later copy was numbered first: the order of addition decides,
		// not the pack number.
		{"pack seen before", [][]index.PackRecord{
			{live(2, entry(c, 0))}, {live(1, entry(a, 10)), live(2, entry(a, 0), entry(c, 0))}}, nil},
		{"across a merge", [][]index.PackRecord{
			{live(2, entry(a, 90), entry(b, 0))}, {live(1, entry(a, 10), entry(b, 5), entry(d, 1))}}, []bool{true}},
		{"across a merge, pack seen before", [][]index.PackRecord{
			{live(2, entry(c, 0))}, {live(1, entry(a, 10))}, {live(2, entry(a, 0), entry(a, 5))}}, []bool{true, true}},
		{"obsolete copy ignored", [][]index.PackRecord{
			{{ID: blob.ID{4}, Flags: index.FlagObsolete, Entries: []pack.Entry{entry(a, 0)}}},
			{live(1, entry(a, 30))}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := index.New()
			m := model{}
			for i, packs := range tc.files {
				f := fileOf(packs...)
				x.AddFile(blob.ID{0xF0, byte(i)}, f)
				m.add(f)
				if i < len(tc.sort) && tc.sort[i] {
					x.Sort()
				}
			}
			x.Sort()
			m.check(t, x)
		})
	}
}

// sameOffset returns a pack record listing id n times at one offset, each time with
// another length, among other blobs of id's bucket from offset off on.
func sameOffset(packID byte, id blob.ID, off uint32, n int) index.PackRecord {
	p := index.PackRecord{ID: blob.ID{packID}, Size: 1}
	for i := range 2 * n {
		other := id
		other[2], other[31] = byte(i*37), byte(i)
		p.Entries = append(p.Entries, pack.Entry{ID: other, Offset: off + uint32(i)})
		if i == n {
			for j := range n {
				p.Entries = append(p.Entries, pack.Entry{ID: id, Offset: off + uint32(i), Length: uint32(j)})
			}
		}
	}
	return p
}

// TestEachWithAdded checks that Each visits a blob both loaded and added in this
// session once, with the loaded location, and added-only blobs once.
func TestEachWithAdded(t *testing.T) {
	x := index.New()
	m := model{}
	f := fileOf(packOf(blob.ID{1}, idOf(0, 0, 1, 1), idOf(0xFF, 0xFF, 1, 1), idOf(5, 5, 5, 5)))
	x.AddFile(blob.ID{10}, f)
	m.add(f)
	x.Sort()
	added := packOf(blob.ID{2}, idOf(5, 5, 5, 5), idOf(5, 5, 5, 6), idOf(0xFF, 0xFF, 1, 0))
	x.AddPack(added.ID, added.Size, added.Entries)
	for _, e := range added.Entries[1:] {
		m[e.ID] = index.Location{Pack: added.ID, Entry: e}
	}
	seen := map[blob.ID]index.Location{}
	x.Each(func(l index.Location) {
		if _, dup := seen[l.Entry.ID]; dup {
			t.Fatalf("Each visits %v twice", l.Entry.ID)
		}
		seen[l.Entry.ID] = l
	})
	if len(seen) != len(m) {
		t.Fatalf("Each visits %d blobs, want %d", len(seen), len(m))
	}
	// Lookup prefers the session's location; Each reports the loaded one.
	for id, want := range m {
		if seen[id] != want {
			t.Fatalf("Each: %+v, want %+v", seen[id], want)
		}
	}
	if l, _ := x.Lookup(idOf(5, 5, 5, 5)); l.Pack != added.ID {
		t.Fatalf("Lookup of a blob added this session: %+v", l)
	}
	if x.Len() != 6 {
		t.Fatalf("Len = %d, want 6 (duplicates in additions included)", x.Len())
	}
}

// TestRandom loads random blobs, with many duplicates and crowded buckets, in several
// files and merges, and compares the index with a map.
func TestRandom(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			var pool []blob.ID
			newID := func() blob.ID {
				var id blob.ID
				for i := range id {
					id[i] = byte(rng.Uint32())
				}
				switch rng.IntN(6) {
				case 0: // a crowded bucket
					id[0], id[1] = 0x42, 0x42
				case 1: // the first or last bucket
					id[0] = byte(0xFF * rng.IntN(2))
					id[1] = id[0]
				case 2: // differs from an earlier blob in one byte
					if len(pool) > 0 {
						id = pool[rng.IntN(len(pool))]
						id[[]int{0, 1, 2, 31}[rng.IntN(4)]] ^= byte(1 + rng.IntN(255))
					}
				}
				pool = append(pool, id)
				return id
			}
			x := index.New()
			if seed%2 == 0 {
				x.Grow(1000)
			}
			m := model{}
			packs := 0
			for file := range 12 {
				f := &index.File{}
				for range 1 + rng.IntN(4) {
					p := index.PackRecord{ID: blob.ID{byte(packs), byte(packs >> 8), 0xEE}, Size: uint64(packs)}
					if packs > 0 && rng.IntN(5) == 0 { // a pack listed again
						p.ID = blob.ID{byte(rng.IntN(packs)), 0, 0xEE}
					}
					packs++
					off := uint32(rng.IntN(100))
					for range rng.IntN(300) {
						id := newID()
						if len(pool) > 1 && rng.IntN(8) == 0 { // a duplicate
							id = pool[rng.IntN(len(pool)-1)]
						}
						if rng.IntN(20) == 0 { // offsets out of order
							off = uint32(rng.IntN(int(off) + 1))
						}
						p.Entries = append(p.Entries, pack.Entry{Type: blob.Type(rng.IntN(2)), ID: id,
							Offset: off, Length: rng.Uint32(), RawLength: uint32(rng.IntN(1 << 29))})
						off += uint32(rng.IntN(3))
					}
					f.Packs = append(f.Packs, p)
				}
				x.AddFile(blob.ID{byte(file), 0xFF}, f)
				m.add(f)
				if rng.IntN(3) == 0 {
					x.Sort()
					m.check(t, x)
				}
			}
			m.check(t, x)
			for range 2000 {
				id := newID()
				if _, ok := m[id]; !ok {
					absent(t, x, id)
				}
			}
		})
	}
}

// TestConcurrent runs lookups, Each and merges at once (for the race detector).
func TestConcurrent(t *testing.T) {
	x := index.New()
	ids := make([]blob.ID, 0, 2000)
	for i := range 2000 {
		ids = append(ids, blob.ID{byte(i), byte(i >> 8), byte(i * 7), 31: byte(i)})
	}
	x.AddFile(blob.ID{1}, fileOf(packOf(blob.ID{1}, ids[:1000]...)))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i, id := range ids[:1000] {
				if !x.Has(id) {
					t.Errorf("goroutine %d: blob %d missing", g, i)
					return
				}
			}
			x.Each(func(index.Location) {})
		})
	}
	wg.Go(func() {
		for i := 1000; i < 2000; i += 100 {
			x.AddFile(blob.ID{byte(i), byte(i >> 8)}, fileOf(packOf(blob.ID{byte(i), 1}, ids[i:i+100]...)))
			x.Sort()
		}
	})
	wg.Wait()
	for i, id := range ids {
		if !x.Has(id) {
			t.Fatalf("blob %d missing", i)
		}
	}
}
