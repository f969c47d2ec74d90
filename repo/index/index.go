package index

import (
	"slices"
	"sync"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/pack"
)

// entry is one blob's location, 48 bytes with no pointers, so that a sorted slice of
// them is the whole resident index (docs/PERFORMANCE.md §Index memory).
type entry struct {
	id     blob.ID
	pack   uint32 // position in Index.packs
	offset uint32
	length uint32
	meta   uint32 // bits 0..28 raw length, bit 30 zstd, bit 31 tree
}

const (
	metaTree    = 1 << 31
	metaZstd    = 1 << 30
	metaRawMask = 1<<29 - 1
)

func newEntry(e pack.Entry, packNum uint32) entry {
	m := e.RawLength & metaRawMask
	if e.Type == blob.Tree {
		m |= metaTree
	}
	if e.Compression == pack.CompressionZstd {
		m |= metaZstd
	}
	return entry{id: e.ID, pack: packNum, offset: e.Offset, length: e.Length, meta: m}
}

// Location says where a blob is stored.
type Location struct {
	Pack  blob.ID
	Entry pack.Entry
}

// Index is the in-memory index: a sorted table of every live blob plus the blobs added
// since it was last sorted. Safe for concurrent use.
type Index struct {
	mu      sync.RWMutex
	packs   []blob.ID
	sizes   []uint64
	packNum map[blob.ID]uint32
	sorted  []entry
	added   map[blob.ID]entry
	// obsolete holds packs marked for deletion by prune, keyed by pack ID.
	obsolete map[blob.ID]*PackRecord
	// files are the IDs of the index files merged in.
	files map[blob.ID]*FileSummary
	dirty bool
}

// FileSummary records what one loaded index file held.
type FileSummary struct {
	Supersedes []blob.ID
	Packs      []blob.ID
}

// New returns an empty index.
func New() *Index {
	return &Index{packNum: map[blob.ID]uint32{}, added: map[blob.ID]entry{},
		obsolete: map[blob.ID]*PackRecord{}, files: map[blob.ID]*FileSummary{}}
}

// Grow reserves room for n more blobs in the sorted table, to avoid repeated
// reallocation while loading (callers estimate n from index file sizes).
func (x *Index) Grow(n int) {
	x.mu.Lock()
	x.sorted = slices.Grow(x.sorted, n)
	x.mu.Unlock()
}

func (x *Index) packNumber(id blob.ID, size uint64) uint32 {
	n, ok := x.packNum[id]
	if !ok {
		n = uint32(len(x.packs))
		x.packs = append(x.packs, id)
		x.sizes = append(x.sizes, size)
		x.packNum[id] = n
	}
	return n
}

// PackSize returns the stored size of a live pack as recorded in the index.
func (x *Index) PackSize(id blob.ID) (uint64, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n, ok := x.packNum[id]
	if !ok {
		return 0, false
	}
	return x.sizes[n], true
}

// AddFile merges an index file. Its live packs' blobs become visible after the next
// Sort (or at once through Lookup's slow path if Sort is not called). A pack listed as
// live in any file is live, even if another file marks it obsolete.
func (x *Index) AddFile(fileID blob.ID, f *File) {
	x.mu.Lock()
	defer x.mu.Unlock()
	sum := &FileSummary{Supersedes: f.Supersedes}
	for i := range f.Packs {
		p := &f.Packs[i]
		sum.Packs = append(sum.Packs, p.ID)
		if p.Obsolete() {
			if _, live := x.packNum[p.ID]; !live {
				x.obsolete[p.ID] = p
			}
			continue
		}
		delete(x.obsolete, p.ID)
		n := x.packNumber(p.ID, p.Size)
		for _, e := range p.Entries {
			x.sorted = append(x.sorted, newEntry(e, n))
		}
	}
	x.files[fileID] = sum
	// Entries are appended unsorted; mark the table dirty.
	x.dirty = true
}

// Sort sorts the table and drops duplicate blobs (the first location wins). It must be
// called after loading before lookups are fast; Lookup sorts on demand.
func (x *Index) Sort() {
	x.mu.Lock()
	x.sortLocked()
	x.mu.Unlock()
}

func (x *Index) sortLocked() {
	if !x.dirty {
		return
	}
	slices.SortStableFunc(x.sorted, func(a, b entry) int { return compareID(&a.id, &b.id) })
	x.sorted = slices.CompactFunc(x.sorted, func(a, b entry) bool { return a.id == b.id })
	x.sorted = slices.Clip(x.sorted)
	x.dirty = false
}

func compareID(a, b *blob.ID) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func (x *Index) find(id blob.ID) (entry, bool) {
	if e, ok := x.added[id]; ok {
		return e, true
	}
	i, ok := slices.BinarySearchFunc(x.sorted, id, func(e entry, t blob.ID) int { return compareID(&e.id, &t) })
	if !ok {
		return entry{}, false
	}
	return x.sorted[i], true
}

func (x *Index) location(e entry) Location {
	l := Location{Pack: x.packs[e.pack], Entry: pack.Entry{ID: e.id, Offset: e.offset, Length: e.length,
		RawLength: e.meta & metaRawMask}}
	if e.meta&metaTree != 0 {
		l.Entry.Type = blob.Tree
	}
	if e.meta&metaZstd != 0 {
		l.Entry.Compression = pack.CompressionZstd
	}
	return l
}

func (x *Index) ensureSorted() {
	x.mu.RLock()
	dirty := x.dirty
	x.mu.RUnlock()
	if dirty {
		x.Sort()
	}
}

// Lookup returns where the blob is stored.
func (x *Index) Lookup(id blob.ID) (Location, bool) {
	x.ensureSorted()
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.find(id)
	if !ok {
		return Location{}, false
	}
	return x.location(e), true
}

// Has reports whether the blob is in the index.
func (x *Index) Has(id blob.ID) bool {
	x.ensureSorted()
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.find(id)
	return ok
}

// AddPack records a pack written in this session; its blobs are visible at once.
func (x *Index) AddPack(id blob.ID, size uint64, entries []pack.Entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.packNumber(id, size)
	for _, e := range entries {
		if _, ok := x.added[e.ID]; ok {
			continue
		}
		x.added[e.ID] = newEntry(e, n)
	}
	delete(x.obsolete, id)
}

// Len returns the number of blobs indexed (duplicates in unsorted additions included).
func (x *Index) Len() int {
	x.ensureSorted()
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.sorted) + len(x.added)
}

// Each calls fn for every live blob with its location, in no particular order. fn
// must not call back into the index.
func (x *Index) Each(fn func(Location)) {
	x.ensureSorted()
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, e := range x.sorted {
		fn(x.location(e))
	}
	for id, e := range x.added {
		if _, ok := slices.BinarySearchFunc(x.sorted, id, func(e entry, t blob.ID) int { return compareID(&e.id, &t) }); ok {
			continue
		}
		fn(x.location(e))
	}
}

// Packs returns the IDs of all live packs.
func (x *Index) Packs() []blob.ID {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Clone(x.packs)
}

// Obsolete returns the packs marked for deletion and not live in any file.
func (x *Index) Obsolete() []*PackRecord {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []*PackRecord
	for _, p := range x.obsolete {
		out = append(out, p)
	}
	return out
}

// Files returns the IDs and summaries of the index files merged in.
func (x *Index) Files() map[blob.ID]*FileSummary {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[blob.ID]*FileSummary, len(x.files))
	for k, v := range x.files {
		out[k] = v
	}
	return out
}

// HasFile reports whether the index file was merged.
func (x *Index) HasFile(id blob.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.files[id]
	return ok
}
