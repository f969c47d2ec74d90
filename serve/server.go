// Package serve is the long-running side of cairn (`cairn serve`): it runs the jobs
// scheduled in cairn.toml's [schedule] table — backup, forget+prune, check — one at a
// time through a queue, catches up a run missed while it was down (the last runs are
// kept in a state file under the cache directory), reports each result to the
// notification targets (package serve/notify), exposes Prometheus metrics, and keeps a
// read-only view of the repository for the web interface (package serve/web).
//
// Jobs are cairn command lines run in-process by an ExecFunc (cmd/cairn's run), so a
// scheduled backup behaves exactly like `cairn backup` and takes the same repository
// locks. The clock is injected (Clock) so that tests can drive the scheduler.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/appconfig"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/serve/notify"
)

// ExecFunc runs one cairn command line (without the program name) and returns its
// exit status: 0 success, 3 backup with unreadable files, anything else failure.
type ExecFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// Options configure a Server.
type Options struct {
	Config *appconfig.Config
	// Exec runs the jobs' command lines.
	Exec ExecFunc
	// OpenRepo opens the repository for the read-only view (dashboard, metrics).
	OpenRepo func(ctx context.Context) (*repo.Repository, error)
	// Clock defaults to RealClock.
	Clock Clock
	// StatePath defaults to StatePath(Config).
	StatePath string
	// Notifier defaults to notify.New(Config.Notify, Log).
	Notifier *notify.Notifier
	Log      *slog.Logger
	// Version is cairn's version, for metrics and pages.
	Version string
	// ShutdownTimeout bounds how long Serve waits for HTTP requests and pending
	// notifications when it stops (default 10s).
	ShutdownTimeout time.Duration
}

// ErrStopping is returned when a job is started while the server shuts down.
var ErrStopping = errors.New("cairn serve is shutting down")

// Server runs the schedules and jobs of one application's configuration.
type Server struct {
	cfg       *appconfig.Config
	exec      ExecFunc
	clock     Clock
	log       *slog.Logger
	notifier  *notify.Notifier
	statePath string
	version   string
	host      string
	view      *View
	shutdown  time.Duration

	mu       sync.Mutex
	state    *State
	jobs     []*Job // newest last, at most maxJobs
	byID     map[int64]*Job
	nextID   int64
	queue    []*Job
	running  *Job
	stopping bool
	nextRun  map[string]time.Time
	wake     chan struct{}
	started  time.Time
}

const maxJobs = 200

// New checks the configuration and loads the state file.
func New(opts Options) (*Server, error) {
	if opts.Config == nil {
		return nil, errors.New("serve: no configuration")
	}
	if opts.Exec == nil {
		return nil, errors.New("serve: no job runner")
	}
	s := &Server{cfg: opts.Config, exec: opts.Exec, clock: opts.Clock, log: opts.Log, notifier: opts.Notifier,
		statePath: opts.StatePath, version: opts.Version, shutdown: opts.ShutdownTimeout,
		byID: map[int64]*Job{}, nextRun: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	if s.clock == nil {
		s.clock = RealClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.notifier == nil {
		s.notifier = notify.New(s.cfg.Notify, s.log)
	}
	if s.shutdown <= 0 {
		s.shutdown = 10 * time.Second
	}
	if s.version == "" {
		s.version = "dev"
	}
	s.host = s.cfg.Host
	if s.host == "" {
		s.host, _ = os.Hostname()
	}
	if sc := s.cfg.Schedule; sc != nil {
		// appconfig parses the expressions with line numbers; a configuration built
		// by hand may still carry unparsed strings.
		for _, j := range []struct {
			key, expr string
			sch       *appconfig.Schedule
		}{{"schedule.backup", sc.Backup, &sc.BackupSchedule}, {"schedule.prune", sc.Prune, &sc.PruneSchedule}, {"schedule.check", sc.Check, &sc.CheckSchedule}} {
			if j.expr == "" || !j.sch.IsZero() {
				continue
			}
			p, err := appconfig.ParseSchedule(j.expr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", j.key, err)
			}
			*j.sch = p
		}
	}
	if s.statePath == "" {
		p, err := StatePath(s.cfg)
		if err != nil {
			return nil, err
		}
		s.statePath = p
	}
	st, err := LoadState(s.statePath)
	if err != nil {
		return nil, err
	}
	st.App = s.cfg.App.Name
	s.state = st
	if opts.OpenRepo != nil {
		s.view = newView(opts.OpenRepo, s.clock, s.log)
	}
	return s, nil
}

// Config returns the application configuration.
func (s *Server) Config() *appconfig.Config { return s.cfg }

// View returns the repository view (nil without Options.OpenRepo).
func (s *Server) View() *View { return s.view }

// Version returns cairn's version.
func (s *Server) Version() string { return s.version }

// Clock returns the server's clock.
func (s *Server) Clock() Clock { return s.clock }

// StateFile returns the path of the state file.
func (s *Server) StateFile() string { return s.statePath }

// State returns a copy of the persisted state.
func (s *Server) State() *State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.clone()
}

// NextRuns returns the next scheduled time of each scheduled job kind.
func (s *Server) NextRuns() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time, len(s.nextRun))
	for k, v := range s.nextRun {
		out[k] = v
	}
	return out
}

// Schedule returns the schedule of a job kind (the zero Schedule when unscheduled).
func (s *Server) Schedule(kind string) appconfig.Schedule {
	sc := s.cfg.Schedule
	if sc == nil {
		return appconfig.Schedule{}
	}
	switch kind {
	case JobBackup:
		return sc.BackupSchedule
	case JobPrune:
		return sc.PruneSchedule
	case JobCheck:
		return sc.CheckSchedule
	}
	return appconfig.Schedule{}
}

// Run listens on the configured address (serve.listen) and calls Serve.
func (s *Server) Run(ctx context.Context, h http.Handler) error {
	ln, err := net.Listen("tcp", s.cfg.Serve.Listen)
	if err != nil {
		return fmt.Errorf("serve: listen on %s: %w", s.cfg.Serve.Listen, err)
	}
	return s.Serve(ctx, ln, h)
}

// Serve runs the scheduler, the job queue and the HTTP handler h on ln until ctx is
// canceled, then shuts down gracefully: no new requests or jobs, the running job is
// canceled (it counts as not run, so a restart catches it up), open requests and
// pending notifications get Options.ShutdownTimeout, and the state file is saved.
func (s *Server) Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	s.mu.Lock()
	s.started = s.clock.Now()
	if s.state.Since.IsZero() {
		s.state.Since = s.started
	}
	err := s.saveStateLocked()
	s.mu.Unlock()
	if err != nil {
		ln.Close()
		return err
	}

	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	s.log.Info("cairn serve started", "app", s.cfg.App.Name, "listen", ln.Addr().String(), "state", s.statePath, "version", s.version)

	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		s.worker(jobCtx)
	}()
	schedCtx, cancelSched := context.WithCancel(ctx)
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		s.scheduler(schedCtx)
	}()

	var runErr error
	select {
	case <-ctx.Done():
		s.log.Info("stopping cairn serve", "reason", context.Cause(ctx))
	case err := <-httpErr:
		runErr = fmt.Errorf("serve: http: %w", err)
		s.log.Error("HTTP server failed, stopping", "err", err)
	}

	cancelSched()
	<-schedDone
	s.mu.Lock()
	s.stopping = true
	for _, j := range s.queue {
		j.finish(s.clock.Now(), notify.ResultCanceled, -1, "cairn serve stopped before the job started")
	}
	s.queue = nil
	s.mu.Unlock()

	shutCtx, cancelShut := context.WithTimeout(context.Background(), s.shutdown)
	defer cancelShut()
	if err := srv.Shutdown(shutCtx); err != nil {
		s.log.Warn("HTTP requests still open at shutdown, closing them", "err", err)
		srv.Close()
	}
	cancelJobs()
	<-workerDone
	if err := s.notifier.Wait(shutCtx); err != nil {
		s.log.Warn("stopping with undelivered notifications", "err", err)
	}
	s.mu.Lock()
	if err := s.saveStateLocked(); err != nil && runErr == nil {
		runErr = err
	}
	s.mu.Unlock()
	if s.view != nil {
		s.view.Close()
	}
	s.log.Info("cairn serve stopped")
	return runErr
}

func (s *Server) saveStateLocked() error {
	if err := s.state.Save(s.statePath); err != nil {
		s.log.Error("cannot save serve state", "file", s.statePath, "err", err)
		return err
	}
	return nil
}
