package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

// View is a read-only view of the repository for the dashboard and the metrics: the
// snapshot records, the repository's size, and verified blobs. The repository is
// opened once (the key derivation is slow on purpose) and re-read when its index or
// snapshot files change — after a job of this server, or of anyone else.
type View struct {
	open  func(ctx context.Context) (*repo.Repository, error)
	clock Clock
	log   *slog.Logger

	// blobMu is held shared while blobs are read and exclusively while the index is
	// reloaded.
	blobMu sync.RWMutex

	mu        sync.Mutex // serializes refreshes; guards the fields below
	r         *repo.Repository
	openErr   error
	openErrAt time.Time
	idxKey    string
	snaps     map[blob.ID]*snapshot.Snapshot
	info      *RepoInfo
	dirty     bool
}

// RepoInfo is what the view knows about the repository.
type RepoInfo struct {
	Location string
	// Snapshots of every app, oldest first.
	Snapshots []*snapshot.Snapshot
	// Size is the sum of the sizes of all repository files; Files their number.
	Size  uint64
	Files int
	// Refreshed is when the repository was last listed.
	Refreshed time.Time
	// Warning names snapshot records that could not be read.
	Warning string
}

// maxAge is how long a listing is reused before the repository is listed again.
const maxAge = 5 * time.Second

func newView(open func(context.Context) (*repo.Repository, error), clock Clock, log *slog.Logger) *View {
	return &View{open: open, clock: clock, log: log, snaps: map[blob.ID]*snapshot.Snapshot{}}
}

// Invalidate makes the next Info list the repository again.
func (v *View) Invalidate() {
	v.mu.Lock()
	v.dirty = true
	v.mu.Unlock()
}

// Close closes the repository.
func (v *View) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.r != nil {
		_ = v.r.Close()
		v.r = nil
	}
}

// repository opens the repository once; a failure is remembered for a few seconds.
func (v *View) repository(ctx context.Context) (*repo.Repository, error) {
	if v.r != nil {
		return v.r, nil
	}
	now := v.clock.Now()
	if v.openErr != nil && now.Sub(v.openErrAt) < 10*time.Second {
		return nil, v.openErr
	}
	r, err := v.open(ctx)
	if err != nil {
		v.openErr, v.openErrAt = err, now
		return nil, fmt.Errorf("open repository: %w", err)
	}
	v.r, v.openErr = r, nil
	return r, nil
}

// Info returns the repository's snapshots and size, listing it again when the last
// listing is older than a few seconds or a job changed it.
func (v *View) Info(ctx context.Context) (*RepoInfo, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.info != nil && !v.dirty && v.clock.Now().Sub(v.info.Refreshed) < maxAge {
		return v.info, nil
	}
	r, err := v.repository(ctx)
	if err != nil {
		return nil, err
	}
	be := r.Backend()
	info := &RepoInfo{Location: be.Location(), Refreshed: v.clock.Now()}
	var idxNames []string
	var snapIDs []blob.ID
	for _, t := range backend.AllTypes {
		err := be.List(ctx, t, func(fi backend.FileInfo) error {
			info.Size += uint64(fi.Size)
			info.Files++
			switch t {
			case backend.IndexFile:
				idxNames = append(idxNames, fi.Name)
			case backend.SnapshotFile:
				if id, err := blob.ParseID(fi.Name); err == nil {
					snapIDs = append(snapIDs, id)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list repository %s files: %w", t, err)
		}
	}
	sort.Strings(idxNames)
	if key := strings.Join(idxNames, ","); key != v.idxKey || v.idxKey == "" {
		v.blobMu.Lock()
		r.ResetIndex()
		err := r.LoadIndex(ctx)
		v.blobMu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("load repository index: %w", err)
		}
		v.idxKey = key
	}
	snaps := make(map[blob.ID]*snapshot.Snapshot, len(snapIDs))
	var bad []string
	for _, id := range snapIDs {
		if sn, ok := v.snaps[id]; ok {
			snaps[id] = sn
			continue
		}
		sn, err := snapshot.Load(ctx, r, id)
		if err != nil {
			if errors.Is(err, repo.ErrFileNotFound) {
				continue
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			bad = append(bad, id.Short()+": "+err.Error())
			continue
		}
		snaps[id] = sn
	}
	v.snaps = snaps
	for _, sn := range snaps {
		info.Snapshots = append(info.Snapshots, sn)
	}
	snapshot.SortByTime(info.Snapshots)
	if len(bad) > 0 {
		info.Warning = "unreadable snapshot records: " + strings.Join(bad, "; ")
		v.log.Warn("unreadable snapshot records", "snapshots", strings.Join(bad, "; "))
	}
	v.info, v.dirty = info, false
	return info, nil
}

// Snapshot finds a snapshot by its full ID or a unique prefix of at least 8 digits.
func (v *View) Snapshot(ctx context.Context, ref string) (*snapshot.Snapshot, error) {
	info, err := v.Info(ctx)
	if err != nil {
		return nil, err
	}
	ref = strings.ToLower(ref)
	if len(ref) < 8 || strings.Trim(ref, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("%w: invalid id %q", snapshot.ErrNotFound, ref)
	}
	var found *snapshot.Snapshot
	for _, sn := range info.Snapshots {
		if strings.HasPrefix(sn.ID.String(), ref) {
			if found != nil {
				return nil, fmt.Errorf("%w: id %q is ambiguous", snapshot.ErrNotFound, ref)
			}
			found = sn
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no snapshot %q", snapshot.ErrNotFound, ref)
	}
	return found, nil
}

// LoadBlob reads and verifies a blob (snapshot.BlobLoader).
func (v *View) LoadBlob(ctx context.Context, id blob.ID, dst []byte) ([]byte, error) {
	v.mu.Lock()
	r := v.r
	v.mu.Unlock()
	if r == nil {
		return nil, errors.New("repository not open")
	}
	v.blobMu.RLock()
	defer v.blobMu.RUnlock()
	return r.LoadBlob(ctx, id, dst)
}
