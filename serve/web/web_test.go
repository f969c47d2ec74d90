package web_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appconfig"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/serve"
	"github.com/cairn-backup/cairn/serve/auth"
	"github.com/cairn-backup/cairn/serve/web"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
)

const testPassword = "correct horse battery staple"

// clock is a settable clock; timers are real.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	base  string
	src   string
	clock *clock
	snaps []*snapshot.Snapshot
	file  string // a file of the snapshots, absolute path
	data  []byte // its content

	mu   sync.Mutex
	runs [][]string
}

// newFixture makes a repository with two snapshots of a small tree and serves it.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	f := &fixture{t: t, src: filepath.Join(dir, "src"), clock: &clock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}}
	f.data = make([]byte, 300<<10)
	if _, err := rand.Read(f.data); err != nil {
		t.Fatal(err)
	}
	f.file = filepath.Join(f.src, "media", "docs", "big file.bin")
	write := func(p string, data []byte) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(f.file, f.data)
	write(filepath.Join(f.src, "media", "notes.txt"), []byte("notes\n"))
	if err := os.Symlink("/etc/passwd", filepath.Join(f.src, "media", "passwd-link")); err != nil {
		t.Fatal(err)
	}

	repoDir := filepath.Join(dir, "repo")
	be, err := local.Create(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := crypto.NewPassphrase("repo pw", 10)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, be, cred, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"2.0.1", "2.1.0"} {
		if i == 1 {
			write(filepath.Join(f.src, "media", "notes.txt"), []byte("notes after the upgrade\n"))
			write(filepath.Join(f.src, "media", "new.txt"), []byte("new\n"))
		}
		res, err := backup.Run(ctx, r, backup.Options{Paths: []string{filepath.Join(f.src, "media")}, Host: "test",
			Time: time.Date(2026, 11, 20+i, 2, 0, 0, 0, time.UTC),
			App:  &snapshot.App{Name: "demo", Version: v, Migrations: map[string]string{"documents": fmt.Sprintf("10%d_x", 16+i)}}})
		if err != nil {
			t.Fatal(err)
		}
		f.snaps = append(f.snaps, res.Snapshot)
	}
	r.Close()

	cfg := &appconfig.Config{App: appconfig.App{Name: "demo"}, Serve: appconfig.Serve{Listen: "127.0.0.1:0"}, CacheDir: dir}
	exec := func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		f.mu.Lock()
		f.runs = append(f.runs, args)
		f.mu.Unlock()
		fmt.Fprintln(stderr, "working")
		return 0
	}
	open := func(ctx context.Context) (*repo.Repository, error) {
		be, err := local.Open(repoDir)
		if err != nil {
			return nil, err
		}
		return repo.Open(ctx, be, cred)
	}
	srv, err := serve.New(serve.Options{Config: cfg, Exec: exec, OpenRepo: open, Clock: f.clock,
		StatePath: filepath.Join(dir, "state.json"), ShutdownTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := auth.HashPasswordParams(testPassword, auth.Params{Memory: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := web.New(web.Options{Server: srv, PasswordHash: hash})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	f.base = "http://" + ln.Addr().String()
	return f
}

// client returns an HTTP client with its own cookie jar that does not follow
// redirects.
func (f *fixture) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (f *fixture) do(c *http.Client, method, path string, form url.Values, hdr ...string) (*http.Response, string) {
	f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, f.base+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "text/html")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, string(data)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf returns the CSRF token of a page.
func (f *fixture) csrfOf(page string) string {
	f.t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		f.t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// tryLogin shows the login form and posts password with it.
func (f *fixture) tryLogin(c *http.Client, password string) (*http.Response, string) {
	f.t.Helper()
	_, page := f.do(c, "GET", "/login", nil)
	return f.do(c, "POST", "/login", url.Values{"csrf": {f.csrfOf(page)}, "password": {password}, "next": {"/"}})
}

// login logs c in and returns the session's CSRF token.
func (f *fixture) login(c *http.Client) string {
	f.t.Helper()
	resp, body := f.tryLogin(c, testPassword)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		f.t.Fatalf("login: %s %s\n%s", resp.Status, resp.Header.Get("Location"), body)
	}
	_, page := f.do(c, "GET", "/", nil)
	return f.csrfOf(page)
}

func TestLoginRequired(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	id := f.snaps[1].ID.String()
	for _, p := range []string{"/", "/jobs", "/diff", "/snapshots/" + id, "/snapshots/" + id + "/download?path=" + url.QueryEscape(f.file)} {
		resp, _ := f.do(c, "GET", p, nil)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=") {
			t.Errorf("GET %s without login: %s %s, want a redirect to the login page", p, resp.Status, resp.Header.Get("Location"))
		}
	}
	for _, p := range []string{"/metrics", "/api/jobs", "/api/status", "/api/jobs/1"} {
		resp, _ := f.do(c, "GET", p, nil, "Accept", "application/json")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without login: %s, want 401", p, resp.Status)
		}
	}
	for _, p := range []string{"/jobs", "/api/jobs", "/snapshots/" + id + "/restore", "/logout"} {
		resp, _ := f.do(c, "POST", p, url.Values{"kind": {"backup"}, "target": {"/tmp/x"}})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without login: %s, want 401", p, resp.Status)
		}
	}
	if len(f.runs) != 0 {
		t.Fatalf("jobs ran without a login: %v", f.runs)
	}
	// The login page and its assets are public, with safe headers.
	resp, page := f.do(c, "GET", "/login", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, `id="login-form"`) {
		t.Fatalf("login page: %s", resp.Status)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("no nosniff header")
	}
	for _, p := range []string{"/static/style.css", "/static/app.js"} {
		if resp, _ := f.do(c, "GET", p, nil); resp.StatusCode != 200 {
			t.Errorf("GET %s: %s", p, resp.Status)
		}
	}
}

func TestLoginCookiesAndLogout(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	resp, _ := f.tryLogin(c, testPassword)
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "cairn_session" {
			sess = ck
		}
	}
	if sess == nil {
		t.Fatal("no session cookie after logging in")
	}
	if !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" {
		t.Fatalf("session cookie flags: %+v", sess)
	}
	if sess.Secure {
		t.Fatalf("a plain-HTTP session cookie is marked Secure: browsers would drop it")
	}
	_, page := f.do(c, "GET", "/", nil)
	for _, want := range []string{"demo", f.snaps[0].ID.Short(), f.snaps[1].ID.Short(), "2.1.0", "documents 1017", "Repository growth", "<svg"} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	// Behind a TLS-terminating proxy on this machine the cookie is Secure.
	c2 := f.client()
	_, lp := f.do(c2, "GET", "/login", nil)
	resp, _ = f.do(c2, "POST", "/login", url.Values{"csrf": {f.csrfOf(lp)}, "password": {testPassword}}, "X-Forwarded-Proto", "https")
	secure := false
	for _, ck := range resp.Cookies() {
		if ck.Name == "cairn_session" {
			secure = ck.Secure
		}
	}
	if !secure {
		t.Errorf("session cookie behind an https proxy is not Secure")
	}
	// Logging out ends the session on the server.
	csrf := f.csrfOf(page)
	resp, _ = f.do(c, "POST", "/logout", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}
	u, _ := url.Parse(f.base)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "cairn_session", Value: sess.Value}})
	if resp, _ := f.do(c, "GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the old session cookie still works after logout: %s", resp.Status)
	}
}

func TestWrongPasswordAndRateLimit(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	for i := 0; i < 5; i++ {
		resp, body := f.tryLogin(c, fmt.Sprintf("guess %d", i))
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong password") {
			t.Fatalf("wrong password %d: %s\n%s", i, resp.Status, body)
		}
		for _, ck := range resp.Cookies() {
			if ck.Name == "cairn_session" && ck.Value != "" {
				t.Fatal("a wrong password got a session cookie")
			}
		}
	}
	// The sixth attempt is refused even with the right password.
	resp, _ := f.tryLogin(c, testPassword)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("sixth login: %s (Retry-After %q), want 429", resp.Status, resp.Header.Get("Retry-After"))
	}
	// So are API credentials from the same address.
	req, _ := http.NewRequest("GET", f.base+"/metrics", nil)
	req.SetBasicAuth("x", testPassword)
	r2, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("API login while limited: %s", r2.Status)
	}
	// After the window the right password works again.
	f.clock.advance(16 * time.Minute)
	f.login(c)
}

func TestCSRF(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	// A login without the form's token is refused.
	resp, _ := f.do(c, "POST", "/login", url.Values{"password": {testPassword}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login without CSRF token: %s", resp.Status)
	}
	csrf := f.login(c)
	for _, form := range []url.Values{{"kind": {"backup"}}, {"kind": {"backup"}, "csrf": {"wrong" + csrf}}} {
		resp, _ := f.do(c, "POST", "/jobs", form)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("POST /jobs with csrf %q: %s, want 403", form.Get("csrf"), resp.Status)
		}
	}
	// The right token from another origin is refused too.
	resp, _ = f.do(c, "POST", "/jobs", url.Values{"kind": {"backup"}, "csrf": {csrf}}, "Origin", "http://evil.example")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin POST: %s", resp.Status)
	}
	if len(f.runs) != 0 {
		t.Fatalf("jobs ran without a valid CSRF token: %v", f.runs)
	}
	resp, _ = f.do(c, "POST", "/jobs", url.Values{"kind": {"backup"}, "csrf": {csrf}}, "Origin", f.base)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/jobs/") {
		t.Fatalf("POST /jobs: %s %s", resp.Status, loc)
	}
	job := waitJob(t, f, c, strings.TrimPrefix(loc, "/jobs/"))
	if job.Result != "success" || strings.Join(job.Args, " ") != "backup --json" || !strings.Contains(job.Output, "working") {
		t.Fatalf("job: %+v", job)
	}
	// The job page shows it.
	if _, page := f.do(c, "GET", loc, nil); !strings.Contains(page, "backup --json") {
		t.Fatalf("job page:\n%s", page)
	}
}

func waitJob(t *testing.T, f *fixture, c *http.Client, id string) serve.JobInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := f.do(c, "GET", "/api/jobs/"+id, nil, "Accept", "application/json")
		var j serve.JobInfo
		if err := json.Unmarshal([]byte(body), &j); err != nil {
			t.Fatalf("job JSON: %v\n%s", err, body)
		}
		if j.Status == serve.StatusDone {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not done: %+v", id, j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBrowseAndDownload(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	f.login(c)
	sn := f.snaps[1]
	id := sn.ID.String()

	resp, body := f.do(c, "GET", "/snapshots/"+id+"/download?path="+url.QueryEscape(f.file), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("download: %s\n%s", resp.Status, body)
	}
	if !bytes.Equal([]byte(body), f.data) {
		t.Fatalf("downloaded %d bytes that differ from the %d of the file", len(body), len(f.data))
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") || !strings.Contains(cd, "big file.bin") {
		t.Errorf("Content-Disposition %q", cd)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	// A short ID prefix works too.
	if resp, _ := f.do(c, "GET", "/snapshots/"+id[:10]+"/download?path="+url.QueryEscape(f.file), nil); resp.StatusCode != 200 {
		t.Errorf("download by ID prefix: %s", resp.Status)
	}

	media := filepath.Join(f.src, "media")
	for _, p := range []string{
		"/etc/passwd",
		"../../../../../../etc/passwd",
		media + "/../../../../../../etc/passwd",
		media + "/docs/../../../../../etc/passwd",
		media + "/passwd-link", // a symlink in the snapshot is never followed
		media + "/docs",        // a directory
		media + "/missing.txt",
		"/",
		"",
		media + "/notes.txt\x00.png",
		"%2e%2e/%2e%2e/etc/passwd",
	} {
		resp, body := f.do(c, "GET", "/snapshots/"+id+"/download?path="+url.QueryEscape(p), nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("download %q: %s, want 404", p, resp.Status)
		}
		if strings.Contains(body, "root:") {
			t.Fatalf("download %q served /etc/passwd", p)
		}
	}
	for _, p := range []string{"/etc", media + "/notes.txt", media + "/../../../etc"} {
		if resp, _ := f.do(c, "GET", "/snapshots/"+id+"?path="+url.QueryEscape(p), nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("browse %q: %s, want 404", p, resp.Status)
		}
	}
	for _, ref := range []string{"0000000000000000", "zz", "latest", "..%2f..%2fetc"} {
		if resp, _ := f.do(c, "GET", "/snapshots/"+ref+"/download?path="+url.QueryEscape(f.file), nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("snapshot %q: %s, want 404", ref, resp.Status)
		}
	}

	// Browsing lists the directory with download links.
	resp, page := f.do(c, "GET", "/snapshots/"+id+"?path="+url.QueryEscape(media), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("browse: %s", resp.Status)
	}
	for _, want := range []string{"notes.txt", "new.txt", "docs/", "passwd-link → /etc/passwd", "2.1.0", "1017_x"} {
		if !strings.Contains(page, want) {
			t.Errorf("browse page lacks %q", want)
		}
	}
}

func TestDiffAndRestore(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	csrf := f.login(c)
	a, b := f.snaps[0].ID.String(), f.snaps[1].ID.String()
	resp, page := f.do(c, "GET", "/diff?from="+a+"&to="+b, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("diff: %s", resp.Status)
	}
	for _, want := range []string{"new.txt", "notes.txt", "2.0.1", "2.1.0", "1016_x", "1017_x", "added", "changed"} {
		if !strings.Contains(page, want) {
			t.Errorf("diff page lacks %q", want)
		}
	}
	if resp, _ := f.do(c, "GET", "/diff?from="+a+"&to=deadbeefdeadbeef", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("diff with an unknown snapshot: %s", resp.Status)
	}

	for _, bad := range []string{"relative/dir", "", "/"} {
		resp, _ := f.do(c, "POST", "/snapshots/"+b+"/restore", url.Values{"csrf": {csrf}, "target": {bad}})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("restore into %q: %s, want 400", bad, resp.Status)
		}
	}
	target := filepath.Join(t.TempDir(), "restore")
	resp, _ = f.do(c, "POST", "/snapshots/"+b[:12]+"/restore", url.Values{"csrf": {csrf}, "target": {target}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("restore: %s", resp.Status)
	}
	j := waitJob(t, f, c, strings.TrimPrefix(resp.Header.Get("Location"), "/jobs/"))
	if got := strings.Join(j.Args, " "); got != "restore "+b+" --target "+target+" --json" {
		t.Fatalf("restore ran %q", got)
	}
}

func TestSessionExpiry(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	f.login(c)
	f.clock.advance(29 * time.Minute)
	if resp, _ := f.do(c, "GET", "/", nil); resp.StatusCode != 200 {
		t.Fatalf("after 29 idle minutes: %s", resp.Status)
	}
	f.clock.advance(31 * time.Minute)
	if resp, _ := f.do(c, "GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after 31 idle minutes: %s, want a redirect to the login page", resp.Status)
	}
	// An active session still ends after 12 hours.
	f.login(c)
	for i := 0; i < 12*60/20; i++ {
		f.clock.advance(20 * time.Minute)
		resp, _ := f.do(c, "GET", "/api/jobs", nil, "Accept", "application/json")
		if i < 12*60/20-1 && resp.StatusCode != 200 {
			t.Fatalf("active session refused after %d minutes: %s", (i+1)*20, resp.Status)
		}
		if i == 12*60/20-1 && resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("session still valid after 12 hours: %s", resp.Status)
		}
	}
}

func TestMetricsAndAPIAuth(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	req, _ := http.NewRequest("GET", f.base+"/metrics", nil)
	req.SetBasicAuth("prometheus", testPassword)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("metrics: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`cairn_snapshots{app="demo"} 2`, `cairn_repository_up{app="demo"} 1`, "# TYPE cairn_repository_size_bytes gauge"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	req, _ = http.NewRequest("GET", f.base+"/metrics", nil)
	req.SetBasicAuth("prometheus", "wrong")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("metrics with a wrong password: %s", resp.Status)
	}
	// A bearer token is not accepted when a password is configured.
	req, _ = http.NewRequest("GET", f.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testPassword)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("metrics with a bearer token: %s", resp.Status)
	}
}
