package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/serve/auth"
)

// serveTestBuffer is a bytes.Buffer safe for the concurrent writes of a running serve.
type serveTestBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *serveTestBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *serveTestBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveTestEnv clears the variables that would point cairn elsewhere.
func serveTestEnv(t *testing.T, dir string) {
	t.Helper()
	for _, v := range []string{"CAIRN_REPOSITORY", "CAIRN_PASSWORD_FILE", "CAIRN_PASSWORD_COMMAND", "CAIRN_IDENTITY_FILE", "CAIRN_CONFIG"} {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "xdg-cache"))
}

func serveTestRun(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func serveTestFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeSchedulesNotifiesAndMeasures runs `cairn serve` with a one-second backup
// schedule: backups happen; then the app's folder disappears, the failing backup
// sends an e-mail through a real SMTP server (when scripts/test-all.sh started one)
// and a webhook call, /metrics reports the success and the failure, SIGTERM-like
// cancellation stops serve with status 0, and `cairn status` shows the result.
func TestServeSchedulesNotifiesAndMeasures(t *testing.T) {
	dir := t.TempDir()
	serveTestEnv(t, dir)
	media := filepath.Join(dir, "app", "media")
	if err := os.MkdirAll(filepath.Join(media, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(media, "docs", "a.txt"), []byte("alpha\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const token = "serve-test-token-0123456789"
	for name, content := range map[string]string{"pw": "serve test passphrase\n", "token": token + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var hooks []map[string]any
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err == nil {
			mu.Lock()
			hooks = append(hooks, m)
			mu.Unlock()
		}
	}))
	defer hookSrv.Close()

	email := ""
	smtpAddr, maildir := os.Getenv("CAIRN_TEST_SMTP_ADDR"), os.Getenv("CAIRN_TEST_SMTP_MAILDIR")
	if smtpAddr != "" {
		if err := os.WriteFile(filepath.Join(dir, "smtp-pw"), []byte(os.Getenv("CAIRN_TEST_SMTP_PASSWORD")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The test server's certificate is signed by a test CA: trust it the standard way.
		t.Setenv("SSL_CERT_FILE", os.Getenv("CAIRN_TEST_SMTP_CA"))
		email = fmt.Sprintf(`email = { smtp = %q, from = "cairn@example.org", to = ["ops@example.org"], username = %q, password_file = "smtp-pw", starttls = true }`,
			smtpAddr, os.Getenv("CAIRN_TEST_SMTP_USER"))
	} else {
		t.Log("no SMTP server: set CAIRN_TEST_SMTP_ADDR (scripts/test-all.sh starts a real server) to test the e-mail too")
	}
	addr := serveTestFreeAddr(t)
	app := fmt.Sprintf("svc-app-%d", time.Now().UnixNano()%1e6)
	cfgPath := filepath.Join(dir, "cairn.toml")
	cfg := fmt.Sprintf(`repository = "repo"
password_file = "pw"
cache_dir = "cache"

[app]
name = %q
paths = ["app/media"]
version = { literal = "3.1.0" }

[schedule]
backup = "@every 1s"

[notify]
webhook = %q
%s

[serve]
listen = %q
token_file = "token"
`, app, hookSrv.URL+"/hook", email, addr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := serveTestRun(t, "", "--config", cfgPath, "init", "--kdf-work-factor", "10"); code != 0 {
		t.Fatalf("init: %d\n%s%s", code, out, errs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var serveErr serveTestBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--config", cfgPath, "serve"}, strings.NewReader(""), io.Discard, &serveErr)
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
		if t.Failed() {
			t.Logf("cairn serve log:\n%s", serveErr.String())
		}
	})

	metrics := func() string {
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return ""
		}
		return string(b)
	}
	value := func(text, series string) float64 {
		re := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + " (\\S+)$")
		m := re.FindStringSubmatch(text)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	waitMetric := func(what string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(40 * time.Second)
		for time.Now().Before(deadline) {
			if m := metrics(); m != "" && ok(m) {
				return m
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("metrics never showed %s:\n%s", what, metrics())
		return ""
	}
	runs := fmt.Sprintf(`cairn_job_runs_total{app=%q,job="backup"}`, app)
	snaps := fmt.Sprintf(`cairn_snapshots{app=%q}`, app)
	waitMetric("two scheduled backups", func(m string) bool { return value(m, runs) >= 2 && value(m, snaps) >= 2 })

	// Unauthenticated requests are refused.
	if resp, err := http.Get("http://" + addr + "/metrics"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("metrics without a token: %v %v", resp, err)
	}

	// The app's folder disappears: the next backups fail.
	if err := os.Rename(media, media+".gone"); err != nil {
		t.Fatal(err)
	}
	failures := fmt.Sprintf(`cairn_job_failures_total{app=%q,job="backup"}`, app)
	m := waitMetric("a failed backup", func(m string) bool { return value(m, failures) >= 1 })
	if v := value(m, fmt.Sprintf(`cairn_job_last_success_timestamp_seconds{app=%q,job="backup"}`, app)); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last success timestamp %v", v)
	}
	if v := value(m, fmt.Sprintf(`cairn_repository_size_bytes{app=%q}`, app)); v <= 0 {
		t.Errorf("repository size %v", v)
	}
	if v := value(m, fmt.Sprintf(`cairn_last_snapshot_timestamp_seconds{app=%q}`, app)); v <= 0 {
		t.Errorf("last snapshot timestamp %v", v)
	}

	var failed map[string]any
	for deadline := time.Now().Add(20 * time.Second); failed == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		for _, h := range hooks {
			if h["result"] == "failure" {
				failed = h
			}
		}
		mu.Unlock()
	}
	if failed == nil {
		t.Fatal("no webhook call for the failed backup")
	}
	if failed["app"] != app || failed["job"] != "backup" || !strings.Contains(fmt.Sprint(failed["error"]), "no such file or directory") {
		t.Fatalf("webhook payload %v", failed)
	}
	mu.Lock()
	for _, h := range hooks {
		if h["result"] == "success" {
			t.Errorf("a success was notified without on_success: %v", h)
		}
	}
	mu.Unlock()

	if smtpAddr != "" {
		msg := waitServeMail(t, maildir, "[cairn] "+app+": backup FAILED")
		if !strings.Contains(msg, "no such file or directory") {
			t.Errorf("the e-mail does not say what failed:\n%s", msg)
		}
	}

	// Stopping (SIGTERM cancels the context in main) is graceful: status 0.
	cancel()
	select {
	case code := <-done:
		stopped = true
		if code != 0 {
			t.Fatalf("cairn serve exited with %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cairn serve did not stop")
	}
	if !strings.Contains(serveErr.String(), "cairn serve stopped") {
		t.Fatalf("no graceful stop in the log:\n%s", serveErr.String())
	}

	// cairn status reports the app, from the repository and the state file.
	out, errs, code := serveTestRun(t, "", "--config", cfgPath, "status", "--json")
	if code != 0 {
		t.Fatalf("status: %d\n%s", code, errs)
	}
	var st []statusAppJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(st) != 1 || st[0].App != app || st[0].Snapshots < 2 || st[0].LastSnapshot == nil || st[0].RepositorySize == 0 ||
		st[0].Jobs["backup"] == nil || st[0].Jobs["backup"].LastResult != "failure" || st[0].Jobs["backup"].LastSuccess.IsZero() {
		t.Fatalf("status: %s", out)
	}
	out, _, code = serveTestRun(t, "", "--config", cfgPath, "status")
	if code != 0 || !strings.Contains(out, app) || !strings.Contains(out, "backup failure") || !strings.Contains(out, "(3.1.0)") {
		t.Fatalf("status:\n%s", out)
	}
	// A second configuration whose repository does not exist: reported, status 1.
	other := filepath.Join(dir, "other.toml")
	if err := os.WriteFile(other, []byte(strings.Replace(strings.Replace(cfg, `repository = "repo"`, `repository = "nowhere"`, 1), app, "other-app", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code = serveTestRun(t, "", "status", cfgPath, other)
	if code != 1 || !strings.Contains(out, app) || !strings.Contains(out, "other-app") || !strings.Contains(out, "error:") {
		t.Fatalf("status of two apps: %d\n%s", code, out)
	}
}

func waitServeMail(t *testing.T, maildir, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(maildir, "new", "*"))
		for _, f := range files {
			if data, err := os.ReadFile(f); err == nil && strings.Contains(string(data), want) {
				return string(data)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no e-mail %q arrived in %s", want, maildir)
	return ""
}

func TestServeRefusesBadSchedule(t *testing.T) {
	dir := t.TempDir()
	serveTestEnv(t, dir)
	cfgPath := filepath.Join(dir, "cairn.toml")
	cfg := `repository = "repo"

[app]
name = "x"
paths = ["media"]
version = { literal = "1" }

[schedule]
backup = "every day at noon"
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs, code := serveTestRun(t, "", "--config", cfgPath, "serve")
	if code != 1 || !strings.Contains(errs, "cairn.toml:9: schedule.backup") {
		t.Fatalf("serve with a bad schedule: %d\n%s", code, errs)
	}
}

func TestServeHashPassword(t *testing.T) {
	out, errs, code := serveTestRun(t, "s3cret pass\n", "serve", "hash-password")
	if code != 0 {
		t.Fatalf("hash-password: %d %s", code, errs)
	}
	h := strings.TrimSpace(out)
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash %q", h)
	}
	if err := auth.CheckHash(h); err != nil {
		t.Fatal(err)
	}
	if _, _, code := serveTestRun(t, "", "serve", "hash-password"); code != 1 {
		t.Fatalf("an empty password was hashed")
	}
}
