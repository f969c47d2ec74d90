package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/spf13/cobra"
)

func newFindCommand(g *globalOptions) *cobra.Command {
	var fo snapshotFilterOptions
	var fullPath bool
	c := &cobra.Command{
		Use:   "find PATTERN [--path]",
		Short: "Find which snapshots hold files matching a pattern",
		Long: `List every path matching PATTERN in every snapshot (oldest first, filtered by --host,
--tag and --app), with the snapshot, its time, the entry's size and modification time.

PATTERN is a glob (* ? [a-z], as in path.Match) matched against each entry's name,
e.g. '*.pdf'. With --path it is matched against the whole absolute path instead,
e.g. '/srv/paperless/media/documents/originals/*/invoice-*.pdf' ('*' does not cross
'/'); a --path pattern that does not start with '/' matches the last components of
the path ('originals/*/*.pdf'). Quote the pattern so that the shell leaves it alone.
Directories shared by several snapshots are searched once.` + exitStatusHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withFullRepo(cmd.Context(), "find", "", false, func(r *repo.Repository) error {
				return runFind(cmd.Context(), g, r, args[0], fullPath, fo.filter())
			})
		},
	}
	fo.addFlags(c)
	c.Flags().BoolVar(&fullPath, "path", false, "match the pattern against the full path, not the name")
	return c
}

type findJSON struct {
	SnapshotID   string    `json:"snapshot_id"`
	SnapshotTime time.Time `json:"snapshot_time"`
	Path         string    `json:"path"`
	Type         string    `json:"type"`
	Size         uint64    `json:"size"`
	Mode         string    `json:"mode"`
	ModTime      time.Time `json:"mtime"`
}

func runFind(ctx context.Context, g *globalOptions, r *repo.Repository, pattern string, fullPath bool, f snapshot.Filter) error {
	finder, err := snapshot.NewFinder(r, pattern, fullPath)
	if err != nil {
		return err
	}
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	snaps, err := loadSnapshots(ctx, g, r)
	if err != nil {
		return err
	}
	out := []findJSON{}
	t := &table{header: []string{"Snapshot", "Time", "Size", "Modified", "Path"}}
	searched, holding := 0, 0
	for _, sn := range snaps {
		if !f.Match(sn) {
			continue
		}
		searched++
		matches, err := finder.Find(ctx, sn.Tree)
		if err != nil {
			return fmt.Errorf("search snapshot %s: %w", sn.ID.Short(), err)
		}
		if len(matches) > 0 {
			holding++
		}
		for _, m := range matches {
			n := &m.Node
			out = append(out, findJSON{SnapshotID: sn.ID.String(), SnapshotTime: sn.Time, Path: m.Path, Type: n.Type,
				Size: n.Size, Mode: n.FileMode().String(), ModTime: n.ModTime})
			size := ""
			switch n.Type {
			case snapshot.TypeFile:
				size = formatBytes(n.Size)
			case snapshot.TypeDir:
				size = "dir"
			case snapshot.TypeSymlink:
				size = "symlink"
			}
			t.add(sn.ID.Short(), sn.Time.Local().Format("2006-01-02 15:04:05"), size,
				n.ModTime.Local().Format("2006-01-02 15:04:05"), quoteName(m.Path))
		}
	}
	if g.json {
		return g.printJSON(out)
	}
	if len(out) > 0 {
		fmt.Fprint(g.stdout, t.String())
	}
	fmt.Fprintf(g.stdout, "%d matches in %d of %d snapshots\n", len(out), holding, searched)
	return nil
}
