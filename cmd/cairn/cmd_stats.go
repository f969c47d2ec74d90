package main

import (
	"context"
	"fmt"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/spf13/cobra"
)

func newStatsCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show repository size, deduplication and compression",
		Long: `Show how much data the snapshots hold (logical size), how much unique data that is,
and how much the repository stores after compression and encryption.` + exitStatusHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withRepo(cmd.Context(), "", false, func(r *repo.Repository) error {
				return runStats(cmd.Context(), g, r)
			})
		},
	}
}

type statsJSON struct {
	Snapshots        int     `json:"snapshots"`
	LogicalSize      uint64  `json:"logical_size"`
	UniqueSize       uint64  `json:"unique_size"`
	StoredBlobSize   uint64  `json:"stored_blob_size"`
	RepositorySize   uint64  `json:"repository_size"`
	Blobs            int     `json:"blobs"`
	Packs            int     `json:"packs"`
	DedupRatio       float64 `json:"dedup_ratio"`
	CompressionRatio float64 `json:"compression_ratio"`
}

func runStats(ctx context.Context, g *globalOptions, r *repo.Repository) error {
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	var s statsJSON
	if r.WriteOnly() {
		// A write-only key cannot read snapshot records, but their number is what
		// anyone listing the storage sees: count the files.
		ids, err := r.List(ctx, backend.SnapshotFile)
		if err != nil {
			return err
		}
		s.Snapshots = len(ids)
	} else {
		snaps, err := loadSnapshots(ctx, g, r)
		if err != nil {
			return err
		}
		s.Snapshots = len(snaps)
		for _, sn := range snaps {
			s.LogicalSize += snapshotSize(sn)
		}
	}
	packs := map[repo.ID]bool{}
	r.Index().Each(func(l index.Location) {
		s.Blobs++
		s.UniqueSize += uint64(l.Entry.RawLength)
		s.StoredBlobSize += uint64(l.Entry.Length)
		packs[l.Pack] = true
	})
	s.Packs = len(packs)
	for id := range packs {
		if n, ok := r.Index().PackSize(id); ok {
			s.RepositorySize += n
		}
	}
	if s.UniqueSize > 0 {
		s.DedupRatio = float64(s.LogicalSize) / float64(s.UniqueSize)
	}
	if s.StoredBlobSize > 0 {
		s.CompressionRatio = float64(s.UniqueSize) / float64(s.StoredBlobSize)
	}
	if g.json {
		return g.printJSON(s)
	}
	fmt.Fprintf(g.stdout, "Snapshots:          %d\n", s.Snapshots)
	if r.WriteOnly() {
		fmt.Fprintf(g.stdout, "Logical size:       unknown (a write-only key cannot read snapshots)\n")
	} else {
		fmt.Fprintf(g.stdout, "Logical size:       %s (all snapshots' files and dumps)\n", formatBytes(s.LogicalSize))
	}
	fmt.Fprintf(g.stdout, "Unique data:        %s in %d blobs\n", formatBytes(s.UniqueSize), s.Blobs)
	fmt.Fprintf(g.stdout, "Stored (packs):     %s in %d packs\n", formatBytes(s.RepositorySize), s.Packs)
	if r.WriteOnly() {
		fmt.Fprintf(g.stdout, "Deduplication:      unknown\n")
	} else {
		fmt.Fprintf(g.stdout, "Deduplication:      %.2fx\n", s.DedupRatio)
	}
	fmt.Fprintf(g.stdout, "Compression:        %.2fx\n", s.CompressionRatio)
	return nil
}
