package repo

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
)

// RepairIndexOptions configures RepairIndex.
type RepairIndexOptions struct {
	// Progress, if set, is called after each pack read with the count done and total.
	Progress func(done, total int)
}

// RepairIndexResult reports what RepairIndex did.
type RepairIndexResult struct {
	Packs          int      `json:"packs"`
	Blobs          int      `json:"blobs"`
	Index          string   `json:"index,omitempty"`
	RemovedIndex   []string `json:"removed_index_files"`
	UnreadablePack []string `json:"unreadable_packs,omitempty"`
}

// RepairIndex rebuilds the index from the packs: it reads every pack file's header
// (downloading and decrypting the pack), writes one index file listing all readable
// packs as live and superseding every existing index file, then deletes those files.
// Packs that cannot be read are left in place, named in the result, and not indexed.
// Obsolete marks are dropped (the packs become live again; the next prune marks them
// anew). It must run under an exclusive lock ("repair").
func (r *Repository) RepairIndex(ctx context.Context, opts RepairIndexOptions) (*RepairIndexResult, error) {
	if r.WriteOnly() {
		return nil, fmt.Errorf("repair index: %w", ErrWriteOnly)
	}
	pr := r.maintenanceClone()
	var oldIndex []ID
	if err := pr.be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		if id, err := blob.ParseID(fi.Name); err == nil {
			oldIndex = append(oldIndex, id)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list index: %w", err)
	}
	packs := map[ID]int64{}
	if err := pr.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if id, err := blob.ParseID(fi.Name); err == nil {
			packs[id] = fi.Size
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	ids := sortedKeys(packs)
	recs := make([]*index.PackRecord, len(ids))
	errs := make([]error, len(ids))
	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				rd, err := pr.ReadPack(ctx, ids[i])
				if err != nil {
					errs[i] = err
				} else {
					recs[i] = &index.PackRecord{ID: ids[i], Size: uint64(packs[ids[i]]), Entries: rd.Entries}
				}
				mu.Lock()
				done++
				if opts.Progress != nil {
					opts.Progress(done, len(ids))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range ids {
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &RepairIndexResult{RemovedIndex: []string{}}
	f := &index.File{Created: time.Now().UTC()}
	for i, rec := range recs {
		if rec == nil {
			res.UnreadablePack = append(res.UnreadablePack, fmt.Sprintf("%s: %v",
				backend.Handle{Type: backend.PackFile, Name: ids[i].String()}, unwrapCorrupt(errs[i])))
			continue
		}
		f.Packs = append(f.Packs, *rec)
		res.Packs++
		res.Blobs += len(rec.Entries)
	}
	if len(f.Packs) > 0 || len(oldIndex) > 0 {
		id, err := pr.replaceIndex(ctx, f, oldIndex)
		if err != nil {
			return res, fmt.Errorf("repair index: %w", err)
		}
		res.Index = id.String()
	}
	for _, id := range oldIndex {
		res.RemovedIndex = append(res.RemovedIndex, backend.Handle{Type: backend.IndexFile, Name: id.String()}.String())
	}
	sort.Strings(res.UnreadablePack)
	r.ResetIndex()
	return res, nil
}
