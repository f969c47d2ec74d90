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
