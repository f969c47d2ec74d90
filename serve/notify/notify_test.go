package notify

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appconfig"
)

func failureEvent() Event {
	start := time.Date(2026, 11, 23, 2, 30, 0, 0, time.UTC)
	return Event{App: "paperless", Host: "files01", JobID: 7, Job: "backup", Trigger: "schedule", Result: ResultFailure,
		Started: start, Finished: start.Add(3 * time.Second), ExitCode: 1,
		Error:  "backup failed, no snapshot was written: source /srv/paperless/media: lstat /srv/paperless/media: no such file or directory",
		Output: "cairn: error: backup failed\n"}
}

// logBuffer collects log output safely.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newTestNotifier(cfg *appconfig.Notify) (*Notifier, *logBuffer) {
	var lb logBuffer
	n := New(cfg, slog.New(slog.NewTextHandler(&lb, nil)))
	n.Backoff = []time.Duration{5 * time.Millisecond, 10 * time.Millisecond}
	n.SMTPTimeout = 5 * time.Second
	return n, &lb
}

func TestWebhookAndHealthcheck(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var payload map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r.Method+" "+r.URL.Path)
		if r.URL.Path == "/hook" {
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("webhook Content-Type %q", ct)
			}
			payload = map[string]any{}
			if err := json.Unmarshal(body, &payload); err != nil {
				t.Errorf("webhook body: %v", err)
			}
		}
	}))
	defer srv.Close()
	cfg := &appconfig.Notify{Webhook: srv.URL + "/hook", Healthcheck: &appconfig.Healthcheck{Start: srv.URL + "/start", Success: srv.URL + "/ok", Fail: srv.URL + "/fail"}}
	n, _ := newTestNotifier(cfg)
	ctx := context.Background()

	if err := n.Send(ctx, failureEvent()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(got) != 2 || !contains(got, "POST /hook") || !contains(got, "POST /fail") {
		t.Fatalf("requests for a failure: %v", got)
	}
	for k, want := range map[string]any{"event": "job_finished", "app": "paperless", "host": "files01", "job": "backup",
		"result": "failure", "ok": false, "exit_code": 1.0, "duration_seconds": 3.0, "trigger": "schedule", "job_id": 7.0} {
		if payload[k] != want {
			t.Errorf("webhook %s = %v, want %v", k, payload[k], want)
		}
	}
	if !strings.Contains(payload["error"].(string), "no such file") {
		t.Errorf("webhook error %v", payload["error"])
	}
	got = nil
	mu.Unlock()

	// A success pings the healthcheck only, unless on_success.
	ok := failureEvent()
	ok.Result, ok.Error, ok.ExitCode = ResultSuccess, "", 0
	if err := n.Send(ctx, ok); err != nil {
		t.Fatal(err)
	}
	cfg.OnSuccess = true
	if err := n.Send(ctx, ok); err != nil {
		t.Fatal(err)
	}
	// A canceled job notifies nobody.
	canceled := failureEvent()
	canceled.Result = ResultCanceled
	if err := n.Send(ctx, canceled); err != nil {
		t.Fatal(err)
	}
	n.Started(ctx, ok)
	if err := n.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 || got[0] != "POST /ok" || !contains(got[1:3], "POST /ok") || !contains(got[1:3], "POST /hook") || got[3] != "POST /start" {
		t.Fatalf("requests: %v", got)
	}
	if payload["result"] != "success" || payload["ok"] != true {
		t.Fatalf("success webhook %v", payload)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestRetry: a webhook failing with 503 is retried until it succeeds; a 404 is not
// retried; an unreachable server is tried len(Backoff)+1 times, with pauses, and
// every failure is logged.
func TestRetry(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	n, logs := newTestNotifier(&appconfig.Notify{Webhook: srv.URL})
	if err := n.Send(context.Background(), failureEvent()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || strings.Count(logs.String(), "notification failed") != 2 || !strings.Contains(logs.String(), "delivered after retrying") {
		t.Fatalf("%d calls, logs:\n%s", calls.Load(), logs)
	}

	gone := httptest.NewServer(http.NotFoundHandler())
	defer gone.Close()
	calls.Store(0)
	n, _ = newTestNotifier(&appconfig.Notify{Webhook: gone.URL + "/secret-token"})
	err := n.Send(context.Background(), failureEvent())
	if err == nil || !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "secret-token") {
		t.Fatalf("404 webhook: %v", err)
	}
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestSMTPDown: a refusing SMTP server is retried with backoff, each failure logged,
// and gives an error only after the last attempt; the webhook is still delivered.
func TestSMTPDown(t *testing.T) {
	var hooks atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hooks.Add(1) }))
	defer srv.Close()
	cfg := &appconfig.Notify{Webhook: srv.URL, Email: &appconfig.Email{SMTP: closedAddr(t), From: "cairn@example.org", To: []string{"ops@example.org"}}}
	n, logs := newTestNotifier(cfg)
	start := time.Now()
	err := n.Send(context.Background(), failureEvent())
	if err == nil || !strings.Contains(err.Error(), "e-mail") || !strings.Contains(err.Error(), "after 3 attempts") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Send: %v", err)
	}
	if el := time.Since(start); el < 15*time.Millisecond {
		t.Fatalf("3 attempts took %v: no backoff", el)
	}
	if c := strings.Count(logs.String(), "notification failed"); c != 3 {
		t.Fatalf("%d failures logged:\n%s", c, logs)
	}
	if hooks.Load() != 1 {
		t.Fatalf("webhook called %d times", hooks.Load())
	}
}

// smtpEnv returns the test SMTP server of scripts/services/smtp.sh, or skips.
func smtpEnv(t *testing.T) (addr, user, password, ca, maildir string) {
	t.Helper()
	addr = os.Getenv("CAIRN_TEST_SMTP_ADDR")
	if addr == "" {
		t.Skip("no SMTP server: set CAIRN_TEST_SMTP_ADDR (scripts/test-all.sh starts a real server with scripts/services/smtp.sh)")
	}
	return addr, os.Getenv("CAIRN_TEST_SMTP_USER"), os.Getenv("CAIRN_TEST_SMTP_PASSWORD"), os.Getenv("CAIRN_TEST_SMTP_CA"), os.Getenv("CAIRN_TEST_SMTP_MAILDIR")
}

// WaitMail waits for a message in maildir containing every one of want, and returns
// it.
func waitMail(t *testing.T, maildir string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, sub := range []string{"new", "cur"} {
			files, _ := filepath.Glob(filepath.Join(maildir, sub, "*"))
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					continue
				}
				all := true
				for _, w := range want {
					all = all && strings.Contains(string(data), w)
				}
				if all {
					return string(data)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no message with %q arrived in %s", want, maildir)
	return ""
}

// TestSMTPRealServer sends through a real SMTP server (exim on loopback) with
// STARTTLS and AUTH, and finds the message in its maildir.
func TestSMTPRealServer(t *testing.T) {
	addr, user, password, ca, maildir := smtpEnv(t)
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in", ca)
	}
	pwFile := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	marker := "job-" + time.Now().Format("150405.000000000")
	email := &appconfig.Email{SMTP: addr, From: "cairn@example.org", To: []string{"ops@example.org", "backup-admin@example.net"},
		Username: user, PasswordFile: pwFile, StartTLS: true}
	n, _ := newTestNotifier(&appconfig.Notify{Email: email})
	n.TLS = &TLSOptions{RootCAs: pool}
	ev := failureEvent()
	ev.Output = "cairn: error: " + marker + "\n" + strings.Repeat("a long line of output ", 20)
	if err := n.Send(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	msg := waitMail(t, maildir, marker)
	for _, want := range []string{"Subject: [cairn] paperless: backup FAILED on files01", "From: cairn@example.org",
		"X-Cairn-Result: failure", "Content-Transfer-Encoding: quoted-printable", "no such file or directory"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	// The server saw TLS and the login.
	if !strings.Contains(msg, "TLS") && !strings.Contains(msg, "esmtpsa") && !strings.Contains(msg, "ESMTPSA") {
		t.Errorf("the Received header shows no TLS or authentication:\n%s", msg)
	}

	// A wrong password fails, after the retries.
	if err := os.WriteFile(pwFile, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.Send(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Fatalf("wrong SMTP password: %v", err)
	}
	// The server offers AUTH only after STARTTLS: without it the password is never sent.
	email.StartTLS = false
	if err := n.Send(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Fatalf("AUTH without STARTTLS: %v", err)
	}
	// An untrusted certificate is refused.
	email.StartTLS = true
	n.TLS = &TLSOptions{RootCAs: x509.NewCertPool()}
	if err := n.Send(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("untrusted certificate: %v", err)
	}
}

func TestMessageHeadersAreClean(t *testing.T) {
	n, _ := newTestNotifier(nil)
	ev := failureEvent()
	ev.App = "evil\r\nBcc: victim@example.org"
	msg, err := n.message(&appconfig.Email{From: "a@example.org", To: []string{"b@example.org"}}, ev)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(string(msg), "\r\n\r\n")
	if strings.Contains(head, "\r\nBcc:") {
		t.Fatalf("header injection:\n%s", head)
	}
}
