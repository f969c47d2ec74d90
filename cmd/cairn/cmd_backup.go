package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
	"github.com/spf13/cobra"
)

type backupOptions struct {
	tags         []string
	host         string
	excludes     []string
	excludeFiles []string
	parent       string
	force        bool
	time         string
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	var opts backupOptions
	c := &cobra.Command{
		Use:   "backup [flags] PATH...",
		Short: "Create a snapshot of files and directories",
		Long: `Create a snapshot of the given paths. Files unchanged since the parent snapshot (same
size, mtime, ctime and inode) are not read again. Unreadable files are skipped, named
on stderr, and the command exits with status 3.` + exitStatusHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackup(cmd.Context(), g, opts, args)
		},
	}
	f := c.Flags()
	f.StringArrayVar(&opts.tags, "tag", nil, "add a tag to the snapshot (repeatable)")
	f.StringVar(&opts.host, "host", "", "record this host name instead of the machine's")
	f.StringArrayVarP(&opts.excludes, "exclude", "e", nil, "exclude paths matching the glob (repeatable)")
	f.StringArrayVar(&opts.excludeFiles, "exclude-file", nil, "read exclude globs from a file, one per line (repeatable)")
	f.StringVar(&opts.parent, "parent", "", "use this snapshot as parent instead of the latest of the same host and paths")
	f.BoolVar(&opts.force, "force", false, "read every file, ignoring the parent snapshot")
	f.StringVar(&opts.time, "time", "", "record this time (RFC 3339) instead of now")
	return c
}

func readExcludeFile(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read exclude file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read exclude file %s: %w", name, err)
	}
	return out, nil
}

// backupJSON is the --json summary of a backup.
type backupJSON struct {
	SnapshotID     string   `json:"snapshot_id"`
	Parent         string   `json:"parent,omitempty"`
	FilesNew       int64    `json:"files_new"`
	FilesChanged   int64    `json:"files_changed"`
	FilesUnchanged int64    `json:"files_unchanged"`
	FilesFailed    int64    `json:"files_failed"`
	DirsNew        int64    `json:"dirs_new"`
	DirsChanged    int64    `json:"dirs_changed"`
	DirsUnchanged  int64    `json:"dirs_unchanged"`
	TotalFiles     int64    `json:"total_files"`
	TotalBytes     uint64   `json:"total_bytes"`
	BytesRead      uint64   `json:"bytes_read"`
	BytesAdded     uint64   `json:"bytes_added"`
	BytesStored    uint64   `json:"bytes_added_stored"`
	BlobsAdded     int64    `json:"blobs_added"`
	DurationSec    float64  `json:"duration_seconds"`
	Skipped        []string `json:"skipped,omitempty"`
}

func runBackup(ctx context.Context, g *globalOptions, opts backupOptions, paths []string) error {
	cfg, err := g.appConfig()
	if err != nil {
		return err
	}
	if len(paths) == 0 && cfg == nil {
		return errors.New("nothing to back up: give at least one path, or a cairn.toml with --config")
	}
	excludes := slices.Clone(opts.excludes)
	for _, f := range opts.excludeFiles {
		ex, err := readExcludeFile(f)
		if err != nil {
			return err
		}
		excludes = append(excludes, ex...)
	}
	var snapTime time.Time
	if opts.time != "" {
		t, err := time.Parse(time.RFC3339, opts.time)
		if err != nil {
			return fmt.Errorf("--time: %w", err)
		}
		snapTime = t
	}
	var partial error
	err = g.withRepo(ctx, "backup", false, func(r *repo.Repository) error {
		if err := r.LoadIndex(ctx); err != nil {
			return err
		}
		// Resume: index the packs an interrupted backup uploaded after its last index
		// file, so they are reused rather than uploaded again (docs/RELIABILITY.md).
		if ad, err := r.AdoptUnindexedPacks(ctx); err != nil {
			g.warnf("packs of an interrupted backup were not reused: %v", err)
		} else if ad.Packs > 0 {
			g.verbosef("resumed: indexed %d packs (%s) of an interrupted backup\n", ad.Packs, formatBytes(uint64(ad.Bytes)))
		}
		limitMemory(backupWorkingSet)
		bopts := backup.Options{Paths: paths, Excludes: excludes, Tags: opts.tags, Host: opts.host, Time: snapTime,
			ProgramVersion: "cairn " + version}
		if cfg != nil {
			if err := appBackupOptions(ctx, cfg, &bopts); err != nil {
				return fmt.Errorf("backup failed, no snapshot was written: %w", err)
			}
		}
		if bopts.Host == "" {
			bopts.Host, _ = os.Hostname()
		}
		if r.WriteOnly() && opts.parent != "" {
			g.warnf("--parent ignored: a write-only key cannot read snapshots, so every file is read again (unchanged data is still not stored twice)")
		}
		if !opts.force && !r.WriteOnly() {
			parent, err := findParent(ctx, r, opts.parent, bopts.Host, bopts.Paths)
			if err != nil {
				return fmt.Errorf("backup failed, no snapshot was written: %w", err)
			}
			bopts.Parent = parent
		}
		bopts.Progress = &backup.Progress{}
		bopts.Warn = func(path string, err error) {
			g.warnf("%s: %v", path, err)
		}
		stop := startProgress(g, bopts.Progress)
		res, err := backup.Run(ctx, r, bopts)
		stop()
		if err != nil {
			return fmt.Errorf("backup failed, no snapshot was written: %w", err)
		}
		printBackupSummary(g, res)
		if len(res.Skipped) > 0 {
			partial = fmt.Errorf("%w (%d skipped)", errPartial, len(res.Skipped))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if partial != nil {
		return &exitError{code: exitPartial, err: partial}
	}
	return nil
}

// findParent picks the parent snapshot: the given one, or the newest with the same
// host and the same set of paths.
func findParent(ctx context.Context, r *repo.Repository, ref, host string, paths []string) (*snapshot.Snapshot, error) {
	snaps, err := snapshot.List(ctx, r)
	if err != nil && len(snaps) == 0 && ref != "" {
		return nil, err
	}
	if ref != "" {
		return snapshot.Find(snaps, ref, snapshot.Filter{})
	}
	abs, err := backup.CleanPaths(paths)
	if err != nil {
		return nil, err
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		sn := snaps[i]
		if sn.Host == host && slices.Equal(sn.Paths, abs) {
			return sn, nil
		}
	}
	return nil, nil
}

func printBackupSummary(g *globalOptions, res *backup.Result) {
	sn := res.Snapshot
	s := sn.Summary
	if g.json {
		out := backupJSON{SnapshotID: sn.ID.String(), FilesNew: s.FilesNew, FilesChanged: s.FilesChanged,
			FilesUnchanged: s.FilesUnchanged, FilesFailed: s.FilesFailed, DirsNew: s.DirsNew, DirsChanged: s.DirsChanged,
			DirsUnchanged: s.DirsUnchanged, TotalFiles: s.TotalFiles, TotalBytes: s.TotalBytes, BytesRead: s.BytesRead,
			BytesAdded: s.BytesAdded, BytesStored: s.BytesStored, BlobsAdded: s.BlobsAdded,
			DurationSec: s.End.Sub(s.Start).Seconds()}
		if sn.Parent != nil {
			out.Parent = sn.Parent.String()
		}
		for _, e := range res.Skipped {
			out.Skipped = append(out.Skipped, e.Error())
		}
		_ = g.printJSON(out)
		return
	}
	g.verbosef("Files:       %d new, %d changed, %d unchanged\n", s.FilesNew, s.FilesChanged, s.FilesUnchanged)
	g.verbosef("Dirs:        %d new, %d changed, %d unchanged\n", s.DirsNew, s.DirsChanged, s.DirsUnchanged)
	if s.FilesFailed > 0 {
		g.verbosef("Skipped:     %d unreadable\n", s.FilesFailed)
	}
	g.verbosef("Processed:   %d files, %s, read %s in %s\n", s.TotalFiles, formatBytes(s.TotalBytes), formatBytes(s.BytesRead), formatDuration(s.End.Sub(s.Start)))
	g.verbosef("Added:       %s (%s stored)\n", formatBytes(s.BytesAdded), formatBytes(s.BytesStored))
	if sn.Database != nil {
		g.verbosef("Database:    %s %s dump, %s\n", sn.Database.Engine, sn.Database.Format, formatBytes(sn.Database.Size))
	}
	g.verbosef("snapshot %s saved\n", sn.ID.Short())
}
