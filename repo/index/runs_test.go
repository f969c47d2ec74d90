package index

import (
	"testing"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/pack"
)

// TestRunLimit lowers the bound on pending runs, so that AddFile sorts in the middle
// of files and of pack records, and checks that the first location still wins.
func TestRunLimit(t *testing.T) {
	defer func(n uint64) { maxRuns = n }(maxRuns)
	maxRuns = 2
	x := New()
	ids := []blob.ID{{1}, {2}, {1, 1}, {0xFF, 0xFF}, {}}
	var f File
	// Decreasing offsets: every entry is a run of its own.
	for p := range 3 {
		rec := PackRecord{ID: blob.ID{0xAA, byte(p)}}
		for i := range 2 * len(ids) {
			rec.Entries = append(rec.Entries, pack.Entry{ID: ids[i%len(ids)], Offset: uint32(100 - i), Length: uint32(p)})
		}
		f.Packs = append(f.Packs, rec)
	}
	x.AddFile(blob.ID{1}, &f)
	if len(x.runs) > 2 {
		t.Fatalf("%d runs pending", len(x.runs))
	}
	x.AddFile(blob.ID{2}, &File{Packs: []PackRecord{{ID: blob.ID{0xBB}, Entries: []pack.Entry{{ID: blob.ID{3}}, {ID: ids[0]}}}}})
	for i, id := range ids {
		l, ok := x.Lookup(id)
		if !ok || l.Pack != (blob.ID{0xAA, 0}) || l.Entry.Offset != uint32(100-i) {
			t.Fatalf("blob %d: %+v %v", i, l, ok)
		}
	}
	if l, ok := x.Lookup(blob.ID{3}); !ok || l.Pack != (blob.ID{0xBB}) {
		t.Fatalf("last blob: %+v %v", l, ok)
	}
	if x.Len() != len(ids)+1 {
		t.Fatalf("Len = %d", x.Len())
	}
}
