package crypto_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/crypto"
)

// buildTestPlugin builds testdata/age-plugin-test as age-plugin-cairntest into a
// temporary directory and puts that directory first on PATH.
func buildTestPlugin(t *testing.T) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is needed to build the test age plugin")
	}
	dir := t.TempDir()
	cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, "age-plugin-cairntest"), "../testdata/age-plugin-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test plugin: %v\n%s", err, out)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// generatePluginIdentity returns a new identity file of the test plugin (with its
// "# Recipient:" comment) and the recipient.
func generatePluginIdentity(t *testing.T) (file, recipient string) {
	t.Helper()
	out, err := exec.Command("age-plugin-cairntest", "--generate").Output()
	if err != nil {
		t.Fatalf("age-plugin-cairntest --generate: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if _, rec, ok := strings.Cut(line, "Recipient: "); ok {
			recipient = rec
		}
	}
	if !strings.HasPrefix(recipient, "age1cairntest1") || !strings.Contains(string(out), "\nAGE-PLUGIN-CAIRNTEST-1") {
		t.Fatalf("unexpected plugin output:\n%s", out)
	}
	return string(out), recipient
}

// withoutComments drops the comment lines of an identity file.
func withoutComments(file string) string {
	var keep []string
	for _, line := range strings.Split(file, "\n") {
		if !strings.HasPrefix(line, "#") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

func TestPluginCredential(t *testing.T) {
	buildTestPlugin(t)
	file, rec := generatePluginIdentity(t)
	s, err := crypto.Generate(crypto.GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The recipient comes from the "# Recipient:" comment, as age-plugin-yubikey writes.
	cred, err := crypto.ParseIdentityFile(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if cred.Kind() != "plugin" || strings.Join(cred.Plugins(), ",") != "cairntest" {
		t.Fatalf("kind %q, plugins %v", cred.Kind(), cred.Plugins())
	}
	data, err := crypto.SealKey(s, cred)
	if err != nil {
		t.Fatal(err)
	}
	if k := crypto.KeyKind(data); k != "plugin:cairntest" {
		t.Fatalf("key kind %q", k)
	}
	got, err := crypto.OpenKey(data, cred)
	if err != nil {
		t.Fatal(err)
	}
	if got.RepoID != s.RepoID || got.IDKey != s.IDKey || got.WriteOnly() {
		t.Fatal("secrets differ after a plugin round trip")
	}

	// Without the comment the recipient must be given.
	bare, err := crypto.ParseIdentityFile(strings.NewReader(withoutComments(file)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crypto.SealKey(s, bare); err == nil || !strings.Contains(err.Error(), "--new-recipient") {
		t.Fatalf("seal without a recipient: %v", err)
	}
	if err := bare.SetRecipient(rec); err != nil {
		t.Fatal(err)
	}
	if data, err = crypto.SealKey(s.WriteOnlyCopy(), bare); err != nil {
		t.Fatal(err)
	}
	if got, err := crypto.OpenKey(data, bare); err != nil || !got.WriteOnly() {
		t.Fatalf("open a write-only plugin key: %v", err)
	}

	// Another plugin identity's recipient is caught before a useless key is stored.
	_, otherRec := generatePluginIdentity(t)
	if err := bare.SetRecipient(otherRec); err != nil {
		t.Fatal(err)
	}
	if _, err := crypto.SealKey(s, bare); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("seal to a foreign recipient: %v", err)
	}
	if err := bare.SetRecipient("age1notarecipient"); err == nil {
		t.Fatal("invalid recipient accepted")
	}

	// A key file of another credential is not a plugin failure, just no match.
	native, _ := age.GenerateX25519Identity()
	nf, err := crypto.ParseIdentityFile(strings.NewReader(native.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := crypto.SealKey(s, nf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crypto.OpenKey(other, cred); !errors.Is(err, crypto.ErrNoMatchingKey) {
		t.Fatalf("plugin identity on an X25519 key: %v", err)
	}
	if cred.PluginErr() != nil {
		t.Fatalf("no match recorded as a plugin failure: %v", cred.PluginErr())
	}

	// A failing plugin (a removed token) is reported by name.
	t.Setenv("CAIRNTEST_FAIL", "1")
	_, err = crypto.OpenKey(data, bare)
	var pe *crypto.PluginError
	if !errors.Is(err, crypto.ErrPlugin) || !errors.As(err, &pe) || pe.Name != "cairntest" ||
		!strings.Contains(err.Error(), "age-plugin-cairntest") || !strings.Contains(err.Error(), "token not present") {
		t.Fatalf("failing plugin: %v", err)
	}
	if bare.PluginErr() == nil {
		t.Fatal("failure not recorded")
	}
	t.Setenv("CAIRNTEST_FAIL", "")

	// A plugin that is not installed is reported by name too.
	t.Setenv("PATH", t.TempDir())
	_, err = crypto.OpenKey(data, cred)
	if !errors.Is(err, crypto.ErrPlugin) || !strings.Contains(err.Error(), `age plugin "cairntest" is not installed`) ||
		!strings.Contains(err.Error(), "age-plugin-cairntest is not on PATH") {
		t.Fatalf("missing plugin: %v", err)
	}
}

func TestParseIdentityFile(t *testing.T) {
	x, _ := age.GenerateX25519Identity()
	pq, _ := age.GenerateHybridIdentity()
	// age-keygen's layout: the public key comment is ignored for native identities,
	// whose recipient is derived.
	f, err := crypto.ParseIdentityFile(strings.NewReader("# created: now\n# public key: " + pq.Recipient().String() +
		"\n" + x.String() + "\r\n\n  " + pq.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind() != "identity" || len(f.Identities()) != 2 || len(f.Plugins()) != 0 {
		t.Fatalf("kind %q, %d identities", f.Kind(), len(f.Identities()))
	}
	r, err := f.Recipient()
	if err != nil || r.(*age.X25519Recipient).String() != x.Recipient().String() {
		t.Fatalf("recipient %v, %v", r, err)
	}
	pf, err := crypto.ParseIdentityFile(strings.NewReader(pq.String()))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := pf.Recipient(); err != nil || r.(*age.HybridRecipient).String() != pq.Recipient().String() {
		t.Fatalf("hybrid recipient %v, %v", r, err)
	}

	// Errors name the line but never echo key material.
	secret := strings.TrimSuffix(x.String(), x.String()[len(x.String())-4:]) + "QQQQ"
	for _, bad := range []string{"# only comments\n", secret + "\n", "# c\nAGE-PLUGIN-NOPE-1QQQQ\n", "ssh-ed25519 AAAA\n"} {
		_, err := crypto.ParseIdentityFile(strings.NewReader(bad))
		if err == nil {
			t.Fatalf("accepted %q", bad)
		}
		if strings.Contains(err.Error(), "QQQQ") || strings.Contains(err.Error(), "AAAA") {
			t.Fatalf("error echoes the file: %v", err)
		}
	}
}
