// Package copy owns copying snapshots from one repository to another ("offsite
// copies"). It lives under snapshot/, not in repo/, because a copy rewrites trees and
// snapshot records, which repo knows nothing of.
//
// Blob IDs are keyed per repository (docs/FORMAT.md §Blob IDs), so the same content
// has different IDs in the source and the destination, and a tree that names its
// subtrees and file contents by ID must be rewritten. A copy therefore loads every
// blob it needs from the source, computes its ID with the destination's ID key,
// stores it in the destination unless it is already there (encrypting it to the
// destination's keys in the destination's write session), and writes the trees bottom
// up with the translated IDs, then the snapshot record pointing at the new root tree
// and database dump tree. Packs are read whole when most of their bytes are needed and
// blob by blob otherwise.
//
// A source→destination ID map is kept for the run. It is seeded from snapshots both
// repositories already hold: their trees are walked side by side (node names, types,
// sizes, times and the lengths of every content blob must agree), so that copying a
// new snapshot re-reads only what changed since the last copied one.
package copy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/cairn-backup/cairn/snapshot"
)

// Options configures a copy.
type Options struct {
	// Snapshots are the source snapshots to copy; those the destination already
	// has are skipped. Nil means every source snapshot.
	Snapshots []*snapshot.Snapshot
	// Workers is the number of source packs read at once (0: GOMAXPROCS).
	Workers int
	// Writer tunes the destination's write sessions.
	Writer repo.WriterOptions
	// Copied, if set, is called after each snapshot is saved in the destination.
	Copied func(Pair, repo.WriterStats)
}

// Pair is a source snapshot and its counterpart in the destination.
type Pair struct {
	Source, Dest *snapshot.Snapshot
}

// Result says what a copy did.
type Result struct {
	Copied  []Pair // saved in the destination by this run, oldest first
	Present []Pair // already in the destination
	Stats   repo.WriterStats
	// BlobsRead counts the blobs loaded from the source.
	BlobsRead int64
}

// Same reports whether two snapshot records describe the same snapshot: equal in
// every field except the IDs, which differ between repositories (tree, parent,
// original, database dump). Copy also checks that their trees agree.
func Same(a, b *snapshot.Snapshot) bool {
	ka, erra := key(a)
	kb, errb := key(b)
	return erra == nil && errb == nil && ka == kb
}

// key is the JSON of the record without IDs.
func key(sn *snapshot.Snapshot) (string, error) {
	b, err := json.Marshal(normalize(sn))
	if err != nil {
		return "", fmt.Errorf("encode snapshot %s: %w", sn.ID.Short(), err)
	}
	return string(b), nil
}

func normalize(sn *snapshot.Snapshot) snapshot.Snapshot {
	n := *sn
	n.Tree, n.Parent, n.Original, n.ID = blob.ID{}, nil, nil, blob.ID{}
	if sn.Database != nil {
		db := *sn.Database
		db.Dump = blob.ID{}
		n.Database = &db
	}
	return n
}

// copier is the state of one Run.
type copier struct {
	src, dst *repo.Repository
	opts     Options

	mu   sync.Mutex
	ids  map[blob.ID]blob.ID // source blob → destination blob, both types
	read int64
}

// Run copies snapshots from src to dst. Both need full keys and loaded or loadable
// indexes. The caller holds a lock on dst (a shared "backup" lock suffices: a copy
// only adds). Snapshots are copied oldest first; a parent copied earlier (or already
// present) becomes the copy's parent.
func Run(ctx context.Context, src, dst *repo.Repository, opts Options) (*Result, error) {
	if src.Config().ID == dst.Config().ID {
		return nil, errors.New("copy: source and destination are the same repository")
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	for _, r := range []*repo.Repository{src, dst} {
		if err := r.LoadIndex(ctx); err != nil {
			return nil, err
		}
	}
	cands := opts.Snapshots
	if cands == nil {
		var err error
		if cands, err = snapshot.List(ctx, src); err != nil {
			return nil, fmt.Errorf("list source snapshots: %w", err)
		}
	}
	cands = append([]*snapshot.Snapshot(nil), cands...)
	snapshot.SortByTime(cands)
	dstSnaps, err := snapshot.List(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("list destination snapshots: %w", err)
	}
	byKey := map[string][]*snapshot.Snapshot{}
	for _, d := range dstSnaps {
		k, err := key(d)
		if err != nil {
			return nil, err
		}
		byKey[k] = append(byKey[k], d)
	}
	c := &copier{src: src, dst: dst, opts: opts, ids: map[blob.ID]blob.ID{}}
	res := &Result{}
	// dstOf maps source snapshot IDs to their destination counterparts.
	dstOf := map[blob.ID]*snapshot.Snapshot{}
	var pairs []Pair
	for _, sn := range cands {
		if _, done := dstOf[sn.ID]; done {
			continue
		}
		k, err := key(sn)
		if err != nil {
			return nil, err
		}
		for _, d := range byKey[k] {
			ok, err := c.seed(ctx, sn, d)
			if err != nil {
				return res, err
			}
			if ok {
				dstOf[sn.ID] = d
				p := Pair{Source: sn, Dest: d}
				res.Present = append(res.Present, p)
				pairs = append(pairs, p)
				break
			}
		}
	}
	for _, sn := range cands {
		if _, done := dstOf[sn.ID]; done {
			continue
		}
		if base := basePair(pairs, sn); base != nil {
			if _, err := c.seed(ctx, base.Source, base.Dest); err != nil {
				return res, err
			}
		}
		nsn, stats, err := c.copySnapshot(ctx, sn, dstOf)
		if err != nil {
			return res, fmt.Errorf("copy snapshot %s: %w", sn.ID.Short(), err)
		}
		p := Pair{Source: sn, Dest: nsn}
		dstOf[sn.ID] = nsn
		pairs = append(pairs, p)
		res.Copied = append(res.Copied, p)
		addStats(&res.Stats, stats)
		if opts.Copied != nil {
			opts.Copied(p, stats)
		}
	}
	res.BlobsRead = c.read
	return res, nil
}

func addStats(a *repo.WriterStats, b repo.WriterStats) {
	a.BlobsAdded += b.BlobsAdded
	a.BytesRaw += b.BytesRaw
	a.BytesStored += b.BytesStored
	a.Packs += b.Packs
	a.PackBytes += b.PackBytes
	a.IndexFiles += b.IndexFiles
}

// basePair picks the pair whose trees most likely share content with sn: the newest
// with the same host and paths, else the newest of all.
func basePair(pairs []Pair, sn *snapshot.Snapshot) *Pair {
	var best *Pair
	for i := range pairs {
		p := &pairs[i]
		same := p.Source.Host == sn.Host && equalStrings(p.Source.Paths, sn.Paths)
		bestSame := best != nil && best.Source.Host == sn.Host && equalStrings(best.Source.Paths, sn.Paths)
		switch {
		case best == nil, same && !bestSame, same == bestSame && p.Source.Time.After(best.Source.Time):
			best = p
		}
	}
	return best
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (c *copier) lookup(id blob.ID) (blob.ID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.ids[id]
	return d, ok
}

func (c *copier) record(s, d blob.ID) {
	c.mu.Lock()
	c.ids[s] = d
	c.mu.Unlock()
}

// seed walks the trees of a source snapshot and its destination counterpart side
// by side and, if they agree everywhere, adds their blob correspondences to the ID
// map. It reports whether they agreed.
func (c *copier) seed(ctx context.Context, s, d *snapshot.Snapshot) (bool, error) {
	pending := map[blob.ID]blob.ID{}
	ok, err := c.pairTrees(ctx, s.Tree, d.Tree, pending)
	if err != nil || !ok {
		return false, err
	}
	if (s.Database == nil) != (d.Database == nil) {
		return false, nil
	}
	if s.Database != nil {
		if ok, err := c.pairTrees(ctx, s.Database.Dump, d.Database.Dump, pending); err != nil || !ok {
			return false, err
		}
	}
	c.mu.Lock()
	for k, v := range pending {
		c.ids[k] = v
	}
	c.mu.Unlock()
	return true, nil
}

// pairTrees compares source tree s with destination tree d, recording matching
// blobs in pending.
func (c *copier) pairTrees(ctx context.Context, s, d blob.ID, pending map[blob.ID]blob.ID) (bool, error) {
	if known, ok := c.lookup(s); ok {
		return known == d, nil
	}
	if known, ok := pending[s]; ok {
		return known == d, nil
	}
	st, err := snapshot.LoadTree(ctx, c.src, s)
	if err != nil {
		return false, fmt.Errorf("source: %w", err)
	}
	dt, err := snapshot.LoadTree(ctx, c.dst, d)
	if err != nil {
		return false, fmt.Errorf("destination: %w", err)
	}
	if len(st.Nodes) != len(dt.Nodes) {
		return false, nil
	}
	for i := range st.Nodes {
		sn, dn := &st.Nodes[i], &dt.Nodes[i]
		if sn.RawName() != dn.RawName() || sn.Type != dn.Type || sn.Size != dn.Size || sn.Mode != dn.Mode ||
			!sn.ModTime.Equal(dn.ModTime) || len(sn.Content) != len(dn.Content) || sn.Target() != dn.Target() {
			return false, nil
		}
		for j := range sn.Content {
			sl, ok1 := c.src.LookupBlob(sn.Content[j])
			dl, ok2 := c.dst.LookupBlob(dn.Content[j])
			if !ok1 || !ok2 || sl.Entry.RawLength != dl.Entry.RawLength {
				return false, nil
			}
			if prev, ok := pending[sn.Content[j]]; ok && prev != dn.Content[j] {
				return false, nil
			}
			pending[sn.Content[j]] = dn.Content[j]
		}
		if sn.Type == snapshot.TypeDir {
			ok, err := c.pairTrees(ctx, *sn.Subtree, *dn.Subtree, pending)
			if err != nil || !ok {
				return false, err
			}
		}
	}
	pending[s] = d
	return true, nil
}

// copySnapshot copies one snapshot's data, trees and record.
func (c *copier) copySnapshot(ctx context.Context, sn *snapshot.Snapshot, dstOf map[blob.ID]*snapshot.Snapshot) (*snapshot.Snapshot, repo.WriterStats, error) {
	roots := []blob.ID{sn.Tree}
	if sn.Database != nil {
		roots = append(roots, sn.Database.Dump)
	}
	// 1. Which data blobs are not mapped yet, grouped by source pack.
	need := map[blob.ID]bool{}
	seen := map[blob.ID]bool{}
	for _, root := range roots {
		if err := c.collect(ctx, root, need, seen); err != nil {
			return nil, repo.WriterStats{}, err
		}
	}
	w := c.dst.NewWriter(ctx, c.opts.Writer)
	fail := func(err error) (*snapshot.Snapshot, repo.WriterStats, error) {
		w.Abort()
		return nil, w.Stats(), err
	}
	// 2. The data blobs, pack by pack.
	if err := c.copyData(ctx, w, need); err != nil {
		return fail(err)
	}
	// 3. The trees, bottom up.
	newRoots := make([]blob.ID, len(roots))
	mac := c.dst.NewBlobMAC()
	for i, root := range roots {
		id, err := c.copyTree(ctx, w, mac, root)
		if err != nil {
			return fail(err)
		}
		newRoots[i] = id
	}
	// 4. The record, after everything it names is durable.
	if err := w.Flush(); err != nil {
		return nil, w.Stats(), fmt.Errorf("write to destination: %w", err)
	}
	nsn := *sn
	nsn.ID, nsn.Original, nsn.Parent = blob.ID{}, nil, nil
	nsn.Tree = newRoots[0]
	if sn.Database != nil {
		db := *sn.Database
		db.Dump = newRoots[1]
		nsn.Database = &db
	}
	if sn.Parent != nil {
		if p, ok := dstOf[*sn.Parent]; ok {
			id := p.ID
			nsn.Parent = &id
		}
	}
	if _, err := snapshot.Save(ctx, c.dst, &nsn); err != nil {
		return nil, w.Stats(), fmt.Errorf("save snapshot: %w", err)
	}
	return &nsn, w.Stats(), nil
}

// collect adds the unmapped data blobs under tree id to need.
func (c *copier) collect(ctx context.Context, id blob.ID, need, seen map[blob.ID]bool) error {
	if _, ok := c.lookup(id); ok || seen[id] {
		return nil
	}
	seen[id] = true
	t, err := snapshot.LoadTree(ctx, c.src, id)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		for _, b := range n.Content {
			if _, ok := c.lookup(b); !ok {
				need[b] = true
			}
		}
		if n.Type == snapshot.TypeDir {
			if err := c.collect(ctx, *n.Subtree, need, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

type packWork struct {
	pack  blob.ID
	blobs []index.Location
	bytes uint64
}

// copyData loads the needed data blobs from the source, pack by pack, and saves them
// to the destination under their destination IDs.
func (c *copier) copyData(ctx context.Context, w *repo.Writer, need map[blob.ID]bool) error {
	byPack := map[blob.ID]*packWork{}
	var order []*packWork
	for id := range need {
		loc, ok := c.src.LookupBlob(id)
		if !ok {
			return fmt.Errorf("source: blob %s: %w", id.Short(), repo.ErrBlobNotFound)
		}
		pw := byPack[loc.Pack]
		if pw == nil {
			pw = &packWork{pack: loc.Pack}
			byPack[loc.Pack] = pw
			order = append(order, pw)
		}
		pw.blobs = append(pw.blobs, loc)
		pw.bytes += uint64(loc.Entry.Length)
	}
	sort.Slice(order, func(i, j int) bool { return order[i].pack.String() < order[j].pack.String() })
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *packWork)
	errc := make(chan error, c.opts.Workers)
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := c.dst.NewBlobMAC()
			var buf []byte
			for pw := range jobs {
				var err error
				if buf, err = c.copyPack(ctx, w, mac, pw, buf); err != nil {
					errc <- err
					cancel()
					return
				}
			}
		}()
	}
feed:
	for _, pw := range order {
		select {
		case jobs <- pw:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	return ctx.Err()
}

// copyPack copies the needed blobs of one source pack: from the whole pack when at
// least a quarter of it is needed, else blob by blob with ranged reads.
func (c *copier) copyPack(ctx context.Context, w *repo.Writer, mac *crypto.BlobMAC, pw *packWork, buf []byte) ([]byte, error) {
	sort.Slice(pw.blobs, func(i, j int) bool { return pw.blobs[i].Entry.Offset < pw.blobs[j].Entry.Offset })
	save := func(loc index.Location, data []byte) error {
		did := blob.ID(mac.Sum(data))
		if _, err := w.SaveBlob(blob.Data, did, data); err != nil {
			return fmt.Errorf("save blob to destination: %w", err)
		}
		c.mu.Lock()
		c.ids[loc.Entry.ID] = did
		c.read++
		c.mu.Unlock()
		return nil
	}
	size, _ := c.src.Index().PackSize(pw.pack)
	if size > 0 && pw.bytes*4 < size {
		for _, loc := range pw.blobs {
			data, err := c.src.LoadBlob(ctx, loc.Entry.ID, buf)
			if err != nil {
				return buf, fmt.Errorf("source: %w", err)
			}
			buf = data
			if err := save(loc, data); err != nil {
				return buf, err
			}
		}
		return buf, nil
	}
	pr, err := c.src.ReadPack(ctx, pw.pack)
	if err != nil {
		return buf, fmt.Errorf("source: %w", err)
	}
	defer pr.Close()
	for _, loc := range pw.blobs {
		data, err := pr.Blob(loc.Entry, buf)
		if err != nil {
			return buf, fmt.Errorf("source: %w", err)
		}
		buf = data
		if err := save(loc, data); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// copyTree rewrites source tree id with destination IDs (its data blobs are mapped
// already), saves it and its subtrees, and returns its destination ID.
func (c *copier) copyTree(ctx context.Context, w *repo.Writer, mac *crypto.BlobMAC, id blob.ID) (blob.ID, error) {
	if d, ok := c.lookup(id); ok {
		return d, nil
	}
	t, err := snapshot.LoadTree(ctx, c.src, id)
	if err != nil {
		return blob.ID{}, fmt.Errorf("source: %w", err)
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if len(n.Content) > 0 {
			content := make([]blob.ID, len(n.Content))
			for j, b := range n.Content {
				d, ok := c.lookup(b)
				if !ok {
					return blob.ID{}, fmt.Errorf("internal error: data blob %s was not copied", b.Short())
				}
				content[j] = d
			}
			n.Content = content
		}
		if n.Type == snapshot.TypeDir {
			sub, err := c.copyTree(ctx, w, mac, *n.Subtree)
			if err != nil {
				return blob.ID{}, err
			}
			n.Subtree = &sub
		}
	}
	data, err := t.Encode()
	if err != nil {
		return blob.ID{}, fmt.Errorf("encode tree: %w", err)
	}
	did := blob.ID(mac.Sum(data))
	if _, err := w.SaveBlob(blob.Tree, did, data); err != nil {
		return blob.ID{}, fmt.Errorf("save tree to destination: %w", err)
	}
	c.record(id, did)
	return did, nil
}
