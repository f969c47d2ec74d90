package web

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/serve"
	"github.com/cairn-backup/cairn/snapshot"
)

// appGroup is the snapshots of one app, oldest first.
type appGroup struct {
	Name      string
	Snapshots []*snapRow
	Timeline  *timeline
	Latest    *snapRow
}

// snapRow is a snapshot as the pages show it.
type snapRow struct {
	*snapshot.Snapshot
	Short         string
	Version       string
	Migrations    string
	Size          uint64
	Added         uint64
	VersionChange bool
	MigChange     bool
}

func newRow(sn *snapshot.Snapshot) *snapRow {
	r := &snapRow{Snapshot: sn, Short: sn.ID.Short()}
	if sn.App != nil {
		r.Version = sn.App.Version
		r.Migrations = snapshot.MigrationSummary(sn.App.Migrations, 3)
	}
	if sn.Summary != nil {
		r.Size = sn.Summary.TotalBytes
		r.Added = sn.Summary.BytesStored
	}
	if sn.Database != nil {
		r.Size += sn.Database.Size
	}
	return r
}

func appName(sn *snapshot.Snapshot) string {
	if sn.App == nil || sn.App.Name == "" {
		return "(no app)"
	}
	return sn.App.Name
}

// groupByApp splits snapshots (oldest first) by app, the configured app first.
func groupByApp(snaps []*snapshot.Snapshot, first string) []*appGroup {
	byName := map[string]*appGroup{}
	var names []string
	for _, sn := range snaps {
		n := appName(sn)
		g := byName[n]
		if g == nil {
			g = &appGroup{Name: n}
			byName[n] = g
			names = append(names, n)
		}
		row := newRow(sn)
		if k := len(g.Snapshots); k > 0 {
			prev := g.Snapshots[k-1]
			row.VersionChange = prev.Version != row.Version
			var pm, nm map[string]string
			if prev.App != nil {
				pm = prev.App.Migrations
			}
			if sn.App != nil {
				nm = sn.App.Migrations
			}
			changes := snapshot.DiffMigrations(pm, nm)
			row.MigChange = len(changes) > 0
			if row.MigChange {
				var parts []string
				for _, c := range changes {
					v := c.New
					if v == "" {
						v = "(removed)"
					} else if j := strings.IndexByte(v, '_'); j > 0 {
						v = v[:j]
					}
					parts = append(parts, c.Key+" "+v)
				}
				row.Migrations = "new: " + strings.Join(parts, ", ")
			} else if len(nm) > 0 {
				row.Migrations = fmt.Sprintf("unchanged (%d apps)", len(nm))
			}
		}
		g.Snapshots = append(g.Snapshots, row)
	}
	sort.SliceStable(names, func(i, j int) bool { return names[i] == first && names[j] != first })
	out := make([]*appGroup, 0, len(names))
	for _, n := range names {
		g := byName[n]
		g.Latest = g.Snapshots[len(g.Snapshots)-1]
		g.Timeline = buildTimeline(g.Snapshots)
		out = append(out, g)
	}
	return out
}

type jobRow struct {
	Kind     string
	Schedule string
	Next     time.Time
	State    *serve.JobState
}

type dashboardData struct {
	pageData
	Location  string
	Size      uint64
	Files     int
	Count     int
	Apps      []*appGroup
	Growth    *growthChart
	Jobs      []jobRow
	Running   *serve.JobInfo
	Recent    []serve.JobInfo
	Warning   string
	RepoError string
	All       []*snapRow // newest first, for the diff form
}

func (h *Handler) dashboard(w http.ResponseWriter, r *http.Request, rq *request) {
	d := &dashboardData{pageData: h.page(rq, "Dashboard", "dashboard")}
	st := h.srv.State()
	next := h.srv.NextRuns()
	for _, k := range serve.ScheduledKinds {
		js := st.Jobs[k]
		if js == nil {
			js = &serve.JobState{}
		}
		d.Jobs = append(d.Jobs, jobRow{Kind: k, Schedule: h.srv.Schedule(k).String(), Next: next[k], State: js})
	}
	if j := h.srv.Running(); j != nil {
		in := j.Info(h.srv.Clock().Now())
		d.Running = &in
	}
	jobs := h.srv.Jobs()
	if len(jobs) > 8 {
		jobs = jobs[:8]
	}
	d.Recent = jobs
	if v := h.srv.View(); v != nil {
		info, err := v.Info(r.Context())
		if err != nil {
			d.RepoError = err.Error()
		} else {
			d.Location, d.Size, d.Files, d.Count, d.Warning = info.Location, info.Size, info.Files, len(info.Snapshots), info.Warning
			d.Apps = groupByApp(info.Snapshots, h.srv.Config().App.Name)
			d.Growth = buildGrowth(info.Snapshots, info.Size)
			for i := len(info.Snapshots) - 1; i >= 0; i-- {
				d.All = append(d.All, newRow(info.Snapshots[i]))
			}
		}
	}
	h.render(w, r, http.StatusOK, "dashboard", d)
}

// findSnapshot resolves the {id} of the URL, answering 404 itself.
func (h *Handler) findSnapshot(w http.ResponseWriter, r *http.Request) (*snapshot.Snapshot, bool) {
	v := h.srv.View()
	if v == nil {
		h.notFound(w, r, "no repository")
		return nil, false
	}
	sn, err := v.Snapshot(r.Context(), r.PathValue("id"))
	if errors.Is(err, snapshot.ErrNotFound) {
		h.notFound(w, r, "no such snapshot")
		return nil, false
	}
	if err != nil {
		h.serverError(w, r, err)
		return nil, false
	}
	return sn, true
}

// cleanPath turns a ?path= value into an absolute slash path inside the snapshot's
// namespace. ".." cannot climb above "/": the snapshot tree is the only thing paths
// ever address.
func cleanPath(p string) (string, bool) {
	if strings.ContainsRune(p, 0) {
		return "", false
	}
	return path.Clean("/" + p), true
}

type crumb struct {
	Name string
	Path string
}

type entryRow struct {
	Name    string
	Path    string
	Type    string
	Size    uint64
	Mode    string
	ModTime time.Time
	Target  string
}

type snapshotData struct {
	pageData
	Snap       *snapRow
	Migrations []kv
	Path       string
	Crumbs     []crumb
	Entries    []entryRow
	Parent     string
	Duration   string
}

type kv struct{ K, V string }

func (h *Handler) snapshotPage(w http.ResponseWriter, r *http.Request, rq *request) {
	sn, ok := h.findSnapshot(w, r)
	if !ok {
		return
	}
	p, ok := cleanPath(r.URL.Query().Get("path"))
	if !ok {
		h.notFound(w, r, "no such path in the snapshot")
		return
	}
	v := h.srv.View()
	var nodes []snapshot.Node
	if p == "/" {
		t, err := snapshot.LoadTree(r.Context(), v, sn.Tree)
		if err != nil {
			h.serverError(w, r, err)
			return
		}
		nodes = t.Nodes
	} else {
		n, err := snapshot.FindNode(r.Context(), v, sn.Tree, p)
		if err != nil {
			h.serverError(w, r, err)
			return
		}
		if n == nil || n.Type != snapshot.TypeDir {
			h.notFound(w, r, "no such directory in the snapshot")
			return
		}
		t, err := snapshot.LoadTree(r.Context(), v, *n.Subtree)
		if err != nil {
			h.serverError(w, r, err)
			return
		}
		nodes = t.Nodes
	}
	d := &snapshotData{pageData: h.page(rq, "Snapshot "+sn.ID.Short(), "dashboard"), Snap: newRow(sn), Path: p}
	if sn.App != nil {
		keys := make([]string, 0, len(sn.App.Migrations))
		for k := range sn.App.Migrations {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.Migrations = append(d.Migrations, kv{k, sn.App.Migrations[k]})
		}
	}
	if s := sn.Summary; s != nil {
		d.Duration = s.End.Sub(s.Start).Round(time.Millisecond).String()
	}
	d.Crumbs = []crumb{{Name: "/", Path: "/"}}
	if p != "/" {
		acc := ""
		for _, part := range strings.Split(p[1:], "/") {
			acc += "/" + part
			d.Crumbs = append(d.Crumbs, crumb{Name: part, Path: acc})
		}
		d.Parent = path.Dir(p)
	}
	for i := range nodes {
		n := &nodes[i]
		child := path.Join(p, n.RawName())
		d.Entries = append(d.Entries, entryRow{Name: n.RawName(), Path: child, Type: n.Type, Size: n.Size,
			Mode: n.FileMode().String(), ModTime: n.ModTime, Target: n.Target()})
	}
	sort.SliceStable(d.Entries, func(i, j int) bool {
		return (d.Entries[i].Type == snapshot.TypeDir) && (d.Entries[j].Type != snapshot.TypeDir)
	})
	h.render(w, r, http.StatusOK, "snapshot", d)
}

// download streams one file of a snapshot. The path is looked up in the snapshot's
// tree only; anything that is not a file node there is a 404.
func (h *Handler) download(w http.ResponseWriter, r *http.Request, _ *request) {
	sn, ok := h.findSnapshot(w, r)
	if !ok {
		return
	}
	p, ok := cleanPath(r.URL.Query().Get("path"))
	if !ok || p == "/" {
		h.notFound(w, r, "no such file in the snapshot")
		return
	}
	n, err := snapshot.FindNode(r.Context(), h.srv.View(), sn.Tree, p)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	if n == nil || n.Type != snapshot.TypeFile {
		h.notFound(w, r, "no such file in the snapshot")
		return
	}
	h.sendNode(w, r, n, path.Base(p))
}

func (h *Handler) downloadDump(w http.ResponseWriter, r *http.Request, _ *request) {
	sn, ok := h.findSnapshot(w, r)
	if !ok {
		return
	}
	if sn.Database == nil {
		h.notFound(w, r, "the snapshot has no database dump")
		return
	}
	n, err := snapshot.DumpNode(r.Context(), h.srv.View(), sn.Database)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	name := sn.ID.Short() + "-" + n.RawName()
	h.sendNode(w, r, n, name)
}

func (h *Handler) sendNode(w http.ResponseWriter, r *http.Request, n *snapshot.Node, name string) {
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.FormatUint(n.Size, 10))
	hd.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	if hd.Get("Content-Disposition") == "" {
		hd.Set("Content-Disposition", "attachment")
	}
	hd.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	if r.Method == http.MethodHead {
		return
	}
	written, err := snapshot.WriteContent(r.Context(), h.srv.View(), n, w)
	if err != nil {
		// The status line is gone; cutting the response short tells the client.
		h.log.Error("download failed", "file", name, "written", written, "err", err)
		panic(http.ErrAbortHandler)
	}
}

func (h *Handler) restore(w http.ResponseWriter, r *http.Request, rq *request) {
	sn, ok := h.findSnapshot(w, r)
	if !ok {
		return
	}
	target := strings.TrimSpace(r.PostFormValue("target"))
	j, err := h.srv.Restore(sn.ID.String(), target)
	if err != nil {
		h.errorPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	h.jobCreated(w, r, rq, j)
}

func (h *Handler) startJob(w http.ResponseWriter, r *http.Request, rq *request) {
	kind := r.PostFormValue("kind")
	j, err := h.srv.Enqueue(kind, serve.TriggerManual)
	if errors.Is(err, serve.ErrStopping) {
		h.errorPage(w, r, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		h.errorPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	h.jobCreated(w, r, rq, j)
}

func (h *Handler) jobCreated(w http.ResponseWriter, r *http.Request, rq *request, j *serve.Job) {
	if rq.session == nil || strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, http.StatusAccepted, j.Info(h.srv.Clock().Now()))
		return
	}
	http.Redirect(w, r, "/jobs/"+strconv.FormatInt(j.ID(), 10), http.StatusSeeOther)
}

func (h *Handler) jobFromPath(w http.ResponseWriter, r *http.Request) (*serve.Job, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		h.notFound(w, r, "no such job")
		return nil, false
	}
	j, ok := h.srv.Job(id)
	if !ok {
		h.notFound(w, r, "no such job")
		return nil, false
	}
	return j, true
}

type jobData struct {
	pageData
	Job serve.JobInfo
}

func (h *Handler) jobPage(w http.ResponseWriter, r *http.Request, rq *request) {
	j, ok := h.jobFromPath(w, r)
	if !ok {
		return
	}
	in := j.Info(h.srv.Clock().Now())
	h.render(w, r, http.StatusOK, "job", &jobData{pageData: h.page(rq, fmt.Sprintf("Job %d: %s", in.ID, in.Kind), "jobs"), Job: in})
}

type jobsData struct {
	pageData
	Jobs      []serve.JobInfo
	Scheduled []jobRow
	StateFile string
}

func (h *Handler) jobsPage(w http.ResponseWriter, r *http.Request, rq *request) {
	d := &jobsData{pageData: h.page(rq, "Jobs", "jobs"), Jobs: h.srv.Jobs(), StateFile: h.srv.StateFile()}
	st := h.srv.State()
	next := h.srv.NextRuns()
	for _, k := range serve.ScheduledKinds {
		js := st.Jobs[k]
		if js == nil {
			js = &serve.JobState{}
		}
		d.Scheduled = append(d.Scheduled, jobRow{Kind: k, Schedule: h.srv.Schedule(k).String(), Next: next[k], State: js})
	}
	h.render(w, r, http.StatusOK, "jobs", d)
}

func (h *Handler) apiJobs(w http.ResponseWriter, r *http.Request, _ *request) {
	writeJSON(w, http.StatusOK, h.srv.Jobs())
}

func (h *Handler) apiJob(w http.ResponseWriter, r *http.Request, _ *request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	j, ok := h.srv.Job(id)
	if err != nil || !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such job"})
		return
	}
	writeJSON(w, http.StatusOK, j.Info(h.srv.Clock().Now()))
}

type statusJSON struct {
	App        string                     `json:"app"`
	Jobs       map[string]*serve.JobState `json:"jobs"`
	NextRuns   map[string]time.Time       `json:"next_runs"`
	Snapshots  int                        `json:"snapshots"`
	RepoSize   uint64                     `json:"repository_size"`
	LastSnap   *time.Time                 `json:"last_snapshot,omitempty"`
	LastSnapID string                     `json:"last_snapshot_id,omitempty"`
	Error      string                     `json:"error,omitempty"`
}

func (h *Handler) apiStatus(w http.ResponseWriter, r *http.Request, _ *request) {
	st := h.srv.State()
	out := statusJSON{App: h.srv.Config().App.Name, Jobs: st.Jobs, NextRuns: h.srv.NextRuns()}
	if v := h.srv.View(); v != nil {
		info, err := v.Info(r.Context())
		if err != nil {
			out.Error = err.Error()
		} else {
			out.RepoSize = info.Size
			for _, sn := range info.Snapshots {
				if appName(sn) == out.App {
					out.Snapshots++
					t := sn.Time
					out.LastSnap, out.LastSnapID = &t, sn.ID.String()
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

type changeRow struct {
	Kind string
	Path string
	Meta string
	Size string
}

type diffData struct {
	pageData
	All        []*snapRow
	From, To   *snapRow
	Migrations []snapshot.MigrationChange
	Changes    []changeRow
	Total      int
	Counts     []kv
	Truncated  bool
	Error      string
}

const maxDiffRows = 2000

func (h *Handler) diffPage(w http.ResponseWriter, r *http.Request, rq *request) {
	d := &diffData{pageData: h.page(rq, "Compare snapshots", "diff")}
	v := h.srv.View()
	if v == nil {
		h.notFound(w, r, "no repository")
		return
	}
	info, err := v.Info(r.Context())
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	for i := len(info.Snapshots) - 1; i >= 0; i-- {
		d.All = append(d.All, newRow(info.Snapshots[i]))
	}
	q := r.URL.Query()
	from, to := q.Get("from"), q.Get("to")
	if from == "" || to == "" {
		h.render(w, r, http.StatusOK, "diff", d)
		return
	}
	a, err := v.Snapshot(r.Context(), from)
	if err != nil {
		h.notFound(w, r, "no such snapshot: "+from)
		return
	}
	b, err := v.Snapshot(r.Context(), to)
	if err != nil {
		h.notFound(w, r, "no such snapshot: "+to)
		return
	}
	d.From, d.To = newRow(a), newRow(b)
	var am, bm map[string]string
	if a.App != nil {
		am = a.App.Migrations
	}
	if b.App != nil {
		bm = b.App.Migrations
	}
	d.Migrations = snapshot.DiffMigrations(am, bm)
	counts := map[string]int{}
	err = snapshot.Diff(r.Context(), v, a.Tree, b.Tree, func(c snapshot.Change) error {
		d.Total++
		counts[c.Kind.String()]++
		if len(d.Changes) >= maxDiffRows {
			d.Truncated = true
			return nil
		}
		row := changeRow{Kind: c.Kind.String(), Path: c.Path, Meta: strings.Join(c.Meta, ", ")}
		switch {
		case c.Old != nil && c.New != nil && c.Old.Type == snapshot.TypeFile && c.New.Type == snapshot.TypeFile && c.Old.Size != c.New.Size:
			row.Size = formatBytes(c.Old.Size) + " → " + formatBytes(c.New.Size)
		case c.New != nil && c.New.Type == snapshot.TypeFile:
			row.Size = formatBytes(c.New.Size)
		case c.Old != nil && c.Old.Type == snapshot.TypeFile:
			row.Size = formatBytes(c.Old.Size)
		}
		d.Changes = append(d.Changes, row)
		return nil
	})
	if err != nil {
		d.Error = err.Error()
	}
	for _, k := range []string{"added", "removed", "changed", "type changed", "metadata"} {
		if counts[k] > 0 {
			d.Counts = append(d.Counts, kv{k, strconv.Itoa(counts[k])})
		}
	}
	h.render(w, r, http.StatusOK, "diff", d)
}

// formatBytes prints n in binary units.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func formatSeconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

// ago prints the time from t to now roughly: "5 minutes ago", "in 3 hours".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, ""
	}
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	var s string
	switch {
	case d < time.Minute:
		s = plural(int(d/time.Second), "second")
	case d < time.Hour:
		s = plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		s = plural(int(d/time.Hour), "hour")
	default:
		s = plural(int(d/(24*time.Hour)), "day")
	}
	if suffix == "" {
		return "in " + s
	}
	return s + suffix
}
