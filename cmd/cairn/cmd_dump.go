package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-backup/cairn/appconfig"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/archive"
	"github.com/spf13/cobra"
)

type dumpOptions struct {
	format string
	output string
	force  bool
	sel    snapshotSelector
}

func newDumpCommand(g *globalOptions) *cobra.Command {
	var opts dumpOptions
	c := &cobra.Command{
		Use:   "dump [SNAPSHOT|latest] [--at TIME] [--format tar|zip] [--output FILE|-]",
		Short: "Write a snapshot as one tar or zip archive",
		Long: `Write a whole snapshot — its files with their paths (without the leading /), modes,
modification times, owners (tar) and symlinks, and its database dump as
database/<engine>.dump — as one tar or zip archive, streamed: nothing is staged on
disk, so it can go to a pipe (--output -).

The default file name is the snapshot time in UTC formatted with app.dump_name_template
from cairn.toml (default %Y%m%d-%H%M%S) plus .tar or .zip, e.g. 20261123-140000.tar,
in the current directory. Without --format the format follows the --output name
(.zip: zip, otherwise tar). An existing file is kept unless --force.

Damaged file content is named on stderr and zero-filled, so the archive stays
complete; the exit status is then 1.` + selectorHelp + exitStatusHelp,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := opts.sel.ref(args, "")
			if err != nil {
				return err
			}
			switch opts.format {
			case "":
				opts.format = archive.FormatTar
				if strings.HasSuffix(strings.ToLower(opts.output), ".zip") {
					opts.format = archive.FormatZip
				}
			case archive.FormatTar, archive.FormatZip:
			default:
				return fmt.Errorf("--format %q: want tar or zip", opts.format)
			}
			return g.withFullRepo(cmd.Context(), "dump", "restore", false, func(r *repo.Repository) error {
				return runDump(cmd.Context(), g, r, ref, opts)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&opts.format, "format", "", "archive format: tar or zip (default: from --output, else tar)")
	f.StringVarP(&opts.output, "output", "o", "", "write to `FILE` (- for stdout; default: a name from app.dump_name_template)")
	f.BoolVar(&opts.force, "force", false, "overwrite an existing output file")
	opts.sel.addFlags(c)
	return c
}

// dumpFileName is the default archive name of a snapshot.
func dumpFileName(cfg *appconfig.Config, sn *snapshot.Snapshot, format string) string {
	tmpl := appconfig.DefaultDumpNameTemplate
	if cfg != nil && cfg.App.DumpNameTemplate != "" {
		tmpl = cfg.App.DumpNameTemplate
	}
	return snapshot.Strftime(tmpl, sn.Time.UTC()) + "." + format
}

func runDump(ctx context.Context, g *globalOptions, r *repo.Repository, ref string, opts dumpOptions) error {
	cfg, err := g.appConfig()
	if err != nil {
		return err
	}
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	sn, _, err := selectSnapshot(ctx, g, r, ref, opts.sel.fo.filter())
	if err != nil {
		return err
	}
	aopts := archive.Options{Format: opts.format}
	if opts.output == "-" {
		if isTerminal(g.stdout) {
			return errors.New("refusing to write an archive to a terminal; redirect stdout or give --output FILE")
		}
		res, err := archive.Write(ctx, r, sn, g.stdout, aopts)
		reportDump(g, sn, "-", res, err)
		return dumpError(err)
	}
	name := opts.output
	if name == "" {
		name = dumpFileName(cfg, sn, opts.format)
	}
	if !opts.force {
		if _, err := os.Lstat(name); err == nil {
			return fmt.Errorf("%s exists; use --force to overwrite it or --output to choose another name", name)
		}
	}
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(name)+".partial-*")
	if err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.Remove(tmp.Name())
		}
	}()
	res, werr := archive.Write(ctx, r, sn, tmp, aopts)
	complete := werr == nil || errors.Is(werr, archive.ErrIncomplete)
	if complete {
		if err := tmp.Sync(); err != nil {
			werr, complete = fmt.Errorf("write %s: %w", name, err), false
		}
	}
	if err := tmp.Close(); err != nil && complete {
		werr, complete = fmt.Errorf("write %s: %w", name, err), false
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil && complete {
		werr, complete = fmt.Errorf("write %s: %w", name, err), false
	}
	if complete {
		if err := os.Rename(tmp.Name(), name); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		keep = true
	}
	reportDump(g, sn, name, res, werr)
	return dumpError(werr)
}

// reportDump names damaged entries on stderr and summarizes the archive: on stdout
// for a file, on stderr when stdout carries the archive.
func reportDump(g *globalOptions, sn *snapshot.Snapshot, name string, res archive.Result, err error) {
	for _, e := range res.Errors {
		fmt.Fprintf(g.stderr, "cairn: error: %v\n", e)
	}
	if err != nil && !errors.Is(err, archive.ErrIncomplete) {
		return
	}
	if g.json && name != "-" {
		_ = g.printJSON(map[string]any{"snapshot_id": sn.ID.String(), "file": name, "files": res.Files, "dirs": res.Dirs,
			"symlinks": res.Symlinks, "bytes": res.Bytes, "database": res.Database, "errors": len(res.Errors)})
		return
	}
	if g.quiet {
		return
	}
	w := io.Writer(g.stdout)
	if name == "-" {
		w = g.stderr
		name = "stdout"
	}
	db := ""
	if res.Database != "" {
		db = ", database dump " + res.Database
	}
	fmt.Fprintf(w, "wrote snapshot %s to %s: %d files, %d dirs, %d symlinks, %s%s\n", sn.ID.Short(), name,
		res.Files, res.Dirs, res.Symlinks, formatBytes(res.Bytes), db)
}

func dumpError(err error) error {
	if errors.Is(err, archive.ErrIncomplete) {
		return fmt.Errorf("%w (damaged entries are zero-filled in the archive)", err)
	}
	return err
}
