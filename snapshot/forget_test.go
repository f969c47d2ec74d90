package snapshot

import (
	"reflect"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot/policy"
)

func forgetSnap(n byte, host, app string, at time.Time, paths []string, tags ...string) *Snapshot {
	sn := &Snapshot{ID: blob.ID{n}, Host: host, Time: at, Paths: paths, Tags: tags}
	if app != "" {
		sn.App = &App{Name: app}
	}
	return sn
}

func TestParseGroupBy(t *testing.T) {
	for in, want := range map[string]GroupBy{
		"host,app,paths": DefaultGroupBy, "": {}, "tags": {Tags: true}, "host, tags": {Host: true, Tags: true},
	} {
		got, err := ParseGroupBy(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v", in, got, err)
		}
	}
	if _, err := ParseGroupBy("host,size"); err == nil {
		t.Error("unknown field accepted")
	}
}

func TestGroupAndApplyPolicy(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2024, 3, d, 12, 0, 0, 0, time.UTC) }
	snaps := []*Snapshot{
		forgetSnap(1, "a", "paperless", day(1), []string{"/srv"}),
		forgetSnap(2, "a", "paperless", day(2), []string{"/srv"}, "x"),
		forgetSnap(3, "a", "paperless", day(3), []string{"/srv"}),
		forgetSnap(4, "b", "paperless", day(1), []string{"/srv"}),
		forgetSnap(5, "a", "", day(4), []string{"/srv"}),
		forgetSnap(6, "a", "paperless", day(5), []string{"/srv", "/etc"}),
	}
	groups := GroupSnapshots(snaps, DefaultGroupBy)
	if len(groups) != 4 {
		t.Fatalf("%d groups, want 4 (host a app paperless /srv; host a /srv; host b; host a two paths)", len(groups))
	}
	ds, err := ApplyPolicy(groups, policy.Policy{Last: 1}, day(10))
	if err != nil {
		t.Fatal(err)
	}
	kept, removed := map[byte][]string{}, map[byte]bool{}
	for _, d := range ds {
		for _, k := range d.Keep {
			kept[k.Snapshot.ID[0]] = k.Reasons
		}
		for _, k := range d.Remove {
			removed[k.Snapshot.ID[0]] = true
		}
	}
	if !reflect.DeepEqual(removed, map[byte]bool{1: true, 2: true}) || len(kept) != 4 || kept[3][0] != "last snapshot" {
		t.Errorf("kept %v, removed %v", kept, removed)
	}
	// One group for everything; a tag rule keeps the tagged one.
	all := GroupSnapshots(snaps, GroupBy{})
	if len(all) != 1 || all[0].Key.String() != "all snapshots" {
		t.Fatalf("group-by nothing: %+v", all)
	}
	ds, err = ApplyPolicy(all, policy.Policy{Last: 1, Tags: []string{"x"}}, day(10))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds[0].Keep) != 2 || ds[0].Keep[0].Snapshot.ID[0] != 6 || ds[0].Keep[1].Snapshot.ID[0] != 2 || ds[0].Keep[1].Reasons[0] != "tag x" {
		t.Errorf("keep: %+v", ds[0].Keep)
	}
	// Grouping by tags separates tagged snapshots.
	if n := len(GroupSnapshots(snaps, GroupBy{Tags: true})); n != 2 {
		t.Errorf("group by tags: %d groups, want 2", n)
	}
	if _, err := ApplyPolicy(all, policy.Policy{}, day(10)); err == nil {
		t.Error("empty policy accepted")
	}
}
