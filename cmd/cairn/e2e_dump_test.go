package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// snapshotListing is what `cairn ls --json` says of a snapshot, as archive names
// (no leading "/", directories with a trailing "/"), with sizes of files and targets
// of symlinks.
func snapshotListing(t *testing.T, e *e2e, ref string) map[string]string {
	t.Helper()
	var nodes []nodeJSON
	if err := json.Unmarshal([]byte(e.ok("ls", "--json", ref)), &nodes); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range nodes {
		name := strings.TrimPrefix(n.Path, "/")
		switch n.Type {
		case "dir":
			out[name+"/"] = "dir"
		case "symlink":
			out[name] = "-> " + n.LinkTarget
		default:
			out[name] = fmt.Sprint(n.Size)
		}
	}
	return out
}

func TestDumpArchives(t *testing.T) {
	e := newE2E(t)
	app := e.sampleApp()
	// A template from the config names the default file.
	cfg := string(readFile(t, e.cfg))
	cfg = strings.Replace(cfg, "[app]\n", "[app]\ndump_name_template = \"app-%Y-%j_%H%M\"\n", 1)
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.backup("2026-11-23T14:00:00+01:00")
	want := snapshotListing(t, e, "latest")
	dbSize := fmt.Sprint(len(readFile(t, filepath.Join(app, "data", "db.sqlite3"))))
	want["database/"] = "dir"
	want["database/sqlite.dump"] = dbSize

	work := t.TempDir()
	t.Chdir(work)
	out := e.ok("dump", "latest")
	if !strings.Contains(out, "to app-2026-327_1300.tar:") || !strings.Contains(out, "database dump database/sqlite.dump") {
		t.Errorf("dump output: %s", out)
	}
	e.ok("dump", "latest", "--format", "zip")
	if _, errs := e.fail(1, "dump", "latest"); !strings.Contains(errs, "app-2026-327_1300.tar exists; use --force") {
		t.Errorf("dump over an existing file: %s", errs)
	}
	e.ok("dump", "latest", "--force")
	// --output - streams the same bytes.
	if stdout := e.ok("dump", "latest", "--output", "-"); stdout != string(readFile(t, "app-2026-327_1300.tar")) {
		t.Error("dump --output - differs from the file")
	}
	// A .zip output name selects zip.
	e.ok("dump", "latest", "--output", "named.zip")
	if !bytes.HasPrefix(readFile(t, "named.zip"), []byte("PK\x03\x04")) {
		t.Error("--output named.zip is not a zip")
	}
	e.cfg = "" // without a config: the default template
	e.ok("dump", "latest")
	if _, err := os.Stat("20261123-130000.tar"); err != nil {
		t.Errorf("default name: %v", err)
	}
	e.cfg = filepath.Join(app, "cairn.toml")

	t.Run("tar", func(t *testing.T) {
		if _, err := exec.LookPath("tar"); err != nil {
			t.Skip("tar is not installed")
		}
		listing, err := exec.Command("tar", "-tvf", "app-2026-327_1300.tar").CombinedOutput()
		if err != nil {
			t.Fatalf("tar -tvf: %v\n%s", err, listing)
		}
		// -rw-r--r-- root/root        99 2026-11-23 19:14 path [-> target]
		line := regexp.MustCompile(`^(\S+) \S+ +(\d+) \S+ \S+ (.*)$`)
		got := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(listing)), "\n") {
			m := line.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("tar -tvf line %q", l)
			}
			switch m[1][0] {
			case 'd':
				got[m[3]] = "dir"
			case 'l':
				name, target, _ := strings.Cut(m[3], " -> ")
				got[name] = "-> " + target
			default:
				got[m[3]] = m[2]
			}
		}
		sameState(t, "tar -tvf listing", got, want)
		// Extracted, the media tree is the original: content, modes, times, symlinks.
		x := t.TempDir()
		if out, err := exec.Command("tar", "-xf", "app-2026-327_1300.tar", "-C", x).CombinedOutput(); err != nil {
			t.Fatalf("tar -xf: %v\n%s", err, out)
		}
		sameState(t, "media extracted from the tar", treeState(t, filepath.Join(x, app, "media")), treeState(t, filepath.Join(app, "media")))
		if !bytes.Equal(readFile(t, filepath.Join(x, "database", "sqlite.dump")), readFile(t, filepath.Join(app, "data", "db.sqlite3"))) {
			t.Error("database/sqlite.dump differs from the database")
		}
	})
	t.Run("zip", func(t *testing.T) {
		if _, err := exec.LookPath("unzip"); err != nil {
			t.Skip("unzip is not installed (scripts/test-all.sh should install it)")
		}
		listing, err := exec.Command("unzip", "-l", "app-2026-327_1300.zip").CombinedOutput()
		if err != nil {
			t.Fatalf("unzip -l: %v\n%s", err, listing)
		}
		//    99  2026-11-23 19:14   path
		line := regexp.MustCompile(`^ *(\d+)  \S+ \S+   (.+)$`)
		got := map[string]string{}
		for _, l := range strings.Split(string(listing), "\n") {
			m := line.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			got[m[2]] = m[1]
		}
		// unzip -l shows sizes only: directories are 0, symlinks the target's length.
		wantZip := map[string]string{}
		for k, v := range want {
			switch {
			case v == "dir":
				v = "0"
			case strings.HasPrefix(v, "-> "):
				v = fmt.Sprint(len(v) - 3)
			}
			wantZip[k] = v
		}
		sameState(t, "unzip -l listing", got, wantZip)
		x := t.TempDir()
		if out, err := exec.Command("unzip", "-q", "app-2026-327_1300.zip", "-d", x).CombinedOutput(); err != nil {
			t.Fatalf("unzip: %v\n%s", err, out)
		}
		// Zip keeps whole seconds: compare content, modes and symlinks.
		strip := func(m map[string]string) map[string]string {
			re := regexp.MustCompile(` mtime=\S+`)
			out := map[string]string{}
			for k, v := range m {
				out[k] = re.ReplaceAllString(v, "")
			}
			return out
		}
		sameState(t, "media extracted from the zip", strip(treeState(t, filepath.Join(x, app, "media"))), strip(treeState(t, filepath.Join(app, "media"))))
	})
	names, _ := filepath.Glob("*")
	sort.Strings(names)
	if strings.Join(names, " ") != "20261123-130000.tar app-2026-327_1300.tar app-2026-327_1300.zip named.zip" {
		t.Errorf("files left in the directory: %v", names)
	}
}
