package snapshot

// Snapshot-level helpers of the repository lifecycle (docs/LIFECYCLE.md): grouping and
// retention for forget, the used-blob walk prune needs, the snapshot half of check,
// and the repair of snapshots whose data is lost.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot/policy"
)

// ---- Grouping and retention --------------------------------------------------------

// GroupBy says which snapshot fields form a retention group.
type GroupBy struct {
	Host, App, Paths, Tags bool
}

// DefaultGroupBy groups by host, app and paths.
var DefaultGroupBy = GroupBy{Host: true, App: true, Paths: true}

// ParseGroupBy parses a comma-separated subset of host, app, paths and tags; the empty
// string means one group for everything.
func ParseGroupBy(s string) (GroupBy, error) {
	var g GroupBy
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "":
		case "host":
			g.Host = true
		case "app":
			g.App = true
		case "paths":
			g.Paths = true
		case "tags":
			g.Tags = true
		default:
			return g, fmt.Errorf("invalid group-by field %q (use host, app, paths, tags)", f)
		}
	}
	return g, nil
}

// GroupKey identifies a group; fields not grouped by are empty.
type GroupKey struct {
	Host  string   `json:"host,omitempty"`
	App   string   `json:"app,omitempty"`
	Paths []string `json:"paths,omitempty"`
	Tags  []string `json:"tags,omitempty"`
}

func (k GroupKey) String() string {
	var parts []string
	if k.Host != "" {
		parts = append(parts, "host "+k.Host)
	}
	if k.App != "" {
		parts = append(parts, "app "+k.App)
	}
	if len(k.Paths) > 0 {
		parts = append(parts, "paths "+strings.Join(k.Paths, ", "))
	}
	if len(k.Tags) > 0 {
		parts = append(parts, "tags "+strings.Join(k.Tags, ","))
	}
	if len(parts) == 0 {
		return "all snapshots"
	}
	return strings.Join(parts, "; ")
}

func (k GroupKey) id() string {
	return k.Host + "\x00" + k.App + "\x00" + strings.Join(k.Paths, "\x01") + "\x00" + strings.Join(k.Tags, "\x01")
}

// Group is the snapshots sharing a key, oldest first.
type Group struct {
	Key       GroupKey
	Snapshots []*Snapshot
}

// GroupSnapshots splits snaps into groups by the chosen fields, in the order of their
// keys.
func GroupSnapshots(snaps []*Snapshot, by GroupBy) []Group {
	m := map[string]*Group{}
	var order []string
	for _, sn := range snaps {
		var k GroupKey
		if by.Host {
			k.Host = sn.Host
		}
		if by.App && sn.App != nil {
			k.App = sn.App.Name
		}
		if by.Paths {
			k.Paths = slices.Clone(sn.Paths)
			sort.Strings(k.Paths)
		}
		if by.Tags {
			k.Tags = slices.Clone(sn.Tags)
			sort.Strings(k.Tags)
			k.Tags = slices.Compact(k.Tags)
		}
		g := m[k.id()]
		if g == nil {
			g = &Group{Key: k}
			m[k.id()] = g
			order = append(order, k.id())
		}
		g.Snapshots = append(g.Snapshots, sn)
	}
	sort.Strings(order)
	out := make([]Group, 0, len(order))
	for _, id := range order {
		g := m[id]
		SortByTime(g.Snapshots)
		out = append(out, *g)
	}
	return out
}

// Decision is a snapshot with the reasons the policy keeps it (none when removed).
type Decision struct {
	Snapshot *Snapshot
	Reasons  []string
}

// GroupDecision is the outcome of a policy for one group, both lists newest first.
type GroupDecision struct {
	Key    GroupKey
	Keep   []Decision
	Remove []Decision
}

// ApplyPolicy applies the retention policy to each group separately.
func ApplyPolicy(groups []Group, p policy.Policy, now time.Time) ([]GroupDecision, error) {
	var out []GroupDecision
	for _, g := range groups {
		byID := map[string]*Snapshot{}
		items := make([]policy.Item, 0, len(g.Snapshots))
		for _, sn := range g.Snapshots {
			byID[sn.ID.String()] = sn
			items = append(items, policy.Item{ID: sn.ID.String(), Time: sn.Time, Tags: sn.Tags})
		}
		keep, remove, err := policy.Apply(items, p, now)
		if err != nil {
			return nil, err
		}
		gd := GroupDecision{Key: g.Key}
		for _, d := range keep {
			gd.Keep = append(gd.Keep, Decision{Snapshot: byID[d.ID], Reasons: d.Reasons})
		}
		for _, d := range remove {
			gd.Remove = append(gd.Remove, Decision{Snapshot: byID[d.ID]})
		}
		out = append(out, gd)
	}
	return out, nil
}

// Remover deletes repository files.
type Remover interface {
	Backend() backend.Backend
}

// Forget deletes the snapshot records. Their data stays until prune. A snapshot
// already gone is not an error. A snapshot the storage still retains (object lock)
// is skipped and named in the returned error after the others are deleted.
func Forget(ctx context.Context, r Remover, ids []blob.ID) error {
	var retained []error
	for _, id := range ids {
		h := backend.Handle{Type: backend.SnapshotFile, Name: id.String()}
		err := r.Backend().Remove(ctx, h)
		switch {
		case err == nil || backend.IsNotExist(err):
		case errors.Is(err, backend.ErrRetained):
			retained = append(retained, fmt.Errorf("snapshot %s kept: %w", id.Short(), err))
		default:
			return errors.Join(append(retained, fmt.Errorf("forget snapshot %s: %w", id.Short(), err))...)
		}
	}
	return errors.Join(retained...)
}

// ---- Used blobs (prune) ----------------------------------------------------------

// UsedBlobs adds to used every blob the repository's snapshots need: their trees, the
// content of their files and their database dumps. Snapshots in done are skipped and
// the ones walked are added to done. Trees are read through bl, which prune points at
// every pack the index knows. A snapshot or tree that cannot be read is an error: the
// caller must not delete data on an incomplete view.
func UsedBlobs(ctx context.Context, l Loader, bl BlobLoader, used repo.BlobSet, done map[blob.ID]bool) error {
	ids, err := l.List(ctx, backend.SnapshotFile)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if done[id] {
			continue
		}
		sn, err := Load(ctx, l, id)
		if err != nil {
			if errors.Is(err, repo.ErrFileNotFound) {
				continue // forgotten meanwhile
			}
			return err
		}
		if err := usedTree(ctx, bl, sn.Tree, used); err != nil {
			return fmt.Errorf("snapshot %s: %w", id.Short(), err)
		}
		if sn.Database != nil {
			if err := usedTree(ctx, bl, sn.Database.Dump, used); err != nil {
				return fmt.Errorf("snapshot %s: database dump: %w", id.Short(), err)
			}
		}
		done[id] = true
	}
	return nil
}

func usedTree(ctx context.Context, bl BlobLoader, id blob.ID, used repo.BlobSet) error {
	if used.Has(id) {
		return nil // trees are content-addressed: this one was walked already
	}
	t, err := LoadTree(ctx, bl, id)
	if err != nil {
		return err
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		for _, c := range n.Content {
			used[c] = struct{}{}
		}
		if n.Type == TypeDir {
			if err := usedTree(ctx, bl, *n.Subtree, used); err != nil {
				return err
			}
		}
	}
	used[id] = struct{}{}
	return nil
}

// ---- Check -------------------------------------------------------------------------

// BlobStatusFunc says whether a blob is readable: an empty severity means yes;
// otherwise "error" or "warning", why, and the repository file at fault.
type BlobStatusFunc func(id blob.ID) (severity, reason, file string)

// SnapshotIssue is a snapshot that loses (or risks) data.
type SnapshotIssue struct {
	Snapshot *Snapshot `json:"-"`
	ID       string    `json:"snapshot"`
	Severity string    `json:"severity"`
	Path     string    `json:"path"`
	Blob     string    `json:"blob,omitempty"`
	File     string    `json:"file,omitempty"`
	Message  string    `json:"message"`
}

// CheckRepo is what CheckSnapshots needs.
type CheckRepo interface {
	Loader
}

type relIssue struct {
	path, severity, msg, file string
	blob                      blob.ID
}

// CheckSnapshots walks every snapshot's trees (files and database dump) and reports
// each file or directory whose data status says is not readable. Trees are loaded
// through bl and verified. Snapshot records that cannot be read are returned as
// errors naming the file (in listErr) after the readable ones are checked.
func CheckSnapshots(ctx context.Context, l CheckRepo, bl BlobLoader, status BlobStatusFunc) (snaps []*Snapshot, issues []SnapshotIssue, listErr error) {
	snaps, listErr = List(ctx, l)
	memo := map[blob.ID][]relIssue{}
	var walk func(id blob.ID) ([]relIssue, error)
	walk = func(id blob.ID) ([]relIssue, error) {
		if r, ok := memo[id]; ok {
			return r, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var out []relIssue
		sev, why, file := status(id)
		if sev == repo.SeverityError {
			out = append(out, relIssue{severity: sev, msg: "directory listing (tree " + id.Short() + ") lost: " + why, file: file, blob: id})
			memo[id] = out
			return out, nil
		}
		if sev != "" {
			out = append(out, relIssue{severity: sev, msg: "directory listing (tree " + id.Short() + ") " + why, file: file, blob: id})
		}
		t, err := LoadTree(ctx, bl, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			f := ""
			var ce *repo.CorruptError
			if errors.As(err, &ce) {
				f = ce.Handle.String()
			}
			out = append(out, relIssue{severity: repo.SeverityError, msg: "directory listing unreadable: " + err.Error(), file: f, blob: id})
			memo[id] = out
			return out, nil
		}
		for i := range t.Nodes {
			n := &t.Nodes[i]
			name := n.RawName()
			switch n.Type {
			case TypeFile:
				bad, worst := 0, ""
				var first relIssue
				for _, c := range n.Content {
					sev, why, file := status(c)
					if sev == "" {
						continue
					}
					bad++
					if worst != repo.SeverityError {
						worst = sev
						first = relIssue{path: name, severity: sev, file: file, blob: c,
							msg: "blob " + c.Short() + " " + why}
					}
				}
				if bad > 0 {
					if worst == repo.SeverityError {
						first.msg = fmt.Sprintf("file content lost (%d of %d blobs unreadable; first: %s)", bad, len(n.Content), first.msg)
					}
					out = append(out, first)
				}
			case TypeDir:
				sub, err := walk(*n.Subtree)
				if err != nil {
					return nil, err
				}
				for _, s := range sub {
					if s.path == "" {
						s.path = name
					} else {
						s.path = name + "/" + s.path
					}
					out = append(out, s)
				}
			}
		}
		memo[id] = out
		return out, nil
	}
	for _, sn := range snaps {
		add := func(prefix string, rel []relIssue) {
			for _, ri := range rel {
				p := prefix + "/" + ri.path
				if ri.path == "" {
					p = prefix + "/"
				}
				issues = append(issues, SnapshotIssue{Snapshot: sn, ID: sn.ID.String(), Severity: ri.severity, Path: p,
					Blob: ri.blob.String(), File: ri.file, Message: ri.msg})
			}
		}
		rel, err := walk(sn.Tree)
		if err != nil {
			return snaps, issues, err
		}
		add("", rel)
		if sn.Database != nil {
			rel, err := walk(sn.Database.Dump)
			if err != nil {
				return snaps, issues, err
			}
			add("<database dump>", rel)
		}
	}
	return snaps, issues, listErr
}

// ---- Repair ------------------------------------------------------------------------

// RepairResult describes the repair of one snapshot.
type RepairResult struct {
	Original *Snapshot
	// Repaired is the new snapshot (nil when nothing was lost).
	Repaired *Snapshot
	// Dropped lists the paths left out, each with the reason.
	Dropped []string
	// DatabaseLost is set when the database dump could not be kept.
	DatabaseLost bool
}

// RepairTag is added to repaired snapshots.
const RepairTag = "repaired"

type repairedTree struct {
	id      blob.ID
	lost    bool
	dropped []string // relative paths with reasons
}

type treeSaver interface {
	SaveBlob(t blob.Type, id blob.ID, data []byte) (bool, error)
}

type repairer struct {
	ctx   context.Context
	bl    BlobLoader
	ok    func(blob.ID) bool
	save  treeSaver // nil for a dry run
	mac   interface{ Sum([]byte) [32]byte }
	memo  map[blob.ID]repairedTree
	dirty bool
}

func (rp *repairer) tree(id blob.ID) (repairedTree, error) {
	if r, ok := rp.memo[id]; ok {
		return r, nil
	}
	if err := rp.ctx.Err(); err != nil {
		return repairedTree{}, err
	}
	res := repairedTree{id: id}
	var t *Tree
	if rp.ok(id) {
		var err error
		if t, err = LoadTree(rp.ctx, rp.bl, id); err != nil && rp.ctx.Err() != nil {
			return res, rp.ctx.Err()
		}
	}
	if t == nil {
		res.lost = true
		rp.memo[id] = res
		return res, nil
	}
	nt := &Tree{}
	changed := false
	for i := range t.Nodes {
		n := t.Nodes[i]
		name := n.RawName()
		switch n.Type {
		case TypeFile:
			missing := 0
			for _, c := range n.Content {
				if !rp.ok(c) {
					missing++
				}
			}
			if missing > 0 {
				res.dropped = append(res.dropped, fmt.Sprintf("%s: file dropped, %d of %d blobs lost", name, missing, len(n.Content)))
				changed = true
				continue
			}
		case TypeDir:
			sub, err := rp.tree(*n.Subtree)
			if err != nil {
				return res, err
			}
			if sub.lost {
				res.dropped = append(res.dropped, name+"/: directory dropped, its listing (tree "+n.Subtree.Short()+") is lost")
				changed = true
				continue
			}
			for _, d := range sub.dropped {
				res.dropped = append(res.dropped, name+"/"+d)
			}
			if sub.id != *n.Subtree {
				id := sub.id
				n.Subtree = &id
				changed = true
			}
		}
		nt.Nodes = append(nt.Nodes, n)
	}
	if changed {
		nid, err := rp.saveTree(nt)
		if err != nil {
			return res, err
		}
		res.id = nid
	}
	rp.memo[id] = res
	return res, nil
}

func (rp *repairer) saveTree(t *Tree) (blob.ID, error) {
	data, err := t.Encode()
	if err != nil {
		return blob.ID{}, fmt.Errorf("encode tree: %w", err)
	}
	id := blob.ID(rp.mac.Sum(data))
	if rp.save != nil {
		if _, err := rp.save.SaveBlob(blob.Tree, id, data); err != nil {
			return blob.ID{}, fmt.Errorf("save tree: %w", err)
		}
		rp.dirty = true
	}
	return id, nil
}

// RepairSnapshots rewrites each snapshot whose data is partly lost: files with a lost
// blob and directories whose listing is lost are dropped (and listed in the result),
// a lost database dump is removed from the record, and the new snapshot records the
// old one in Original and carries the tag "repaired". ok says whether a blob is
// readable; trees are read through bl. Trees go through w (nil for a dry run, which writes nothing); after w is
// flushed, the new records are saved. Snapshots with nothing lost are left alone.
func RepairSnapshots(ctx context.Context, r *repo.Repository, bl BlobLoader, snaps []*Snapshot, ok func(blob.ID) bool, dryRun bool) ([]RepairResult, error) {
	var w *repo.Writer
	rp := &repairer{ctx: ctx, bl: bl, ok: ok, mac: r.NewBlobMAC(), memo: map[blob.ID]repairedTree{}}
	if !dryRun {
		w = r.NewWriter(ctx, repo.WriterOptions{})
		rp.save = w
	}
	abort := func(err error) ([]RepairResult, error) {
		if w != nil {
			w.Abort()
		}
		return nil, err
	}
	var results []RepairResult
	for _, sn := range snaps {
		res := RepairResult{Original: sn}
		root, err := rp.tree(sn.Tree)
		if err != nil {
			return abort(err)
		}
		newRoot := root.id
		if root.lost {
			res.Dropped = append(res.Dropped, "/: the root directory listing (tree "+sn.Tree.Short()+") is lost; the repaired snapshot is empty")
			if newRoot, err = rp.saveTree(&Tree{}); err != nil {
				return abort(err)
			}
		}
		for _, d := range root.dropped {
			res.Dropped = append(res.Dropped, "/"+d)
		}
		db := sn.Database
		if db != nil {
			dump, err := rp.tree(db.Dump)
			if err != nil {
				return abort(err)
			}
			if dump.lost || len(dump.dropped) > 0 {
				res.DatabaseLost = true
				res.Dropped = append(res.Dropped, "<database dump>: lost, removed from the snapshot")
				db = nil
			}
		}
		if len(res.Dropped) == 0 {
			results = append(results, res)
			continue
		}
		nsn := *sn
		nsn.Tree = newRoot
		nsn.Database = db
		orig := sn.ID
		nsn.Original = &orig
		nsn.Tags = slices.Clone(sn.Tags)
		if !slices.Contains(nsn.Tags, RepairTag) {
			nsn.Tags = append(nsn.Tags, RepairTag)
		}
		res.Repaired = &nsn
		results = append(results, res)
	}
	if dryRun {
		return results, nil
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("save repaired trees: %w", err)
	}
	for i := range results {
		if results[i].Repaired == nil {
			continue
		}
		if _, err := Save(ctx, r, results[i].Repaired); err != nil {
			return results[:i], fmt.Errorf("save repaired snapshot of %s: %w", results[i].Original.ID.Short(), err)
		}
	}
	return results, nil
}
