package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/spf13/cobra"
)

type pruneOptions struct {
	maxUnused string
	dryRun    bool
}

func (o *pruneOptions) addFlags(c *cobra.Command) {
	c.Flags().StringVar(&o.maxUnused, "max-unused", "5%", "unused space to tolerate in kept packs: a percentage of the used data, a size (100M) or unlimited")
}

func (o *pruneOptions) limit() (repo.UnusedLimit, error) {
	l, err := repo.ParseUnusedLimit(o.maxUnused)
	if err != nil {
		return l, fmt.Errorf("--max-unused: %w", err)
	}
	return l, nil
}

func newPruneCommand(g *globalOptions) *cobra.Command {
	var opts pruneOptions
	c := &cobra.Command{
		Use:   "prune",
		Short: "Remove data no snapshot needs",
		Long: `Remove packs no snapshot needs and repack packs that are mostly unused. Prune never
blocks backups: it marks packs obsolete first and deletes them only when no backup
that was running at that moment is left (docs/FORMAT.md §14). Packs still waiting are
reported with the backup that blocks them; a later prune deletes them. Prune can be
interrupted at any point and run again.` + exitStatusHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			limit, err := opts.limit()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return g.withRepo(ctx, "", false, func(r *repo.Repository) error {
				res, err := runPrune(ctx, g, r, limit, opts.dryRun)
				if res != nil {
					if g.json {
						if jerr := g.printJSON(res); jerr != nil {
							return jerr
						}
					} else {
						printPruneResult(g, res)
					}
				}
				return err
			})
		},
	}
	opts.addFlags(c)
	c.Flags().BoolVarP(&opts.dryRun, "dry-run", "n", false, "only report what would be removed")
	return c
}

// runPrune takes the prune lock and prunes. The result is returned even with an error,
// so that what was done can be reported.
func runPrune(ctx context.Context, g *globalOptions, r *repo.Repository, limit repo.UnusedLimit, dryRun bool) (*repo.PruneResult, error) {
	l, err := r.LockKind(ctx, "prune")
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Unlock(context.WithoutCancel(ctx)) }()
	return r.Prune(ctx, repo.PruneOptions{
		MaxUnused: limit,
		DryRun:    dryRun,
		Lock:      l,
		UsedBlobs: func(ctx context.Context, bl repo.BlobLoader, used repo.BlobSet, done map[repo.ID]bool) error {
			return snapshot.UsedBlobs(ctx, r, bl, used, done)
		},
	})
}

func printPruneResult(g *globalOptions, res *repo.PruneResult) {
	if res.DryRun {
		g.verbosef("dry run: nothing is changed\n")
	}
	g.verbosef("%d snapshots use %s in %d packs; %s unused\n", res.Snapshots, formatBytes(res.UsedBytes), res.Packs, formatBytes(res.UnusedBytes))
	verb := map[bool]string{false: "marked", true: "would mark"}[res.DryRun]
	marked := res.PacksMarked
	if res.DryRun {
		marked = res.PacksUnused + res.PacksRepacked
	}
	g.verbosef("%s %d packs obsolete: %d unused, %d repacked (%s copied into %d new packs), %d orphaned\n",
		verb, marked, res.PacksUnused, res.PacksRepacked, formatBytes(res.BytesRepacked), res.PacksWritten, res.PacksOrphaned)
	for _, p := range res.MissingDropped {
		g.warnf("%s is missing but no snapshot needs it; dropped from the index", p)
	}
	if res.PacksResurrected > 0 {
		g.verbosef("resurrected %d obsolete packs that snapshots still need\n", res.PacksResurrected)
	}
	verb = map[bool]string{false: "deleted", true: "would delete"}[res.DryRun]
	g.verbosef("%s %d packs, freeing %s\n", verb, res.PacksDeleted, formatBytes(res.BytesFreed))
	if len(res.Pending) > 0 {
		var size uint64
		blockers := map[string]bool{}
		for _, p := range res.Pending {
			size += p.Size
			for _, b := range p.BlockedBy {
				blockers[b] = true
			}
		}
		var list []string
		for b := range blockers {
			list = append(list, b)
		}
		g.verbosef("%d obsolete packs (%s) wait for running operations to finish; a later prune deletes them. Blocked by:\n  %s\n",
			len(res.Pending), formatBytes(size), strings.Join(list, "\n  "))
	}
	if len(res.Retained) > 0 {
		g.verbosef("%d obsolete packs are still protected by the storage's retention (object lock) and were kept; a later prune deletes them:\n  %s\n",
			len(res.Retained), strings.Join(res.Retained, "\n  "))
	}
	if res.TempFilesRemoved > 0 {
		g.verbosef("removed %d leftover temporary files of interrupted backups\n", res.TempFilesRemoved)
	}
	for _, l := range res.Lost {
		g.warnf("a snapshot needs %s: that data is lost; run `cairn check`", l)
	}
}
