package snapshot_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

func sampleTree() *snapshot.Tree {
	sub := blob.ID{1}
	t := &snapshot.Tree{}
	f := snapshot.Node{Type: snapshot.TypeFile, Mode: 0o644, ModTime: time.Unix(1, 0).UTC(), Size: 3, Content: []blob.ID{{2}}}
	f.SetName("b file\nwith newline")
	d := snapshot.Node{Type: snapshot.TypeDir, Mode: 0o755, Subtree: &sub}
	d.SetName("a")
	l := snapshot.Node{Type: snapshot.TypeSymlink, Mode: 0o777}
	l.SetName("\xff\xfe-not-utf8")
	l.SetTarget("../x")
	t.Nodes = []snapshot.Node{f, d, l}
	return t
}

func TestTreeCanonical(t *testing.T) {
	a, err := sampleTree().Encode()
	if err != nil {
		t.Fatal(err)
	}
	tr := sampleTree()
	tr.Nodes[0], tr.Nodes[2] = tr.Nodes[2], tr.Nodes[0]
	b, _ := tr.Encode()
	if string(a) != string(b) {
		t.Fatal("encoding depends on input order")
	}
	got, err := snapshot.DecodeTree(a)
	if err != nil {
		t.Fatal(err)
	}
	if got.Nodes[2].RawName() != "\xff\xfe-not-utf8" || got.Nodes[1].RawName() != "b file\nwith newline" {
		t.Fatalf("names: %q %q", got.Nodes[1].RawName(), got.Nodes[2].RawName())
	}
}

func TestTreeRejects(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "/abs", "nul\x00"} {
		tr := sampleTree()
		tr.Nodes = tr.Nodes[:1]
		tr.Nodes[0].SetName(name)
		data, _ := json.Marshal(tr)
		if _, err := snapshot.DecodeTree(data); !errors.Is(err, snapshot.ErrInvalidTree) {
			t.Errorf("name %q: got %v", name, err)
		}
	}
	// Duplicate names.
	tr := sampleTree()
	tr.Nodes = append(tr.Nodes, tr.Nodes[0])
	data, _ := json.Marshal(tr)
	if _, err := snapshot.DecodeTree(data); !errors.Is(err, snapshot.ErrInvalidTree) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := snapshot.DecodeTree([]byte(`{"nodes":[],"x":1}`)); !errors.Is(err, snapshot.ErrInvalidTree) {
		t.Errorf("unknown field: %v", err)
	}
}

func FuzzDecodeTree(f *testing.F) {
	enc, _ := sampleTree().Encode()
	f.Add(enc)
	f.Add([]byte(`{"nodes":[]}`))
	f.Add([]byte(`{"nodes":[{"name":"..","type":"file"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := snapshot.DecodeTree(data)
		if err != nil {
			if !errors.Is(err, snapshot.ErrInvalidTree) {
				t.Fatalf("error does not wrap ErrInvalidTree: %v", err)
			}
			return
		}
		for _, n := range tr.Nodes {
			if !snapshot.ValidName(n.RawName()) {
				t.Fatalf("accepted invalid name %q", n.RawName())
			}
		}
		enc, err := tr.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := snapshot.DecodeTree(enc); err != nil {
			t.Fatalf("re-decode of canonical form: %v", err)
		}
	})
}

func TestSelectAt(t *testing.T) {
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	var snaps []*snapshot.Snapshot
	for i := 0; i < 3; i++ {
		snaps = append(snaps, &snapshot.Snapshot{Time: base.Add(time.Duration(i) * 24 * time.Hour), ID: blob.ID{byte(i + 1)}})
	}
	if _, err := snapshot.SelectAt(snaps, base.Add(-time.Second), snapshot.Filter{}); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("before first: %v", err)
	}
	for _, c := range []struct {
		at   time.Time
		want byte
	}{{base, 1}, {base.Add(24*time.Hour - 1), 1}, {base.Add(24 * time.Hour), 2}, {base.Add(1000 * time.Hour), 3}} {
		sn, err := snapshot.SelectAt(snaps, c.at, snapshot.Filter{})
		if err != nil || sn.ID[0] != c.want {
			t.Errorf("at %s: got %v %v, want %d", c.at, sn, err, c.want)
		}
	}
	if _, err := snapshot.Find(snaps, "0", snapshot.Filter{}); err == nil {
		t.Error("short prefix accepted")
	}
}

// TestTreeEqualMatchesEncoding: backup reuses a parent's tree when Equal says the new
// one is the same, so Equal must hold exactly when the encodings are equal.
func TestTreeEqualMatchesEncoding(t *testing.T) {
	base := sampleTree()
	enc, _ := base.Encode()
	decoded, err := snapshot.DecodeTree(enc)
	if err != nil {
		t.Fatal(err)
	}
	fresh := sampleTree()
	fresh.Sort()
	if !decoded.Equal(fresh) || !fresh.Equal(decoded) {
		t.Fatal("a decoded tree differs from the tree it was encoded from")
	}
	other := blob.ID{9}
	changes := map[string]func(n []snapshot.Node){
		"mtime":        func(n []snapshot.Node) { n[1].ModTime = n[1].ModTime.Add(time.Nanosecond) },
		"ctime":        func(n []snapshot.Node) { n[1].ChangeTime = time.Unix(5, 0).UTC() },
		"mode":         func(n []snapshot.Node) { n[1].Mode = 0o600 },
		"size":         func(n []snapshot.Node) { n[1].Size++ },
		"content":      func(n []snapshot.Node) { n[1].Content = []blob.ID{{3}} },
		"more content": func(n []snapshot.Node) { n[1].Content = append(n[1].Content, blob.ID{3}) },
		"subtree":      func(n []snapshot.Node) { n[0].Subtree = &other },
		"no subtree":   func(n []snapshot.Node) { n[0].Subtree = nil },
		"name":         func(n []snapshot.Node) { n[1].SetName("b file") },
		"target":       func(n []snapshot.Node) { n[2].SetTarget("../y") },
		"inode":        func(n []snapshot.Node) { n[1].Inode = 7 },
		"device":       func(n []snapshot.Node) { n[1].Device = 7 },
		"owner":        func(n []snapshot.Node) { n[1].UID, n[1].User = 1000, "alice" },
		"group":        func(n []snapshot.Node) { n[1].GID, n[1].Group = 1000, "staff" },
		"local time":   func(n []snapshot.Node) { n[1].ModTime = n[1].ModTime.In(time.FixedZone("X", 3600)) },
	}
	for name, change := range changes {
		tr := sampleTree()
		tr.Sort()
		change(tr.Nodes)
		tr.Sort()
		got, _ := tr.Encode()
		if tr.Equal(decoded) || decoded.Equal(tr) {
			t.Errorf("%s: Equal despite the change", name)
		}
		if string(got) == string(enc) {
			t.Errorf("%s: the change does not show in the encoding", name)
		}
	}
	// Nil and empty slices encode alike and are equal.
	a, b := sampleTree(), sampleTree()
	a.Nodes[2].Content, b.Nodes[2].Content = nil, []blob.ID{}
	ea, _ := a.Encode()
	eb, _ := b.Encode()
	if !a.Equal(b) || string(ea) != string(eb) {
		t.Fatal("nil and empty content differ")
	}
}
