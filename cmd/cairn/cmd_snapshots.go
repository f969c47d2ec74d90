package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/spf13/cobra"
)

type snapshotFilterOptions struct {
	host string
	tags []string
	app  string
}

func (o *snapshotFilterOptions) addFlags(c *cobra.Command) {
	c.Flags().StringVar(&o.host, "host", "", "only snapshots of this host")
	c.Flags().StringArrayVar(&o.tags, "tag", nil, "only snapshots with this tag (repeatable: all must match)")
	c.Flags().StringVar(&o.app, "app", "", "only snapshots of this app")
}

func (o *snapshotFilterOptions) filter() snapshot.Filter {
	return snapshot.Filter{Host: o.host, Tags: o.tags, App: o.app}
}

func newSnapshotsCommand(g *globalOptions) *cobra.Command {
	var fo snapshotFilterOptions
	c := &cobra.Command{
		Use:   "snapshots",
		Short: "List snapshots",
		Long:  `List snapshots, oldest first: ID, time, host, tags, paths, size, and the app version and migrations when recorded.` + exitStatusHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withFullRepo(cmd.Context(), "snapshots", "", false, func(r *repo.Repository) error {
				return runSnapshots(cmd.Context(), g, r, fo.filter())
			})
		},
	}
	fo.addFlags(c)
	return c
}

type snapshotJSON struct {
	ID       string             `json:"id"`
	ShortID  string             `json:"short_id"`
	Time     time.Time          `json:"time"`
	Host     string             `json:"host"`
	Username string             `json:"username,omitempty"`
	Tags     []string           `json:"tags"`
	Paths    []string           `json:"paths"`
	Tree     string             `json:"tree"`
	Parent   string             `json:"parent,omitempty"`
	Size     uint64             `json:"size"`
	App      *snapshot.App      `json:"app,omitempty"`
	Database *snapshot.Database `json:"database,omitempty"`
	Summary  *snapshot.Summary  `json:"summary,omitempty"`
}

func toSnapshotJSON(sn *snapshot.Snapshot) snapshotJSON {
	j := snapshotJSON{ID: sn.ID.String(), ShortID: sn.ID.Short(), Time: sn.Time, Host: sn.Host, Username: sn.Username,
		Tags: sn.Tags, Paths: sn.Paths, Tree: sn.Tree.String(), App: sn.App, Database: sn.Database, Summary: sn.Summary}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	if sn.Parent != nil {
		j.Parent = sn.Parent.String()
	}
	j.Size = snapshotSize(sn)
	return j
}

func snapshotSize(sn *snapshot.Snapshot) uint64 {
	var n uint64
	if sn.Summary != nil {
		n = sn.Summary.TotalBytes
	}
	if sn.Database != nil {
		n += sn.Database.Size
	}
	return n
}

func loadSnapshots(ctx context.Context, g *globalOptions, r *repo.Repository) ([]*snapshot.Snapshot, error) {
	snaps, err := snapshot.List(ctx, r)
	if err != nil {
		if len(snaps) == 0 {
			return nil, err
		}
		g.warnf("%v", err)
	}
	return snaps, nil
}

func runSnapshots(ctx context.Context, g *globalOptions, r *repo.Repository, f snapshot.Filter) error {
	snaps, err := loadSnapshots(ctx, g, r)
	if err != nil {
		return err
	}
	var sel []*snapshot.Snapshot
	for _, sn := range snaps {
		if f.Match(sn) {
			sel = append(sel, sn)
		}
	}
	if g.json {
		out := make([]snapshotJSON, 0, len(sel))
		for _, sn := range sel {
			out = append(out, toSnapshotJSON(sn))
		}
		return g.printJSON(out)
	}
	t := &table{header: []string{"ID", "Time", "Host", "Tags", "Size", "App", "Paths"}}
	for _, sn := range sel {
		app := ""
		if sn.App != nil {
			app = sn.App.Name
			if sn.App.Version != "" {
				app += " " + sn.App.Version
			}
			if m := snapshot.MigrationSummary(sn.App.Migrations, 2); m != "" {
				app += " (" + m + ")"
			}
		}
		t.add(sn.ID.Short(), sn.Time.Local().Format("2006-01-02 15:04:05"), sn.Host, strings.Join(sn.Tags, ","),
			formatBytes(snapshotSize(sn)), app, strings.Join(sn.Paths, ", "))
	}
	fmt.Fprint(g.stdout, t.String())
	fmt.Fprintf(g.stdout, "%d snapshots\n", len(sel))
	return nil
}
