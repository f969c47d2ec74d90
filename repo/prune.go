package repo

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/cairn-backup/cairn/repo/pack"
)

// This file implements the two-phase prune of docs/FORMAT.md §14: prune marks packs
// obsolete in a new index file (phase 1) and deletes them only once every lock that
// was live when the mark became visible is gone and a fresh look at the snapshots
// shows nothing needs them (phase 2). Backups are never blocked. It also holds the
// lock-kind table that lets a prune lock coexist with backup locks.

// ---- Locks -----------------------------------------------------------------------

// lockRule says how a lock kind taken with LockKind behaves.
type lockRule struct {
	exclusive bool     // conflicts with every other lock
	conflicts []string // shared, but conflicts with these kinds
}

// lockRules is the lock-kind table (docs/FORMAT.md §11, §14). Kinds not listed are
// shared and conflict only with exclusive locks, as with Lock(ctx, kind, false).
var lockRules = map[string]lockRule{
	// prune coexists with backups (they are protected by the blockers of §14) but
	// not with another prune, a repair, a key change or a check (which would report
	// packs vanishing under it).
	"prune":  {conflicts: []string{"prune", "repair", "key", "check"}},
	"check":  {conflicts: []string{"prune"}},
	"repair": {exclusive: true},
	"key":    {exclusive: true},
}

// nonBlockingLockKinds never hold references to pack data, so a prune does not wait for
// them before deleting packs. Every other live lock does block deletion.
var nonBlockingLockKinds = map[string]bool{"forget": true, "prune": true}

func kindConflicts(a, b string) bool {
	return slices.Contains(lockRules[a].conflicts, b)
}

// Conflicts reports whether the two locks cannot be held at once: an exclusive lock
// conflicts with every other lock; shared locks conflict when the kind table says so
// (prune with prune, repair, key and check). A backup lock never conflicts with a
// prune lock.
func (l LockInfo) Conflicts(other LockInfo) bool {
	if l.Exclusive || other.Exclusive {
		return true
	}
	return kindConflicts(l.Kind, other.Kind) || kindConflicts(other.Kind, l.Kind)
}

// LockKind takes a lock whose mode comes from the lock-kind table: "prune" and "check"
// are shared locks that conflict with each other (and prune with prune), "repair" and
// "key" are exclusive, other kinds are plain shared locks.
func (r *Repository) LockKind(ctx context.Context, kind string) (*Lock, error) {
	return r.Lock(ctx, kind, false)
}

// ---- Test hook -------------------------------------------------------------------

// KillAfterOpsEnv names the crash-test hook: when the variable holds N > 0, Prune and
// RepairIndex kill their own process with SIGKILL right before their (N+1)-th backend
// mutation (Save or Remove). Tests use it to stop prune
// at every point and check the repository afterwards. It is off unless set.
const KillAfterOpsEnv = "CAIRN_TEST_KILL_AFTER_OPS"

type killBackend struct {
	backend.Backend
	left atomic.Int64
}

func (k *killBackend) tick() {
	if k.left.Add(-1) < 0 {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; wait for it
	}
}

func (k *killBackend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	k.tick()
	return k.Backend.Save(ctx, h, rd)
}

func (k *killBackend) Remove(ctx context.Context, h backend.Handle) error {
	k.tick()
	return k.Backend.Remove(ctx, h)
}

// maintenanceClone returns a Repository sharing r's backend and secrets but with its
// own empty in-memory index (so a Writer on it does not deduplicate against packs being
// pruned), and with the crash-test hook applied when KillAfterOpsEnv is set.
func (r *Repository) maintenanceClone() *Repository {
	be := r.be
	if v := os.Getenv(KillAfterOpsEnv); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			kb := &killBackend{Backend: be}
			kb.left.Store(int64(n))
			be = kb
		}
	}
	return &Repository{be: be, secrets: r.secrets, cfg: r.cfg, pol: r.pol, keyID: r.keyID,
		idx: index.New(), idxLoaded: true, keyCache: r.keyCache}
}

// ---- Index state -----------------------------------------------------------------

// unconfirmedBlocker is the BlockerSession of an obsolete record whose blockers were
// not yet listed after the mark became visible (docs/FORMAT.md §14): the next prune
// lists the live locks and replaces it with their sessions.
var unconfirmedBlocker = index.BlockerID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// BlobSet is a set of blob IDs.
type BlobSet map[ID]struct{}

// Has reports whether the set contains id.
func (s BlobSet) Has(id ID) bool { _, ok := s[id]; return ok }

// BlobLoader reads verified blobs.
type BlobLoader interface {
	LoadBlob(ctx context.Context, id ID, dst []byte) ([]byte, error)
}

// blobLoc is one stored copy of a blob.
type blobLoc struct {
	pack ID
	size uint64 // the pack's stored size
	e    pack.Entry
}

// indexState is the union of all index files, with whole pack records (the in-memory
// Index keeps only one location per blob).
type indexState struct {
	files    []ID
	live     map[ID]*index.PackRecord
	obsolete map[ID]*index.PackRecord
	packs    map[ID]int64 // pack files present, with their sizes (listed before the index)
	locs     map[ID][]blobLoc
}

// loadIndexState lists the pack files, then reads every index file. A damaged index
// file is an error: maintenance must not act on a partial view.
func (r *Repository) loadIndexState(ctx context.Context) (*indexState, error) {
	st := &indexState{live: map[ID]*index.PackRecord{}, obsolete: map[ID]*index.PackRecord{}, packs: map[ID]int64{}}
	if err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if id, err := blob.ParseID(fi.Name); err == nil {
			st.packs[id] = fi.Size
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	ids, err := r.List(ctx, backend.IndexFile)
	if err != nil {
		return nil, err
	}
	var obs []*index.PackRecord
	for _, id := range ids {
		f, err := r.loadIndexFile(ctx, id)
		if err != nil {
			if errors.Is(err, ErrFileNotFound) {
				continue
			}
			return nil, fmt.Errorf("%w (run `cairn repair index`)", err)
		}
		st.files = append(st.files, id)
		for i := range f.Packs {
			p := &f.Packs[i]
			if p.Obsolete() {
				obs = append(obs, p)
			} else if st.live[p.ID] == nil {
				st.live[p.ID] = p
			}
		}
	}
	for _, p := range obs {
		if st.live[p.ID] != nil {
			continue // live in some file: live wins
		}
		if q := st.obsolete[p.ID]; q != nil {
			// Marked in two files (a prune was interrupted between writes): keep the
			// union of the blockers, which is the safe choice.
			m := *q
			m.Blockers = unionBlockers(q.Blockers, p.Blockers)
			if p.MarkedAt.Before(m.MarkedAt) {
				m.MarkedAt = p.MarkedAt
			}
			st.obsolete[p.ID] = &m
			continue
		}
		st.obsolete[p.ID] = p
	}
	st.locs = map[ID][]blobLoc{}
	for _, id := range sortedKeys(st.live) {
		p := st.live[id]
		for _, e := range p.Entries {
			st.locs[e.ID] = append(st.locs[e.ID], blobLoc{pack: p.ID, size: p.Size, e: e})
		}
	}
	for _, id := range sortedKeys(st.obsolete) {
		p := st.obsolete[id]
		for _, e := range p.Entries {
			st.locs[e.ID] = append(st.locs[e.ID], blobLoc{pack: p.ID, size: p.Size, e: e})
		}
	}
	return st, nil
}

func unionBlockers(a, b []index.BlockerID) []index.BlockerID {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func sortedKeys[V any](m map[ID]V) []ID {
	out := make([]ID, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

// liveCopy reports whether the blob is in a live pack whose file exists.
func (st *indexState) liveCopy(id ID) bool {
	for _, l := range st.locs[id] {
		if st.live[l.pack] != nil && st.exists(l.pack) {
			return true
		}
	}
	return false
}

func (st *indexState) exists(p ID) bool { _, ok := st.packs[p]; return ok }

// record composes an index file of the state: live packs (minus drop), obsolete
// records, with marks overriding.
func (st *indexState) file(marks map[ID]*index.PackRecord, drop map[ID]bool) *index.File {
	f := &index.File{Created: time.Now().UTC()}
	for _, id := range sortedKeys(st.live) {
		if drop[id] || marks[id] != nil {
			continue
		}
		p := *st.live[id]
		p.Flags, p.MarkedAt, p.Blockers = 0, time.Time{}, nil
		f.Packs = append(f.Packs, p)
	}
	for _, id := range sortedKeys(st.obsolete) {
		if drop[id] || marks[id] != nil {
			continue
		}
		f.Packs = append(f.Packs, *st.obsolete[id])
	}
	for _, id := range sortedKeys(marks) {
		if !drop[id] {
			f.Packs = append(f.Packs, *marks[id])
		}
	}
	return f
}

// replaceIndex writes f superseding old, then deletes old (docs/FORMAT.md §14 order:
// the new index is durable before any file it replaces is removed).
func (r *Repository) replaceIndex(ctx context.Context, f *index.File, old []ID) (ID, error) {
	f.Supersedes = slices.Clone(old)
	id, err := r.SaveIndexFile(ctx, f)
	if err != nil {
		return ID{}, err
	}
	for _, o := range old {
		if o == id {
			continue
		}
		err := r.be.Remove(ctx, backend.Handle{Type: backend.IndexFile, Name: o.String()})
		if errors.Is(err, backend.ErrRetained) {
			// A retained superseded index stays; readers merge it harmlessly (§8).
			continue
		}
		if err != nil && !backend.IsNotExist(err) {
			return id, fmt.Errorf("remove superseded index %s: %w", o.Short(), err)
		}
	}
	return id, nil
}

// stateLoader reads blobs from any pack the state knows, live or obsolete. When a
// blob is unknown it reloads the state once per miss streak: a snapshot saved after
// the state was read has its index files written before it (§12), so a reload finds
// them.
type stateLoader struct {
	r       *Repository
	st      **indexState
	reloads int
}

const maxStateReloads = 8

func (l *stateLoader) LoadBlob(ctx context.Context, id ID, dst []byte) ([]byte, error) {
	for {
		st := *l.st
		var firstErr error
		for _, loc := range st.locs[id] {
			if !st.exists(loc.pack) {
				continue
			}
			out, err := l.r.loadBlobAt(ctx, loc, dst)
			if err == nil {
				return out, nil
			}
			if firstErr == nil {
				firstErr = err
			}
		}
		if firstErr != nil {
			return nil, firstErr
		}
		if l.reloads >= maxStateReloads {
			return nil, fmt.Errorf("%w: %s", ErrBlobNotFound, id)
		}
		fresh, err := l.r.loadIndexState(ctx)
		if err != nil {
			return nil, err
		}
		l.reloads++
		*l.st = fresh
		if len(fresh.locs[id]) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrBlobNotFound, id)
		}
	}
}

// loadBlobAt reads one stored copy of a blob and verifies it.
func (r *Repository) loadBlobAt(ctx context.Context, loc blobLoc, dst []byte) ([]byte, error) {
	h := backend.Handle{Type: backend.PackFile, Name: loc.pack.String()}
	id := loc.e.ID
	ident, err := r.packIdentity(ctx, loc.pack)
	if err != nil {
		return nil, err
	}
	ra, plainSize, err := age.DecryptReaderAt(&backendReaderAt{ctx: ctx, be: r.be, h: h}, int64(loc.size), ident)
	if err != nil {
		if backend.IsNotExist(err) {
			return nil, fmt.Errorf("%w: %s (holding blob %s)", ErrFileNotFound, h, id.Short())
		}
		return nil, &CorruptError{Handle: h, Blob: &id, Err: fmt.Errorf("decrypt: %w", err)}
	}
	e := loc.e
	if int64(e.Offset)+int64(e.Length) > plainSize {
		return nil, &CorruptError{Handle: h, Blob: &id, Err: fmt.Errorf("blob at %d+%d lies outside the pack (%d bytes)", e.Offset, e.Length, plainSize)}
	}
	stored := make([]byte, e.Length)
	if _, err := ra.ReadAt(stored, int64(e.Offset)); err != nil && !(errors.Is(err, io.EOF) && int64(e.Offset)+int64(e.Length) == plainSize) {
		return nil, &CorruptError{Handle: h, Blob: &id, Err: fmt.Errorf("decrypt: %w", err)}
	}
	out, err := DecodeBlob(e, stored, dst, r.NewBlobMAC())
	if err != nil {
		return nil, &CorruptError{Handle: h, Blob: &id, Err: err}
	}
	return out, nil
}

// ---- Prune -----------------------------------------------------------------------

// UnusedLimit is how much unused space prune tolerates in packs it keeps: a
// percentage of the used bytes, a number of bytes, or unlimited.
type UnusedLimit struct {
	Percent   float64
	Bytes     uint64
	Unlimited bool
	isBytes   bool
}

// DefaultUnusedLimit is 5 % of the used bytes.
var DefaultUnusedLimit = UnusedLimit{Percent: 5}

// ParseUnusedLimit parses "5%", "unlimited", or a size such as "200M", "1.5G", "4096"
// (binary units K, M, G, T; a trailing "B" or "iB" is allowed).
func ParseUnusedLimit(s string) (UnusedLimit, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return UnusedLimit{}, errors.New("empty limit")
	case strings.EqualFold(s, "unlimited"):
		return UnusedLimit{Unlimited: true}, nil
	case strings.HasSuffix(s, "%"):
		p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || p < 0 || p > 100 {
			return UnusedLimit{}, fmt.Errorf("invalid percentage %q (want 0%% to 100%%)", s)
		}
		return UnusedLimit{Percent: p}, nil
	}
	num := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	mult := uint64(1)
	if n := len(num); n > 0 {
		switch num[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			num = num[:n-1]
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return UnusedLimit{}, fmt.Errorf("invalid limit %q (want a percentage such as 5%%, a size such as 100M, or unlimited)", s)
	}
	return UnusedLimit{Bytes: uint64(v * float64(mult)), isBytes: true}, nil
}

// Max returns the tolerated unused bytes for the given used bytes.
func (l UnusedLimit) Max(used uint64) uint64 {
	switch {
	case l.Unlimited:
		return ^uint64(0)
	case l.isBytes:
		return l.Bytes
	}
	return uint64(float64(used) * l.Percent / 100)
}

func (l UnusedLimit) String() string {
	switch {
	case l.Unlimited:
		return "unlimited"
	case l.isBytes:
		return strconv.FormatUint(l.Bytes, 10) + " bytes"
	}
	return strconv.FormatFloat(l.Percent, 'f', -1, 64) + "%"
}

// UsedBlobsFunc adds to used every blob the snapshots need (trees, their content and
// database dumps), skipping snapshots already in done and adding those it walked. l
// reads any blob the index knows, live or obsolete. It returns an error if a snapshot
// or tree cannot be read: prune then deletes nothing.
type UsedBlobsFunc func(ctx context.Context, l BlobLoader, used BlobSet, done map[ID]bool) error

// PruneOptions configures Prune.
type PruneOptions struct {
	MaxUnused UnusedLimit
	DryRun    bool
	// UsedBlobs computes the blobs in use (snapshot.UsedBlobs). Required.
	UsedBlobs UsedBlobsFunc
	// Lock is the prune's own lock; its session never blocks deletion.
	Lock *Lock
	// Log, if set, receives progress messages.
	Log func(format string, args ...any)
}

// PendingPack is an obsolete pack prune did not delete yet.
type PendingPack struct {
	Pack      string    `json:"pack"`
	Size      uint64    `json:"size"`
	MarkedAt  time.Time `json:"marked_at"`
	BlockedBy []string  `json:"blocked_by"`
}

// StaleTempAge is how old a leftover temporary file must be before prune removes it.
const StaleTempAge = 24 * time.Hour

// PruneResult reports what Prune did (or, with DryRun, would do).
type PruneResult struct {
	DryRun           bool          `json:"dry_run"`
	Snapshots        int           `json:"snapshots"`
	Packs            int           `json:"packs"`
	UsedBlobs        int           `json:"used_blobs"`
	UsedBytes        uint64        `json:"used_bytes"`
	UnusedBytes      uint64        `json:"unused_bytes"`
	UnusedAfter      uint64        `json:"unused_bytes_after"`
	PacksUnused      int           `json:"packs_unused"`
	PacksRepacked    int           `json:"packs_repacked"`
	BytesRepacked    uint64        `json:"bytes_repacked"`
	PacksWritten     int64         `json:"packs_written"`
	PacksOrphaned    int           `json:"packs_orphaned"`
	PacksMarked      int           `json:"packs_marked"`
	MissingDropped   []string      `json:"missing_packs_dropped,omitempty"`
	PacksDeleted     int           `json:"packs_deleted"`
	BytesFreed       uint64        `json:"bytes_freed"`
	PacksResurrected int           `json:"packs_resurrected"`
	Lost             []string      `json:"lost,omitempty"`
	Pending          []PendingPack `json:"pending,omitempty"`
	IndexFilesBefore int           `json:"index_files_before"`
	// Retained names packs the storage would not delete yet (object lock); they stay
	// marked and a later prune deletes them.
	Retained []string `json:"retained,omitempty"`
	// TempFilesRemoved counts leftover staging files of killed backups removed.
	TempFilesRemoved int `json:"temp_files_removed,omitempty"`
}

type prunePlan struct {
	keeper  map[ID]ID // used blob -> the live pack whose copy is kept
	remove  []ID      // live packs without used blobs
	repack  []ID
	drop    map[ID]bool // live packs whose file is gone and that hold nothing used
	missing []ID        // used blobs without a readable copy
}

// Prune removes unused data (docs/FORMAT.md §14). It must run under a "prune" lock
// (LockKind); backups may run concurrently. Phase 1 marks unused packs and repacks
// mostly-unused ones; phase 2 deletes marked packs whose blockers are gone, including
// those marked by earlier prunes, after resurrecting any a snapshot still needs. Prune
// may be killed at any point: the repository stays consistent and the next prune
// finishes the work.
func (r *Repository) Prune(ctx context.Context, opts PruneOptions) (*PruneResult, error) {
	if r.WriteOnly() {
		return nil, fmt.Errorf("prune: %w", ErrWriteOnly)
	}
	if opts.UsedBlobs == nil {
		return nil, errors.New("prune: no UsedBlobs function")
	}
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	pr := r.maintenanceClone()
	res := &PruneResult{DryRun: opts.DryRun}

	// Phase 1: find what is used.
	st, err := pr.loadIndexState(ctx)
	if err != nil {
		return nil, err
	}
	used, done := BlobSet{}, map[ID]bool{}
	ld := &stateLoader{r: pr, st: &st}
	if err := opts.UsedBlobs(ctx, ld, used, done); err != nil {
		return nil, fmt.Errorf("prune: find used data (nothing was deleted): %w", err)
	}
	plan := st.plan(used, opts.MaxUnused, res)
	if len(plan.missing) > 0 && ld.reloads < maxStateReloads {
		// Snapshots saved after the index was read: read it again.
		if st, err = pr.loadIndexState(ctx); err != nil {
			return nil, err
		}
		*res = PruneResult{DryRun: opts.DryRun}
		plan = st.plan(used, opts.MaxUnused, res)
	}
	res.Snapshots = len(done)
	res.IndexFilesBefore = len(st.files)
	if len(plan.missing) > 0 {
		return res, fmt.Errorf("prune: %d blobs the snapshots need are missing (first %s); nothing was deleted: run `cairn check`, then `cairn repair snapshots --forget`", len(plan.missing), plan.missing[0])
	}
	logf("%d snapshots use %d blobs (%d bytes) in %d packs; %d bytes unused", res.Snapshots, res.UsedBlobs, res.UsedBytes, res.Packs, res.UnusedBytes)
	if opts.DryRun {
		return res, pr.pruneDeletePhase(ctx, opts, res, used, done, true)
	}
	// Temporary files of killed backups: a day is far longer than filling one pack.
	if tc, ok := r.be.(backend.TempCleaner); ok {
		n, err := tc.RemoveTemp(ctx, time.Now().Add(-StaleTempAge))
		res.TempFilesRemoved = n
		if err != nil {
			logf("removing leftover temporary files: %v", err)
		}
	}

	// Repack: copy the kept blobs of mostly-unused packs into new packs, through a
	// Writer that writes packs first and their index after (§12).
	if len(plan.repack) > 0 {
		logf("repacking %d packs", len(plan.repack))
		n, err := pr.repack(ctx, st, plan, res)
		res.PacksWritten = n
		if err != nil {
			return res, fmt.Errorf("prune: repack (nothing was deleted): %w", err)
		}
	}
	firstPacks := st.packs
	// Reload: the repack's index files (and any written by concurrent backups) are
	// merged into the one new index.
	if st, err = pr.loadIndexState(ctx); err != nil {
		return res, err
	}
	now := time.Now().UTC()
	marks := map[ID]*index.PackRecord{}
	mark := func(p *index.PackRecord) {
		m := *p
		m.Flags |= index.FlagObsolete
		m.MarkedAt = now
		m.Blockers = []index.BlockerID{unconfirmedBlocker}
		marks[p.ID] = &m
	}
	for _, id := range append(slices.Clone(plan.remove), plan.repack...) {
		if p := st.live[id]; p != nil {
			mark(p)
		}
	}
	// Orphans: pack files listed before the index was first read that no index file
	// names. They are marked like unused packs, so the blocker rule protects packs of
	// running backups not yet indexed (§14).
	for _, id := range sortedKeys(firstPacks) {
		if st.live[id] != nil || st.obsolete[id] != nil || !st.exists(id) {
			continue
		}
		rec := &index.PackRecord{ID: id, Size: uint64(st.packs[id])}
		if rd, err := pr.ReadPack(ctx, id); err == nil {
			rec.Entries = rd.Entries
		} else {
			logf("orphaned pack %s is unreadable (%v); marking it without entries", id.Short(), err)
		}
		mark(rec)
		res.PacksOrphaned++
	}
	res.PacksMarked = len(marks)
	for id := range plan.drop {
		if st.live[id] != nil && !st.exists(id) {
			res.MissingDropped = append(res.MissingDropped, backend.Handle{Type: backend.PackFile, Name: id.String()}.String())
		} else {
			delete(plan.drop, id)
		}
	}
	sort.Strings(res.MissingDropped)
	if len(marks) > 0 || len(plan.drop) > 0 {
		logf("marking %d packs obsolete", len(marks))
		if _, err := pr.replaceIndex(ctx, st.file(marks, plan.drop), st.files); err != nil {
			return res, fmt.Errorf("prune: write index: %w", err)
		}
	}

	// Phase 2.
	if err := pr.pruneDeletePhase(ctx, opts, res, used, done, false); err != nil {
		return res, err
	}
	return res, nil
}

// plan decides which live packs to remove and which to repack.
func (st *indexState) plan(used BlobSet, limit UnusedLimit, res *PruneResult) *prunePlan {
	p := &prunePlan{keeper: map[ID]ID{}, drop: map[ID]bool{}}
	// Prefer keeping copies in packs that hold the most used bytes.
	usedIn := map[ID]uint64{}
	for id, rec := range st.live {
		for _, e := range rec.Entries {
			if used.Has(e.ID) {
				usedIn[id] += uint64(e.Length)
			}
		}
	}
	packs := sortedKeys(st.live)
	sort.SliceStable(packs, func(i, j int) bool { return usedIn[packs[i]] > usedIn[packs[j]] })
	for _, id := range packs {
		if !st.exists(id) {
			continue
		}
		for _, e := range st.live[id].Entries {
			if used.Has(e.ID) {
				if _, ok := p.keeper[e.ID]; !ok {
					p.keeper[e.ID] = id
				}
			}
		}
	}
	for id := range used {
		if _, ok := p.keeper[id]; ok {
			continue
		}
		// Only in obsolete packs (phase 2 resurrects them) or nowhere.
		found := false
		for _, l := range st.locs[id] {
			if st.obsolete[l.pack] != nil && st.exists(l.pack) {
				found = true
			}
		}
		if !found {
			p.missing = append(p.missing, id)
		}
	}
	sort.Slice(p.missing, func(i, j int) bool { return bytes.Compare(p.missing[i][:], p.missing[j][:]) < 0 })

	type partial struct {
		id     ID
		unused uint64
		ratio  float64
	}
	var partials []partial
	res.Packs = len(st.live)
	res.UsedBlobs = len(p.keeper)
	for _, id := range sortedKeys(st.live) {
		rec := st.live[id]
		if !st.exists(id) {
			p.drop[id] = true // holds nothing used, or plan.missing says otherwise
			continue
		}
		var usedBytes uint64
		for _, e := range rec.Entries {
			if p.keeper[e.ID] == id {
				usedBytes += uint64(e.Length)
			}
		}
		size := uint64(st.packs[id])
		res.UsedBytes += usedBytes
		unused := size - min(size, usedBytes)
		res.UnusedBytes += unused
		if usedBytes == 0 {
			p.remove = append(p.remove, id)
			continue
		}
		partials = append(partials, partial{id, unused, float64(unused) / float64(max(size, 1))})
	}
	var unusedKept uint64
	for _, q := range partials {
		unusedKept += q.unused
	}
	sort.SliceStable(partials, func(i, j int) bool { return partials[i].ratio > partials[j].ratio })
	maxUnused := limit.Max(res.UsedBytes)
	for _, q := range partials {
		if unusedKept <= maxUnused {
			break
		}
		// Small overheads (age chunk tags, the header) are not worth a repack.
		if q.ratio < 0.05 {
			break
		}
		p.repack = append(p.repack, q.id)
		unusedKept -= q.unused
	}
	sort.Slice(p.repack, func(i, j int) bool { return bytes.Compare(p.repack[i][:], p.repack[j][:]) < 0 })
	res.PacksUnused = len(p.remove)
	res.PacksRepacked = len(p.repack)
	res.UnusedAfter = unusedKept
	return p
}

// repack copies the kept blobs of plan.repack into new packs and returns how many packs
// it wrote. Every blob is verified on the way.
func (r *Repository) repack(ctx context.Context, st *indexState, plan *prunePlan, res *PruneResult) (int64, error) {
	w := r.NewWriter(ctx, WriterOptions{})
	var buf []byte
	for _, id := range plan.repack {
		rd, err := r.ReadPack(ctx, id)
		if err != nil {
			w.Abort()
			return w.Stats().Packs, fmt.Errorf("read pack %s: %w", id.Short(), err)
		}
		for _, e := range st.live[id].Entries {
			if plan.keeper[e.ID] != id {
				continue
			}
			data, err := rd.Blob(e, buf)
			if err != nil {
				w.Abort()
				return w.Stats().Packs, err
			}
			buf = data
			if _, err := w.SaveBlob(e.Type, e.ID, data); err != nil {
				w.Abort()
				return w.Stats().Packs, err
			}
			res.BytesRepacked += uint64(e.Length)
		}
	}
	if err := w.Flush(); err != nil {
		return w.Stats().Packs, err
	}
	return w.Stats().Packs, nil
}

// pruneDeletePhase is phase 2: confirm blockers, resurrect needed packs, delete the
// rest, rewrite the index.
func (r *Repository) pruneDeletePhase(ctx context.Context, opts PruneOptions, res *PruneResult, used BlobSet, done map[ID]bool, dryRun bool) error {
	// 1. The live locks, listed after every mark this phase acts on became visible.
	locks, err := r.Locks(ctx)
	if err != nil {
		return err
	}
	var own string
	if opts.Lock != nil {
		own = opts.Lock.Info().Session
	}
	now := time.Now()
	live := map[index.BlockerID]LockInfo{}
	for _, l := range locks {
		if l.Kind == "unreadable" || l.Session == own || nonBlockingLockKinds[l.Kind] || l.Stale(now) {
			continue
		}
		b, err := hex.DecodeString(l.Session)
		if err != nil || len(b) != len(index.BlockerID{}) {
			continue
		}
		live[index.BlockerID(b)] = l
	}
	// 2. The index, read after the locks.
	st, err := r.loadIndexState(ctx)
	if err != nil {
		return err
	}
	if len(st.obsolete) == 0 {
		return nil
	}
	newBlockers := map[ID][]index.BlockerID{}
	changed := false
	var candidates []ID
	for _, id := range sortedKeys(st.obsolete) {
		rec := st.obsolete[id]
		var nb []index.BlockerID
		if slices.Contains(rec.Blockers, unconfirmedBlocker) {
			for b := range live {
				nb = append(nb, b)
			}
			sort.Slice(nb, func(i, j int) bool { return bytes.Compare(nb[i][:], nb[j][:]) < 0 })
			changed = true
		} else {
			for _, b := range rec.Blockers {
				if _, ok := live[b]; ok {
					nb = append(nb, b)
				}
			}
			changed = changed || len(nb) != len(rec.Blockers)
		}
		newBlockers[id] = nb
		if len(nb) == 0 {
			candidates = append(candidates, id)
		}
	}
	// 3. The snapshots, read after the locks: every backup that could reference a
	// candidate has finished, so its snapshot is visible now.
	resurrect := map[ID]bool{}
	if len(candidates) > 0 && !dryRun {
		ld := &stateLoader{r: r, st: &st}
		if err := opts.UsedBlobs(ctx, ld, used, done); err != nil {
			return fmt.Errorf("prune: find used data (nothing was deleted): %w", err)
		}
		res.Snapshots = len(done)
		for _, id := range sortedKeys(st.obsolete) {
			rec := st.obsolete[id]
			for _, e := range rec.Entries {
				if used.Has(e.ID) && !st.liveCopy(e.ID) {
					if st.exists(id) {
						resurrect[id] = true
					} else {
						res.Lost = append(res.Lost, fmt.Sprintf("blob %s (in deleted pack %s)", e.ID.Short(), id.Short()))
					}
				}
			}
			if resurrect[id] {
				// Its blobs count as live copies for the packs after it.
				p := *rec
				p.Flags, p.MarkedAt, p.Blockers = 0, time.Time{}, nil
				st.live[id] = &p
				delete(st.obsolete, id)
			}
		}
		res.PacksResurrected = len(resurrect)
	}
	var deletable []ID
	for _, id := range candidates {
		if st.obsolete[id] != nil && !resurrect[id] {
			deletable = append(deletable, id)
		}
	}
	for _, id := range sortedKeys(st.obsolete) {
		if len(newBlockers[id]) == 0 {
			continue
		}
		rec := st.obsolete[id]
		pp := PendingPack{Pack: backend.Handle{Type: backend.PackFile, Name: id.String()}.String(), Size: rec.Size, MarkedAt: rec.MarkedAt}
		for _, b := range newBlockers[id] {
			pp.BlockedBy = append(pp.BlockedBy, live[b].String())
		}
		res.Pending = append(res.Pending, pp)
	}
	if dryRun {
		for _, id := range deletable {
			res.PacksDeleted++
			res.BytesFreed += st.obsolete[id].Size
		}
		return nil
	}
	// 4. Resurrections and confirmed blockers become durable before any deletion.
	files := st.files
	if changed || len(resurrect) > 0 {
		marks := map[ID]*index.PackRecord{}
		for id, nb := range newBlockers {
			if rec := st.obsolete[id]; rec != nil {
				m := *rec
				m.Blockers = nb
				marks[id] = &m
			}
		}
		nid, err := r.replaceIndex(ctx, st.file(marks, nil), files)
		if err != nil {
			return fmt.Errorf("prune: write index: %w", err)
		}
		files = []ID{nid}
		for id, m := range marks {
			st.obsolete[id] = m
		}
	}
	if len(deletable) == 0 {
		return nil
	}
	if opts.Lock != nil {
		if err := opts.Lock.Lost(); err != nil {
			return fmt.Errorf("prune: lost its lock, nothing deleted: %w", err)
		}
	}
	// 5. Delete the packs, then the index records naming them.
	gone := map[ID]bool{}
	var delErr error
	for _, id := range deletable {
		size := st.obsolete[id].Size
		if s, ok := st.packs[id]; ok {
			size = uint64(s)
		}
		err := r.be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: id.String()})
		if errors.Is(err, backend.ErrRetained) {
			// Object lock: the pack stays marked obsolete, a later prune retries.
			res.Retained = append(res.Retained, fmt.Sprintf("data/%s: %v", id, err))
			continue
		}
		if err != nil && !backend.IsNotExist(err) {
			delErr = fmt.Errorf("prune: delete pack %s: %w", id.Short(), err)
			break
		}
		if err == nil {
			res.BytesFreed += size
			res.PacksDeleted++
		}
		gone[id] = true
	}
	if len(gone) > 0 {
		if _, err := r.replaceIndex(ctx, st.file(nil, gone), files); err != nil {
			return errors.Join(delErr, fmt.Errorf("prune: write index: %w", err))
		}
	}
	return delErr
}
