package restore

import (
	"os"
	"path/filepath"
	"testing"
)

// TestParentDirs: handles in use are never closed, idle ones are closed least
// recently used first beyond the limit, and a closed one is opened again on demand.
func TestParentDirs(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a", "b", "c", "d/e"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	c := newParentDirs(root)
	c.limit = 1
	usable := func(d *parentDir) bool {
		_, err := d.r.Stat(".")
		return err == nil
	}
	a, _ := c.get("a")
	b, _ := c.get("b")
	top, err := c.get("")
	if err != nil {
		t.Fatal(err)
	}
	if !usable(a) || !usable(b) || !usable(top) {
		t.Fatal("a handle in use was closed")
	}
	c.put(a)
	c.put(top)
	if a2, _ := c.get("a"); a2 != a {
		t.Error("an idle handle within reach was not reused")
	} else {
		c.put(a2)
	}
	e, err := c.get("d/e") // over the limit: a, then top, the idle ones, are closed
	if err != nil {
		t.Fatal(err)
	}
	if usable(a) || usable(top) {
		t.Error("idle handles beyond the limit were left open")
	}
	if !usable(b) || !usable(e) {
		t.Error("a handle in use was closed")
	}
	a3, err := c.get("a")
	if err != nil || !usable(a3) {
		t.Fatalf("reopening a closed directory: %v", err)
	}
	if _, err := c.get("missing"); err == nil {
		t.Error("opened a directory that does not exist")
	}
	for _, d := range []*parentDir{a3, b, e} {
		c.put(d)
	}
	c.closeIdle()
	if usable(a3) || usable(b) || usable(e) || len(c.open) != 0 {
		t.Error("closeIdle left handles open")
	}
}
