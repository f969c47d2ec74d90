package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend/local"
)

// TestWriteOnlyKey: a write-only key backs up (twice: the second run re-reads every
// file, since it cannot read the parent snapshot, but stores nothing new because the
// index it can read deduplicates), is refused everything that reads or removes
// backups, and holds nothing that decrypts a pack, tree or snapshot. The full key then
// restores byte-identical files.
func TestWriteOnlyKey(t *testing.T) {
	c := newKeyCLI(t)
	src := c.sampleSource()
	woID := newIdentityFile(t, c, "write-only.txt", false)
	c.ok("init", "--password-file", c.pw)
	if out := c.ok("key", "add", "--password-file", c.pw, "--write-only", "--new-identity-file", woID); !strings.Contains(out, "added write-only identity key") {
		t.Fatalf("key add --write-only: %s", out)
	}

	backupOnce := func() backupJSON {
		t.Helper()
		var res backupJSON
		out := c.ok("backup", "--json", "--identity-file", woID, src)
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("backup --json: %v\n%s", err, out)
		}
		return res
	}
	first := backupOnce()
	second := backupOnce()
	t.Logf("first: %d blobs, %d bytes added; second: %d blobs, %d bytes added, %d bytes read",
		first.BlobsAdded, first.BytesAdded, second.BlobsAdded, second.BytesAdded, second.BytesRead)
	if first.BytesAdded < first.TotalBytes || first.TotalFiles != 4 {
		t.Fatalf("first backup stored %d of %d bytes, %d files", first.BytesAdded, first.TotalBytes, first.TotalFiles)
	}
	// No parent: every file is read again...
	if second.Parent != "" || second.FilesUnchanged != 0 || second.BytesRead != second.TotalBytes {
		t.Fatalf("second backup: parent %q, %d unchanged, read %d of %d bytes; want no parent and every file read",
			second.Parent, second.FilesUnchanged, second.BytesRead, second.TotalBytes)
	}
	// ...but deduplicated against the index: at most a few tree blobs (directories
	// above the source whose metadata changed meanwhile) are new, no file content.
	if second.BytesAdded > 16<<10 || second.BlobsAdded > int64(strings.Count(src, "/")+2) {
		t.Fatalf("second backup of unchanged files added %d blobs, %d bytes", second.BlobsAdded, second.BytesAdded)
	}
	if second.SnapshotID == first.SnapshotID {
		t.Fatal("second backup wrote no new snapshot")
	}

	// Refused: everything that reads names, trees or snapshots, or removes data, or
	// changes keys. The message says why.
	const why = "this key is write-only: it can add backups but not read, list, forget or prune; use a full key"
	for _, args := range [][]string{
		{"snapshots"},
		{"ls", "latest"},
		{"restore", "latest", "--target", filepath.Join(c.dir, "nope")},
		{"forget", "--keep-last", "1"},
		{"prune"},
		{"key", "add", "--new-password-file", c.pw},
		{"key", "remove", "00000000"},
		{"key", "passwd", "--new-password-file", c.pw},
		{"key", "export-identity"},
	} {
		errs := c.fail(append(args, "--identity-file", woID)...)
		if !strings.Contains(errs, why) {
			t.Errorf("cairn %s with a write-only key: stderr %q, want %q", strings.Join(args, " "), errs, why)
		}
	}
	if _, err := os.Stat(filepath.Join(c.dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Error("refused restore created its target")
	}
	if out := c.ok("stats", "--identity-file", woID); !strings.Contains(out, "Snapshots:          2") {
		t.Errorf("stats with a write-only key:\n%s", out)
	}

	// Nothing the write-only key holds decrypts a pack (content, trees, names) or a
	// snapshot.
	ctx := context.Background()
	be, err := local.Open(c.repo)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(woID)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := crypto.ParseIdentityFile(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, cred)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.WriteOnly() {
		t.Fatal("the write-only credential opened a full key")
	}
	if _, err := r.Secrets().DataIdentityString(); !errors.Is(err, crypto.ErrWriteOnly) {
		t.Fatalf("write-only secrets hold a data identity: %v", err)
	}
	keyFile, err := os.ReadFile(filepath.Join(c.repo, "keys", r.KeyID()))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := age.Decrypt(bytes.NewReader(keyFile), cred.Identities()...)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.NewDecoder(plain).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc["data_identity"]; ok || doc["write_only"] != true {
		t.Fatalf("write-only key file: data_identity present or write_only unset: keys %v", keysOf(doc))
	}
	ids := append(append([]age.Identity{}, r.Secrets().Identities()...), cred.Identities()...)
	if len(ids) < 2 {
		t.Fatalf("%d identities", len(ids))
	}
	var packs, snaps int
	for _, p := range repoFiles(t, c.repo, "data", "snapshots") {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range append([]age.Identity{nil}, ids...) {
			try := ids
			if id != nil {
				try = []age.Identity{id}
			}
			if _, err := age.Decrypt(bytes.NewReader(data), try...); err == nil {
				t.Fatalf("a write-only identity decrypts %s", p)
			}
		}
		if strings.Contains(p, "snapshots") {
			snaps++
		} else {
			packs++
		}
	}
	if packs < 2 || snaps != 2 {
		t.Fatalf("checked %d packs and %d snapshots, want at least 2 and 2", packs, snaps)
	}
	// Control: the full key's identities do open them.
	pw, err := crypto.NewPassphrase("full key passphrase", 0)
	if err != nil {
		t.Fatal(err)
	}
	full, err := repo.Open(ctx, be, pw)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range repoFiles(t, c.repo, "data", "snapshots") {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := age.Decrypt(bytes.NewReader(data), full.Secrets().Identities()...); err != nil {
			t.Fatalf("the full key does not open %s: %v", p, err)
		}
	}
	// The identities are real: they open the index and the config, which the
	// write-only key needs to deduplicate.
	for _, p := range append(repoFiles(t, c.repo, "index"), filepath.Join(c.repo, "config")) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := age.Decrypt(bytes.NewReader(data), r.Secrets().Identities()...); err != nil {
			t.Fatalf("write-only identities do not open %s: %v", p, err)
		}
	}

	// The full key restores what the write-only key stored.
	if out := c.ok("snapshots", "--password-file", c.pw); !strings.Contains(out, "2 snapshots") {
		t.Fatalf("snapshots with the full key:\n%s", out)
	}
	target := filepath.Join(c.dir, "restored")
	c.ok("restore", "latest", "--password-file", c.pw, "--target", target)
	sameTree(t, src, filepath.Join(target, src))
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
