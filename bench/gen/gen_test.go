package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// treeDigest hashes every regular file's relative path and content, and
// (when withTimes) its modification time.
func treeDigest(t *testing.T, root string, withTimes bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		sum := hex.EncodeToString(h.Sum(nil))
		if withTimes {
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			sum += " " + fi.ModTime().UTC().String()
		}
		out[rel] = sum
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffDigests(a, b map[string]string) (changed, added, removed []string) {
	for k, v := range a {
		w, ok := b[k]
		switch {
		case !ok:
			removed = append(removed, k)
		case v != w:
			changed = append(changed, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			added = append(added, k)
		}
	}
	return
}

func TestDeterministicAndMutate(t *testing.T) {
	for _, kind := range []string{"docs", "small"} {
		t.Run(kind, func(t *testing.T) {
			base := t.TempDir()
			a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
			for _, dir := range []string{a, b} {
				if err := run([]string{"-out", dir, "-kind", kind, "-seed", "7", "-scale", "0.02"}, io.Discard); err != nil {
					t.Fatal(err)
				}
			}
			da, db := treeDigest(t, a, true), treeDigest(t, b, true)
			if ch, ad, rm := diffDigests(da, db); len(ch)+len(ad)+len(rm) > 0 {
				t.Fatalf("same seed differs: changed %v added %v removed %v", ch, ad, rm)
			}
			if len(da) < 20 {
				t.Fatalf("only %d files", len(da))
			}

			// A different seed gives different content.
			c := filepath.Join(base, "c")
			if err := run([]string{"-out", c, "-kind", kind, "-seed", "8", "-scale", "0.02"}, io.Discard); err != nil {
				t.Fatal(err)
			}
			same := 0
			for k, v := range treeDigest(t, c, false) {
				if w, ok := da[k]; ok && strings.Fields(w)[0] == v {
					same++
				}
			}
			if same > len(da)/10 {
				t.Fatalf("seed 8 shares %d of %d files with seed 7", same, len(da))
			}

			// Mutation is deterministic too, and changes a small part.
			for _, dir := range []string{a, b} {
				if err := run([]string{"-mutate", dir, "-seed", "2"}, io.Discard); err != nil {
					t.Fatal(err)
				}
			}
			ma, mb := treeDigest(t, a, false), treeDigest(t, b, false)
			if ch, ad, rm := diffDigests(ma, mb); len(ch)+len(ad)+len(rm) > 0 {
				t.Fatalf("same mutation differs: changed %v added %v removed %v", ch, ad, rm)
			}
			before := map[string]string{}
			for k, v := range da {
				before[k] = strings.Fields(v)[0]
			}
			ch, ad, rm := diffDigests(before, ma)
			if len(ch) == 0 || len(ad) == 0 || len(rm) == 0 {
				t.Fatalf("mutation: %d changed, %d added, %d removed; want some of each", len(ch), len(ad), len(rm))
			}
			if len(ch)+len(ad)+len(rm) > len(da)/4 {
				t.Fatalf("mutation touched too much: %d changed, %d added, %d removed of %d", len(ch), len(ad), len(rm), len(da))
			}
			if kind == "docs" {
				found := false
				for _, k := range ch {
					found = found || k == filepath.FromSlash(docsDBPath)
				}
				if !found {
					t.Fatalf("database unchanged by mutation; changed: %v", ch)
				}
			}
		})
	}
}

func TestDocsDatabase(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"-out", dir, "-kind", "docs", "-seed", "3", "-scale", "0.01"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	count := func() (n int, maxID int) {
		t.Helper()
		db, err := openDB(filepath.Join(dir, docsDBPath))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.QueryRow(`SELECT count(*), max(id) FROM documents_document`).Scan(&n, &maxID); err != nil {
			t.Fatal(err)
		}
		var migrations int
		if err := db.QueryRow(`SELECT count(*) FROM django_migrations`).Scan(&migrations); err != nil || migrations == 0 {
			t.Fatalf("django_migrations: %d rows, %v", migrations, err)
		}
		return n, maxID
	}
	n, maxID := count()
	docs, err := existingDocs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(docs) || maxID != len(docs) {
		t.Fatalf("%d rows (max id %d) for %d documents", n, maxID, len(docs))
	}
	if err := run([]string{"-mutate", dir, "-seed", "1"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	n2, maxID2 := count()
	docs2, err := existingDocs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n2 != len(docs2) || maxID2 <= maxID {
		t.Fatalf("after mutation: %d rows (max id %d) for %d documents", n2, maxID2, len(docs2))
	}
}
