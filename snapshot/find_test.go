package snapshot_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

// memStore is an in-memory blob store for tree tests: trees and data blobs by ID.
type memStore struct {
	blobs map[blob.ID][]byte
	loads map[blob.ID]int
}

func newMemStore() *memStore {
	return &memStore{blobs: map[blob.ID][]byte{}, loads: map[blob.ID]int{}}
}

func (m *memStore) LoadBlob(_ context.Context, id blob.ID, dst []byte) ([]byte, error) {
	m.loads[id]++
	b, ok := m.blobs[id]
	if !ok {
		return nil, fmt.Errorf("blob %s not found", id.Short())
	}
	return append(dst[:0], b...), nil
}

func (m *memStore) put(data []byte) blob.ID {
	id := blob.ID(sha256.Sum256(data))
	m.blobs[id] = data
	return id
}

// entry describes a node for tree building: a file (content), dir (children) or
// symlink (target).
type entry struct {
	name     string
	content  string
	children []entry
	target   string
	mode     uint32
	mtime    time.Time
	uid      uint32
}

func (m *memStore) file(name, content string) entry { return entry{name: name, content: content} }

// tree stores the tree of entries and returns its ID.
func (m *memStore) tree(t *testing.T, entries ...entry) blob.ID {
	t.Helper()
	var tr snapshot.Tree
	for _, e := range entries {
		n := snapshot.Node{Mode: e.mode, ModTime: e.mtime, UID: e.uid}
		if n.Mode == 0 {
			n.Mode = 0o644
		}
		if n.ModTime.IsZero() {
			n.ModTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		n.SetName(e.name)
		switch {
		case e.children != nil:
			n.Type = snapshot.TypeDir
			sub := m.tree(t, e.children...)
			n.Subtree = &sub
		case e.target != "":
			n.Type = snapshot.TypeSymlink
			n.SetTarget(e.target)
		default:
			n.Type = snapshot.TypeFile
			n.Size = uint64(len(e.content))
			if e.content != "" {
				n.Content = []blob.ID{m.put([]byte(e.content))}
			}
		}
		tr.Nodes = append(tr.Nodes, n)
	}
	data, err := tr.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return m.put(data)
}

func dir(name string, children ...entry) entry {
	if children == nil {
		children = []entry{}
	}
	return entry{name: name, children: children, mode: 0o755}
}

func TestParseTime(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"2026-11-23T14:00:00Z", time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)},
		{"2026-11-23T14:00:00+01:00", time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)},
		{"2026-11-23T14:00:00.5Z", time.Date(2026, 11, 23, 14, 0, 0, 5e8, time.UTC)},
		{"2026-11-23 14:00", time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)},
		{"2026-11-23T14:00", time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)},
		{"2026-11-23 14:00:05", time.Date(2026, 11, 23, 13, 0, 5, 0, time.UTC)},
		{" 2026-11-23 ", time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)},
	} {
		got, err := snapshot.ParseTime(c.in, berlin)
		if err != nil {
			t.Errorf("ParseTime(%q): %v", c.in, err)
			continue
		}
		if !got.Equal(c.want) {
			t.Errorf("ParseTime(%q) = %v, want %v", c.in, got.UTC(), c.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2026-13-01", "23.11.2026", "2026-11-23 25:00", "1700000000"} {
		if _, err := snapshot.ParseTime(bad, berlin); err == nil || !strings.Contains(err.Error(), "invalid time") {
			t.Errorf("ParseTime(%q): want an invalid time error, got %v", bad, err)
		}
	}
}

func snapsAt(times ...string) []*snapshot.Snapshot {
	var out []*snapshot.Snapshot
	for i, s := range times {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		var id blob.ID
		id[0], id[1] = byte(0x10*(i+1)), byte(i)
		out = append(out, &snapshot.Snapshot{ID: id, Time: tm, Host: fmt.Sprintf("h%d", i%2)})
	}
	snapshot.SortByTime(out)
	return out
}

func TestSelectAtBoundaries(t *testing.T) {
	snaps := snapsAt("2026-11-21T10:00:00Z", "2026-11-22T10:00:00Z", "2026-11-23T10:00:00Z")
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range []struct {
		at   string
		f    snapshot.Filter
		want int // index, -1: error
	}{
		{"2026-11-21T09:59:59.999999999Z", snapshot.Filter{}, -1},
		{"2026-11-21T10:00:00Z", snapshot.Filter{}, 0}, // exactly at: included
		{"2026-11-22T09:59:59Z", snapshot.Filter{}, 0},
		{"2026-11-22T10:00:00Z", snapshot.Filter{}, 1},
		{"2026-11-22T11:00:00+01:00", snapshot.Filter{}, 1}, // same instant in another zone
		{"2030-01-01T00:00:00Z", snapshot.Filter{}, 2},
		{"2026-11-23T10:00:00Z", snapshot.Filter{Host: "h1"}, 1},
		{"2026-11-21T12:00:00Z", snapshot.Filter{Host: "h1"}, -1}, // before the first h1 snapshot
	} {
		got, err := snapshot.SelectAt(snaps, at(c.at), c.f)
		if c.want < 0 {
			if !errors.Is(err, snapshot.ErrNotFound) || !strings.Contains(err.Error(), "before the first snapshot") {
				t.Errorf("SelectAt(%s, %+v): want a before-the-first-snapshot error, got %v, %v", c.at, c.f, got, err)
			}
			continue
		}
		if err != nil || got != snaps[c.want] {
			t.Errorf("SelectAt(%s, %+v) = %v, %v; want snapshot %d", c.at, c.f, got, err, c.want)
		}
	}
	_, err := snapshot.SelectAt(snaps, at("2030-01-01T00:00:00Z"), snapshot.Filter{Host: "nope"})
	if !errors.Is(err, snapshot.ErrNotFound) || !strings.Contains(err.Error(), "no snapshot matches the filter") {
		t.Errorf("SelectAt with a filter matching nothing: %v", err)
	}
}

func TestSelect(t *testing.T) {
	snaps := snapsAt("2026-11-21T10:00:00Z", "2026-11-22T10:00:00Z", "2026-11-23T10:00:00Z")
	// Two IDs sharing a long prefix.
	snaps[1].ID = snaps[0].ID
	snaps[1].ID[5] = 0xff
	loc := time.FixedZone("X", -5*3600)

	got, err := snapshot.Select(snaps, "latest", snapshot.Filter{Host: "h1"}, loc)
	if err != nil || got != snaps[1] {
		t.Fatalf("latest of h1: %v, %v", got, err)
	}
	// 2026-11-22 05:00 at UTC-5 is 10:00 UTC: exactly the second snapshot.
	got, err = snapshot.Select(snaps, "@2026-11-22 05:00", snapshot.Filter{}, loc)
	if err != nil || got != snaps[1] {
		t.Fatalf("@2026-11-22 05:00 (UTC-5): %v, %v", got, err)
	}
	got, err = snapshot.Select(snaps, "@2026-11-22 04:59", snapshot.Filter{}, loc)
	if err != nil || got != snaps[0] {
		t.Fatalf("@2026-11-22 04:59 (UTC-5): %v, %v", got, err)
	}
	if _, err := snapshot.Select(snaps, "@2026-11-21", snapshot.Filter{}, loc); !errors.Is(err, snapshot.ErrNotFound) ||
		!strings.Contains(err.Error(), "before the first snapshot ("+snaps[0].ID.Short()) {
		t.Fatalf("a date before the first snapshot: %v", err)
	}
	if _, err := snapshot.Select(snaps, "@soon", snapshot.Filter{}, loc); err == nil || !strings.Contains(err.Error(), "invalid time") {
		t.Fatalf("@soon: %v", err)
	}
	prefix := snaps[0].ID.String()[:8]
	_, err = snapshot.Select(snaps, prefix, snapshot.Filter{}, loc)
	if err == nil || !strings.Contains(err.Error(), "ambiguous") || !strings.Contains(err.Error(), snaps[0].ID.String()[:12]) ||
		!strings.Contains(err.Error(), snaps[1].ID.String()[:12]) {
		t.Fatalf("ambiguous prefix %s: %v", prefix, err)
	}
	got, err = snapshot.Select(snaps, strings.ToUpper(snaps[1].ID.String()[:12]), snapshot.Filter{}, loc)
	if err != nil || got != snaps[1] {
		t.Fatalf("unique longer prefix: %v, %v", got, err)
	}
	if _, err := snapshot.Select(snaps, "abc", snapshot.Filter{}, loc); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("short prefix: %v", err)
	}
	if _, err := snapshot.Select(snaps, "ffffffff", snapshot.Filter{}, loc); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestStrftime(t *testing.T) {
	tm := time.Date(2026, 11, 23, 14, 5, 9, 0, time.UTC)
	for _, c := range []struct{ pattern, want string }{
		{"%Y%m%d-%H%M%S", "20261123-140509"},
		{"%y-%b-%j %%", "26-Nov-327 %"},
		{"backup-%F_%T", "backup-2026-11-23_14:05:09"},
		{"%a %A %B %h %e %C", "Mon Monday November Nov 23 20"},
		{"%I%p %R %u %w %z %Z", "02PM 14:05 1 1 +0000 UTC"},
		{"%G-W%V %U %W %g", "2026-W48 47 47 26"},
		{"%q 100%", "%q 100%"},
	} {
		if got := snapshot.Strftime(c.pattern, tm); got != c.want {
			t.Errorf("Strftime(%q) = %q, want %q", c.pattern, got, c.want)
		}
	}
	// Week numbers at the start of a year: 2027-01-01 is a Friday.
	ny := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := snapshot.Strftime("%U %W %V %G %j %I%p", ny); got != "00 00 53 2026 001 12AM" {
		t.Errorf("new year: %q", got)
	}
	if got := snapshot.Strftime("%U %W", time.Date(2027, 1, 3, 0, 0, 0, 0, time.UTC)); got != "01 00" {
		t.Errorf("first Sunday: %q", got)
	}
	if got := snapshot.Strftime("%U %W", time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC)); got != "01 01" {
		t.Errorf("first Monday: %q", got)
	}
}

func sampleRoot(t *testing.T, m *memStore, extra ...entry) blob.ID {
	media := dir("media",
		dir("documents",
			dir("originals", m.file("a.pdf", "aaaa"), m.file("b.txt", "bb")),
			dir("thumbnails", m.file("a.pdf", "thumb")),
		),
		m.file("c.pdf", "c"),
	)
	media.children = append(media.children, extra...)
	return m.tree(t, dir("srv", dir("app", media)))
}

func matchPaths(ms []snapshot.Match) string {
	var p []string
	for _, m := range ms {
		p = append(p, m.Path)
	}
	return strings.Join(p, " ")
}

func TestFinder(t *testing.T) {
	m := newMemStore()
	root1 := sampleRoot(t, m)
	root2 := sampleRoot(t, m, m.file("d.pdf", "new"))
	ctx := context.Background()
	for _, c := range []struct {
		pattern string
		full    bool
		want    string
	}{
		{"*.pdf", false, "/srv/app/media/c.pdf /srv/app/media/documents/originals/a.pdf /srv/app/media/documents/thumbnails/a.pdf"},
		{"a.pdf", false, "/srv/app/media/documents/originals/a.pdf /srv/app/media/documents/thumbnails/a.pdf"},
		{"thumb*", false, "/srv/app/media/documents/thumbnails"},
		{"/srv/app/media/*/originals/*.pdf", true, "/srv/app/media/documents/originals/a.pdf"},
		{"/srv/*/media/*", true, "/srv/app/media/c.pdf /srv/app/media/documents"},
		{"/srv/app/media/documents/", true, "/srv/app/media/documents"},
		{"originals/*", true, "/srv/app/media/documents/originals/a.pdf /srv/app/media/documents/originals/b.txt"},
		{"*/a.pdf", true, "/srv/app/media/documents/originals/a.pdf /srv/app/media/documents/thumbnails/a.pdf"},
		{"*.doc", false, ""},
	} {
		f, err := snapshot.NewFinder(m, c.pattern, c.full)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.Find(ctx, root1)
		if err != nil {
			t.Fatal(err)
		}
		if matchPaths(got) != c.want {
			t.Errorf("find %q (path %v):\n got %s\nwant %s", c.pattern, c.full, matchPaths(got), c.want)
		}
	}

	// The second snapshot shares every subtree but media's: they are not read again,
	// and the cached matches come back at their place.
	f, _ := snapshot.NewFinder(m, "*.pdf", false)
	if _, err := f.Find(ctx, root1); err != nil {
		t.Fatal(err)
	}
	clear(m.loads)
	got, err := f.Find(ctx, root2)
	if err != nil {
		t.Fatal(err)
	}
	want := "/srv/app/media/c.pdf /srv/app/media/d.pdf /srv/app/media/documents/originals/a.pdf /srv/app/media/documents/thumbnails/a.pdf"
	if matchPaths(got) != want {
		t.Errorf("second snapshot: %s", matchPaths(got))
	}
	if len(m.loads) != 4 { // root, srv, app and media changed; documents is cached
		t.Errorf("second snapshot loaded %d trees, want 4 (root, srv, app, media)", len(m.loads))
	}
	if got[3].Node.Size != 5 {
		t.Errorf("match node: %+v", got[3].Node)
	}

	// A full-path pattern prunes directories that cannot match.
	clear(m.loads)
	fp, _ := snapshot.NewFinder(m, "/srv/other/*", true)
	if _, err := fp.Find(ctx, root1); err != nil {
		t.Fatal(err)
	}
	if len(m.loads) != 2 {
		t.Errorf("pruned search loaded %d trees, want 2 (root, srv)", len(m.loads))
	}

	for _, bad := range []string{"", "[", "/"} {
		if _, err := snapshot.NewFinder(m, bad, true); err == nil {
			t.Errorf("NewFinder(%q): no error", bad)
		}
	}
}

func TestFindNodeAndDump(t *testing.T) {
	m := newMemStore()
	root := sampleRoot(t, m)
	ctx := context.Background()
	n, err := snapshot.FindNode(ctx, m, root, "/srv/app/media/documents/originals/a.pdf")
	if err != nil || n == nil || n.Size != 4 {
		t.Fatalf("FindNode: %+v, %v", n, err)
	}
	for _, p := range []string{"/srv/nope", "/srv/app/media/c.pdf/x"} {
		if n, err := snapshot.FindNode(ctx, m, root, p); n != nil || err != nil {
			t.Errorf("FindNode(%s) = %+v, %v; want nil, nil", p, n, err)
		}
	}

	dump := m.tree(t, m.file("sqlite.dump", "PAGES"))
	dn, err := snapshot.DumpNode(ctx, m, &snapshot.Database{Dump: dump})
	if err != nil || dn.RawName() != "sqlite.dump" {
		t.Fatalf("DumpNode: %+v, %v", dn, err)
	}
	var b strings.Builder
	if n, err := snapshot.WriteContent(ctx, m, dn, &b); err != nil || n != 5 || b.String() != "PAGES" {
		t.Fatalf("WriteContent: %d, %v, %q", n, err, b.String())
	}
	delete(m.blobs, dn.Content[0])
	_, err = snapshot.WriteContent(ctx, m, dn, &b)
	var ce *snapshot.ContentError
	if !errors.As(err, &ce) || ce.Blob != dn.Content[0] {
		t.Fatalf("WriteContent with a missing blob: %v", err)
	}
	if _, err := snapshot.DumpNode(ctx, m, &snapshot.Database{Dump: root}); !errors.Is(err, snapshot.ErrInvalidTree) {
		t.Fatalf("DumpNode of a tree with a directory: %v", err)
	}
	if _, err := snapshot.DumpNode(ctx, m, nil); err == nil {
		t.Fatal("DumpNode(nil): no error")
	}
}
