package serve

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/serve/notify"
)

// MetricsContentType is the Content-Type of WriteMetrics' output.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteMetrics writes the Prometheus text exposition of the server's state:
// per job kind the last run, success, duration and result, runs and failures; per app
// the snapshot count and last snapshot time; the repository's size. docs/SERVE.md
// lists every metric.
func (s *Server) WriteMetrics(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriter(w)
	app := s.cfg.App.Name
	st := s.State()
	running := ""
	if j := s.Running(); j != nil {
		running = j.kind
	}

	m := &metricWriter{w: bw}
	m.family("cairn_build_info", "gauge", "cairn's version.")
	m.sample("cairn_build_info", labels{"version", s.version}, 1)

	kinds := []string{}
	for _, k := range ScheduledKinds {
		if !s.Schedule(k).IsZero() || st.Jobs[k] != nil {
			kinds = append(kinds, k)
		}
	}
	type jobMetric struct {
		name, typ, help string
		value           func(js *JobState) (float64, bool)
	}
	ts := func(t time.Time) (float64, bool) {
		if t.IsZero() {
			return 0, false
		}
		return float64(t.UnixMilli()) / 1000, true
	}
	jobMetrics := []jobMetric{
		{"cairn_job_last_success_timestamp_seconds", "gauge", "When the job last finished successfully (a backup with unreadable files counts), Unix time.",
			func(js *JobState) (float64, bool) { return ts(js.LastSuccess) }},
		{"cairn_job_last_run_timestamp_seconds", "gauge", "When the job's last run started, Unix time.",
			func(js *JobState) (float64, bool) { return ts(js.LastRun) }},
		{"cairn_job_last_duration_seconds", "gauge", "How long the job's last run took.",
			func(js *JobState) (float64, bool) { return js.LastDuration, !js.LastRun.IsZero() }},
		{"cairn_job_runs_total", "counter", "Finished runs of the job.",
			func(js *JobState) (float64, bool) { return float64(js.Runs), true }},
		{"cairn_job_failures_total", "counter", "Runs of the job that failed or had warnings.",
			func(js *JobState) (float64, bool) { return float64(js.Failures), true }},
		{"cairn_job_consecutive_failures", "gauge", "Runs of the job that failed or had warnings since its last success.",
			func(js *JobState) (float64, bool) { return float64(js.ConsecFailure), true }},
	}
	for _, jm := range jobMetrics {
		m.family(jm.name, jm.typ, jm.help)
		for _, k := range kinds {
			js := st.Jobs[k]
			if js == nil {
				js = &JobState{}
			}
			if v, ok := jm.value(js); ok {
				m.sample(jm.name, labels{"app", app, "job", k}, v)
			}
		}
	}
	m.family("cairn_job_last_result", "gauge", "The result of the job's last run: 1 for the result it had, 0 for the others.")
	for _, k := range kinds {
		js := st.Jobs[k]
		if js == nil || js.LastResult == "" {
			continue
		}
		for _, r := range []string{notify.ResultSuccess, notify.ResultWarning, notify.ResultFailure} {
			v := 0.0
			if js.LastResult == r {
				v = 1
			}
			m.sample("cairn_job_last_result", labels{"app", app, "job", k, "result", r}, v)
		}
	}
	m.family("cairn_job_running", "gauge", "1 while a run of the job is in progress.")
	for _, k := range kinds {
		v := 0.0
		if running == k {
			v = 1
		}
		m.sample("cairn_job_running", labels{"app", app, "job", k}, v)
	}
	m.family("cairn_job_next_run_timestamp_seconds", "gauge", "When the job is next scheduled, Unix time.")
	next := s.NextRuns()
	nk := make([]string, 0, len(next))
	for k := range next {
		nk = append(nk, k)
	}
	sort.Strings(nk)
	for _, k := range nk {
		if v, ok := ts(next[k]); ok {
			m.sample("cairn_job_next_run_timestamp_seconds", labels{"app", app, "job", k}, v)
		}
	}

	if s.view != nil {
		info, err := s.view.Info(ctx)
		m.family("cairn_repository_up", "gauge", "1 if the repository could be read at the last scrape, else 0.")
		if err != nil {
			m.sample("cairn_repository_up", labels{"app", app}, 0)
			s.log.Warn("metrics: cannot read the repository", "err", err)
		} else {
			m.sample("cairn_repository_up", labels{"app", app}, 1)
			m.family("cairn_repository_size_bytes", "gauge", "Size of all repository files.")
			m.sample("cairn_repository_size_bytes", labels{"app", app}, float64(info.Size))
			m.family("cairn_repository_snapshots", "gauge", "Snapshots in the repository, of all apps.")
			m.sample("cairn_repository_snapshots", labels{"app", app}, float64(len(info.Snapshots)))
			count, last := 0, time.Time{}
			for _, sn := range info.Snapshots {
				if sn.App != nil && sn.App.Name == app {
					count++
					if sn.Time.After(last) {
						last = sn.Time
					}
				}
			}
			m.family("cairn_snapshots", "gauge", "Snapshots of the app.")
			m.sample("cairn_snapshots", labels{"app", app}, float64(count))
			m.family("cairn_last_snapshot_timestamp_seconds", "gauge", "Time of the app's newest snapshot, Unix time.")
			if v, ok := ts(last); ok {
				m.sample("cairn_last_snapshot_timestamp_seconds", labels{"app", app}, v)
			}
		}
	}
	if m.err != nil {
		return m.err
	}
	return bw.Flush()
}

// labels are name, value pairs.
type labels []string

type metricWriter struct {
	w   *bufio.Writer
	err error
}

func (m *metricWriter) family(name, typ, help string) {
	m.printf("# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
}

func (m *metricWriter) sample(name string, l labels, v float64) {
	var b strings.Builder
	b.WriteString(name)
	if len(l) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(l); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(l[i])
			b.WriteString(`="`)
			b.WriteString(escapeLabel(l[i+1]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
	b.WriteByte('\n')
	m.printf("%s", b.String())
}

func (m *metricWriter) printf(format string, args ...any) {
	if m.err != nil {
		return
	}
	_, m.err = fmt.Fprintf(m.w, format, args...)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
