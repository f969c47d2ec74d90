// Package notify delivers the results of cairn serve's jobs to people and monitors:
// an e-mail over SMTP (STARTTLS and AUTH, with net/smtp), a JSON webhook POST, and
// healthcheck pings in the style of healthchecks.io (start, success, fail URLs), as
// configured in the [notify] table of cairn.toml.
//
// Delivery is best effort and separate from the job: every target is tried a few times
// with growing pauses (Notifier.Backoff), each failure is logged, and nothing here ever
// changes a job's result. Failures are always notified; successes by e-mail and webhook
// only with on_success. Healthcheck pings are sent for every job, since a monitor needs
// the success pings to notice a missing run.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appconfig"
)

// Job results, as in Event.Result.
const (
	ResultSuccess  = "success"
	ResultWarning  = "warning" // backup saved a snapshot, but some files could not be read
	ResultFailure  = "failure"
	ResultCanceled = "canceled"
)

// Event describes one job for notifications.
type Event struct {
	App      string
	Host     string
	JobID    int64
	Job      string // backup, prune, check, restore
	Trigger  string // schedule, catch-up, manual
	Result   string // one of the Result constants; empty for a start event
	Started  time.Time
	Finished time.Time
	ExitCode int
	// Error is the job's error message, empty on success.
	Error string
	// SnapshotID is the snapshot a backup saved.
	SnapshotID string
	// Output is the tail of the job's output.
	Output string
}

// OK reports whether the job succeeded outright.
func (e Event) OK() bool { return e.Result == ResultSuccess }

// DefaultBackoff are the pauses between the attempts of a delivery.
var DefaultBackoff = []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second}

// Notifier sends Events to the targets of a [notify] configuration. It is safe for
// concurrent use.
type Notifier struct {
	cfg *appconfig.Notify
	log *slog.Logger

	// Backoff holds the pauses between attempts: len(Backoff)+1 attempts in all.
	Backoff []time.Duration
	// HTTPClient sends webhooks and pings; its Timeout bounds each attempt.
	HTTPClient *http.Client
	// SMTPTimeout bounds one SMTP conversation.
	SMTPTimeout time.Duration
	// TLS holds extra trust for the SMTP server's certificate (nil: the system roots
	// plus the PEM file named by $SSL_CERT_FILE, if any).
	TLS *TLSOptions
	// Hostname is sent in EHLO and used in Message-IDs (default: os.Hostname).
	Hostname string
	// UserAgent is sent with HTTP requests.
	UserAgent string

	wg     sync.WaitGroup
	mu     sync.Mutex
	starts map[int64]chan struct{} // start pings in flight, by job
}

// New returns a Notifier for cfg (nil: a Notifier that sends nothing).
func New(cfg *appconfig.Notify, log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	host, _ := os.Hostname()
	return &Notifier{
		cfg:         cfg,
		log:         log,
		Backoff:     DefaultBackoff,
		HTTPClient:  &http.Client{Timeout: 20 * time.Second},
		SMTPTimeout: time.Minute,
		Hostname:    host,
		UserAgent:   "cairn",
	}
}

// Enabled reports whether any target is configured.
func (n *Notifier) Enabled() bool {
	return n != nil && n.cfg != nil && (n.cfg.Email != nil || n.cfg.Webhook != "" || n.cfg.Healthcheck != nil)
}

// Started pings the healthcheck start URL in the background.
func (n *Notifier) Started(ctx context.Context, ev Event) {
	if !n.Enabled() || n.cfg.Healthcheck == nil || n.cfg.Healthcheck.Start == "" {
		return
	}
	done := make(chan struct{})
	n.mu.Lock()
	if n.starts == nil {
		n.starts = map[int64]chan struct{}{}
	}
	n.starts[ev.JobID] = done
	n.mu.Unlock()
	n.background(func() {
		defer func() {
			n.mu.Lock()
			delete(n.starts, ev.JobID)
			n.mu.Unlock()
			close(done)
		}()
		_ = n.deliver(ctx, "healthcheck start", func(ctx context.Context) error {
			return n.ping(ctx, n.cfg.Healthcheck.Start, fmt.Sprintf("cairn %s %s started (job %d, %s)\n", ev.App, ev.Job, ev.JobID, ev.Trigger))
		})
	})
}

// startDone waits until the start ping of the job, if any, is delivered or given
// up, so that a monitor never sees a start after the result.
func (n *Notifier) startDone(ctx context.Context, jobID int64) {
	n.mu.Lock()
	done := n.starts[jobID]
	n.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Finished sends the job's result to every target in the background: the
// healthcheck success or fail ping always, e-mail and webhook for failures (and
// warnings) and, with on_success, for successes. A canceled job (cairn serve
// stopping) notifies nobody.
func (n *Notifier) Finished(ctx context.Context, ev Event) {
	if !n.Enabled() {
		return
	}
	n.background(func() { _ = n.Send(ctx, ev) })
}

// Send delivers ev like Finished but waits for every target, and returns the errors
// of the targets that failed after all attempts.
func (n *Notifier) Send(ctx context.Context, ev Event) error {
	if !n.Enabled() || ev.Result == ResultCanceled {
		return nil
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	add := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.deliver(ctx, name, fn); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	if h := n.cfg.Healthcheck; h != nil {
		url := h.Success
		if !ev.OK() {
			url = h.Fail
		}
		if url != "" {
			n.startDone(ctx, ev.JobID)
			add("healthcheck "+map[bool]string{true: "success", false: "fail"}[ev.OK()], func(ctx context.Context) error {
				return n.ping(ctx, url, summaryText(ev))
			})
		}
	}
	if !ev.OK() || n.cfg.OnSuccess {
		if e := n.cfg.Email; e != nil {
			add("e-mail", func(ctx context.Context) error { return n.sendMail(ctx, e, ev) })
		}
		if n.cfg.Webhook != "" {
			add("webhook", func(ctx context.Context) error { return n.postWebhook(ctx, n.cfg.Webhook, ev) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Wait blocks until the background deliveries are done or ctx ends.
func (n *Notifier) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("notifications still pending: %w", ctx.Err())
	}
}

func (n *Notifier) background(fn func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn()
	}()
}

// permanent marks an error that another attempt cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// deliver runs fn up to len(Backoff)+1 times, pausing between attempts, logging each
// failure.
func (n *Notifier) deliver(ctx context.Context, what string, fn func(context.Context) error) error {
	attempts := len(n.Backoff) + 1
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(n.Backoff[i-1])
			select {
			case <-ctx.Done():
				t.Stop()
				n.log.Warn("notification abandoned", "target", what, "err", err)
				return fmt.Errorf("%s: %w (gave up: %v)", what, err, ctx.Err())
			case <-t.C:
			}
		}
		err = fn(ctx)
		if err == nil {
			if i > 0 {
				n.log.Info("notification delivered after retrying", "target", what, "attempt", i+1)
			}
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			n.log.Error("notification failed", "target", what, "attempt", i+1, "err", err)
			return fmt.Errorf("%s: %w", what, err)
		}
		level := slog.LevelWarn
		if i == attempts-1 {
			level = slog.LevelError
		}
		n.log.Log(ctx, level, "notification failed", "target", what, "attempt", i+1, "of", attempts, "err", err)
	}
	return fmt.Errorf("%s: %w (after %d attempts)", what, err, attempts)
}

// webhookPayload is the JSON body of a webhook POST (docs/SERVE.md).
type webhookPayload struct {
	Event           string    `json:"event"`
	App             string    `json:"app"`
	Host            string    `json:"host"`
	JobID           int64     `json:"job_id"`
	Job             string    `json:"job"`
	Trigger         string    `json:"trigger"`
	Result          string    `json:"result"`
	OK              bool      `json:"ok"`
	Started         time.Time `json:"started"`
	Finished        time.Time `json:"finished"`
	DurationSeconds float64   `json:"duration_seconds"`
	ExitCode        int       `json:"exit_code"`
	Error           string    `json:"error,omitempty"`
	SnapshotID      string    `json:"snapshot_id,omitempty"`
	Output          string    `json:"output,omitempty"`
}

func (n *Notifier) postWebhook(ctx context.Context, url string, ev Event) error {
	body, err := json.Marshal(webhookPayload{Event: "job_finished", App: ev.App, Host: ev.Host, JobID: ev.JobID, Job: ev.Job,
		Trigger: ev.Trigger, Result: ev.Result, OK: ev.OK(), Started: ev.Started.UTC(), Finished: ev.Finished.UTC(),
		DurationSeconds: ev.Finished.Sub(ev.Started).Seconds(), ExitCode: ev.ExitCode, Error: ev.Error,
		SnapshotID: ev.SnapshotID, Output: ev.Output})
	if err != nil {
		return permanent{fmt.Errorf("encode webhook payload: %w", err)}
	}
	return n.post(ctx, url, "application/json", body)
}

func (n *Notifier) ping(ctx context.Context, url, text string) error {
	return n.post(ctx, url, "text/plain; charset=utf-8", []byte(text))
}

func (n *Notifier) post(ctx context.Context, url, contentType string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return permanent{fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", n.UserAgent)
	resp, err := n.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", redactURL(url), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("POST %s: server answered %s", redactURL(url), resp.Status)
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return permanent{err}
	}
	return err
}

// redactURL drops the path of a URL for log messages: ping URLs carry secrets.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return "(url)"
	}
	host, _, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	}
	return scheme + "://" + host + "/…"
}

// summaryText is the plain-text description of a finished job, used as the e-mail
// body and the ping body.
func summaryText(ev Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cairn %s of %s on %s: %s\n\n", ev.Job, ev.App, ev.Host, ev.Result)
	fmt.Fprintf(&b, "job:       %d (%s)\n", ev.JobID, ev.Trigger)
	fmt.Fprintf(&b, "started:   %s\n", ev.Started.Format(time.RFC3339))
	fmt.Fprintf(&b, "finished:  %s (%s)\n", ev.Finished.Format(time.RFC3339), ev.Finished.Sub(ev.Started).Round(time.Millisecond))
	fmt.Fprintf(&b, "exit code: %d\n", ev.ExitCode)
	if ev.SnapshotID != "" {
		fmt.Fprintf(&b, "snapshot:  %s\n", ev.SnapshotID)
	}
	if ev.Error != "" {
		fmt.Fprintf(&b, "error:     %s\n", ev.Error)
	}
	if ev.Output != "" {
		fmt.Fprintf(&b, "\noutput:\n%s\n", strings.TrimRight(ev.Output, "\n"))
	}
	return b.String()
}
