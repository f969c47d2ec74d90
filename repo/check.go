package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
)

// Issue severities.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
	SeverityInfo    = "info"
)

// Issue is one finding of Check, naming the file it concerns.
type Issue struct {
	Severity string `json:"severity"`
	File     string `json:"file,omitempty"` // e.g. "data/ab/ab12…", "index/…", "keys/…"
	Message  string `json:"message"`
	// Snapshots lists the snapshots that lose data because of it (filled in by the
	// caller that checks snapshots).
	Snapshots []string `json:"snapshots,omitempty"`
}

func (i Issue) String() string {
	if i.File != "" {
		return i.Severity + ": " + i.File + ": " + i.Message
	}
	return i.Severity + ": " + i.Message
}

// Subset selects packs for a partial --read-data: the n-th of m groups (by the first
// four bytes of the pack ID modulo m, so n = 1…m together cover every pack once), or a
// random percentage. The zero Subset selects all packs.
type Subset struct {
	N, M    int
	Percent float64
}

// ParseSubset parses "n/m" or "p%".
func ParseSubset(s string) (Subset, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v <= 0 || v > 100 {
			return Subset{}, fmt.Errorf("invalid subset %q: want a percentage above 0%% and up to 100%%", s)
		}
		return Subset{Percent: v}, nil
	}
	a, b, ok := strings.Cut(s, "/")
	if ok {
		n, err1 := strconv.Atoi(a)
		m, err2 := strconv.Atoi(b)
		if err1 == nil && err2 == nil && m >= 1 && n >= 1 && n <= m {
			return Subset{N: n, M: m}, nil
		}
	}
	return Subset{}, fmt.Errorf("invalid subset %q: want n/m (1 ≤ n ≤ m) or a percentage such as 10%%", s)
}

// Selects reports whether the pack is in the subset.
func (s Subset) Selects(id ID) bool {
	switch {
	case s.M > 0:
		return int(binary.BigEndian.Uint32(id[:4])%uint32(s.M)) == s.N-1
	case s.Percent > 0:
		return rand.Float64()*100 < s.Percent
	}
	return true
}

func (s Subset) String() string {
	switch {
	case s.M > 0:
		return fmt.Sprintf("%d/%d", s.N, s.M)
	case s.Percent > 0:
		return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
	}
	return "all"
}

// CheckOptions configures Check.
type CheckOptions struct {
	// ReadData downloads the selected packs, verifies their names, decrypts them and
	// verifies every blob.
	ReadData bool
	Subset   Subset
	// Progress, if set, is called after each pack read with the count done and total.
	Progress func(done, total int)
}

// CheckResult holds Check's findings and what it learnt about every blob, which the
// snapshot check (snapshot.CheckSnapshots) uses through BlobStatus.
type CheckResult struct {
	Issues        []Issue `json:"issues"`
	KeyFiles      int     `json:"key_files"`
	IndexFiles    int     `json:"index_files"`
	Packs         int     `json:"packs"`
	ObsoletePacks int     `json:"obsolete_packs"`
	OrphanPacks   int     `json:"orphan_packs"`
	PacksRead     int     `json:"packs_read"`
	BlobsRead     int64   `json:"blobs_read"`

	r             *Repository
	st            *indexState
	damagedIndex  []string
	badPack       map[ID]string // pack -> what is wrong with it
	badBlob       map[[2]ID]string
	mu            sync.Mutex
	indexFileByPk map[ID]string
}

func (c *CheckResult) add(sev, file, format string, args ...any) {
	c.mu.Lock()
	c.Issues = append(c.Issues, Issue{Severity: sev, File: file, Message: fmt.Sprintf(format, args...)})
	c.mu.Unlock()
}

// Errors counts the issues of severity error.
func (c *CheckResult) Errors() int {
	n := 0
	for _, i := range c.Issues {
		if i.Severity == SeverityError {
			n++
		}
	}
	return n
}

// BlobStatus says whether a blob is readable: "" when a live copy is fine; otherwise
// the severity (error: no readable copy; warning: only in an obsolete pack, which the
// next prune resurrects), a reason, and the file at fault.
func (c *CheckResult) BlobStatus(id ID) (severity, reason, file string) {
	var firstBad, badFile string
	obsoleteOnly := ""
	for _, l := range c.st.locs[id] {
		h := backend.Handle{Type: backend.PackFile, Name: l.pack.String()}.String()
		if c.st.obsolete[l.pack] != nil {
			if c.st.exists(l.pack) && c.badPack[l.pack] == "" && c.badBlob[[2]ID{id, l.pack}] == "" {
				obsoleteOnly = h
			}
			continue
		}
		why := c.badPack[l.pack]
		if why == "" {
			why = c.badBlob[[2]ID{id, l.pack}]
		}
		if why == "" {
			return "", "", ""
		}
		if firstBad == "" {
			firstBad, badFile = why, h
		}
	}
	if firstBad != "" {
		return SeverityError, "stored in " + badFile + ", which " + firstBad, badFile
	}
	if obsoleteOnly != "" {
		return SeverityWarning, "only in " + obsoleteOnly + ", marked obsolete by prune; the next prune resurrects it", obsoleteOnly
	}
	if len(c.damagedIndex) > 0 {
		return SeverityError, "not in the index; the damaged index file " + c.damagedIndex[0] + " may have listed it (run `cairn repair index`)", c.damagedIndex[0]
	}
	return SeverityError, "not in the index (no pack holds it)", ""
}

// AttachSnapshots records that the snapshots lose data because of file.
func (c *CheckResult) AttachSnapshots(file string, snaps []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.Issues {
		if c.Issues[i].File == file && c.Issues[i].Severity == SeverityError {
			for _, s := range snaps {
				if !contains(c.Issues[i].Snapshots, s) {
					c.Issues[i].Snapshots = append(c.Issues[i].Snapshots, s)
				}
			}
			sort.Strings(c.Issues[i].Snapshots)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// LoadBlob reads a blob from any pack the index knows, live or obsolete, skipping
// packs Check found missing; the result is verified against the blob's ID.
func (c *CheckResult) LoadBlob(ctx context.Context, id ID, dst []byte) ([]byte, error) {
	var firstErr error
	for _, l := range c.st.locs[id] {
		if !c.st.exists(l.pack) {
			if firstErr == nil {
				firstErr = fmt.Errorf("%w: %s (holding blob %s)", ErrFileNotFound, backend.Handle{Type: backend.PackFile, Name: l.pack.String()}, id.Short())
			}
			continue
		}
		out, err := c.r.loadBlobAt(ctx, l, dst)
		if err == nil {
			return out, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("%w: %s", ErrBlobNotFound, id)
	}
	return nil, firstErr
}

// Check verifies the repository's structure: key files (name, age header), index files
// (name, decryption, format), that every pack the index lists exists with the recorded
// size, and reports pack files no index names (orphans, a warning) and obsolete packs
// waiting for deletion (info). With ReadData it also downloads packs and verifies every
// blob. Damaged files are named in Issues; snapshots are checked by the caller with
// BlobStatus. The error is only for failures to run the check at all.
func (r *Repository) Check(ctx context.Context, opts CheckOptions) (*CheckResult, error) {
	c := &CheckResult{r: r, badPack: map[ID]string{}, badBlob: map[[2]ID]string{}, indexFileByPk: map[ID]string{}}
	if err := c.checkKeys(ctx); err != nil {
		return nil, err
	}
	if err := c.checkIndex(ctx); err != nil {
		return nil, err
	}
	c.checkPacks()
	if opts.ReadData {
		if err := c.readData(ctx, opts); err != nil {
			return nil, err
		}
	}
	if err := c.checkLocks(ctx); err != nil {
		return nil, err
	}
	sort.SliceStable(c.Issues, func(i, j int) bool { return severityRank(c.Issues[i].Severity) < severityRank(c.Issues[j].Severity) })
	return c, nil
}

func severityRank(s string) int {
	switch s {
	case SeverityError:
		return 0
	case SeverityWarning:
		return 1
	}
	return 2
}

func (c *CheckResult) checkKeys(ctx context.Context) error {
	r := c.r
	var names []string
	if err := r.be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		h := backend.Handle{Type: backend.KeyFile, Name: name}
		data, err := backend.LoadAll(ctx, r.be, h)
		if err != nil {
			if backend.IsNotExist(err) {
				continue
			}
			c.add(SeverityError, h.String(), "cannot be read: %v", err)
			continue
		}
		c.KeyFiles++
		if got := ID(crypto.FileHash(data)).String(); got != name {
			c.add(SeverityError, h.String(), "damaged: content hash %s does not match its name", got[:16])
			continue
		}
		if crypto.KeyKind(data) == "unknown" {
			c.add(SeverityError, h.String(), "damaged: not an age file (malformed header)")
			continue
		}
		if _, err := age.ExtractHeader(bytes.NewReader(data)); err != nil {
			c.add(SeverityError, h.String(), "damaged: malformed age header: %v", err)
			continue
		}
		// A key this credential cannot open is fine (another passphrase or identity);
		// the current key opened the repository, so it is fine too.
	}
	return nil
}

func (c *CheckResult) checkIndex(ctx context.Context) error {
	r := c.r
	st := &indexState{live: map[ID]*index.PackRecord{}, obsolete: map[ID]*index.PackRecord{}, packs: map[ID]int64{}, locs: map[ID][]blobLoc{}}
	if err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if id, err := blob.ParseID(fi.Name); err == nil {
			st.packs[id] = fi.Size
		} else {
			c.add(SeverityWarning, "data/"+fi.Name, "not a pack name; ignored")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("list packs: %w", err)
	}
	ids, err := r.List(ctx, backend.IndexFile)
	if err != nil {
		return err
	}
	var obs []*index.PackRecord
	for _, id := range ids {
		h := backend.Handle{Type: backend.IndexFile, Name: id.String()}
		f, err := r.loadIndexFile(ctx, id)
		if err != nil {
			if errors.Is(err, ErrFileNotFound) {
				continue
			}
			c.add(SeverityError, h.String(), "damaged: %v; the packs it listed are unknown until `cairn repair index` rebuilds the index", unwrapCorrupt(err))
			c.damagedIndex = append(c.damagedIndex, h.String())
			continue
		}
		c.IndexFiles++
		st.files = append(st.files, id)
		for i := range f.Packs {
			p := &f.Packs[i]
			if p.Obsolete() {
				obs = append(obs, p)
			} else if st.live[p.ID] == nil {
				st.live[p.ID] = p
				c.indexFileByPk[p.ID] = h.String()
			}
		}
	}
	for _, p := range obs {
		if st.live[p.ID] == nil && st.obsolete[p.ID] == nil {
			st.obsolete[p.ID] = p
		}
	}
	for _, id := range sortedKeys(st.live) {
		for _, e := range st.live[id].Entries {
			st.locs[e.ID] = append(st.locs[e.ID], blobLoc{pack: id, size: st.live[id].Size, e: e})
		}
	}
	for _, id := range sortedKeys(st.obsolete) {
		for _, e := range st.obsolete[id].Entries {
			st.locs[e.ID] = append(st.locs[e.ID], blobLoc{pack: id, size: st.obsolete[id].Size, e: e})
		}
	}
	c.st = st
	return nil
}

// unwrapCorrupt drops the file name from a CorruptError (the Issue names the file).
func unwrapCorrupt(err error) error {
	var ce *CorruptError
	if errors.As(err, &ce) {
		if ce.Blob != nil {
			return fmt.Errorf("blob %s: %w", ce.Blob.Short(), ce.Err)
		}
		return ce.Err
	}
	return err
}

func (c *CheckResult) checkPacks() {
	st := c.st
	c.Packs = len(st.live)
	c.ObsoletePacks = len(st.obsolete)
	for _, id := range sortedKeys(st.live) {
		p := st.live[id]
		h := backend.Handle{Type: backend.PackFile, Name: id.String()}.String()
		size, ok := st.packs[id]
		switch {
		case !ok:
			c.badPack[id] = "is missing"
			c.add(SeverityError, h, "missing: listed by %s with %d blobs", c.indexFileByPk[id], len(p.Entries))
		case p.Size != 0 && uint64(size) != p.Size:
			c.badPack[id] = fmt.Sprintf("has %d bytes instead of %d", size, p.Size)
			c.add(SeverityError, h, "damaged: %d bytes, the index says %d", size, p.Size)
		}
	}
	for _, id := range sortedKeys(st.obsolete) {
		p := st.obsolete[id]
		h := backend.Handle{Type: backend.PackFile, Name: id.String()}.String()
		if _, ok := st.packs[id]; ok {
			c.add(SeverityInfo, h, "pending deletion: marked obsolete by prune at %s; a later prune deletes it once no backup that was running then is left", p.MarkedAt.Local().Format(time.DateTime))
		} else {
			c.add(SeverityInfo, h, "obsolete and already deleted; the next prune drops its index record")
		}
	}
	for _, id := range sortedKeys(st.packs) {
		if st.live[id] == nil && st.obsolete[id] == nil {
			c.OrphanPacks++
			c.add(SeverityWarning, backend.Handle{Type: backend.PackFile, Name: id.String()}.String(),
				"not in the index (left by an interrupted backup or prune, or being written by a running backup); prune removes it")
		}
	}
}

func (c *CheckResult) readData(ctx context.Context, opts CheckOptions) error {
	var todo []ID
	for _, id := range sortedKeys(c.st.packs) {
		if opts.Subset.Selects(id) {
			todo = append(todo, id)
		}
	}
	jobs := make(chan ID)
	var wg sync.WaitGroup
	var done int
	var mu sync.Mutex
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for id := range jobs {
				buf = c.readPack(ctx, id, buf)
				mu.Lock()
				done++
				c.PacksRead++
				if opts.Progress != nil {
					opts.Progress(done, len(todo))
				}
				mu.Unlock()
			}
		}()
	}
	for _, id := range todo {
		select {
		case jobs <- id:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	return ctx.Err()
}

func (c *CheckResult) readPack(ctx context.Context, id ID, buf []byte) []byte {
	h := backend.Handle{Type: backend.PackFile, Name: id.String()}.String()
	rd, err := c.r.ReadPack(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return buf
		}
		c.mu.Lock()
		c.badPack[id] = "is damaged"
		c.mu.Unlock()
		c.add(SeverityError, h, "damaged: %v", unwrapCorrupt(err))
		return buf
	}
	rec := c.st.live[id]
	if rec == nil {
		rec = c.st.obsolete[id]
	}
	if rec != nil {
		inPack := map[ID]bool{}
		for _, e := range rd.Entries {
			inPack[e.ID] = true
		}
		for _, e := range rec.Entries {
			pe, ok := rd.Find(e.ID)
			if !ok || pe != e {
				c.mu.Lock()
				c.badBlob[[2]ID{e.ID, id}] = "does not hold it where the index says"
				c.mu.Unlock()
				c.add(SeverityError, h, "blob %s: the index entry does not match the pack header", e.ID.Short())
			}
		}
	}
	for _, e := range rd.Entries {
		out, err := rd.Blob(e, buf)
		if err != nil {
			c.mu.Lock()
			c.badBlob[[2]ID{e.ID, id}] = "holds a damaged copy"
			c.mu.Unlock()
			c.add(SeverityError, h, "damaged: %v", unwrapCorrupt(err))
			continue
		}
		buf = out
		c.mu.Lock()
		c.BlobsRead++
		c.mu.Unlock()
	}
	return buf
}

func (c *CheckResult) checkLocks(ctx context.Context) error {
	locks, err := c.r.Locks(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, l := range locks {
		h := backend.Handle{Type: backend.LockFile, Name: l.Name}.String()
		switch {
		case l.Kind == "unreadable":
			c.add(SeverityWarning, h, "unreadable lock file (`cairn unlock` removes it)")
		case l.Stale(now):
			c.add(SeverityWarning, h, "stale %s (`cairn unlock` removes it)", l)
		}
	}
	return nil
}
