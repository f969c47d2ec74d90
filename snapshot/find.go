package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo/blob"
)

// Local time layouts ParseTime accepts besides RFC 3339, tried in order.
var localLayouts = []string{
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

// ParseTime parses a point in time given by a user: RFC 3339 with its zone
// ("2026-11-23T14:00:00+01:00", "2026-11-23T13:00:00Z"), or a wall-clock time in loc:
// "2026-11-23 14:00", "2026-11-23 14:00:05" (a "T" may replace the space) or a date
// alone, "2026-11-23", meaning 00:00 of that day.
func ParseTime(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range localLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid time %q: want RFC 3339 (2026-11-23T14:00:00Z) or local YYYY-MM-DD[ HH:MM[:SS]]", s)
}

// SelectAt returns the newest snapshot matching f taken at or before t. It fails with
// ErrNotFound, saying why, when no snapshot matches f at all or t lies before the first
// one that does.
func SelectAt(snaps []*Snapshot, t time.Time, f Filter) (*Snapshot, error) {
	var first *Snapshot
	for i := len(snaps) - 1; i >= 0; i-- {
		sn := snaps[i]
		if !f.Match(sn) {
			continue
		}
		if !sn.Time.After(t) {
			return sn, nil
		}
		first = sn
	}
	at := t.Local().Format(time.RFC3339)
	if first == nil {
		return nil, fmt.Errorf("%w: no snapshot matches the filter (looking for one at or before %s)", ErrNotFound, at)
	}
	return nil, fmt.Errorf("%w: %s is before the first snapshot (%s at %s)", ErrNotFound, at, first.ID.Short(), first.Time.Local().Format(time.RFC3339))
}

// Select resolves a snapshot reference among snaps (oldest first): "latest" (the newest
// matching f), "@TIME" (the newest matching f at or before TIME, see ParseTime, with
// local times in loc), or an ID prefix of at least 4 hex digits. An ID prefix matching
// several snapshots is an error listing them.
func Select(snaps []*Snapshot, ref string, f Filter, loc *time.Location) (*Snapshot, error) {
	if at, ok := strings.CutPrefix(ref, "@"); ok {
		t, err := ParseTime(at, loc)
		if err != nil {
			return nil, err
		}
		return SelectAt(snaps, t, f)
	}
	if ref == "latest" {
		return Find(snaps, ref, f)
	}
	prefix := strings.ToLower(ref)
	var found []string
	for _, sn := range snaps {
		if strings.HasPrefix(sn.ID.String(), prefix) {
			found = append(found, fmt.Sprintf("%s (%s)", sn.ID.String()[:min(max(len(prefix)+4, 8), 64)], sn.Time.Local().Format(time.RFC3339)))
		}
	}
	if len(prefix) >= 4 && len(found) > 1 {
		return nil, fmt.Errorf("snapshot id %q is ambiguous: matches %s; give more digits", ref, strings.Join(found, ", "))
	}
	return Find(snaps, ref, f)
}

// FindNode returns the node at the absolute snapshot path p ("/srv/app/media") under
// the root tree, or nil when there is none. "/" has no node: it is the root tree.
func FindNode(ctx context.Context, l BlobLoader, root blob.ID, p string) (*Node, error) {
	clean := path.Clean("/" + p)
	if clean == "/" {
		return nil, errors.New("the root has no node")
	}
	id := root
	parts := strings.Split(clean[1:], "/")
	for i, name := range parts {
		t, err := LoadTree(ctx, l, id)
		if err != nil {
			return nil, err
		}
		n := t.Find(name)
		if n == nil {
			return nil, nil
		}
		if i == len(parts)-1 {
			return n, nil
		}
		if n.Type != TypeDir {
			return nil, nil
		}
		id = *n.Subtree
	}
	return nil, nil
}

// DumpNode returns the file node holding a snapshot's database dump: the single file
// of the tree db.Dump (docs/FORMAT.md §Snapshots).
func DumpNode(ctx context.Context, l BlobLoader, db *Database) (*Node, error) {
	if db == nil || db.Dump.IsNull() {
		return nil, errors.New("the snapshot has no database dump")
	}
	t, err := LoadTree(ctx, l, db.Dump)
	if err != nil {
		return nil, fmt.Errorf("database dump: %w", err)
	}
	if len(t.Nodes) != 1 || t.Nodes[0].Type != TypeFile {
		return nil, fmt.Errorf("database dump: %w: tree %s must hold exactly one file", ErrInvalidTree, db.Dump.Short())
	}
	return &t.Nodes[0], nil
}

// ContentError is returned by WriteContent when a blob of the content cannot be
// loaded: Written bytes were written before it.
type ContentError struct {
	Blob    blob.ID
	Written int64
	Err     error
}

func (e *ContentError) Error() string {
	return fmt.Sprintf("content blob %s: %v", e.Blob.Short(), e.Err)
}

func (e *ContentError) Unwrap() error { return e.Err }

// WriteContent streams the content of file node n to w, blob by blob, each verified
// against its ID. It returns the number of bytes written; a blob that cannot be loaded
// gives a *ContentError, a failing w its own error.
func WriteContent(ctx context.Context, l BlobLoader, n *Node, w io.Writer) (int64, error) {
	var buf []byte
	var written int64
	for _, id := range n.Content {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		data, err := l.LoadBlob(ctx, id, buf)
		if err != nil {
			return written, &ContentError{Blob: id, Written: written, Err: err}
		}
		buf = data
		k, err := w.Write(data)
		written += int64(k)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// Match is one node found by a Finder, with its absolute snapshot path.
type Match struct {
	Path string
	Node Node
}

// Finder finds the paths matching a glob in snapshot trees. Subtrees are searched
// once: what a subtree holds is remembered by its ID (and, for full-path patterns,
// its place), so searching many snapshots of slowly changing data reads each
// distinct directory once.
type Finder struct {
	l        BlobLoader
	pattern  string
	fullPath bool
	abs      bool     // fullPath with a pattern starting with "/"
	parts    []string // the pattern's components (fullPath)
	cache    map[string][]Match
}

// NewFinder returns a Finder for pattern, a path.Match glob. It is matched against
// each entry's name, or with fullPath against its absolute snapshot path
// ("/srv/app/media/a.pdf"); a full-path pattern not starting with "/" matches the
// trailing components of the path ("documents/*.pdf").
func NewFinder(l BlobLoader, pattern string, fullPath bool) (*Finder, error) {
	if pattern == "" {
		return nil, errors.New("empty pattern")
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	f := &Finder{l: l, pattern: pattern, fullPath: fullPath, cache: map[string][]Match{}}
	if fullPath {
		f.abs = strings.HasPrefix(pattern, "/")
		p := strings.Trim(pattern, "/")
		if p == "" {
			return nil, fmt.Errorf("pattern %q matches no entry", pattern)
		}
		f.parts = strings.Split(p, "/")
		f.pattern = p
		if f.abs {
			f.pattern = "/" + p
		}
	}
	return f, nil
}

// Find returns the matches under the root tree, in walk order.
func (f *Finder) Find(ctx context.Context, root blob.ID) ([]Match, error) {
	return f.find(ctx, root, "", 0)
}

func (f *Finder) find(ctx context.Context, id blob.ID, prefix string, depth int) ([]Match, error) {
	key := id.String()
	if f.fullPath {
		key += "\x00" + prefix
	}
	if m, ok := f.cache[key]; ok {
		return f.relocate(m, prefix), nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := LoadTree(ctx, f.l, id)
	if err != nil {
		return nil, err
	}
	var out []Match
	for i := range t.Nodes {
		n := &t.Nodes[i]
		p := prefix + "/" + n.RawName()
		if f.match(n.RawName(), p, depth+1) {
			out = append(out, Match{Path: p, Node: *n})
		}
		if n.Type == TypeDir && f.descend(p, depth+1) {
			sub, err := f.find(ctx, *n.Subtree, p, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	}
	rel := out
	if !f.fullPath && prefix != "" {
		// Name matches do not depend on the place: store them relative to the
		// subtree ("/name/…") for every place it appears.
		rel = make([]Match, len(out))
		for i, m := range out {
			rel[i] = Match{Path: strings.TrimPrefix(m.Path, prefix), Node: m.Node}
		}
	}
	f.cache[key] = rel
	return out, nil
}

// relocate returns cached matches under prefix: full-path entries are stored as
// found, name entries relative to their subtree.
func (f *Finder) relocate(m []Match, prefix string) []Match {
	if f.fullPath || prefix == "" || len(m) == 0 {
		return m
	}
	out := make([]Match, len(m))
	for i, x := range m {
		out[i] = Match{Path: prefix + x.Path, Node: x.Node}
	}
	return out
}

func (f *Finder) match(name, full string, depth int) bool {
	if !f.fullPath {
		ok, _ := path.Match(f.pattern, name)
		return ok
	}
	if f.abs {
		if depth != len(f.parts) {
			return false
		}
		ok, _ := path.Match(f.pattern, full)
		return ok
	}
	comps := strings.Split(full[1:], "/")
	if len(comps) < len(f.parts) {
		return false
	}
	ok, _ := path.Match(f.pattern, strings.Join(comps[len(comps)-len(f.parts):], "/"))
	return ok
}

// descend reports whether the directory at full (depth components) can hold matches.
func (f *Finder) descend(full string, depth int) bool {
	if !f.abs {
		return true
	}
	if depth >= len(f.parts) {
		return false
	}
	comps := strings.Split(full[1:], "/")
	for i, c := range comps {
		if ok, _ := path.Match(f.parts[i], c); !ok {
			return false
		}
	}
	return true
}
