package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/serve/notify"
)

// Job triggers.
const (
	TriggerSchedule = "schedule"
	TriggerCatchUp  = "catch-up"
	TriggerManual   = "manual"
)

// Job statuses.
const (
	StatusQueued  = "queued"
	StatusRunning = "running"
	StatusDone    = "done"
)

// Job is one run of a cairn command line by the queue.
type Job struct {
	id      int64
	kind    string
	trigger string
	args    []string
	// snapshot and target describe a restore.
	snapshot, target string

	mu         sync.Mutex
	status     string
	queued     time.Time
	started    time.Time
	finished   time.Time
	result     string
	exitCode   int
	err        string
	snapshotID string
	out        tailBuffer
	stdout     limitedBuffer
}

// JobInfo is a copy of a job's state, as the JSON API returns it.
type JobInfo struct {
	ID              int64      `json:"id"`
	Kind            string     `json:"kind"`
	Trigger         string     `json:"trigger"`
	Args            []string   `json:"args"`
	Status          string     `json:"status"`
	Result          string     `json:"result,omitempty"`
	ExitCode        int        `json:"exit_code"`
	Error           string     `json:"error,omitempty"`
	SnapshotID      string     `json:"snapshot_id,omitempty"`
	Snapshot        string     `json:"snapshot,omitempty"`
	Target          string     `json:"target,omitempty"`
	Queued          time.Time  `json:"queued"`
	Started         *time.Time `json:"started,omitempty"`
	Finished        *time.Time `json:"finished,omitempty"`
	DurationSeconds float64    `json:"duration_seconds"`
	Output          string     `json:"output"`
}

// Info returns a copy of the job's state; now is used for the running duration.
func (j *Job) Info(now time.Time) JobInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	in := JobInfo{ID: j.id, Kind: j.kind, Trigger: j.trigger, Args: append([]string(nil), j.args...), Status: j.status,
		Result: j.result, ExitCode: j.exitCode, Error: j.err, SnapshotID: j.snapshotID, Snapshot: j.snapshot,
		Target: j.target, Queued: j.queued, Output: j.out.String()}
	if !j.started.IsZero() {
		t := j.started
		in.Started = &t
		end := now
		if !j.finished.IsZero() {
			end = j.finished
		}
		in.DurationSeconds = end.Sub(j.started).Seconds()
	}
	if !j.finished.IsZero() {
		t := j.finished
		in.Finished = &t
	}
	return in
}

// ID returns the job's number.
func (j *Job) ID() int64 { return j.id }

func (j *Job) finish(at time.Time, result string, code int, msg string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.status, j.finished, j.result, j.exitCode, j.err = StatusDone, at, result, code, msg
}

// Enqueue queues a job of kind (backup, prune or check). A job of the same kind that
// is already waiting absorbs the request: the existing job is returned.
func (s *Server) Enqueue(kind, trigger string) (*Job, error) {
	var args []string
	switch kind {
	case JobBackup:
		args = []string{"backup", "--json"}
	case JobPrune:
		if s.cfg.Retention != nil {
			args = []string{"forget", "--prune", "--json"}
		} else {
			args = []string{"prune", "--json"}
		}
	case JobCheck:
		args = []string{"check", "--json"}
	default:
		return nil, fmt.Errorf("unknown job kind %q (want backup, prune or check)", kind)
	}
	return s.enqueue(&Job{kind: kind, trigger: trigger, args: args}, true)
}

// Restore queues a restore of the snapshot (a full ID) into target, an absolute
// directory path.
func (s *Server) Restore(snapshotID, target string) (*Job, error) {
	if !filepath.IsAbs(target) || strings.ContainsRune(target, 0) {
		return nil, fmt.Errorf("restore target %q: give an absolute directory path", target)
	}
	target = filepath.Clean(target)
	if target == "/" {
		return nil, fmt.Errorf("restore target %q: refusing to restore into the root directory", target)
	}
	if len(snapshotID) < 8 || strings.HasPrefix(snapshotID, "-") {
		return nil, fmt.Errorf("restore: invalid snapshot id %q", snapshotID)
	}
	return s.enqueue(&Job{kind: JobRestore, trigger: TriggerManual, snapshot: snapshotID, target: target,
		args: []string{"restore", snapshotID, "--target", target, "--json"}}, false)
}

func (s *Server) enqueue(j *Job, coalesce bool) (*Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil, ErrStopping
	}
	if coalesce {
		for _, q := range s.queue {
			if q.kind == j.kind {
				s.log.Info("job already queued", "job", j.kind, "id", q.id, "trigger", j.trigger)
				return q, nil
			}
		}
	}
	s.nextID++
	j.id = s.nextID
	j.status = StatusQueued
	j.queued = s.clock.Now()
	s.queue = append(s.queue, j)
	s.jobs = append(s.jobs, j)
	s.byID[j.id] = j
	if len(s.jobs) > maxJobs {
		old := s.jobs[0]
		if old.statusIs(StatusDone) {
			delete(s.byID, old.id)
			s.jobs = s.jobs[1:]
		}
	}
	s.log.Info("job queued", "job", j.kind, "id", j.id, "trigger", j.trigger)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return j, nil
}

func (j *Job) statusIs(st string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.status == st
}

// Job returns the job with the id.
func (s *Server) Job(id int64) (*Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.byID[id]
	return j, ok
}

// Jobs returns the known jobs, newest first.
func (s *Server) Jobs() []JobInfo {
	s.mu.Lock()
	jobs := append([]*Job(nil), s.jobs...)
	s.mu.Unlock()
	now := s.clock.Now()
	out := make([]JobInfo, 0, len(jobs))
	for i := len(jobs) - 1; i >= 0; i-- {
		out = append(out, jobs[i].Info(now))
	}
	return out
}

// Running returns the running job, or nil.
func (s *Server) Running() *Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// worker runs queued jobs one at a time until ctx ends.
func (s *Server) worker(ctx context.Context) {
	for {
		s.mu.Lock()
		var j *Job
		if len(s.queue) > 0 && ctx.Err() == nil {
			j = s.queue[0]
			s.queue = s.queue[1:]
			s.running = j
		}
		s.mu.Unlock()
		if j == nil {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		s.runJob(ctx, j)
		s.mu.Lock()
		s.running = nil
		s.mu.Unlock()
	}
}

func (s *Server) runJob(ctx context.Context, j *Job) {
	start := s.clock.Now()
	j.mu.Lock()
	j.status, j.started = StatusRunning, start
	j.mu.Unlock()
	s.log.Info("job started", "job", j.kind, "id", j.id, "trigger", j.trigger, "args", strings.Join(j.args, " "))
	ev := notify.Event{App: s.cfg.App.Name, Host: s.host, JobID: j.id, Job: j.kind, Trigger: j.trigger, Started: start}
	if j.kind != JobRestore {
		s.notifier.Started(context.WithoutCancel(ctx), ev)
	}

	code := s.execute(ctx, j)
	end := s.clock.Now()
	result := notify.ResultFailure
	switch {
	case ctx.Err() != nil:
		result = notify.ResultCanceled
	case code == 0:
		result = notify.ResultSuccess
	case code == 3 && j.kind == JobBackup:
		result = notify.ResultWarning
	}
	msg := ""
	if result != notify.ResultSuccess {
		msg = errorMessage(j.out.String())
		if msg == "" {
			msg = fmt.Sprintf("exit status %d", code)
		}
		if result == notify.ResultCanceled {
			msg = "canceled: cairn serve is stopping"
		}
	}
	snap := ""
	if j.kind == JobBackup && (result == notify.ResultSuccess || result == notify.ResultWarning) {
		var out struct {
			SnapshotID string `json:"snapshot_id"`
		}
		if err := json.Unmarshal(j.stdout.Bytes(), &out); err == nil {
			snap = out.SnapshotID
		}
	}
	j.mu.Lock()
	j.snapshotID = snap
	j.mu.Unlock()
	j.finish(end, result, code, msg)

	attrs := []any{"job", j.kind, "id", j.id, "result", result, "exit", code, "duration", end.Sub(start).Round(time.Millisecond)}
	if snap != "" {
		attrs = append(attrs, "snapshot", snap)
	}
	if msg != "" {
		attrs = append(attrs, "err", msg)
	}
	if result == notify.ResultSuccess || result == notify.ResultCanceled {
		s.log.Info("job finished", attrs...)
	} else {
		s.log.Error("job finished", attrs...)
	}

	if j.kind != JobRestore {
		ev.Result, ev.Finished, ev.ExitCode, ev.Error, ev.SnapshotID = result, end, code, msg, snap
		ev.Output = lastLines(j.out.String(), 40)
		s.notifier.Finished(context.WithoutCancel(ctx), ev)
	}
	if result != notify.ResultCanceled && j.kind != JobRestore {
		s.mu.Lock()
		js := s.state.job(j.kind)
		js.LastRun, js.LastEnd, js.LastResult, js.LastError, js.LastTrigger = start, end, result, msg, j.trigger
		js.LastDuration = end.Sub(start).Seconds()
		js.Runs++
		if result == notify.ResultSuccess || result == notify.ResultWarning {
			js.LastSuccess = end
		}
		if result == notify.ResultSuccess {
			js.ConsecFailure = 0
		} else {
			js.Failures++
			js.ConsecFailure++
		}
		if snap != "" {
			js.LastSnapshot = snap
		}
		_ = s.saveStateLocked()
		s.mu.Unlock()
	}
	if s.view != nil && (j.kind == JobBackup || j.kind == JobPrune) {
		s.view.Invalidate()
	}
}

// execute runs the job's command line, turning a panic into a failure.
func (s *Server) execute(ctx context.Context, j *Job) (code int) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("job panicked", "job", j.kind, "id", j.id, "panic", r, "stack", string(debug.Stack()))
			fmt.Fprintf(&j.out, "cairn: error: internal error: %v\n", r)
			code = 1
		}
	}()
	return s.exec(ctx, j.args, &teeWriter{a: &j.stdout, b: &j.out}, &j.out)
}

// errorMessage picks the error from a command's output: the last "cairn: error:" line,
// else the last warning, else the last line.
func errorMessage(out string) string {
	var errLine, warnLine, last string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "":
			continue
		case strings.HasPrefix(l, "cairn: error: "):
			errLine = strings.TrimPrefix(l, "cairn: error: ")
		case strings.HasPrefix(l, "cairn: warning: "):
			warnLine = strings.TrimPrefix(l, "cairn: warning: ")
		}
		last = l
	}
	switch {
	case errLine != "":
		return errLine
	case warnLine != "":
		return warnLine
	}
	return last
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"…"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// tailBuffer keeps the last tailSize bytes written to it; safe for concurrent use.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	dropped bool
}

const tailSize = 64 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		cut := len(t.buf) - tailSize
		if i := bytes.IndexByte(t.buf[cut:], '\n'); i >= 0 && i < 1024 {
			cut += i + 1
		}
		t.buf = append(t.buf[:0:0], t.buf[cut:]...)
		t.dropped = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dropped {
		return "…\n" + string(t.buf)
	}
	return string(t.buf)
}

// limitedBuffer keeps the first limitSize bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const limitSize = 4 << 20

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := limitSize - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.buf.Bytes()...)
}

type teeWriter struct {
	a, b interface{ Write([]byte) (int, error) }
}

func (t *teeWriter) Write(p []byte) (int, error) {
	_, _ = t.a.Write(p)
	return t.b.Write(p)
}
