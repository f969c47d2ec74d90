package index

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"slices"
	"sort"
	"sync"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/pack"
)

// entry is one blob's location in full, 48 bytes with no pointers. It is the form of the
// blobs added in this session (Index.added) and of a blob looked up; the loaded table
// stores the same fields in 46 bytes as a record (docs/PERFORMANCE.md §Memory).
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

// The loaded table leaves out the first two bytes of every blob ID: the table is sorted
// by ID, and a bucket directory (Index.starts) gives for each 16-bit prefix the range
// of records that start with it. A record is the rest of the entry, 46 bytes with
// alignment 1, so a []record costs 46 bytes per blob plus the directory's fixed 512 KiB
// (ints rather than uint32s, so that the table has no 2^32-blob ceiling).
const (
	numBuckets = 1 << 16
	idRest     = len(blob.ID{}) - 2 // ID bytes kept in a record: 2..31
	recordSize = idRest + 16

	// Little-endian uint32 fields of a record, after the ID bytes.
	recPack   = idRest // in a pending record, the run number instead (see Index.runs)
	recOffset = idRest + 4
	recLength = idRest + 8
	recMeta   = idRest + 12
)

// record is one blob of the table: ID bytes 2..31, then pack, offset, length and meta.
type record [recordSize]byte

func (r *record) u32(off int) uint32      { return binary.LittleEndian.Uint32(r[off:]) }
func (r *record) put32(off int, v uint32) { binary.LittleEndian.PutUint32(r[off:], v) }

func (e *entry) record() record {
	var r record
	copy(r[:idRest], e.id[2:])
	r.put32(recPack, e.pack)
	r.put32(recOffset, e.offset)
	r.put32(recLength, e.length)
	r.put32(recMeta, e.meta)
	return r
}

// entry returns the record's entry; prefix is its bucket (the ID's first two bytes).
func (r *record) entry(prefix int) entry {
	e := entry{pack: r.u32(recPack), offset: r.u32(recOffset), length: r.u32(recLength), meta: r.u32(recMeta)}
	e.id[0], e.id[1] = byte(prefix>>8), byte(prefix)
	copy(e.id[2:], r[:idRest])
	return e
}

func idPrefix(id *blob.ID) int { return int(id[0])<<8 | int(id[1]) }

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
	// table holds the loaded blobs sorted by ID, without duplicates; the records of
	// the blobs whose ID starts with the 16-bit prefix b are table[starts[b]:starts[b+1]].
	// starts is nil while the table is empty.
	table  []record
	starts *[numBuckets + 1]int
	// pending holds the blobs of the index files added since the last Sort, in the
	// order added; pendingPrefix[i] is the ID prefix of pending[i]. The pack field of a
	// pending record holds its run: runs[run] is the pack number. A run is a stretch of
	// one pack record's entries with strictly increasing offsets, so (run, offset)
	// follows the order of addition, and sorting by (ID, run, offset) sorts by ID with
	// the first added location of a duplicate first (see addPending).
	pending       []record
	pendingPrefix []uint16
	runs          []uint32
	added         map[blob.ID]entry
	// obsolete holds packs marked for deletion by prune, keyed by pack ID.
	obsolete map[blob.ID]*PackRecord
	// files are the IDs of the index files merged in.
	files map[blob.ID]*FileSummary
	dirty bool
}

// maxRuns bounds len(Index.runs): a run number must fit a record's pack field. AddFile
// sorts the pending blobs in when it is reached (a variable for tests).
var maxRuns uint64 = 1 << 32

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

// Grow reserves room for n more blobs in the table, to avoid repeated reallocation
// while loading (callers estimate n from index file sizes).
func (x *Index) Grow(n int) {
	x.mu.Lock()
	x.pending = slices.Grow(x.pending, n)
	x.pendingPrefix = slices.Grow(x.pendingPrefix, n)
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
		x.addPending(x.packNumber(p.ID, p.Size), p.Entries)
	}
	x.files[fileID] = sum
	// Entries are appended unsorted; mark the table dirty.
	x.dirty = true
}

// addPending appends one pack record's entries to the pending blobs. A new run starts
// with the record and wherever an offset does not increase (packs list their blobs in
// offset order, so that is once per pack record).
func (x *Index) addPending(packNum uint32, entries []pack.Entry) {
	var last uint32
	for i := range entries {
		e := &entries[i]
		if i == 0 || e.Offset <= last {
			if uint64(len(x.runs)) >= maxRuns {
				x.dirty = true
				x.sortLocked()
			}
			x.runs = append(x.runs, packNum)
		}
		last = e.Offset
		ne := newEntry(*e, 0)
		r := ne.record()
		r.put32(recPack, uint32(len(x.runs)-1))
		x.pending = append(x.pending, r)
		x.pendingPrefix = append(x.pendingPrefix, uint16(idPrefix(&e.ID)))
	}
}

// Sort sorts the table and drops duplicate blobs (the first location wins). It must be
// called after loading before lookups are fast; Lookup sorts on demand.
func (x *Index) Sort() {
	x.mu.Lock()
	x.sortLocked()
	x.mu.Unlock()
}

// sortLocked sorts the pending blobs in place and merges them into the table. Besides
// the table and the pending blobs it needs 1 MiB, plus a new table if one merged into
// has no room.
func (x *Index) sortLocked() {
	if !x.dirty {
		return
	}
	x.dirty = false
	if len(x.pending) == 0 {
		x.pending, x.pendingPrefix, x.runs = nil, nil, nil
		return
	}
	// Bucket the pending blobs by ID prefix, then sort each bucket.
	bounds := new([numBuckets + 1]int)
	for _, p := range x.pendingPrefix {
		bounds[int(p)+1]++
	}
	for b := range numBuckets {
		bounds[b+1] += bounds[b]
	}
	distribute(x.pending, x.pendingPrefix, bounds)
	x.pendingPrefix = nil
	var srt pendingSorter
	for b := range numBuckets {
		if srt = pendingSorter(x.pending[bounds[b]:bounds[b+1]]); len(srt) > 1 {
			sort.Sort(&srt)
		}
	}
	// Keep the first of each ID unless the table has it, and turn runs into packs.
	w, r := 0, 0
	for b := range numBuckets {
		end, first := bounds[b+1], w
		bounds[b] = w
		for ; r < end; r++ {
			rec := &x.pending[r]
			if w > first && bytes.Equal(x.pending[w-1][:idRest], rec[:idRest]) {
				continue
			}
			if _, ok := x.searchBucket(b, rec[:idRest]); ok {
				continue
			}
			rec.put32(recPack, x.runs[rec.u32(recPack)])
			x.pending[w] = *rec
			w++
		}
	}
	bounds[numBuckets] = w
	add := x.pending[:w]
	x.pending, x.runs = nil, nil
	switch {
	case w == 0:
	case x.starts == nil:
		x.table, x.starts = add, bounds
	default:
		x.merge(add, bounds)
	}
}

// distribute sorts recs by prefix: bounds[b] is where bucket b starts once sorted.
// prefix is permuted along. It sorts by the first byte, then each first-byte range by
// the second, so that the 256 places written to at a time stay in the CPU caches.
func distribute(recs []record, prefix []uint16, bounds *[numBuckets + 1]int) {
	var starts [257]int
	for h := range starts {
		starts[h] = bounds[h<<8]
	}
	flagSort(recs, prefix, &starts, 8)
	for h := range 256 {
		copy(starts[:], bounds[h<<8:])
		flagSort(recs, prefix, &starts, 0)
	}
}

// flagSort sorts recs[starts[0]:starts[256]] by the byte prefix>>shift in place
// (American flag sort): starts[d] is where byte value d starts once sorted.
func flagSort(recs []record, prefix []uint16, starts *[257]int, shift uint) {
	var next [256]int
	copy(next[:], starts[:256])
	for d := range 256 {
		end := starts[d+1]
		for i := next[d]; i < end; i = next[d] {
			k := byte(prefix[i] >> shift)
			if int(k) == d {
				next[d]++
				continue
			}
			// Values before d are in place, so k > d and its range has a slot holding
			// a record of another value: swap recs[i] into it.
			j := next[k]
			for byte(prefix[j]>>shift) == k {
				j++
			}
			next[k] = j + 1
			recs[i], recs[j] = recs[j], recs[i]
			prefix[i], prefix[j] = prefix[j], prefix[i]
		}
	}
}

// pendingSorter orders pending records of one bucket by (ID, run, offset).
type pendingSorter []record

func (s *pendingSorter) Len() int      { return len(*s) }
func (s *pendingSorter) Swap(i, j int) { (*s)[i], (*s)[j] = (*s)[j], (*s)[i] }
func (s *pendingSorter) Less(i, j int) bool {
	a, b := &(*s)[i], &(*s)[j]
	if c := bytes.Compare(a[:idRest], b[:idRest]); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(a.u32(recPack), b.u32(recPack)); c != 0 {
		return c < 0
	}
	return a.u32(recOffset) < b.u32(recOffset)
}

// merge merges add, sorted and bucketed by bounds and holding no blob of the table,
// into the table. It works backwards, so the table is updated in place if it has room.
func (x *Index) merge(add []record, bounds *[numBuckets + 1]int) {
	na, nb := len(x.table), len(add)
	src, dst := x.table, x.table[:cap(x.table)]
	if len(dst) < na+nb {
		dst = make([]record, na+nb)
	}
	dst = dst[:na+nb]
	end := na // src[:end] is not moved yet
	for b := numBuckets - 1; b >= 0; b-- {
		for j := bounds[b+1] - 1; j >= bounds[b]; j-- {
			// add[j] goes after the p table records and j added records before it.
			// src[end:] may be overwritten already: search below it.
			p, _ := x.searchRange(x.starts[b], min(x.starts[b+1], end), add[j][:idRest])
			copy(dst[p+j+1:end+j+1], src[p:end])
			dst[p+j] = add[j]
			end = p
		}
	}
	if end > 0 && &dst[0] != &src[0] {
		copy(dst, src[:end])
	}
	for b := range x.starts {
		x.starts[b] += bounds[b]
	}
	x.table = dst
}

// searchBucket returns the position in the table of the first record of bucket b not
// below rest (ID bytes 2..31), and whether it is rest.
func (x *Index) searchBucket(b int, rest []byte) (int, bool) {
	if x.starts == nil {
		return 0, false
	}
	return x.searchRange(x.starts[b], x.starts[b+1], rest)
}

// searchRange is searchBucket within table[lo:hi].
func (x *Index) searchRange(lo, hi int, rest []byte) (int, bool) {
	end := hi
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(x.table[m][:idRest], rest) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < end && bytes.Equal(x.table[lo][:idRest], rest)
}

func (x *Index) find(id *blob.ID) (entry, bool) {
	if e, ok := x.added[*id]; ok {
		return e, true
	}
	b := idPrefix(id)
	i, ok := x.searchBucket(b, id[2:])
	if !ok {
		return entry{}, false
	}
	return x.table[i].entry(b), true
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
	e, ok := x.find(&id)
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
	_, ok := x.find(&id)
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
	return len(x.table) + len(x.added)
}

// Each calls fn for every live blob with its location, in no particular order. fn
// must not call back into the index.
func (x *Index) Each(fn func(Location)) {
	x.ensureSorted()
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.starts != nil {
		for b := range numBuckets {
			for i := x.starts[b]; i < x.starts[b+1]; i++ {
				fn(x.location(x.table[i].entry(b)))
			}
		}
	}
	for id, e := range x.added {
		if _, ok := x.searchBucket(idPrefix(&id), id[2:]); ok {
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
