package main

import (
	"bufio"
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// keyCLI runs the cairn command in-process against one repository, for the key tests
// (write-only, post-quantum and plugin keys).
type keyCLI struct {
	t    *testing.T
	dir  string
	repo string
	pw   string // passphrase file of the first, full key
}

func newKeyCLI(t *testing.T) *keyCLI {
	t.Helper()
	dir := t.TempDir()
	for _, v := range []string{"CAIRN_REPOSITORY", "CAIRN_PASSWORD_FILE", "CAIRN_PASSWORD_COMMAND", "CAIRN_IDENTITY_FILE", "CAIRN_CONFIG"} {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", filepath.Join(dir, "home"))
	c := &keyCLI{t: t, dir: dir, repo: filepath.Join(dir, "repo"), pw: filepath.Join(dir, "pw")}
	if err := os.WriteFile(c.pw, []byte("full key passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs cairn with --repo and args.
func (c *keyCLI) run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	full := append([]string{"--repo", c.repo, "--kdf-work-factor", "10"}, args...)
	code = run(context.Background(), full, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func (c *keyCLI) ok(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("cairn %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (c *keyCLI) fail(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code == 0 {
		c.t.Fatalf("cairn %s succeeded, want failure\nstdout: %s", strings.Join(args, " "), out)
	}
	return errs
}

// write creates a file under the test directory and returns its path.
func (c *keyCLI) write(name, content string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// sampleSource makes a small source tree: a 2 MiB file of pseudo-random bytes (several
// chunks), a text file, a file in a subdirectory and a symlink.
func (c *keyCLI) sampleSource() string {
	c.t.Helper()
	src := filepath.Join(c.dir, "src")
	big := make([]byte, 2<<20)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range big {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		big[i] = byte(x)
	}
	c.write("src/big.bin", string(big))
	c.write("src/notes.txt", "the plaintext that must not be readable\n")
	c.write("src/sub/deep.txt", strings.Repeat("deep ", 1000))
	if err := os.Symlink("notes.txt", filepath.Join(src, "link")); err != nil {
		c.t.Fatal(err)
	}
	return src
}

// sameTree fails unless every file and symlink of want exists in got with the same
// content or target.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		q := filepath.Join(got, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, err := os.Readlink(q)
			if err != nil || a != b {
				t.Errorf("symlink %s: restored target %q (%v), want %q", rel, b, err, a)
			}
		case d.Type().IsRegular():
			a, _ := os.ReadFile(p)
			b, err := os.ReadFile(q)
			if err != nil || !bytes.Equal(a, b) {
				t.Errorf("file %s differs after restore (%v)", rel, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("compared no files")
	}
}

// stanzaTypes returns the recipient stanza types in an age file's header.
func stanzaTypes(t *testing.T, data []byte) []string {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	var types []string
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			if line != "age-encryption.org/v1" {
				t.Fatalf("not an age file: %q", line)
			}
			first = false
			continue
		}
		if strings.HasPrefix(line, "---") {
			return types
		}
		if rest, ok := strings.CutPrefix(line, "-> "); ok {
			types = append(types, strings.Fields(rest)[0])
		}
	}
	t.Fatal("age header without end")
	return nil
}

// repoFiles returns the stored files under the given top-level entries of a local
// repository (temporaries excluded).
func repoFiles(t *testing.T, repoDir string, tops ...string) []string {
	t.Helper()
	var out []string
	for _, top := range tops {
		root := filepath.Join(repoDir, top)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
				out = append(out, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func newIdentityFile(t *testing.T, c *keyCLI, name string, pq bool) string {
	t.Helper()
	var s string
	if pq {
		id, err := age.GenerateHybridIdentity()
		if err != nil {
			t.Fatal(err)
		}
		s = id.String()
	} else {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		s = id.String()
	}
	return c.write(name, "# test identity\n"+s+"\n")
}

// TestPostQuantumRepository: with init --pq every file the repository encrypts to its
// own recipients (packs, index, snapshots, config, locks) carries only hybrid
// ML-KEM-768+X25519 stanzas, and a hybrid identity's key file too.
func TestPostQuantumRepository(t *testing.T) {
	c := newKeyCLI(t)
	src := c.sampleSource()
	pqID := newIdentityFile(t, c, "pq-identity.txt", true)
	c.ok("init", "--pq", "--identity-file", pqID)
	c.ok("key", "add", "--identity-file", pqID, "--new-password-file", c.pw)
	// A classical identity's key file would be the weak link: warned about.
	classical := newIdentityFile(t, c, "x25519-identity.txt", false)
	if _, errs, code := c.run("key", "add", "--identity-file", pqID, "--new-identity-file", classical); code != 0 ||
		!strings.Contains(errs, "post-quantum (init --pq), but the key file for this X25519 identity is not") {
		t.Fatalf("adding an X25519 key to a --pq repository: exit %d, stderr %q", code, errs)
	}
	c.ok("backup", "-q", "--identity-file", pqID, src)
	c.ok("backup", "-q", "--password-file", c.pw, src)

	files := repoFiles(t, c.repo, "data", "index", "snapshots", "locks", "config")
	var packs int
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		types := stanzaTypes(t, data)
		if len(types) == 0 {
			t.Fatalf("%s: no recipient stanza", p)
		}
		for _, typ := range types {
			if typ != "mlkem768x25519" {
				t.Errorf("%s: stanza %q, want only mlkem768x25519", p, typ)
			}
		}
		if strings.Contains(p, string(filepath.Separator)+"data"+string(filepath.Separator)) {
			packs++
			if len(types) != 1 {
				t.Errorf("pack %s: %d stanzas, want 1 (the data recipient)", p, len(types))
			}
		}
	}
	if packs < 2 {
		t.Fatalf("found %d packs, want data and tree packs", packs)
	}
	kinds := map[string]int{}
	for _, p := range repoFiles(t, c.repo, "keys") {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		kinds[strings.Join(stanzaTypes(t, data), ",")]++
	}
	if kinds["mlkem768x25519"] != 1 || kinds["scrypt"] != 1 || kinds["X25519"] != 1 || len(kinds) != 3 {
		t.Fatalf("key file stanzas %v, want one each of mlkem768x25519, scrypt and X25519 (the keys added)", kinds)
	}
	if out := c.ok("key", "export-identity", "--password-file", c.pw); !strings.Contains(out, "\nAGE-SECRET-KEY-PQ-1") {
		t.Fatalf("export-identity of a --pq repository:\n%s", out)
	}
	target := filepath.Join(c.dir, "restored")
	c.ok("restore", "latest", "--identity-file", pqID, "--target", target)
	sameTree(t, src, filepath.Join(target, src))
}

// buildCairnTestPlugin builds testdata/age-plugin-test as age-plugin-cairntest into a
// temporary directory and puts that directory first on PATH.
func buildCairnTestPlugin(t *testing.T) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is needed to build the test age plugin")
	}
	dir := t.TempDir()
	cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, "age-plugin-cairntest"), "../../testdata/age-plugin-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test plugin: %v\n%s", err, out)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// TestPluginKey: a key for an age plugin identity (a hardware key stand-in) is added
// with its recipient, opens the repository, backs up and restores; a missing or
// failing plugin is named in the error.
func TestPluginKey(t *testing.T) {
	buildCairnTestPlugin(t)
	c := newKeyCLI(t)
	src := c.sampleSource()
	out, err := exec.Command("age-plugin-cairntest", "--generate").Output()
	if err != nil {
		t.Fatalf("age-plugin-cairntest --generate: %v", err)
	}
	var rec string
	var bare []string
	for _, line := range strings.Split(string(out), "\n") {
		if _, r, ok := strings.Cut(line, "Recipient: "); ok {
			rec = r
		} else if !strings.HasPrefix(line, "#") {
			bare = append(bare, line)
		}
	}
	if !strings.HasPrefix(rec, "age1cairntest1") {
		t.Fatalf("no recipient in the plugin's output:\n%s", out)
	}
	// Like most hardware keys' identity files, but without the recipient comment.
	pluginID := c.write("plugin-identity.txt", strings.Join(bare, "\n"))

	c.ok("init", "--password-file", c.pw)
	errs := c.fail("key", "add", "--password-file", c.pw, "--new-identity-file", pluginID)
	if !strings.Contains(errs, "cannot derive its recipient") || !strings.Contains(errs, "--new-recipient") {
		t.Fatalf("plugin key without recipient: %s", errs)
	}
	if out := c.ok("key", "add", "--password-file", c.pw, "--new-identity-file", pluginID, "--new-recipient", rec); !strings.Contains(out, "added plugin key") {
		t.Fatalf("key add: %s", out)
	}
	if out := c.ok("key", "list", "--identity-file", pluginID); !strings.Contains(out, "*  ") || !strings.Contains(out, "plugin:cairntest") {
		t.Fatalf("key list with the plugin key:\n%s", out)
	}
	c.ok("backup", "-q", "--identity-file", pluginID, src)
	if out := c.ok("snapshots", "--identity-file", pluginID); !strings.Contains(out, "1 snapshots") {
		t.Fatalf("snapshots:\n%s", out)
	}
	target := filepath.Join(c.dir, "restored")
	c.ok("restore", "latest", "--identity-file", pluginID, "--target", target)
	sameTree(t, src, filepath.Join(target, src))

	// A broken token: the plugin runs but fails.
	t.Setenv("CAIRNTEST_FAIL", "1")
	errs = c.fail("snapshots", "--identity-file", pluginID)
	if !strings.Contains(errs, `age plugin "cairntest" (program age-plugin-cairntest) failed`) || !strings.Contains(errs, "token not present") {
		t.Fatalf("failing plugin: %s", errs)
	}
	t.Setenv("CAIRNTEST_FAIL", "")
	// The plugin program is not installed.
	path := os.Getenv("PATH")
	t.Setenv("PATH", t.TempDir())
	errs = c.fail("snapshots", "--identity-file", pluginID)
	if !strings.Contains(errs, `age plugin "cairntest" is not installed: the program age-plugin-cairntest is not on PATH`) {
		t.Fatalf("missing plugin: %s", errs)
	}
	t.Setenv("PATH", path)

	// A repository created with the plugin identity: its file names the recipient in a
	// comment, as age-plugin-yubikey writes it.
	c2 := newKeyCLI(t)
	withComment := c2.write("plugin-identity.txt", string(out))
	c2.ok("init", "--identity-file", withComment)
	c2.ok("backup", "-q", "--identity-file", withComment, src)
	if out := c2.ok("key", "list", "--identity-file", withComment); !strings.Contains(out, "plugin:cairntest") {
		t.Fatalf("key list of a repository made with a plugin identity:\n%s", out)
	}
}
