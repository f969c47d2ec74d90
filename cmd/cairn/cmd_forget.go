package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appconfig"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/policy"
	"github.com/spf13/cobra"
)

type forgetOptions struct {
	last, hourly, daily, weekly, monthly, yearly int
	within                                       string
	keepTags                                     []string
	groupBy                                      string
	dryRun                                       bool
	prune                                        bool
	po                                           pruneOptions
	fo                                           snapshotFilterOptions
}

var keepFlags = []string{"keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly", "keep-within", "keep-tag"}

func newForgetCommand(g *globalOptions) *cobra.Command {
	var opts forgetOptions
	c := &cobra.Command{
		Use:   "forget [flags] [SNAPSHOT...]",
		Short: "Remove snapshots by a retention policy or by ID",
		Long: `Remove snapshots. With snapshot IDs, remove those. Otherwise apply the retention policy
given by the --keep flags, or the [retention] section of cairn.toml when no --keep
flag is given, to each group of snapshots (by default: same host, app and paths).
A snapshot is kept if any rule keeps it; --dry-run shows which rule keeps what.
Forget removes only snapshot records: prune (or --prune) removes the data.` + exitStatusHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			var keepGiven bool
			for _, f := range keepFlags {
				keepGiven = keepGiven || cmd.Flags().Changed(f)
			}
			return runForget(cmd.Context(), g, opts, keepGiven, args)
		},
	}
	f := c.Flags()
	f.IntVar(&opts.last, "keep-last", 0, "keep the N newest snapshots (-1: all)")
	f.IntVar(&opts.hourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours with snapshots")
	f.IntVar(&opts.daily, "keep-daily", 0, "keep the newest snapshot of each of the last N days with snapshots")
	f.IntVar(&opts.weekly, "keep-weekly", 0, "keep the newest snapshot of each of the last N ISO weeks with snapshots")
	f.IntVar(&opts.monthly, "keep-monthly", 0, "keep the newest snapshot of each of the last N months with snapshots")
	f.IntVar(&opts.yearly, "keep-yearly", 0, "keep the newest snapshot of each of the last N years with snapshots")
	f.StringVar(&opts.within, "keep-within", "", "keep snapshots newer than the newest minus DURATION (e.g. 2d, 1y6m, 36h)")
	f.StringArrayVar(&opts.keepTags, "keep-tag", nil, "keep snapshots with this tag (repeatable; \"a,b\" needs both)")
	f.StringVar(&opts.groupBy, "group-by", "host,app,paths", "apply the policy per group of these fields: any of host, app, paths, tags (empty: one group)")
	f.BoolVarP(&opts.dryRun, "dry-run", "n", false, "only show what would be kept and removed, and why")
	f.BoolVar(&opts.prune, "prune", false, "prune right after removing snapshots")
	opts.po.addFlags(c)
	opts.fo.addFlags(c)
	return c
}

// policyFromRetention converts the [retention] section of cairn.toml.
func policyFromRetention(r *appconfig.Retention) (policy.Policy, error) {
	p := policy.Policy{Last: r.KeepLast, Hourly: r.KeepHourly, Daily: r.KeepDaily, Weekly: r.KeepWeekly,
		Monthly: r.KeepMonthly, Yearly: r.KeepYearly, Tags: r.KeepTag}
	if r.KeepWithin != "" {
		d, err := policy.ParseDuration(r.KeepWithin)
		if err != nil {
			return p, fmt.Errorf("retention.keep_within: %w", err)
		}
		p.Within = d
	}
	return p, nil
}

func (o *forgetOptions) policy(g *globalOptions, keepGiven bool) (policy.Policy, string, error) {
	if keepGiven {
		p := policy.Policy{Last: o.last, Hourly: o.hourly, Daily: o.daily, Weekly: o.weekly, Monthly: o.monthly,
			Yearly: o.yearly, Tags: o.keepTags}
		if o.within != "" {
			d, err := policy.ParseDuration(o.within)
			if err != nil {
				return p, "", fmt.Errorf("--keep-within: %w", err)
			}
			p.Within = d
		}
		return p, "flags", p.Validate()
	}
	cfg, err := g.appConfig()
	if err != nil {
		return policy.Policy{}, "", err
	}
	if cfg == nil || cfg.Retention == nil {
		return policy.Policy{}, "", errors.New("no retention policy: give --keep-* flags or a [retention] section in cairn.toml, or name the snapshots to forget")
	}
	p, err := policyFromRetention(cfg.Retention)
	if err != nil {
		return p, "", err
	}
	return p, cfg.Path, p.Validate()
}

type forgetSnapshotJSON struct {
	ID      string    `json:"id"`
	ShortID string    `json:"short_id"`
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Tags    []string  `json:"tags"`
	Paths   []string  `json:"paths"`
	Reasons []string  `json:"reasons,omitempty"`
}

type forgetGroupJSON struct {
	Group  snapshot.GroupKey    `json:"group"`
	Keep   []forgetSnapshotJSON `json:"keep"`
	Remove []forgetSnapshotJSON `json:"remove"`
}

type forgetJSON struct {
	DryRun  bool              `json:"dry_run"`
	Policy  string            `json:"policy,omitempty"`
	Groups  []forgetGroupJSON `json:"groups,omitempty"`
	Removed []string          `json:"removed"`
	Prune   *repo.PruneResult `json:"prune,omitempty"`
}

func toForgetJSON(d snapshot.Decision) forgetSnapshotJSON {
	sn := d.Snapshot
	j := forgetSnapshotJSON{ID: sn.ID.String(), ShortID: sn.ID.Short(), Time: sn.Time, Host: sn.Host, Tags: sn.Tags,
		Paths: sn.Paths, Reasons: d.Reasons}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	return j
}

func runForget(ctx context.Context, g *globalOptions, opts forgetOptions, keepGiven bool, args []string) error {
	var limit repo.UnusedLimit
	if opts.prune {
		var err error
		if limit, err = opts.po.limit(); err != nil {
			return err
		}
	}
	by, err := snapshot.ParseGroupBy(opts.groupBy)
	if err != nil {
		return fmt.Errorf("--group-by: %w", err)
	}
	return g.withRepo(ctx, "", false, func(r *repo.Repository) error {
		out := forgetJSON{DryRun: opts.dryRun, Removed: []string{}}
		var remove []blob.ID
		err := func() error {
			l, err := r.LockKind(ctx, "forget")
			if err != nil {
				return err
			}
			defer func() { _ = l.Unlock(context.WithoutCancel(ctx)) }()
			snaps, err := loadSnapshots(ctx, g, r)
			if err != nil {
				return err
			}
			if len(args) > 0 {
				if keepGiven {
					return errors.New("give either snapshot IDs or --keep-* rules, not both")
				}
				seen := map[blob.ID]bool{}
				for _, a := range args {
					sn, err := snapshot.Select(snaps, a, opts.fo.filter(), time.Local)
					if err != nil {
						return err
					}
					if !seen[sn.ID] {
						seen[sn.ID] = true
						remove = append(remove, sn.ID)
						out.Groups = append(out.Groups, forgetGroupJSON{Keep: []forgetSnapshotJSON{},
							Remove: []forgetSnapshotJSON{toForgetJSON(snapshot.Decision{Snapshot: sn})}})
					}
				}
			} else {
				p, source, err := opts.policy(g, keepGiven)
				if err != nil {
					return err
				}
				out.Policy = p.String()
				f := opts.fo.filter()
				var sel []*snapshot.Snapshot
				for _, sn := range snaps {
					if f.Match(sn) {
						sel = append(sel, sn)
					}
				}
				decisions, err := snapshot.ApplyPolicy(snapshot.GroupSnapshots(sel, by), p, time.Now())
				if err != nil {
					return err
				}
				if source != "flags" {
					g.verbosef("policy from %s: %s\n", source, p)
				}
				for _, d := range decisions {
					gj := forgetGroupJSON{Group: d.Key, Keep: []forgetSnapshotJSON{}, Remove: []forgetSnapshotJSON{}}
					for _, k := range d.Keep {
						gj.Keep = append(gj.Keep, toForgetJSON(k))
					}
					for _, k := range d.Remove {
						gj.Remove = append(gj.Remove, toForgetJSON(k))
						remove = append(remove, k.Snapshot.ID)
					}
					out.Groups = append(out.Groups, gj)
					printForgetGroup(g, d, opts.dryRun)
				}
			}
			if opts.dryRun {
				return nil
			}
			if err := snapshot.Forget(ctx, r, remove); err != nil {
				return err
			}
			for _, id := range remove {
				out.Removed = append(out.Removed, id.String())
				if len(args) > 0 {
					g.verbosef("removed snapshot %s\n", id.Short())
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
		if opts.dryRun {
			g.verbosef("dry run: would remove %d snapshots\n", len(remove))
		} else if len(args) == 0 {
			g.verbosef("removed %d snapshots\n", len(out.Removed))
		}
		var pruneErr error
		if opts.prune && !opts.dryRun {
			out.Prune, pruneErr = runPrune(ctx, g, r, limit, false)
			if out.Prune != nil && !g.json {
				printPruneResult(g, out.Prune)
			}
		}
		if g.json {
			if err := g.printJSON(out); err != nil {
				return err
			}
		}
		return pruneErr
	})
}

func printForgetGroup(g *globalOptions, d snapshot.GroupDecision, dryRun bool) {
	if g.quiet || g.json {
		return
	}
	verb := "removing"
	if dryRun {
		verb = "would remove"
	}
	fmt.Fprintf(g.stdout, "%s: keeping %d, %s %d\n", d.Key, len(d.Keep), verb, len(d.Remove))
	t := &table{header: []string{"Action", "ID", "Time", "Host", "Tags", "Reasons"}}
	for _, k := range d.Keep {
		t.add("keep", k.Snapshot.ID.Short(), k.Snapshot.Time.Local().Format("2006-01-02 15:04:05"), k.Snapshot.Host,
			strings.Join(k.Snapshot.Tags, ","), strings.Join(k.Reasons, ", "))
	}
	for _, k := range d.Remove {
		t.add("remove", k.Snapshot.ID.Short(), k.Snapshot.Time.Local().Format("2006-01-02 15:04:05"), k.Snapshot.Host,
			strings.Join(k.Snapshot.Tags, ","), "")
	}
	fmt.Fprint(g.stdout, t.String())
}
