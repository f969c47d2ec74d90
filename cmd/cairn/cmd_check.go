package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/spf13/cobra"
)

type checkOptions struct {
	readData bool
	subset   string
}

func newCheckCommand(g *globalOptions) *cobra.Command {
	var opts checkOptions
	c := &cobra.Command{
		Use:   "check",
		Short: "Verify the repository's structure and, optionally, all data",
		Long: `Verify key files, index files and snapshot records (names, decryption, format), that
every pack the index lists exists with the recorded size, and that every snapshot's
trees and file contents are in the index and readable. With --read-data every pack is
downloaded, its name verified, decrypted and every blob checked; --read-data-subset
reads a part (n/m: the n-th of m groups, or a percentage). Each damaged, missing or
orphaned file is named with the snapshots that lose data because of it. Orphaned
packs and packs pending deletion are warnings and notes, not errors.` + exitStatusHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			copts := repo.CheckOptions{ReadData: opts.readData}
			if opts.subset != "" {
				s, err := repo.ParseSubset(opts.subset)
				if err != nil {
					return fmt.Errorf("--read-data-subset: %w", err)
				}
				copts.ReadData, copts.Subset = true, s
			}
			return g.withRepo(ctx, "", false, func(r *repo.Repository) error {
				l, err := r.LockKind(ctx, "check")
				if err != nil {
					return err
				}
				defer func() { _ = l.Unlock(context.WithoutCancel(ctx)) }()
				return runCheck(ctx, g, r, copts)
			})
		},
	}
	c.Flags().BoolVar(&opts.readData, "read-data", false, "download and verify every pack")
	c.Flags().StringVar(&opts.subset, "read-data-subset", "", "download and verify a subset of packs: n/m or a percentage (10%)")
	return c
}

type checkJSON struct {
	*repo.CheckResult
	Snapshots      int                      `json:"snapshots"`
	SnapshotIssues []snapshot.SnapshotIssue `json:"snapshot_issues"`
	Errors         int                      `json:"errors"`
	Warnings       int                      `json:"warnings"`
}

func runCheck(ctx context.Context, g *globalOptions, r *repo.Repository, opts repo.CheckOptions) error {
	if opts.ReadData && isTerminal(g.stderr) && !g.quiet && !g.json {
		opts.Progress = func(done, total int) {
			fmt.Fprintf(g.stderr, "\rread %d of %d packs", done, total)
			if done == total {
				fmt.Fprintln(g.stderr)
			}
		}
	}
	res, err := r.Check(ctx, opts)
	if err != nil {
		return err
	}
	snaps, sissues, listErr := snapshot.CheckSnapshots(ctx, r, res, res.BlobStatus)
	if listErr != nil && ctx.Err() != nil {
		return listErr
	}
	// Unreadable snapshot records, each named.
	for _, e := range unjoin(listErr) {
		var ce *repo.CorruptError
		if errors.As(e, &ce) {
			res.Issues = append(res.Issues, repo.Issue{Severity: repo.SeverityError, File: ce.Handle.String(), Message: "damaged: " + ce.Err.Error()})
		} else {
			res.Issues = append(res.Issues, repo.Issue{Severity: repo.SeverityError, Message: e.Error()})
		}
	}
	// Name the snapshots each damaged file costs.
	affected := map[string]map[string]bool{}
	for _, si := range sissues {
		if si.File == "" || si.Severity != repo.SeverityError {
			continue
		}
		if affected[si.File] == nil {
			affected[si.File] = map[string]bool{}
		}
		affected[si.File][si.Snapshot.ID.Short()] = true
	}
	for file, set := range affected {
		var list []string
		for s := range set {
			list = append(list, s)
		}
		res.AttachSnapshots(file, list)
	}
	errs, warns := 0, 0
	for _, i := range res.Issues {
		switch i.Severity {
		case repo.SeverityError:
			errs++
		case repo.SeverityWarning:
			warns++
		}
	}
	lossBySnap := map[string]bool{}
	for _, si := range sissues {
		switch si.Severity {
		case repo.SeverityError:
			errs++
			lossBySnap[si.ID] = true
		case repo.SeverityWarning:
			warns++
		}
	}
	if g.json {
		out := checkJSON{CheckResult: res, Snapshots: len(snaps), SnapshotIssues: sissues, Errors: errs, Warnings: warns}
		if out.SnapshotIssues == nil {
			out.SnapshotIssues = []snapshot.SnapshotIssue{}
		}
		if err := g.printJSON(out); err != nil {
			return err
		}
	} else {
		for _, i := range res.Issues {
			line := i.String()
			if len(i.Snapshots) > 0 {
				line += " (snapshots losing data: " + strings.Join(i.Snapshots, ", ") + ")"
			}
			if i.Severity == repo.SeverityInfo {
				g.verbosef("%s\n", line)
			} else {
				fmt.Fprintln(g.stdout, line)
			}
		}
		sort.SliceStable(sissues, func(a, b int) bool { return sissues[a].Snapshot.Time.Before(sissues[b].Snapshot.Time) })
		for _, si := range sissues {
			sn := si.Snapshot
			fmt.Fprintf(g.stdout, "%s: snapshot %s (%s, %s): %s: %s\n", si.Severity, sn.ID.Short(),
				sn.Time.Local().Format("2006-01-02 15:04:05"), sn.Host, si.Path, si.Message)
		}
		read := ""
		if opts.ReadData {
			read = fmt.Sprintf(", read %d packs (%s) with %d blobs", res.PacksRead, opts.Subset, res.BlobsRead)
		}
		g.verbosef("checked %d key files, %d index files, %d packs, %d snapshots%s\n", res.KeyFiles, res.IndexFiles, res.Packs, len(snaps), read)
		if errs == 0 {
			g.verbosef("no errors found (%d warnings)\n", warns)
		}
	}
	if errs > 0 {
		msg := fmt.Sprintf("check found %d errors", errs)
		if len(lossBySnap) > 0 {
			msg += fmt.Sprintf("; %d snapshots lose data (`cairn repair snapshots` saves what is left)", len(lossBySnap))
		}
		return &exitError{code: exitFailure, err: errors.New(msg)}
	}
	return nil
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
