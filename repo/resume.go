package repo

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
)

// AdoptResult says what AdoptUnindexedPacks did.
type AdoptResult struct {
	// Skipped is why nothing was adopted ("" when the packs were examined).
	Skipped string
	// Packs and Bytes count the packs now indexed.
	Packs int
	Bytes int64
	// Unreadable counts unindexed packs that could not be read (left alone: a later
	// prune marks them as orphans).
	Unreadable int
	// IndexFile is the index file written, if any.
	IndexFile ID
}

// AdoptUnindexedPacks indexes the packs of an interrupted write session that no index
// file names yet, so that the next backup reuses their blobs instead of uploading them
// again (docs/RELIABILITY.md §Resume). Writers index at least every 4 packs, so a
// killed backup leaves at most a few such packs.
//
// Safety: the packs are read whole with ReadPack (name, age authentication and header
// verified) and an index file listing them is written only after that. A pack is
// adopted only if no index file lists it, live or obsolete, so packs that prune has
// marked for deletion stay marked. Adoption happens only when every lock other than
// this process's own is stale: then no prune can be deleting packs whose marks this
// process might have missed, and no live backup is between uploading a pack and
// indexing it. A prune that starts later sees this process's lock and does not delete
// packs it marks until this process is gone, and the live record adoption writes wins
// over such a mark (docs/FORMAT.md §8).
//
// The index must be loaded. With a write-only key nothing is adopted (packs cannot be
// read).
func (r *Repository) AdoptUnindexedPacks(ctx context.Context) (AdoptResult, error) {
	var res AdoptResult
	if r.WriteOnly() {
		res.Skipped = "write-only key"
		return res, nil
	}
	locks, err := r.Locks(ctx)
	if err != nil {
		return res, fmt.Errorf("adopt unindexed packs: %w", err)
	}
	host, _ := os.Hostname()
	now := time.Now()
	for _, l := range locks {
		if l.Host == host && l.PID == os.Getpid() {
			continue
		}
		if l.Kind == "unreadable" || !l.Stale(now) {
			res.Skipped = "another process holds a lock"
			return res, nil
		}
	}
	idx := r.Index()
	obsolete := map[ID]bool{}
	for _, p := range idx.Obsolete() {
		obsolete[p.ID] = true
	}
	var candidates []backend.FileInfo
	err = r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		id, err := blob.ParseID(fi.Name)
		if err != nil || obsolete[id] {
			return nil
		}
		if _, live := idx.PackSize(id); live {
			return nil
		}
		candidates = append(candidates, fi)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("adopt unindexed packs: list packs: %w", err)
	}
	if len(candidates) == 0 {
		return res, nil
	}
	f := &index.File{Created: time.Now().UTC()}
	for _, fi := range candidates {
		id, _ := blob.ParseID(fi.Name)
		pr, err := r.ReadPack(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("adopt unindexed packs: %w", ctx.Err())
			}
			res.Unreadable++
			continue
		}
		f.Packs = append(f.Packs, index.PackRecord{ID: id, Size: uint64(fi.Size), Entries: pr.Entries})
		pr.Close()
		res.Bytes += fi.Size
	}
	if len(f.Packs) == 0 {
		return res, nil
	}
	fid, err := r.SaveIndexFile(ctx, f)
	if err != nil {
		return res, fmt.Errorf("adopt unindexed packs: %w", err)
	}
	idx.AddFile(fid, f)
	idx.Sort()
	res.Packs, res.IndexFile = len(f.Packs), fid
	return res, nil
}
