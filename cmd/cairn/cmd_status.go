package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/serve"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/spf13/cobra"
)

func newStatusCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status [CONFIG...]",
		Short: "Show each app's last snapshot, its age, the last job results and the repository size",
		Long: `Show, per app: the last snapshot and its age, the number of snapshots, the size of the
repository, and the last result of each job that cairn serve ran (from its state file
serve-<app>.json in the cache directory, when there is one).

Without arguments the app of --config ($CAIRN_CONFIG, ./cairn.toml) is shown, or, with
no configuration, every app found in the repository of --repo. Give several cairn.toml
files to see several apps at once; the exit status is 1 when any of them cannot be read.` + exitStatusHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), g, args)
		},
	}
}

type statusSnapshotJSON struct {
	ID         string    `json:"id"`
	Time       time.Time `json:"time"`
	AgeSeconds float64   `json:"age_seconds"`
	Version    string    `json:"version,omitempty"`
	Host       string    `json:"host"`
}

type statusAppJSON struct {
	App            string                     `json:"app"`
	Config         string                     `json:"config,omitempty"`
	Repository     string                     `json:"repository"`
	Snapshots      int                        `json:"snapshots"`
	LastSnapshot   *statusSnapshotJSON        `json:"last_snapshot,omitempty"`
	RepositorySize uint64                     `json:"repository_size"`
	StateFile      string                     `json:"state_file,omitempty"`
	Jobs           map[string]*serve.JobState `json:"jobs,omitempty"`
	Error          string                     `json:"error,omitempty"`
}

func runStatus(ctx context.Context, g *globalOptions, configs []string) error {
	var apps []statusAppJSON
	var failed int
	if len(configs) == 0 {
		out, err := statusOf(ctx, g)
		if err != nil {
			return err
		}
		apps = out
	} else {
		for _, path := range configs {
			cg := &globalOptions{repo: g.repo, passwordFile: g.passwordFile, passwordCommand: g.passwordCommand,
				identityFile: g.identityFile, configFile: path, stdin: g.stdin, stdout: g.stdout, stderr: g.stderr}
			out, err := statusOf(ctx, cg)
			if err != nil {
				out = []statusAppJSON{{Config: path, Error: err.Error()}}
			}
			apps = append(apps, out...)
		}
	}
	for _, a := range apps {
		if a.Error != "" {
			failed++
		}
	}
	if g.json {
		if apps == nil {
			apps = []statusAppJSON{}
		}
		if err := g.printJSON(apps); err != nil {
			return err
		}
	} else {
		printStatus(g, apps)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d apps could not be read", failed, len(apps))
	}
	return nil
}

// statusOf reports the app of g's configuration, or every app of the repository
// when there is no configuration. A repository that cannot be read is reported in
// the apps' Error; only a broken configuration is an error.
func statusOf(ctx context.Context, g *globalOptions) ([]statusAppJSON, error) {
	cfg, err := g.appConfig()
	if err != nil {
		return nil, err
	}
	var base statusAppJSON
	if cfg != nil {
		base.App, base.Config = cfg.App.Name, cfg.Path
		if path, err := serve.StatePath(cfg); err == nil {
			st, err := serve.LoadState(path)
			switch {
			case err != nil:
				g.warnf("%v", err)
			case len(st.Jobs) > 0:
				base.StateFile, base.Jobs = path, st.Jobs
			}
		}
	}
	loc, err := g.location()
	if err != nil {
		if cfg == nil {
			return nil, err
		}
		base.Error = err.Error()
		return []statusAppJSON{base}, nil
	}
	base.Repository = loc
	var out []statusAppJSON
	err = g.withRepo(ctx, "", false, func(r *repo.Repository) error {
		size, err := repositorySize(ctx, r)
		if err != nil {
			return err
		}
		base.RepositorySize = size
		snaps, err := loadSnapshots(ctx, g, r)
		if err != nil {
			return err
		}
		groups := map[string][]*snapshot.Snapshot{}
		for _, sn := range snaps {
			name := ""
			if sn.App != nil {
				name = sn.App.Name
			}
			groups[name] = append(groups[name], sn)
		}
		if cfg != nil {
			a := base
			fillStatus(&a, groups[cfg.App.Name])
			out = append(out, a)
			return nil
		}
		names := make([]string, 0, len(groups))
		for n := range groups {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			a := base
			a.App = n
			fillStatus(&a, groups[n])
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		base.Error = err.Error()
		return []statusAppJSON{base}, nil
	}
	return out, nil
}

func fillStatus(a *statusAppJSON, snaps []*snapshot.Snapshot) {
	a.Snapshots = len(snaps)
	if len(snaps) == 0 {
		return
	}
	sn := snaps[len(snaps)-1]
	s := &statusSnapshotJSON{ID: sn.ID.String(), Time: sn.Time, AgeSeconds: time.Since(sn.Time).Seconds(), Host: sn.Host}
	if sn.App != nil {
		s.Version = sn.App.Version
	}
	a.LastSnapshot = s
}

// repositorySize adds up the sizes of all repository files.
func repositorySize(ctx context.Context, r *repo.Repository) (uint64, error) {
	var size uint64
	for _, t := range backend.AllTypes {
		err := r.Backend().List(ctx, t, func(fi backend.FileInfo) error {
			size += uint64(fi.Size)
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("list repository %s files: %w", t, err)
		}
	}
	return size, nil
}

func printStatus(g *globalOptions, apps []statusAppJSON) {
	t := &table{header: []string{"App", "Last snapshot", "Age", "Snapshots", "Repo size", "Last jobs"}}
	for _, a := range apps {
		name := a.App
		if name == "" {
			name = "(no app)"
		}
		if a.Error != "" {
			where := a.Config
			if where == "" {
				where = a.Repository
			}
			t.add(name, "-", "-", "-", "-", "error: "+strings.TrimSpace(a.Error)+" ("+where+")")
			continue
		}
		last, age := "-", "-"
		if s := a.LastSnapshot; s != nil {
			last = s.ID[:8] + " " + s.Time.Local().Format("2006-01-02 15:04")
			if s.Version != "" {
				last += " (" + s.Version + ")"
			}
			age = formatAge(time.Duration(s.AgeSeconds * float64(time.Second)))
		}
		t.add(name, last, age, fmt.Sprint(a.Snapshots), formatBytes(a.RepositorySize), jobSummary(a.Jobs))
	}
	fmt.Fprint(g.stdout, t.String())
}

// jobSummary prints "backup success 2h ago, check failure 3d ago: <error>".
func jobSummary(jobs map[string]*serve.JobState) string {
	if len(jobs) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range append(append([]string(nil), serve.ScheduledKinds...), "") {
		js := jobs[k]
		if js == nil || js.LastRun.IsZero() {
			continue
		}
		p := fmt.Sprintf("%s %s %s ago", k, js.LastResult, formatAge(time.Since(js.LastEnd)))
		if js.LastError != "" {
			p += ": " + js.LastError
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

// formatAge prints a duration coarsely: "45s", "12m", "5h3m", "3d4h".
func formatAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	days := int(d / (24 * time.Hour))
	return fmt.Sprintf("%dd%dh", days, int(d%(24*time.Hour)/time.Hour))
}
