package main

import (
	"context"
	"fmt"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/spf13/cobra"
)

func newRepairCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "repair",
		Short: "Rebuild the index or save what is left of damaged snapshots",
	}
	idx := &cobra.Command{
		Use:   "index",
		Short: "Rebuild the index from the packs",
		Long: `Read the header of every pack, write one new index listing them all and delete the old
index files. Packs that cannot be read are named and left out. Holds an exclusive
lock: no backup can run meanwhile.` + exitStatusHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return g.withRepo(ctx, "", false, func(r *repo.Repository) error {
				l, err := r.LockKind(ctx, "repair")
				if err != nil {
					return err
				}
				defer func() { _ = l.Unlock(context.WithoutCancel(ctx)) }()
				var opts repo.RepairIndexOptions
				if isTerminal(g.stderr) && !g.quiet && !g.json {
					opts.Progress = func(done, total int) {
						fmt.Fprintf(g.stderr, "\rread %d of %d packs", done, total)
						if done == total {
							fmt.Fprintln(g.stderr)
						}
					}
				}
				res, err := r.RepairIndex(ctx, opts)
				if err != nil {
					return err
				}
				for _, p := range res.UnreadablePack {
					g.warnf("%s; not indexed, its blobs are lost (`cairn check` names the snapshots affected)", p)
				}
				if g.json {
					return g.printJSON(res)
				}
				g.verbosef("indexed %d packs with %d blobs; replaced %d index files\n", res.Packs, res.Blobs, len(res.RemovedIndex))
				return nil
			})
		},
	}
	var forget, dryRun, readData bool
	snaps := &cobra.Command{
		Use:   "snapshots [SNAPSHOT...]",
		Short: "Save copies of snapshots without their lost data",
		Long: `For each snapshot (all, or the ones named) that references data which is missing or
damaged, save a repaired copy: files with a lost blob and directories whose listing
is lost are dropped, a lost database dump is removed; every dropped path is listed.
The copy is tagged "repaired" and records the original's ID. With --forget the
originals are removed. --read-data also reads every pack first, so that damaged
(not only missing) data is found. Holds an exclusive lock.` + exitStatusHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return g.withRepo(ctx, "", false, func(r *repo.Repository) error {
				l, err := r.LockKind(ctx, "repair")
				if err != nil {
					return err
				}
				defer func() { _ = l.Unlock(context.WithoutCancel(ctx)) }()
				return runRepairSnapshots(ctx, g, r, args, forget, dryRun, readData)
			})
		},
	}
	snaps.Flags().BoolVar(&forget, "forget", false, "remove the original snapshots after saving the repaired copies")
	snaps.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "only report what would be dropped")
	snaps.Flags().BoolVar(&readData, "read-data", false, "read every pack to find damaged data too")
	c.AddCommand(idx, snaps)
	return c
}

type repairSnapshotJSON struct {
	Snapshot     string   `json:"snapshot"`
	Repaired     string   `json:"repaired,omitempty"`
	Dropped      []string `json:"dropped"`
	DatabaseLost bool     `json:"database_lost"`
	Removed      bool     `json:"original_removed"`
}

func runRepairSnapshots(ctx context.Context, g *globalOptions, r *repo.Repository, refs []string, forget, dryRun, readData bool) error {
	if err := r.LoadIndex(ctx); err != nil {
		return fmt.Errorf("%w (run `cairn repair index` first)", err)
	}
	all, err := loadSnapshots(ctx, g, r)
	if err != nil {
		return err
	}
	sel := all
	if len(refs) > 0 {
		sel = nil
		for _, ref := range refs {
			sn, err := snapshot.Find(all, ref, snapshot.Filter{})
			if err != nil {
				return err
			}
			sel = append(sel, sn)
		}
	}
	res, err := r.Check(ctx, repo.CheckOptions{ReadData: readData})
	if err != nil {
		return err
	}
	ok := func(id blob.ID) bool {
		sev, _, _ := res.BlobStatus(id)
		return sev != repo.SeverityError
	}
	results, err := snapshot.RepairSnapshots(ctx, r, res, sel, ok, dryRun)
	if err != nil {
		return err
	}
	out := []repairSnapshotJSON{}
	repaired := 0
	for _, rr := range results {
		if rr.Repaired == nil {
			continue
		}
		repaired++
		o := rr.Original
		g.warnf("snapshot %s (%s, %s) lost data:", o.ID.Short(), o.Time.Local().Format("2006-01-02 15:04:05"), o.Host)
		for _, d := range rr.Dropped {
			g.warnf("  %s", d)
		}
		j := repairSnapshotJSON{Snapshot: o.ID.String(), Dropped: rr.Dropped, DatabaseLost: rr.DatabaseLost}
		if !dryRun {
			j.Repaired = rr.Repaired.ID.String()
			g.verbosef("saved repaired snapshot %s (original %s)\n", rr.Repaired.ID.Short(), o.ID.Short())
			if forget {
				if err := snapshot.Forget(ctx, r, []blob.ID{o.ID}); err != nil {
					return err
				}
				j.Removed = true
				g.verbosef("removed original snapshot %s\n", o.ID.Short())
			}
		}
		out = append(out, j)
	}
	if g.json {
		return g.printJSON(map[string]any{"dry_run": dryRun, "snapshots": out})
	}
	switch {
	case repaired == 0:
		g.verbosef("no snapshot lost data (%d checked)\n", len(sel))
	case dryRun:
		g.verbosef("dry run: %d snapshots would be repaired\n", repaired)
	default:
		g.verbosef("repaired %d snapshots\n", repaired)
		if !forget {
			g.verbosef("the originals still reference the lost data: `cairn forget` them (or rerun with --forget) before `cairn prune`\n")
		}
	}
	return nil
}
