package snapshot_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/crashtest"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
)

// recordLoader serves one snapshot record's plaintext the way repo.LoadJSON does after
// decrypting it.
type recordLoader struct{ data []byte }

func (l recordLoader) LoadJSON(_ context.Context, t backend.FileType, id blob.ID, v any) error {
	if err := json.Unmarshal(l.data, v); err != nil {
		return &repo.CorruptError{Handle: backend.Handle{Type: t, Name: id.String()}, Err: err}
	}
	return nil
}

func (l recordLoader) List(context.Context, backend.FileType) ([]blob.ID, error) {
	return []blob.ID{{1}}, nil
}

// FuzzSnapshotRecord decodes snapshot records as snapshot.Load does (JSON, version and
// tree checks) and exercises what commands do with a loaded record. Seeds: the
// decrypted records of testdata/vectors/repo-v1 and hand-made ones.
func FuzzSnapshotRecord(f *testing.F) {
	v := crashtest.LoadVectors(f)
	in := append([][]byte{}, v.Snapshots...)
	in = append(in, []byte(`{"version":1}`), []byte(`{"version":2,"tree":"00"}`),
		[]byte(`{"version":1,"time":"2026-01-01T00:00:00Z","tree":"`+blob.ID{1}.String()+`","paths":["/"],"database":{"engine":"x","dump":"`+blob.ID{2}.String()+`"}}`))
	if len(in) == 0 {
		f.Fatal("no seeds")
	}
	for _, b := range in {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		sn, err := snapshot.Load(ctx, recordLoader{data}, blob.ID{1})
		if err != nil {
			return
		}
		if sn.Version > snapshot.RecordVersion || sn.Tree.IsNull() || sn.ID != (blob.ID{1}) {
			t.Fatalf("accepted %+v", sn)
		}
		_ = sn.HasTag("x")
		_ = snapshot.Filter{Host: "h", Tags: []string{"a"}}.Match(sn)
		list := []*snapshot.Snapshot{sn}
		snapshot.SortByTime(list)
		if _, err := snapshot.Find(list, "latest", snapshot.Filter{}); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			t.Fatalf("find latest: %v", err)
		}
		_, _ = snapshot.SelectAt(list, time.Now(), snapshot.Filter{})
		again, err := json.Marshal(sn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := snapshot.Load(ctx, recordLoader{again}, blob.ID{1}); err != nil {
			t.Fatalf("re-load of an accepted record: %v", err)
		}
	})
}
