package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/appconfig"
	"github.com/cairn-backup/cairn/serve/notify"
)

// fakeClock is a manual clock: After's channels fire when Advance passes their time.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// waitTimers waits until someone waits on the clock.
func (c *fakeClock) waitTimers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		n := len(c.waiters)
		c.mu.Unlock()
		if n > 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("nobody waits on the clock")
}

// recorder is an ExecFunc that logs the command lines, can block them, and fails
// them on demand.
type recorder struct {
	mu      sync.Mutex
	runs    []string
	active  atomic.Int32
	maxSeen atomic.Int32
	block   chan struct{} // when not nil, each run waits for a value or ctx
	started chan string
	fail    map[string]string // command → error message
}

func newRecorder() *recorder {
	return &recorder{started: make(chan string, 100), fail: map[string]string{}}
}

func (r *recorder) exec(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	n := r.active.Add(1)
	defer r.active.Add(-1)
	for {
		m := r.maxSeen.Load()
		if n <= m || r.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	r.mu.Lock()
	r.runs = append(r.runs, strings.Join(args, " "))
	block := r.block
	msg, fail := r.fail[args[0]]
	r.mu.Unlock()
	r.started <- args[0]
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return 1
		}
	}
	if fail {
		fmt.Fprintf(stderr, "cairn: error: %s\n", msg)
		return 1
	}
	if args[0] == "backup" {
		fmt.Fprintf(stdout, `{"snapshot_id": "%064x"}`+"\n", len(r.runs))
	}
	return 0
}

func (r *recorder) commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.runs...)
}

func (r *recorder) waitStart(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-r.started:
		if got != want {
			t.Fatalf("started %s, want %s", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not start", want)
	}
}

type harness struct {
	t      *testing.T
	srv    *Server
	clock  *fakeClock
	rec    *recorder
	cancel context.CancelFunc
	done   chan error
}

func testConfig(schedule *appconfig.ScheduleConfig, n *appconfig.Notify) *appconfig.Config {
	return &appconfig.Config{App: appconfig.App{Name: "demo"}, Schedule: schedule, Notify: n,
		Serve: appconfig.Serve{Listen: "127.0.0.1:0"}}
}

func startServer(t *testing.T, cfg *appconfig.Config, clock *fakeClock, rec *recorder, statePath string, n *notify.Notifier) *harness {
	t.Helper()
	srv, err := New(Options{Config: cfg, Exec: rec.exec, Clock: clock, StatePath: statePath, Notifier: n, ShutdownTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, srv: srv, clock: clock, rec: rec, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- srv.Serve(ctx, ln, http.NotFoundHandler()) }()
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Serve: %v", err)
	}
}

// waitState waits until the state of kind satisfies ok.
func (h *harness) waitState(kind string, ok func(*JobState) bool) *JobState {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if js := h.srv.State().Jobs[kind]; js != nil && ok(js) {
			return js
		}
		time.Sleep(2 * time.Millisecond)
	}
	h.t.Fatalf("state of %s never got there: %+v", kind, h.srv.State().Jobs[kind])
	return nil
}

func sched(backup, prune, check string) *appconfig.ScheduleConfig {
	s := &appconfig.ScheduleConfig{Backup: backup, Prune: prune, Check: check}
	for _, p := range []struct {
		e string
		d *appconfig.Schedule
	}{{backup, &s.BackupSchedule}, {prune, &s.PruneSchedule}, {check, &s.CheckSchedule}} {
		if p.e != "" {
			*p.d = appconfig.MustParseSchedule(p.e)
		}
	}
	return s
}

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// TestScheduleOneJobAtATime: jobs due together run one after the other, a job due
// again while it still waits is merged, and each run is recorded.
func TestScheduleOneJobAtATime(t *testing.T) {
	clock := newFakeClock(t0)
	rec := newRecorder()
	rec.block = make(chan struct{})
	cfg := testConfig(sched("@every 1m", "@every 1m", "@every 1m"), nil)
	h := startServer(t, cfg, clock, rec, filepath.Join(t.TempDir(), "state.json"), nil)

	clock.waitTimers(t)
	clock.Advance(time.Minute)
	rec.waitStart(t, "backup")
	// While the backup runs, prune and check wait; a second minute queues a
	// second backup, a third one is merged into it.
	clock.waitTimers(t)
	clock.Advance(time.Minute)
	clock.waitTimers(t)
	clock.Advance(time.Minute)
	time.Sleep(20 * time.Millisecond)
	if got := rec.commands(); len(got) != 1 {
		t.Fatalf("ran %v while the backup was still running", got)
	}
	queued := 0
	for _, j := range h.srv.Jobs() {
		if j.Status == StatusQueued {
			queued++
		}
	}
	if queued != 3 {
		t.Fatalf("%d jobs queued, want 3 (one each of prune, check, backup): %+v", queued, h.srv.Jobs())
	}
	for i := 0; i < 4; i++ {
		rec.block <- struct{}{}
	}
	h.waitState(JobBackup, func(js *JobState) bool { return js.Runs == 2 })
	h.waitState(JobCheck, func(js *JobState) bool { return js.Runs == 1 })
	if m := rec.maxSeen.Load(); m != 1 {
		t.Fatalf("%d jobs ran at once", m)
	}
	want := []string{"backup --json", "prune --json", "check --json", "backup --json"}
	if got := rec.commands(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("ran %q, want %q", got, want)
	}
	js := h.srv.State().Jobs[JobBackup]
	if js.LastResult != notify.ResultSuccess || js.LastSnapshot == "" || js.LastTrigger != TriggerSchedule {
		t.Fatalf("backup state %+v", js)
	}
}

// TestForgetWithRetention: with a [retention] table the prune job is forget --prune.
func TestForgetWithRetention(t *testing.T) {
	cfg := testConfig(nil, nil)
	cfg.Retention = &appconfig.Retention{KeepLast: 3}
	srv, err := New(Options{Config: cfg, Exec: newRecorder().exec, StatePath: filepath.Join(t.TempDir(), "s.json")})
	if err != nil {
		t.Fatal(err)
	}
	j, err := srv.Enqueue(JobPrune, TriggerManual)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(j.Info(time.Now()).Args, " "); got != "forget --prune --json" {
		t.Fatalf("prune job runs %q", got)
	}
	if _, err := srv.Enqueue("rm", TriggerManual); err == nil {
		t.Fatal("an unknown job kind was queued")
	}
}

// TestCatchUp: after a restart, a job whose schedule fired since its last run runs
// once right away; one that did not miss anything waits; a first start catches up
// nothing.
func TestCatchUp(t *testing.T) {
	state := filepath.Join(t.TempDir(), "serve-demo.json")
	st := &State{App: "demo", Since: t0.Add(-30 * 24 * time.Hour), Jobs: map[string]*JobState{
		JobBackup: {LastRun: t0.Add(-50 * time.Hour), LastResult: "success"},
		JobCheck:  {LastRun: t0.Add(-time.Hour), LastResult: "success"},
	}}
	if err := st.Save(state); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock(t0)
	rec := newRecorder()
	h := startServer(t, testConfig(sched("daily", "", "daily"), nil), clock, rec, state, nil)
	rec.waitStart(t, "backup")
	js := h.waitState(JobBackup, func(js *JobState) bool { return js.Runs == 1 })
	if js.LastTrigger != TriggerCatchUp || !js.LastRun.Equal(t0) {
		t.Fatalf("caught-up backup: %+v", js)
	}
	time.Sleep(20 * time.Millisecond)
	if got := rec.commands(); len(got) != 1 {
		t.Fatalf("ran %v, want only the missed backup", got)
	}
	next := h.srv.NextRuns()
	if want := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC); !next[JobBackup].Equal(want) || !next[JobCheck].Equal(want) {
		t.Fatalf("next runs %v, want %v", next, want)
	}
	h.stop()

	// A first start (no state file) does not run anything at once.
	rec2 := newRecorder()
	h2 := startServer(t, testConfig(sched("daily", "", "@every 1h"), nil), newFakeClock(t0), rec2, filepath.Join(t.TempDir(), "new.json"), nil)
	h2.clock.waitTimers(t)
	time.Sleep(20 * time.Millisecond)
	if got := rec2.commands(); len(got) != 0 {
		t.Fatalf("a first start ran %v", got)
	}
	h2.clock.Advance(time.Hour)
	rec2.waitStart(t, "check")
}

// TestStopCancelsRunningJob: stopping cancels the running job, which does not count
// as run, so the next start catches it up; the state survives.
func TestStopCancelsRunningJob(t *testing.T) {
	state := filepath.Join(t.TempDir(), "serve-demo.json")
	clock := newFakeClock(t0)
	rec := newRecorder()
	rec.block = make(chan struct{}) // never released: the job ends by cancellation
	h := startServer(t, testConfig(sched("@every 10m", "", ""), nil), clock, rec, state, nil)
	clock.waitTimers(t)
	clock.Advance(10 * time.Minute)
	rec.waitStart(t, "backup")
	h.stop()
	jobs := h.srv.Jobs()
	if len(jobs) != 1 || jobs[0].Result != notify.ResultCanceled {
		t.Fatalf("jobs after stop: %+v", jobs)
	}
	st, err := LoadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if js := st.Jobs[JobBackup]; js != nil && !js.LastRun.IsZero() {
		t.Fatalf("a canceled run was recorded: %+v", js)
	}
	if !st.Since.Equal(t0) {
		t.Fatalf("state since %v, want %v", st.Since, t0)
	}
	// The restart, 10 minutes later, catches the backup up.
	rec2 := newRecorder()
	clock2 := newFakeClock(t0.Add(20 * time.Minute))
	h2 := startServer(t, testConfig(sched("@every 10m", "", ""), nil), clock2, rec2, state, nil)
	rec2.waitStart(t, "backup")
	h2.waitState(JobBackup, func(js *JobState) bool { return js.LastTrigger == TriggerCatchUp && js.Runs == 1 })
}

// TestFailureNotifiedAndMeasured: a failing backup is recorded with its error,
// notified by webhook (a success is not, without on_success; the healthcheck gets
// both), and the metrics report both.
func TestFailureNotifiedAndMeasured(t *testing.T) {
	var mu sync.Mutex
	var hooks []map[string]any
	var pings []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/hook":
			var m map[string]any
			_ = json.NewDecoder(r.Body).Decode(&m)
			hooks = append(hooks, m)
		default:
			pings = append(pings, r.URL.Path)
		}
	}))
	defer hs.Close()
	ncfg := &appconfig.Notify{Webhook: hs.URL + "/hook", Healthcheck: &appconfig.Healthcheck{Start: hs.URL + "/start", Success: hs.URL + "/ok", Fail: hs.URL + "/fail"}}
	n := notify.New(ncfg, nil)
	n.Backoff = []time.Duration{time.Millisecond}

	clock := newFakeClock(t0)
	rec := newRecorder()
	h := startServer(t, testConfig(sched("@every 1m", "", ""), ncfg), clock, rec, filepath.Join(t.TempDir(), "s.json"), n)
	clock.waitTimers(t)
	clock.Advance(time.Minute)
	h.waitState(JobBackup, func(js *JobState) bool { return js.Runs == 1 })

	rec.mu.Lock()
	rec.fail["backup"] = "backup failed, no snapshot was written: source /srv/app/media: lstat /srv/app/media: no such file or directory"
	rec.mu.Unlock()
	clock.waitTimers(t)
	clock.Advance(time.Minute)
	js := h.waitState(JobBackup, func(js *JobState) bool { return js.Runs == 2 })
	if js.LastResult != notify.ResultFailure || !strings.Contains(js.LastError, "no such file") || js.Failures != 1 || js.LastSuccess.IsZero() {
		t.Fatalf("state after the failure: %+v", js)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		mu.Lock()
		got := len(pings)
		mu.Unlock()
		if got == 4 {
			break
		}
	}
	mu.Lock()
	if len(hooks) != 1 || hooks[0]["result"] != "failure" || hooks[0]["job"] != "backup" || hooks[0]["app"] != "demo" ||
		!strings.Contains(fmt.Sprint(hooks[0]["error"]), "no such file") {
		t.Fatalf("webhooks: %v", hooks)
	}
	// Each result ping comes after its job's start ping; the two jobs' pings may
	// interleave otherwise.
	sorted := append([]string(nil), pings...)
	sort.Strings(sorted)
	starts, results := 0, 0
	for _, p := range pings {
		if p == "/start" {
			starts++
		} else if results++; results > starts {
			t.Fatalf("healthcheck pings %v: a result before its start", pings)
		}
	}
	if strings.Join(sorted, " ") != "/fail /ok /start /start" {
		t.Fatalf("healthcheck pings %v", pings)
	}
	mu.Unlock()

	var buf bytes.Buffer
	if err := h.srv.WriteMetrics(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	checkExposition(t, text)
	for _, want := range []string{
		`cairn_job_failures_total{app="demo",job="backup"} 1`,
		`cairn_job_runs_total{app="demo",job="backup"} 2`,
		`cairn_job_last_result{app="demo",job="backup",result="failure"} 1`,
		`cairn_job_last_result{app="demo",job="backup",result="success"} 0`,
		fmt.Sprintf(`cairn_job_last_success_timestamp_seconds{app="demo",job="backup"} %d`, t0.Add(time.Minute).Unix()),
		`cairn_job_consecutive_failures{app="demo",job="backup"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
}

var (
	sampleLine = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$`)
	metaLine   = regexp.MustCompile(`^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$`)
)

// checkExposition checks every line against the text exposition format.
func checkExposition(t *testing.T, text string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		if !sampleLine.MatchString(l) && !metaLine.MatchString(l) {
			t.Errorf("not exposition format: %q", l)
		}
	}
}

func TestLabelEscaping(t *testing.T) {
	var buf bytes.Buffer
	m := &metricWriter{w: bufio.NewWriter(&buf)}
	m.sample("x", labels{"app", "a\"b\\c\nd"}, 1.5)
	m.w.Flush()
	if got := buf.String(); got != `x{app="a\"b\\c\nd"} 1.5`+"\n" {
		t.Fatalf("%q", got)
	}
}

func TestErrorMessage(t *testing.T) {
	out := "cairn: warning: /a: permission denied\nsomething\ncairn: error: backup failed: boom\n"
	if got := errorMessage(out); got != "backup failed: boom" {
		t.Fatalf("%q", got)
	}
	if got := errorMessage("cairn: warning: snapshot saved, but\n"); got != "snapshot saved, but" {
		t.Fatalf("%q", got)
	}
}

func TestStatePath(t *testing.T) {
	cfg := &appconfig.Config{App: appconfig.App{Name: "paper/less ngx"}, CacheDir: "/var/cache/cairn"}
	p, err := StatePath(cfg)
	if err != nil || p != "/var/cache/cairn/serve-paper_less_ngx.json" {
		t.Fatalf("%q %v", p, err)
	}
}
