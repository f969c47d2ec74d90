package snapshot

import (
	"context"
	"fmt"

	"github.com/cairn-backup/cairn/repo/blob"
)

// BlobLoader reads verified blobs.
type BlobLoader interface {
	LoadBlob(ctx context.Context, id blob.ID, dst []byte) ([]byte, error)
}

// LoadTree loads and validates a tree blob.
func LoadTree(ctx context.Context, l BlobLoader, id blob.ID) (*Tree, error) {
	data, err := l.LoadBlob(ctx, id, nil)
	if err != nil {
		return nil, fmt.Errorf("load tree %s: %w", id.Short(), err)
	}
	t, err := DecodeTree(data)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", id.Short(), err)
	}
	return t, nil
}

// WalkFunc is called for every node under a tree, with its slash-separated path
// relative to the tree's root ("dir/file"). Returning SkipDir from a directory skips
// its children.
type WalkFunc func(path string, n *Node) error

// SkipDir can be returned by a WalkFunc.
var SkipDir = fmt.Errorf("skip directory")

// Walk visits every node under tree id depth first, in canonical order.
func Walk(ctx context.Context, l BlobLoader, id blob.ID, fn WalkFunc) error {
	return walk(ctx, l, id, "", fn)
}

func walk(ctx context.Context, l BlobLoader, id blob.ID, prefix string, fn WalkFunc) error {
	t, err := LoadTree(ctx, l, id)
	if err != nil {
		return err
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		p := n.RawName()
		if prefix != "" {
			p = prefix + "/" + p
		}
		err := fn(p, n)
		if err == SkipDir {
			continue
		}
		if err != nil {
			return err
		}
		if n.Type == TypeDir {
			if err := walk(ctx, l, *n.Subtree, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
