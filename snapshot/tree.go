// Package snapshot owns what a backup records: snapshot records (time, host, paths,
// app version and migrations, database dump) and the trees of directory listings they
// point to, how both are encoded, loaded, saved and found. The pipelines that make and
// restore snapshots live in its subpackages (backup, restore); retention rules in
// policy. See docs/FORMAT.md §Trees and §Snapshots.
package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cairn-backup/cairn/repo/blob"
)

// Node types.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// ErrInvalidTree is wrapped by errors about malformed trees.
var ErrInvalidTree = errors.New("snapshot: invalid tree")

// Node is one entry of a directory listing (docs/FORMAT.md §Trees).
type Node struct {
	// Name is the entry's name when it is valid UTF-8; otherwise NameRaw holds its
	// bytes and Name is empty. Use RawName and SetName.
	Name    string `json:"name,omitempty"`
	NameRaw []byte `json:"name_raw,omitempty"`
	Type    string `json:"type"`
	// Mode holds the Unix permission bits and setuid/setgid/sticky (07777).
	Mode    uint32    `json:"mode"`
	ModTime time.Time `json:"mtime"`
	// ChangeTime, Inode and Device detect unchanged files; they are not restored.
	ChangeTime time.Time `json:"ctime,omitzero"`
	Inode      uint64    `json:"inode,omitempty"`
	Device     uint64    `json:"device,omitempty"`
	UID        uint32    `json:"uid"`
	GID        uint32    `json:"gid"`
	User       string    `json:"user,omitempty"`
	Group      string    `json:"group,omitempty"`
	Size       uint64    `json:"size,omitempty"`
	// LinkTarget (or LinkTargetRaw when not UTF-8) is a symlink's target.
	LinkTarget    string    `json:"link_target,omitempty"`
	LinkTargetRaw []byte    `json:"link_target_raw,omitempty"`
	Content       []blob.ID `json:"content,omitempty"`
	Subtree       *blob.ID  `json:"subtree,omitempty"`
}

// RawName returns the entry's name as bytes (as a string).
func (n *Node) RawName() string {
	if n.NameRaw != nil {
		return string(n.NameRaw)
	}
	return n.Name
}

// SetName stores name in Name or NameRaw as its encoding requires.
func (n *Node) SetName(name string) {
	if utf8.ValidString(name) {
		n.Name, n.NameRaw = name, nil
	} else {
		n.Name, n.NameRaw = "", []byte(name)
	}
}

// Target returns a symlink's target.
func (n *Node) Target() string {
	if n.LinkTargetRaw != nil {
		return string(n.LinkTargetRaw)
	}
	return n.LinkTarget
}

// SetTarget stores a symlink target.
func (n *Node) SetTarget(t string) {
	if utf8.ValidString(t) {
		n.LinkTarget, n.LinkTargetRaw = t, nil
	} else {
		n.LinkTarget, n.LinkTargetRaw = "", []byte(t)
	}
}

// FileMode converts Mode and Type to an fs.FileMode.
func (n *Node) FileMode() fs.FileMode {
	m := fs.FileMode(n.Mode & 0o777)
	if n.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch n.Type {
	case TypeDir:
		m |= fs.ModeDir
	case TypeSymlink:
		m |= fs.ModeSymlink
	}
	return m
}

// UnixMode converts an fs.FileMode's permission and special bits to Mode.
func UnixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// Tree is a directory listing: nodes sorted by raw name, names unique.
type Tree struct {
	Nodes []Node `json:"nodes"`
}

// Sort orders the nodes by raw name bytes, the canonical order.
func (t *Tree) Sort() {
	sort.Slice(t.Nodes, func(i, j int) bool { return t.Nodes[i].RawName() < t.Nodes[j].RawName() })
}

// Equal reports whether u has the same nodes as t, in the same order, so that both
// encode to the same bytes (Encode sorts; call Sort on both first).
func (t *Tree) Equal(u *Tree) bool {
	if len(t.Nodes) != len(u.Nodes) {
		return false
	}
	for i := range t.Nodes {
		if !t.Nodes[i].Equal(&u.Nodes[i]) {
			return false
		}
	}
	return true
}

// Equal reports whether n and m encode to the same JSON: every field equal, times as
// instants (trees hold UTC times), empty and nil slices alike.
func (n *Node) Equal(m *Node) bool {
	if n.Name != m.Name || !bytes.Equal(n.NameRaw, m.NameRaw) || n.Type != m.Type || n.Mode != m.Mode ||
		!n.ModTime.Equal(m.ModTime) || !n.ChangeTime.Equal(m.ChangeTime) || n.ModTime.Location() != m.ModTime.Location() ||
		n.Inode != m.Inode || n.Device != m.Device || n.UID != m.UID || n.GID != m.GID ||
		n.User != m.User || n.Group != m.Group || n.Size != m.Size ||
		n.LinkTarget != m.LinkTarget || !bytes.Equal(n.LinkTargetRaw, m.LinkTargetRaw) ||
		len(n.Content) != len(m.Content) || (n.Subtree == nil) != (m.Subtree == nil) {
		return false
	}
	if n.Subtree != nil && *n.Subtree != *m.Subtree {
		return false
	}
	for i := range n.Content {
		if n.Content[i] != m.Content[i] {
			return false
		}
	}
	return true
}

// Find returns the node with the raw name, or nil.
func (t *Tree) Find(name string) *Node {
	i := sort.Search(len(t.Nodes), func(i int) bool { return t.Nodes[i].RawName() >= name })
	if i < len(t.Nodes) && t.Nodes[i].RawName() == name {
		return &t.Nodes[i]
	}
	return nil
}

// Encode returns the canonical encoding of the tree: compact JSON of the sorted nodes,
// so that equal directories give equal bytes and deduplicate.
func (t *Tree) Encode() ([]byte, error) {
	t.Sort()
	if t.Nodes == nil {
		t.Nodes = []Node{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(t); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeTree parses and validates a tree (docs/FORMAT.md §Trees, reader duties).
func DecodeTree(data []byte) (*Tree, error) {
	var t Tree
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidTree, err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// ValidName reports whether name can be a directory entry: non-empty, not "." or "..",
// without '/' or NUL. Restore relies on this never to leave its target.
func ValidName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// Validate checks every node: a valid unique name, a known type, the fields its type
// needs and no others, names in canonical order.
func (t *Tree) Validate() error {
	prev := ""
	for i := range t.Nodes {
		n := &t.Nodes[i]
		name := n.RawName()
		if n.NameRaw != nil && n.Name != "" {
			return fmt.Errorf("%w: node %d has both name and name_raw", ErrInvalidTree, i)
		}
		if !ValidName(name) {
			return fmt.Errorf("%w: invalid name %q", ErrInvalidTree, name)
		}
		if i > 0 && name <= prev {
			return fmt.Errorf("%w: names not sorted or not unique at %q", ErrInvalidTree, name)
		}
		prev = name
		if n.Mode&^0o7777 != 0 {
			return fmt.Errorf("%w: %q: invalid mode %o", ErrInvalidTree, name, n.Mode)
		}
		switch n.Type {
		case TypeFile:
			if n.Subtree != nil || n.Target() != "" {
				return fmt.Errorf("%w: file %q has a subtree or link target", ErrInvalidTree, name)
			}
		case TypeDir:
			if n.Subtree == nil || len(n.Content) > 0 {
				return fmt.Errorf("%w: directory %q without subtree or with content", ErrInvalidTree, name)
			}
		case TypeSymlink:
			if n.Subtree != nil || len(n.Content) > 0 || n.Target() == "" {
				return fmt.Errorf("%w: symlink %q malformed", ErrInvalidTree, name)
			}
		default:
			return fmt.Errorf("%w: %q has unknown type %q", ErrInvalidTree, name, n.Type)
		}
	}
	return nil
}
