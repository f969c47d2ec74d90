package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-backup/cairn/dbdump"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/restore"
	"github.com/spf13/cobra"
)

type restoreOptions struct {
	target   string
	includes []string
	inPlace  bool
	delete   bool
	all      bool
	dbTo     string
	dbInto   string
	force    bool
	yes      bool
	sel      snapshotSelector
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	var opts restoreOptions
	c := &cobra.Command{
		Use:   "restore [SNAPSHOT|latest] [--at TIME] (--target DIR | --in-place | --all) [--db-to FILE | --db-into DSN|PATH]",
		Short: "Restore a snapshot's files and database",
		Long: `Restore the files of a snapshot into --target, or over their original paths with
--in-place, and its database dump with --db-to, --db-into or --all.

--target DIR   paths are kept: /srv/app/media is restored to DIR/srv/app/media.
--in-place     the snapshot's paths (or --include) are restored where they were backed
               up. Each file is written to a temporary name in its directory, synced and
               renamed over the old one, so an interrupted restore leaves every file
               either old or new. Asks for confirmation on a terminal (--yes in scripts).
--delete       also delete what the snapshot does not have in the restored directories.
--all          --in-place plus the database into the configured database (cairn.toml),
               both from the same snapshot; the database is replaced. Add --delete to
               remove files created since the snapshot.
--db-to FILE   write the dump (for SQLite: the database file itself) to FILE, or - for
               stdout. An existing FILE is kept unless --force.
--db-into DSN|PATH
               load the dump into another database of the same engine: a PostgreSQL
               or MySQL DSN, or a SQLite file path. A non-empty database is refused
               unless --force.

Every blob is checked against its ID; nothing is ever written outside the target.
Damaged files are named and the rest still restores (exit status 1).` + selectorHelp + exitStatusHelp,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := opts.sel.ref(args, "")
			if err != nil {
				return err
			}
			if err := opts.check(); err != nil {
				return err
			}
			return g.withFullRepo(cmd.Context(), "restore", "restore", false, func(r *repo.Repository) error {
				return runRestore(cmd.Context(), g, r, ref, opts)
			})
		},
	}
	f := c.Flags()
	f.StringVarP(&opts.target, "target", "t", "", "directory to restore into")
	f.StringArrayVarP(&opts.includes, "include", "i", nil, "restore only this path of the snapshot (repeatable)")
	f.BoolVar(&opts.inPlace, "in-place", false, "restore files to their original paths (atomically per file)")
	f.BoolVar(&opts.delete, "delete", false, "delete files in the target that the snapshot does not have")
	f.BoolVar(&opts.all, "all", false, "restore files in place and the database into the configured database")
	f.StringVar(&opts.dbTo, "db-to", "", "write the database dump (SQLite: the database file) to `FILE` (- for stdout)")
	f.StringVar(&opts.dbInto, "db-into", "", "load the database dump into an empty database at `DSN|PATH`")
	f.BoolVar(&opts.force, "force", false, "with --db-into: replace a non-empty database; with --db-to: overwrite FILE")
	f.BoolVarP(&opts.yes, "yes", "y", false, "do not ask before restoring in place")
	opts.sel.addFlags(c)
	return c
}

// check validates the combination of flags before anything is opened.
func (o *restoreOptions) check() error {
	if o.target != "" && (o.inPlace || o.all) {
		return errors.New("--target and --in-place/--all exclude each other")
	}
	dbDests := 0
	for _, set := range []bool{o.dbTo != "", o.dbInto != "", o.all} {
		if set {
			dbDests++
		}
	}
	if dbDests > 1 {
		return errors.New("give only one of --db-to, --db-into and --all")
	}
	files := o.target != "" || o.inPlace || o.all
	if !files && dbDests == 0 {
		return errors.New("nothing to restore: give --target DIR, --in-place, --all, --db-to FILE or --db-into DSN|PATH")
	}
	if !files && (o.delete || len(o.includes) > 0) {
		return errors.New("--delete and --include need --target, --in-place or --all")
	}
	return nil
}

func runRestore(ctx context.Context, g *globalOptions, r *repo.Repository, ref string, opts restoreOptions) error {
	inPlace := opts.inPlace || opts.all
	var dbEng dbdump.Engine
	dbDest := ""
	if opts.all {
		cfg, err := g.appConfig()
		if err != nil {
			return err
		}
		if cfg == nil {
			return errors.New("--all needs the app's cairn.toml (--config, $CAIRN_CONFIG or ./cairn.toml) to know its database")
		}
		if cfg.Database != nil {
			if dbEng, err = dbEngine(cfg); err != nil {
				return err
			}
			dbDest = databaseLabel(cfg.Database.Engine, cfg.Database.Path, cfg.Database.DSN)
		}
	}
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	sn, _, err := selectSnapshot(ctx, g, r, ref, opts.sel.fo.filter())
	if err != nil {
		return err
	}
	wantDB := opts.dbTo != "" || opts.dbInto != "" || dbEng != nil
	if wantDB && sn.Database == nil {
		return fmt.Errorf("snapshot %s has no database dump", sn.ID.Short())
	}
	if opts.all && dbEng == nil && sn.Database != nil {
		return fmt.Errorf("snapshot %s holds a %s database dump but the config has no [database] to restore it into; use --in-place and --db-into", sn.ID.Short(), sn.Database.Engine)
	}
	if opts.all && sn.Database != nil && dbEng != nil {
		cfg, _ := g.appConfig()
		if got, want := engineKind(cfg.Database.Engine), engineKind(sn.Database.Engine); got != want {
			return fmt.Errorf("snapshot %s holds a %s dump but the configured database is %s", sn.ID.Short(), sn.Database.Engine, cfg.Database.Engine)
		}
	}
	if opts.dbInto != "" {
		if dbEng, err = dbdump.NewTarget(sn.Database.Engine, opts.dbInto); err != nil {
			return err
		}
		dbDest = databaseLabel(sn.Database.Engine, opts.dbInto, opts.dbInto)
	}

	includes := opts.includes
	if inPlace {
		if len(includes) == 0 {
			includes = sn.Paths
		}
		g.planf("restore snapshot %s in place over:\n", describeSnapshot(sn))
		for _, p := range includes {
			g.planf("  %s\n", p)
		}
		if opts.delete {
			g.planf("deleting what the snapshot does not have there\n")
		} else {
			g.planf("keeping files the snapshot does not have (add --delete to remove them)\n")
		}
		if dbEng != nil {
			g.planf("and replace the database %s with the snapshot's %s dump\n", dbDest, sn.Database.Engine)
		}
		if err := g.confirmChange("Overwrite these files?", opts.yes); err != nil {
			return err
		}
	}

	var dbBytes int64
	restoreDB := func() error {
		var err error
		switch {
		case opts.dbTo != "":
			dbBytes, err = writeDump(ctx, g, r, sn, opts.dbTo, opts.force)
			dbDest = opts.dbTo
		default:
			dbBytes, err = restoreDump(ctx, r, sn, dbEng, opts.force || opts.all)
			if errors.Is(err, dbdump.ErrNotEmpty) {
				err = fmt.Errorf("%w (use --force to replace its contents)", err)
			}
		}
		if err != nil {
			return fmt.Errorf("restore database of snapshot %s: %w", sn.ID.Short(), err)
		}
		if opts.dbTo != "-" {
			g.verbosef("restored database dump of snapshot %s (%s %s, %s) to %s\n", sn.ID.Short(), sn.Database.Engine,
				sn.Database.Format, formatBytes(uint64(dbBytes)), dbDest)
		}
		return nil
	}
	out := map[string]any{"snapshot_id": sn.ID.String()}
	files := opts.target != "" || inPlace
	target := opts.target
	if inPlace {
		target = "/"
	}
	var roots []string
	if files {
		roots = restoredRoots(target, includes)
	}
	// The database goes first, so that a failing database restore leaves the files
	// untouched, unless the database file is among the files: then the files go first
	// and the consistent dump replaces the file-level copy restored with them.
	dbFirst := !fileUnder(dbFileOf(sn, opts, g), roots)
	if wantDB && dbFirst {
		if err := restoreDB(); err != nil {
			return err
		}
	}
	var res restore.Result
	var rerr error
	if files {
		res, rerr = restore.Run(ctx, r, sn.Tree, restore.Options{Target: target, Include: includes,
			InPlace: inPlace, Delete: opts.delete, Owners: os.Geteuid() == 0})
		for _, e := range res.Errors {
			fmt.Fprintf(g.stderr, "cairn: error: %v\n", e)
		}
		if rerr != nil {
			rerr = fmt.Errorf("restore into %s: %w", target, rerr)
		}
		if opts.dbTo != "-" && !g.json {
			g.verbosef("restored snapshot %s: %d files, %d dirs, %d symlinks, %s", sn.ID.Short(), res.Files, res.Dirs, res.Symlinks, formatBytes(res.Bytes))
			if res.Deleted > 0 {
				g.verbosef(", %d deleted", res.Deleted)
			}
			g.verbosef("\n")
		}
	}
	if wantDB && !dbFirst {
		if rerr != nil && errors.Is(rerr, context.Canceled) {
			return rerr
		}
		if err := restoreDB(); err != nil {
			return errors.Join(rerr, err)
		}
	}
	if wantDB {
		out["database"] = map[string]any{"engine": sn.Database.Engine, "format": sn.Database.Format, "bytes": dbBytes, "to": dbDest}
	}
	if g.json && opts.dbTo != "-" {
		if files {
			out["files"], out["dirs"], out["symlinks"], out["bytes"] = res.Files, res.Dirs, res.Symlinks, res.Bytes
			out["deleted"], out["errors"] = res.Deleted, len(res.Errors)
		}
		if err := g.printJSON(out); err != nil {
			return err
		}
	}
	return rerr
}

// restoredRoots are the local paths a file restore into target writes under.
func restoredRoots(target string, includes []string) []string {
	if len(includes) == 0 {
		return []string{filepath.Clean(target)}
	}
	out := make([]string, len(includes))
	for i, p := range includes {
		out[i] = filepath.Join(target, filepath.FromSlash(p))
	}
	return out
}

// dbFileOf is the local database file a database restore of these options replaces
// (SQLite only), or "".
func dbFileOf(sn *snapshot.Snapshot, opts restoreOptions, g *globalOptions) string {
	if sn.Database == nil || engineKind(sn.Database.Engine) != "sqlite" {
		return ""
	}
	switch {
	case opts.dbInto != "":
		return opts.dbInto
	case opts.all:
		if cfg, _ := g.appConfig(); cfg != nil && cfg.Database != nil {
			return cfg.Database.Path
		}
	}
	return ""
}

// fileUnder reports whether file lies under (or is) one of roots.
func fileUnder(file string, roots []string) bool {
	if file == "" {
		return false
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return false
	}
	for _, r := range roots {
		if rel, err := filepath.Rel(r, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
}

// planf prints a human message to stderr unless --quiet: plans and questions, which
// must not mix with data or JSON on stdout.
func (g *globalOptions) planf(format string, args ...any) {
	if g.quiet {
		return
	}
	fmt.Fprintf(g.stderr, format, args...)
}

func engineKind(e string) string {
	switch strings.ToLower(e) {
	case "postgresql", "pg":
		return "postgres"
	case "mariadb":
		return "mysql"
	case "sqlite3":
		return "sqlite"
	}
	return strings.ToLower(e)
}

// databaseLabel names a database for messages without its password.
func databaseLabel(engine, path, dsn string) string {
	if engineKind(engine) == "sqlite" {
		return "sqlite " + path
	}
	return engineKind(engine) + " " + hideDSNPassword(dsn)
}

// hideDSNPassword hides the password of a URL-style or keyword/value DSN.
func hideDSNPassword(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		at := strings.LastIndex(rest, "@")
		if slash := strings.IndexByte(rest, '/'); slash >= 0 && at > slash {
			at = -1
		}
		if at >= 0 {
			if colon := strings.IndexByte(rest[:at], ':'); colon >= 0 {
				return dsn[:i+3] + rest[:colon] + ":***" + rest[at:]
			}
		}
		return dsn
	}
	fields := strings.Fields(dsn)
	for i, f := range fields {
		if strings.HasPrefix(strings.ToLower(f), "password=") {
			fields[i] = "password=***"
		}
	}
	return strings.Join(fields, " ")
}

// dumpInfo describes a snapshot's dump for dbdump.
func dumpInfo(db *snapshot.Database) dbdump.Info {
	return dbdump.Info{Engine: db.Engine, ServerVersion: db.ServerVersion, Format: db.Format, Database: db.Name,
		Migrations: db.Migrations}
}

// restoreDump streams the snapshot's dump, blob by blob, into eng.Restore. It returns
// the dump's size.
func restoreDump(ctx context.Context, r *repo.Repository, sn *snapshot.Snapshot, eng dbdump.Engine, force bool) (int64, error) {
	node, err := snapshot.DumpNode(ctx, r, sn.Database)
	if err != nil {
		return 0, err
	}
	pr, pw := io.Pipe()
	var written int64
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		written, werr = snapshot.WriteContent(ctx, r, node, pw)
		if werr == nil && uint64(written) != node.Size {
			werr = fmt.Errorf("dump is %d bytes, the snapshot records %d", written, node.Size)
		}
		_ = pw.CloseWithError(werr) // nil: the reader sees EOF
	}()
	rerr := eng.Restore(ctx, pr, dumpInfo(sn.Database), dbdump.RestoreOptions{Force: force})
	_ = pr.CloseWithError(errors.New("database restore stopped reading"))
	<-done
	var ce *snapshot.ContentError
	switch {
	case errors.As(werr, &ce):
		return written, fmt.Errorf("the dump is damaged: %w; the database restore failed: %v", werr, rerr)
	case rerr != nil:
		return written, rerr
	case werr != nil:
		return written, fmt.Errorf("read dump: %w", werr)
	}
	return written, nil
}

// writeDump writes the snapshot's dump to name ("-": stdout). A file that exists is
// refused unless force; a failed write removes what was written.
func writeDump(ctx context.Context, g *globalOptions, r *repo.Repository, sn *snapshot.Snapshot, name string, force bool) (int64, error) {
	node, err := snapshot.DumpNode(ctx, r, sn.Database)
	if err != nil {
		return 0, err
	}
	if name == "-" {
		if isTerminal(g.stdout) {
			return 0, errors.New("refusing to write a database dump to a terminal; redirect stdout or give a file")
		}
		return snapshot.WriteContent(ctx, r, node, g.stdout)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(name, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		return 0, fmt.Errorf("%s exists; use --force to overwrite it", name)
	}
	if err != nil {
		return 0, fmt.Errorf("create dump file: %w", err)
	}
	n, err := snapshot.WriteContent(ctx, r, node, f)
	if err == nil && uint64(n) != node.Size {
		err = fmt.Errorf("dump is %d bytes, the snapshot records %d", n, node.Size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(name)
		return n, fmt.Errorf("write %s (removed): %w", name, err)
	}
	return n, nil
}
