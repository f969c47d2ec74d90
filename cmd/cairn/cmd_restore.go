package main

import (
	"context"
	"fmt"
	"os"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot/restore"
	"github.com/spf13/cobra"
)

type restoreOptions struct {
	target   string
	includes []string
	inPlace  bool
	delete   bool
	fo       snapshotFilterOptions
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	var opts restoreOptions
	c := &cobra.Command{
		Use:   "restore SNAPSHOT|latest --target DIR",
		Short: "Restore a snapshot's files",
		Long: `Restore the files of a snapshot into --target. Paths are kept: /srv/app/media is
restored to TARGET/srv/app/media. Every blob is checked against its ID; nothing is ever
written outside the target. Damaged files are named and the rest still restores.` + exitStatusHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withRepo(cmd.Context(), "", false, func(r *repo.Repository) error {
				return runRestore(cmd.Context(), g, r, args[0], opts)
			})
		},
	}
	f := c.Flags()
	f.StringVarP(&opts.target, "target", "t", "", "directory to restore into")
	f.StringArrayVarP(&opts.includes, "include", "i", nil, "restore only this path of the snapshot (repeatable)")
	f.BoolVar(&opts.delete, "delete", false, "delete files in the target that the snapshot does not have")
	opts.fo.addFlags(c)
	return c
}

func runRestore(ctx context.Context, g *globalOptions, r *repo.Repository, ref string, opts restoreOptions) error {
	if opts.target == "" {
		return fmt.Errorf("no --target given")
	}
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	sn, _, err := resolveSnapshot(ctx, g, r, ref, opts.fo.filter())
	if err != nil {
		return err
	}
	res, err := restore.Run(ctx, r, sn.Tree, restore.Options{Target: opts.target, Include: opts.includes,
		InPlace: opts.inPlace, Delete: opts.delete, Owners: os.Geteuid() == 0})
	for _, e := range res.Errors {
		fmt.Fprintf(g.stderr, "cairn: error: %v\n", e)
	}
	if g.json {
		if jerr := g.printJSON(map[string]any{"snapshot_id": sn.ID.String(), "files": res.Files, "dirs": res.Dirs,
			"symlinks": res.Symlinks, "bytes": res.Bytes, "deleted": res.Deleted, "errors": len(res.Errors)}); jerr != nil {
			return jerr
		}
	} else {
		g.verbosef("restored snapshot %s: %d files, %d dirs, %d symlinks, %s\n", sn.ID.Short(), res.Files, res.Dirs, res.Symlinks, formatBytes(res.Bytes))
	}
	return err
}

var _ = repo.ErrBlobNotFound
