package restore

import (
	"container/list"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
)

// parentDirs keeps the directories that files are being created in open, so that
// looking for something in the way of a file, creating it and (in place) moving it
// into place each resolve one name relative to its directory. os.Root resolves a path a
// component at a time, with an open and a close for each directory on the way:
// creating a file nine levels below the restore target took 18 system calls before the
// one that creates it (docs/PERFORMANCE.md §Restore).
//
// Handles in use are never closed; of the idle ones, the least recently used are
// closed beyond limit.
type parentDirs struct {
	root  *os.Root
	limit int

	mu   sync.Mutex
	open map[string]*parentDir
	idle list.List // of *parentDir without users, least recently used first
}

type parentDir struct {
	rel  string
	r    *os.Root
	refs int
	elem *list.Element // in idle while refs == 0
}

// maxParentDirs bounds the directory handles kept open (more only while in use).
var maxParentDirs = 64

func newParentDirs(root *os.Root) *parentDirs {
	return &parentDirs{root: root, limit: maxParentDirs, open: map[string]*parentDir{}}
}

// get returns an open handle for directory rel ("" is the restore target); put it
// back when done.
func (c *parentDirs) get(rel string) (*parentDir, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.open[rel]; d != nil {
		if d.elem != nil {
			c.idle.Remove(d.elem)
			d.elem = nil
		}
		d.refs++
		return d, nil
	}
	r, err := c.root.OpenRoot(name(rel))
	if err != nil {
		return nil, fmt.Errorf("open parent directory: %w", err)
	}
	d := &parentDir{rel: rel, r: r, refs: 1}
	c.open[rel] = d
	for len(c.open) > c.limit {
		e := c.idle.Front()
		if e == nil {
			break
		}
		c.drop(e.Value.(*parentDir))
	}
	return d, nil
}

// in runs fn with an open handle on the directory of name (a path under the restore
// target) and name's last component.
func (c *parentDirs) in(name string, fn func(dir *os.Root, base string) error) error {
	dir, base := path.Split(name)
	d, err := c.get(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return err
	}
	defer c.put(d)
	return fn(d.r, base)
}

// put gives back a handle from get.
func (c *parentDirs) put(d *parentDir) {
	c.mu.Lock()
	d.refs--
	if d.refs == 0 {
		d.elem = c.idle.PushBack(d)
	}
	c.mu.Unlock()
}

// drop closes an idle handle. c.mu is held.
func (c *parentDirs) drop(d *parentDir) {
	c.idle.Remove(d.elem)
	d.elem = nil
	delete(c.open, d.rel)
	_ = d.r.Close()
}

// closeIdle closes every handle not in use.
func (c *parentDirs) closeIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.idle.Front(); e != nil; e = c.idle.Front() {
		c.drop(e.Value.(*parentDir))
	}
}
