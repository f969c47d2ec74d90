package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/cairn-backup/cairn/repo/blob"
)

// ChangeKind says how an entry differs between two states.
type ChangeKind int

// Change kinds.
const (
	// Added: only the new state has the entry.
	Added ChangeKind = iota + 1
	// Removed: only the old state has the entry.
	Removed
	// Modified: a file's content or a symlink's target differs (metadata may too).
	Modified
	// TypeChanged: the entry is of another type (file, dir, symlink) in each state.
	TypeChanged
	// MetadataOnly: same content, but mode, owner or modification time differ.
	MetadataOnly
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	case Modified:
		return "changed"
	case TypeChanged:
		return "type changed"
	case MetadataOnly:
		return "metadata"
	}
	return "change(" + strconv.Itoa(int(k)) + ")"
}

// Change is one difference found by Diff or DiffLive. Old is nil for Added, New for
// Removed. Meta names the metadata that differ ("mode", "owner", "mtime") for
// Modified and MetadataOnly.
type Change struct {
	Path string // absolute snapshot path, "/srv/app/media/a.pdf"
	Kind ChangeKind
	Old  *Node
	New  *Node
	Meta []string
}

// TypeSpecial is the node type DiffLive gives live entries that are neither files,
// directories nor symlinks (sockets, devices, pipes). It never appears in a tree.
const TypeSpecial = "special"

// Diff compares the root trees old and new and calls fn for every change, in path
// order (a directory before its entries). Subtrees with equal IDs are skipped unread.
// The entries below an added or removed directory are reported too.
func Diff(ctx context.Context, l BlobLoader, old, new blob.ID, fn func(Change) error) error {
	d := &differ{ctx: ctx, fn: fn, oldSide: treeSide{l}, newSide: treeSide{l}}
	if old == new {
		return nil
	}
	o, err := LoadTree(ctx, l, old)
	if err != nil {
		return err
	}
	n, err := LoadTree(ctx, l, new)
	if err != nil {
		return err
	}
	return d.dirs("", o.Nodes, n.Nodes)
}

// DiffLive compares the live file system (old) with the snapshot's root tree (new)
// under each of paths (absolute paths recorded in the snapshot): the changes an
// in-place restore of those paths with deletion would make. Files are compared the
// quick way backup detects changes, by size and modification time, without reading
// them.
func DiffLive(ctx context.Context, l BlobLoader, root blob.ID, paths []string, fn func(Change) error) error {
	d := &differ{ctx: ctx, fn: fn, oldSide: liveSide{}, newSide: treeSide{l}, quick: true}
	for _, p := range paths {
		p = path.Clean("/" + p)
		if p == "/" {
			t, err := LoadTree(ctx, l, root)
			if err != nil {
				return err
			}
			live, err := liveSide{}.children(ctx, "/", nil)
			if err != nil {
				return err
			}
			if err := d.dirs("", live, t.Nodes); err != nil {
				return err
			}
			continue
		}
		sn, err := FindNode(ctx, l, root, p)
		if err != nil {
			return err
		}
		lv, err := liveNode(p)
		if err != nil {
			return err
		}
		switch {
		case sn == nil && lv == nil:
		case sn == nil:
			err = d.all(Removed, d.oldSide, p, lv)
		case lv == nil:
			err = d.all(Added, d.newSide, p, sn)
		default:
			err = d.node(p, lv, sn)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// side lists the entries of a directory of one state.
type side interface {
	// children returns the entries of directory n at absolute path p, sorted by raw
	// name.
	children(ctx context.Context, p string, n *Node) ([]Node, error)
}

type treeSide struct{ l BlobLoader }

func (s treeSide) children(ctx context.Context, p string, n *Node) ([]Node, error) {
	t, err := LoadTree(ctx, s.l, *n.Subtree)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return t.Nodes, nil
}

type liveSide struct{}

func (liveSide) children(ctx context.Context, p string, _ *Node) ([]Node, error) {
	entries, err := os.ReadDir(filepath.FromSlash(p))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	out := make([]Node, 0, len(entries))
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := liveNode(path.Join(p, e.Name()))
		if err != nil {
			return nil, err
		}
		if n != nil {
			out = append(out, *n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RawName() < out[j].RawName() })
	return out, nil
}

// liveNode describes the file system entry at p as a node without content, or
// returns nil when there is none.
func liveNode(p string) (*Node, error) {
	fi, err := os.Lstat(filepath.FromSlash(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", p, err)
	}
	n := &Node{Mode: UnixMode(fi.Mode()), ModTime: fi.ModTime()}
	n.SetName(path.Base(p))
	switch {
	case fi.Mode().IsRegular():
		n.Type = TypeFile
		n.Size = uint64(fi.Size())
	case fi.IsDir():
		n.Type = TypeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		n.Type = TypeSymlink
		target, err := os.Readlink(filepath.FromSlash(p))
		if err != nil {
			return nil, fmt.Errorf("read symlink %s: %w", p, err)
		}
		n.SetTarget(target)
	default:
		n.Type = TypeSpecial
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		n.UID, n.GID = st.Uid, st.Gid
	}
	return n, nil
}

type differ struct {
	ctx              context.Context
	fn               func(Change) error
	oldSide, newSide side
	quick            bool // old is the live file system: compare files by size and mtime
}

func childPath(prefix, name string) string { return prefix + "/" + name }

// dirs compares two sorted entry lists of the directory at prefix.
func (d *differ) dirs(prefix string, olds, news []Node) error {
	i, j := 0, 0
	for i < len(olds) || j < len(news) {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		var err error
		switch {
		case j == len(news) || i < len(olds) && olds[i].RawName() < news[j].RawName():
			err = d.all(Removed, d.oldSide, childPath(prefix, olds[i].RawName()), &olds[i])
			i++
		case i == len(olds) || news[j].RawName() < olds[i].RawName():
			err = d.all(Added, d.newSide, childPath(prefix, news[j].RawName()), &news[j])
			j++
		default:
			err = d.node(childPath(prefix, olds[i].RawName()), &olds[i], &news[j])
			i++
			j++
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// all reports n at p and, for a directory, every entry below it, as kind.
func (d *differ) all(kind ChangeKind, s side, p string, n *Node) error {
	c := Change{Path: p, Kind: kind}
	if kind == Removed {
		c.Old = n
	} else {
		c.New = n
	}
	if err := d.fn(c); err != nil {
		return err
	}
	if n.Type != TypeDir {
		return nil
	}
	children, err := s.children(d.ctx, p, n)
	if err != nil {
		return err
	}
	for i := range children {
		if err := d.all(kind, s, childPath(p, children[i].RawName()), &children[i]); err != nil {
			return err
		}
	}
	return nil
}

// node compares an entry present in both states.
func (d *differ) node(p string, o, n *Node) error {
	if o.Type != n.Type {
		if err := d.fn(Change{Path: p, Kind: TypeChanged, Old: o, New: n}); err != nil {
			return err
		}
		for _, x := range []struct {
			kind ChangeKind
			s    side
			n    *Node
		}{{Removed, d.oldSide, o}, {Added, d.newSide, n}} {
			if x.n.Type != TypeDir {
				continue
			}
			children, err := x.s.children(d.ctx, p, x.n)
			if err != nil {
				return err
			}
			for i := range children {
				if err := d.all(x.kind, x.s, childPath(p, children[i].RawName()), &children[i]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	meta := metaDiff(o, n)
	kind := MetadataOnly
	switch n.Type {
	case TypeFile:
		if o.Size != n.Size || (d.quick && !o.ModTime.Equal(n.ModTime)) || (!d.quick && !slices.Equal(o.Content, n.Content)) {
			kind = Modified
		}
	case TypeSymlink:
		if o.Target() != n.Target() {
			kind = Modified
		}
	}
	if kind == Modified || len(meta) > 0 {
		if err := d.fn(Change{Path: p, Kind: kind, Old: o, New: n, Meta: meta}); err != nil {
			return err
		}
	}
	if n.Type != TypeDir || (!d.quick && *o.Subtree == *n.Subtree) {
		return nil
	}
	olds, err := d.oldSide.children(d.ctx, p, o)
	if err != nil {
		return err
	}
	news, err := d.newSide.children(d.ctx, p, n)
	if err != nil {
		return err
	}
	return d.dirs(p, olds, news)
}

// metaDiff names the restored metadata that differ between o and n. A symlink's
// mode means nothing on most systems and is not compared.
func metaDiff(o, n *Node) []string {
	var m []string
	if o.Mode != n.Mode && n.Type != TypeSymlink {
		m = append(m, "mode")
	}
	if o.UID != n.UID || o.GID != n.GID {
		m = append(m, "owner")
	}
	if !o.ModTime.Equal(n.ModTime) {
		m = append(m, "mtime")
	}
	return m
}

// MigrationChange is one key of the migrations recorded by a snapshot (or probed from
// a database) whose value differs between two states; Old or New is "" where the
// key is absent.
type MigrationChange struct {
	Key string `json:"key"`
	Old string `json:"old"`
	New string `json:"new"`
}

// DiffMigrations lists the keys whose values differ between old and new, sorted.
func DiffMigrations(old, new map[string]string) []MigrationChange {
	keys := make(map[string]bool, len(old)+len(new))
	for k := range old {
		keys[k] = true
	}
	for k := range new {
		keys[k] = true
	}
	var out []MigrationChange
	for k := range keys {
		if old[k] != new[k] {
			out = append(out, MigrationChange{Key: k, Old: old[k], New: new[k]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// DjangoMigrationNumber returns the numeric prefix of a Django migration name
// ("0012_alter_user_first_name_max_length" → 12), or false when it has none.
func DjangoMigrationNumber(name string) (int, bool) {
	digits := name
	if i := strings.IndexFunc(name, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = name[:i]
	}
	if digits == "" {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return 0, false
	}
	return n, true
}

// CompareDjangoMigrations orders two latest-applied Django migrations of one app by
// their numeric prefixes: -1 when a is older than b, 0 when equal, +1 when newer. An
// absent migration ("") is older than any. ok is false when a name has no numeric
// prefix.
func CompareDjangoMigrations(a, b string) (cmp int, ok bool) {
	switch {
	case a == b:
		return 0, true
	case a == "":
		return -1, true
	case b == "":
		return 1, true
	}
	na, oka := DjangoMigrationNumber(a)
	nb, okb := DjangoMigrationNumber(b)
	if !oka || !okb {
		return 0, false
	}
	switch {
	case na < nb:
		return -1, true
	case na > nb:
		return 1, true
	}
	return 0, true
}
