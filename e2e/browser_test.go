package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// cairnBin builds cairn once per test binary run.
func cairnBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cairn")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cairn")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cairn: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// app is a small web app's data with a cairn.toml for it.
type app struct {
	t      *testing.T
	bin    string
	dir    string
	config string
	env    []string
}

func (a *app) cairn(stdin string, args ...string) string {
	a.t.Helper()
	cmd := exec.Command(a.bin, append([]string{"--config", a.config}, args...)...)
	cmd.Env = a.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		a.t.Fatalf("cairn %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func (a *app) write(rel, content string) {
	a.t.Helper()
	p := filepath.Join(a.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		a.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		a.t.Fatal(err)
	}
}

func (a *app) backup(at string) string {
	a.t.Helper()
	args := []string{"backup", "--json"}
	if at != "" {
		args = append(args, "--time", at)
	}
	var res struct {
		SnapshotID string `json:"snapshot_id"`
	}
	if err := json.Unmarshal([]byte(a.cairn("", args...)), &res); err != nil {
		a.t.Fatal(err)
	}
	return res.SnapshotID
}

// TestBrowser logs in with a real browser, finds the snapshots the test made, opens
// one, downloads a file and compares it byte for byte, compares two snapshots, and
// starts a backup from the dashboard and follows it to its end.
func TestBrowser(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("no Chromium: install the Debian package chromium (or set CAIRN_CHROMIUM) to run the browser tests")
	}
	shots := os.Getenv("CAIRN_E2E_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := cairnBin(t)

	root := t.TempDir()
	a := &app{t: t, bin: bin, dir: filepath.Join(root, "app"), config: filepath.Join(root, "app", "cairn.toml")}
	a.env = append(os.Environ(), "HOME="+root, "CAIRN_REPOSITORY=", "CAIRN_PASSWORD_FILE=", "CAIRN_PASSWORD_COMMAND=",
		"CAIRN_IDENTITY_FILE=", "CAIRN_CONFIG=")
	addr := freeAddr(t)
	// The sample app: media files, a SQLite database with Django migrations, a
	// VERSION file; four days of it.
	copyTree(t, filepath.Join("..", "testdata", "sample-app"), a.dir)
	a.write("password.txt", "correct horse battery\n")
	db := filepath.Join(a.dir, "data", "db.sqlite3")
	a.write("cairn.toml", fmt.Sprintf(`repository = "repo"
password_file = "password.txt"
cache_dir = "cache"

[app]
name = "sample-paperless"
paths = ["media"]
exclude = ["*.tmp"]
version = { file = "VERSION", regex = '(\d+\.\d+\.\d+)' }

[database]
engine = "sqlite"
path = "data/db.sqlite3"
migrations = "django"

[schedule]
backup = "daily"
check = "weekly"

[serve]
listen = %q
password_hash_file = "web.hash"
`, addr))
	a.cairn("", "init", "--kdf-work-factor", "10")
	docs := filepath.Join(a.dir, "media", "documents", "originals", "2026")
	first := a.backup("2026-11-18T02:30:00Z")
	a.write("media/documents/originals/2026/0000003.pdf", "%PDF-1.7 invoice three\n"+strings.Repeat("dolor sit amet ", 900))
	a.backup("2026-11-19T02:30:00Z")
	// The upgrade to 2.14.0 with a new migration.
	sqlExec(t, db, "INSERT INTO django_migrations (app, name, applied) VALUES ('documents', '1017_add_owner', '2026-11-19 09:00:00')",
		"ALTER TABLE documents_document ADD COLUMN owner_id INTEGER")
	a.write("VERSION", "2.14.0\n")
	a.write("media/documents/thumbnails/0000003.webp", strings.Repeat("W", 20000))
	a.backup("2026-11-20T02:30:00Z")
	a.write("media/documents/originals/2026/0000004.pdf", "%PDF-1.7 invoice four\n"+strings.Repeat("consectetur ", 3000))
	latest := a.backup("")

	const password = "open sesame 42"
	hash := a.cairn(password+"\n", "serve", "hash-password")
	a.write("web.hash", hash)

	// cairn serve, as a separate process.
	serveCmd := exec.Command(bin, "--config", a.config, "serve")
	serveCmd.Env = a.env
	var serveLog bytes.Buffer
	serveCmd.Stdout, serveCmd.Stderr = &serveLog, &serveLog
	if err := serveCmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = serveCmd.Process.Kill()
			_ = serveCmd.Wait()
		}
		if t.Failed() {
			t.Logf("cairn serve log:\n%s", serveLog.String())
		}
	}()
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/login")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cairn serve does not answer on %s: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	b := startBrowser(t, chromium)

	// Everything needs a login: the dashboard sends us to the login page.
	b.open(base + "/")
	b.waitFor("the login page", "location.pathname === '/login' && document.getElementById('login-form') !== null", 10*time.Second)
	b.screenshot(filepath.Join(shots, "login.png"))

	// A wrong password is refused and says so.
	b.act("a failed login", `document.getElementById('password').value = 'not it'; document.getElementById('login-submit').click()`)
	if txt := b.text(); !strings.Contains(txt, "Wrong password") {
		t.Fatalf("after a wrong password the page says:\n%s", txt)
	}

	b.act("the login", fmt.Sprintf(`document.getElementById('password').value = %q; document.getElementById('login-submit').click()`, password))
	var path string
	b.must("location.pathname", &path)
	if path != "/" {
		t.Fatalf("after logging in the browser is at %s:\n%s", path, b.text())
	}
	txt := b.text()
	for _, want := range []string{"sample-paperless", latest[:8], first[:8], "2.14.0", "2.13.5", "documents 1017", "Repository growth"} {
		if !strings.Contains(txt, want) {
			t.Errorf("the dashboard does not show %q:\n%s", want, txt)
		}
	}
	var dots int
	b.must("document.querySelectorAll('svg.timeline circle').length", &dots)
	if dots != 4 {
		t.Errorf("the timeline shows %d snapshots, want 4", dots)
	}
	b.screenshot(filepath.Join(shots, "dashboard.png"))

	// Open the newest snapshot from its link, then its documents folder.
	b.act("the snapshot page", fmt.Sprintf(`document.querySelector('a.snap-link[data-id=%q]').click()`, latest))
	b.open(base + "/snapshots/" + latest + "?path=" + docs)
	txt = b.text()
	for _, want := range []string{"0000004.pdf", "0000001.pdf", "with space/", latest} {
		if !strings.Contains(txt, want) {
			t.Errorf("the snapshot page does not show %q:\n%s", want, txt)
		}
	}
	b.screenshot(filepath.Join(shots, "snapshot.png"))

	// Download a file by clicking its link and compare it with the original.
	downloads := t.TempDir()
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := b.call(dctx, "", "Browser.setDownloadBehavior", map[string]any{"behavior": "allow", "downloadPath": downloads, "eventsEnabled": true}, nil)
	dcancel()
	if err != nil {
		t.Fatal(err)
	}
	events, unsubscribe := b.subscribe()
	b.must(`document.querySelector('a.download[href$="0000004.pdf"]').click()`, nil)
	waitDownload(t, events, 30*time.Second)
	unsubscribe()
	got, err := os.ReadFile(filepath.Join(downloads, "0000004.pdf"))
	if err != nil {
		entries, _ := os.ReadDir(downloads)
		t.Fatalf("downloaded file: %v (download directory holds %v)", err, entries)
	}
	want, err := os.ReadFile(filepath.Join(docs, "0000004.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the downloaded file differs: %d bytes, want %d", len(got), len(want))
	}

	// Compare the first and the newest snapshot.
	b.open(base + "/diff?from=" + first + "&to=" + latest)
	txt = b.text()
	for _, want := range []string{"2.13.5", "2.14.0", "0000004.pdf", "added", "1016_auto_20210317_1351", "1017_add_owner"} {
		if !strings.Contains(txt, want) {
			t.Errorf("the diff page does not show %q:\n%s", want, txt)
		}
	}
	b.screenshot(filepath.Join(shots, "diff.png"))

	// Start a backup from the dashboard and follow it until it is done.
	b.open(base + "/")
	var before string
	b.must("document.getElementById('snapshot-count').textContent", &before)
	a.write("media/documents/originals/2026/0000005.pdf", "%PDF-1.7 invoice five, made while cairn serve runs\n")
	b.act("the job page", `document.getElementById('run-backup').click()`)
	b.must("location.pathname", &path)
	if !strings.HasPrefix(path, "/jobs/") {
		t.Fatalf("starting a backup leads to %s", path)
	}
	b.waitFor("the backup to finish", "document.getElementById('job').dataset.status === 'done'", 60*time.Second)
	var result string
	b.must("document.getElementById('job-result').textContent", &result)
	if result != "success" {
		t.Fatalf("the backup started from the page ended with %q:\n%s", result, b.text())
	}
	b.waitFor("the new snapshot's link", "document.getElementById('job-snapshot-link') !== null", 10*time.Second)
	b.screenshot(filepath.Join(shots, "job.png"))
	b.open(base + "/")
	var after string
	b.must("document.getElementById('snapshot-count').textContent", &after)
	if before != "4" || after != "5" {
		t.Fatalf("snapshots before and after the backup from the page: %s, %s; want 4, 5", before, after)
	}
	b.screenshot(filepath.Join(shots, "dashboard-after-backup.png"))

	// Log out: the dashboard needs a login again.
	b.act("the logout", `document.querySelector('form[action="/logout"] button').click()`)
	b.open(base + "/")
	b.must("location.pathname", &path)
	if path != "/login" {
		t.Fatalf("after logging out the dashboard is at %s", path)
	}

	// SIGTERM stops cairn serve gracefully, with exit status 0.
	if err := serveCmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = serveCmd.Wait()
	stopped = true
	if err != nil {
		t.Fatalf("cairn serve after SIGTERM: %v\n%s", err, serveLog.String())
	}
	if !strings.Contains(serveLog.String(), "cairn serve stopped") {
		t.Fatalf("cairn serve log lacks the graceful stop:\n%s", serveLog.String())
	}
}

// waitDownload waits for a Browser.downloadProgress event saying completed.
func waitDownload(t *testing.T, events <-chan cdpMessage, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-events:
			if m.Method != "Browser.downloadProgress" {
				continue
			}
			var p struct {
				State string `json:"state"`
			}
			_ = json.Unmarshal(m.Params, &p)
			switch p.State {
			case "completed":
				return
			case "canceled":
				t.Fatal("the browser canceled the download")
			}
		case <-deadline:
			t.Fatal("timed out waiting for the download")
		}
	}
}

// copyTree copies the directory src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sqlExec runs statements on a SQLite database.
func sqlExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, st := range stmts {
		if _, err := db.Exec(st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
}
