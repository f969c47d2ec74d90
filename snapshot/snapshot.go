package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
)

// ErrNotFound: no snapshot matches.
var ErrNotFound = errors.New("snapshot: no matching snapshot")

// RecordVersion is the snapshot record version (docs/FORMAT.md §Snapshots).
const RecordVersion = 1

// Snapshot is one point in time of an app: its files (Tree), and optionally its
// database dump, version and migrations.
type Snapshot struct {
	Version        int       `json:"version"`
	Time           time.Time `json:"time"`
	Host           string    `json:"host"`
	Username       string    `json:"username,omitempty"`
	Tags           []string  `json:"tags,omitempty"`
	Paths          []string  `json:"paths"`
	Tree           blob.ID   `json:"tree"`
	Parent         *blob.ID  `json:"parent,omitempty"`
	App            *App      `json:"app,omitempty"`
	Database       *Database `json:"database,omitempty"`
	Summary        *Summary  `json:"summary,omitempty"`
	ProgramVersion string    `json:"program_version,omitempty"`
	Original       *blob.ID  `json:"original,omitempty"` // set by repair/copy: the snapshot this one replaces

	ID blob.ID `json:"-"`
}

// App identifies the application state a snapshot holds.
type App struct {
	Name       string            `json:"name"`
	Version    string            `json:"version,omitempty"`
	Migrations map[string]string `json:"migrations,omitempty"`
}

// Database describes the database dump of a snapshot. The dump is the content of the
// single file node of the tree Dump.
type Database struct {
	Engine        string            `json:"engine"`
	ServerVersion string            `json:"server_version,omitempty"`
	Format        string            `json:"format"`
	Name          string            `json:"name,omitempty"`
	Size          uint64            `json:"size"`
	Dump          blob.ID           `json:"dump"`
	Migrations    map[string]string `json:"migrations,omitempty"`
}

// Summary counts what the backup did.
type Summary struct {
	Start          time.Time `json:"start"`
	End            time.Time `json:"end"`
	FilesNew       int64     `json:"files_new"`
	FilesChanged   int64     `json:"files_changed"`
	FilesUnchanged int64     `json:"files_unchanged"`
	DirsNew        int64     `json:"dirs_new"`
	DirsChanged    int64     `json:"dirs_changed"`
	DirsUnchanged  int64     `json:"dirs_unchanged"`
	FilesFailed    int64     `json:"files_failed"`
	TotalFiles     int64     `json:"total_files"`
	TotalBytes     uint64    `json:"total_bytes"`
	BytesRead      uint64    `json:"bytes_read"`
	BlobsAdded     int64     `json:"blobs_added"`
	BytesAdded     uint64    `json:"bytes_added"`        // plaintext of new blobs
	BytesStored    uint64    `json:"bytes_added_stored"` // after compression
	PacksWritten   int64     `json:"packs_written"`
}

// Saver stores snapshot records.
type Saver interface {
	SaveJSON(ctx context.Context, t backend.FileType, v any) (blob.ID, error)
}

// Loader reads snapshot records.
type Loader interface {
	LoadJSON(ctx context.Context, t backend.FileType, id blob.ID, v any) error
	List(ctx context.Context, t backend.FileType) ([]blob.ID, error)
}

// Save stores the record and sets its ID.
func Save(ctx context.Context, s Saver, sn *Snapshot) (blob.ID, error) {
	sn.Version = RecordVersion
	id, err := s.SaveJSON(ctx, backend.SnapshotFile, sn)
	if err != nil {
		return blob.ID{}, err
	}
	sn.ID = id
	return id, nil
}

// Load reads one snapshot record.
func Load(ctx context.Context, l Loader, id blob.ID) (*Snapshot, error) {
	var sn Snapshot
	if err := l.LoadJSON(ctx, backend.SnapshotFile, id, &sn); err != nil {
		return nil, err
	}
	if sn.Version > RecordVersion {
		return nil, fmt.Errorf("snapshot %s has record version %d, newer than this cairn (%d)", id.Short(), sn.Version, RecordVersion)
	}
	if sn.Tree.IsNull() {
		return nil, &repo.CorruptError{Handle: backend.Handle{Type: backend.SnapshotFile, Name: id.String()}, Err: errors.New("snapshot has no tree")}
	}
	sn.ID = id
	return &sn, nil
}

// List loads every snapshot record, oldest first. Unreadable records are returned as
// errors after the readable ones are collected.
func List(ctx context.Context, l Loader) ([]*Snapshot, error) {
	ids, err := l.List(ctx, backend.SnapshotFile)
	if err != nil {
		return nil, err
	}
	var out []*Snapshot
	var errs []error
	for _, id := range ids {
		sn, err := Load(ctx, l, id)
		if err != nil {
			if errors.Is(err, repo.ErrFileNotFound) {
				continue // forgotten meanwhile
			}
			errs = append(errs, err)
			continue
		}
		out = append(out, sn)
	}
	SortByTime(out)
	return out, errors.Join(errs...)
}

// SortByTime orders snapshots oldest first (ID breaks ties).
func SortByTime(s []*Snapshot) {
	sort.SliceStable(s, func(i, j int) bool {
		if s[i].Time.Equal(s[j].Time) {
			return s[i].ID.String() < s[j].ID.String()
		}
		return s[i].Time.Before(s[j].Time)
	})
}

// Filter selects snapshots.
type Filter struct {
	Host  string
	Tags  []string // all must be present
	App   string
	Paths []string // all must be present
}

// Match reports whether sn passes the filter.
func (f Filter) Match(sn *Snapshot) bool {
	if f.Host != "" && sn.Host != f.Host {
		return false
	}
	if f.App != "" && (sn.App == nil || sn.App.Name != f.App) {
		return false
	}
	for _, t := range f.Tags {
		if !sn.HasTag(t) {
			return false
		}
	}
	for _, p := range f.Paths {
		found := false
		for _, q := range sn.Paths {
			if p == q {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// HasTag reports whether the snapshot has the tag.
func (sn *Snapshot) HasTag(t string) bool {
	for _, x := range sn.Tags {
		if x == t {
			return true
		}
	}
	return false
}

// Find resolves a snapshot reference among snaps (oldest first): "latest" (the newest
// matching the filter) or a unique ID prefix.
func Find(snaps []*Snapshot, ref string, f Filter) (*Snapshot, error) {
	if ref == "latest" {
		for i := len(snaps) - 1; i >= 0; i-- {
			if f.Match(snaps[i]) {
				return snaps[i], nil
			}
		}
		return nil, fmt.Errorf("%w: no snapshot matches the filter", ErrNotFound)
	}
	ref = strings.ToLower(ref)
	if len(ref) < 4 {
		return nil, fmt.Errorf("snapshot id %q too short: give at least 4 hex digits", ref)
	}
	var found []*Snapshot
	for _, sn := range snaps {
		if strings.HasPrefix(sn.ID.String(), ref) {
			found = append(found, sn)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: no snapshot with id %q", ErrNotFound, ref)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("snapshot id %q is ambiguous: matches %d snapshots", ref, len(found))
}

// MigrationSummary shortens migrations for listings: the first max apps in name order
// with the number part of their latest migration, "admin 0003, auth 0012, +4 more".
func MigrationSummary(m map[string]string, max int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for i, k := range keys {
		if i == max {
			parts = append(parts, fmt.Sprintf("+%d more", len(keys)-max))
			break
		}
		v := m[k]
		if j := strings.IndexByte(v, '_'); j > 0 {
			v = v[:j]
		}
		parts = append(parts, k+" "+v)
	}
	return strings.Join(parts, ", ")
}
