package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appconfig"
	"github.com/cairn-backup/cairn/dbdump"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/restore"
	"github.com/spf13/cobra"
)

// preUpgradeTag marks the snapshots taken right before an upgrade (docs/ROLLBACK.md).
const preUpgradeTag = "pre-upgrade"

// rollbackListMax bounds the file changes listed in the plan (all are counted).
const rollbackListMax = 20

type rollbackOptions struct {
	sel           snapshotSelector
	beforeUpgrade bool
	yes           bool
	force         bool
	dryRun        bool
}

func newRollbackCommand(g *globalOptions) *cobra.Command {
	var opts rollbackOptions
	c := &cobra.Command{
		Use:   "rollback [SNAPSHOT | --at TIME | --before-upgrade]",
		Short: "Roll the app's files and database back to a snapshot, e.g. after a failed upgrade",
		Long: `Roll the application described by cairn.toml back to a snapshot: its media files
in place (files the snapshot does not have are deleted) and its database (replaced by
the snapshot's dump), then print which app version to install before starting it.

First the running app is probed: its installed version (app.version) and the
migrations applied to its database. The plan shows what changes: version,
migrations per app, files changed, restored and deleted under the snapshot's paths
(compared by size and time), and the database. Stop the app before rolling back.

A snapshot whose migrations are newer than the installed app's is refused unless
--force: the installed code could not run on that database. Django migrations are
compared per app by their numeric prefix; Alembic revisions and custom migration
values can only be compared for equality, so a difference is a warning.

--before-upgrade picks the newest snapshot tagged pre-upgrade (see docs/ROLLBACK.md
for taking one automatically before every upgrade). Only snapshots of the configured
app are considered unless --app says otherwise.

On a terminal rollback asks before changing anything; scripts pass --yes. Without a
terminal and without --yes it refuses.` + selectorHelp + exitStatusHelp,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			def := ""
			if opts.beforeUpgrade {
				def = "latest"
			}
			ref, err := opts.sel.ref(args, def)
			if err != nil {
				return fmt.Errorf("%w (or --before-upgrade)", err)
			}
			if opts.beforeUpgrade && len(args) > 0 {
				return errors.New("give a snapshot or --before-upgrade, not both")
			}
			return g.withFullRepo(cmd.Context(), "rollback", "restore", false, func(r *repo.Repository) error {
				return runRollback(cmd.Context(), g, r, ref, opts)
			})
		},
	}
	f := c.Flags()
	f.BoolVar(&opts.beforeUpgrade, "before-upgrade", false, "roll back to the newest snapshot tagged "+preUpgradeTag+" (at or before --at, if given)")
	f.BoolVarP(&opts.yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&opts.force, "force", false, "roll back even to newer migrations, without a database dump, or when the database cannot be probed")
	f.BoolVarP(&opts.dryRun, "dry-run", "n", false, "print the plan and change nothing")
	opts.sel.addFlags(c)
	return c
}

// rollbackPlan is what a rollback will do; its JSON form is the --json output.
type rollbackPlan struct {
	SnapshotID       string              `json:"snapshot_id"`
	Time             time.Time           `json:"time"`
	App              string              `json:"app"`
	InstalledVersion string              `json:"installed_version,omitempty"`
	SnapshotVersion  string              `json:"snapshot_version,omitempty"`
	Migrations       []rollbackMigration `json:"migrations"`
	Database         *rollbackDatabase   `json:"database,omitempty"`
	Paths            []string            `json:"paths"`
	Files            rollbackCounts      `json:"files"`
	Changes          []rollbackChange    `json:"changes"`
	Warnings         []string            `json:"warnings,omitempty"`
	Blockers         []string            `json:"blockers,omitempty"`
	Install          string              `json:"install,omitempty"`
	Done             bool                `json:"done"`
	Restore          map[string]any      `json:"restore,omitempty"`
}

type rollbackMigration struct {
	Key       string `json:"key"`
	Installed string `json:"installed"`
	Snapshot  string `json:"snapshot"`
	Newer     bool   `json:"snapshot_newer,omitempty"`
}

type rollbackDatabase struct {
	Engine string `json:"engine"`
	Target string `json:"target"`
	Format string `json:"format"`
	Size   uint64 `json:"size"`
}

type rollbackCounts struct {
	Changed  int `json:"changed"`
	Restored int `json:"restored"`
	Deleted  int `json:"deleted"`
	Metadata int `json:"metadata_only"`
}

type rollbackChange struct {
	Path   string `json:"path"`
	Change string `json:"change"` // changed, restored, deleted, type changed, metadata
	Size   uint64 `json:"size,omitempty"`
	Live   uint64 `json:"live_size,omitempty"`
}

func runRollback(ctx context.Context, g *globalOptions, r *repo.Repository, ref string, opts rollbackOptions) error {
	cfg, err := g.appConfig()
	if err != nil {
		return err
	}
	if cfg == nil {
		return errors.New("rollback needs the app's cairn.toml (--config, $CAIRN_CONFIG or ./cairn.toml)")
	}
	filter := opts.sel.fo.filter()
	if filter.App == "" {
		filter.App = cfg.App.Name
	}
	if opts.beforeUpgrade {
		filter.Tags = append(filter.Tags, preUpgradeTag)
	}
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	sn, _, err := selectSnapshot(ctx, g, r, ref, filter)
	if err != nil {
		if opts.beforeUpgrade && errors.Is(err, snapshot.ErrNotFound) {
			return fmt.Errorf("%w; take one before each upgrade with `cairn backup --tag %s` (docs/ROLLBACK.md)", err, preUpgradeTag)
		}
		return err
	}
	var eng dbdump.Engine
	if cfg.Database != nil {
		if eng, err = dbEngine(cfg); err != nil {
			return err
		}
	}
	plan, err := planRollback(ctx, g, r, cfg, eng, sn)
	if err != nil {
		return err
	}
	if !g.json {
		printRollbackPlan(g, plan)
	}
	if len(plan.Blockers) > 0 && !opts.force {
		if g.json {
			_ = g.printJSON(plan)
		}
		return fmt.Errorf("rollback refused, nothing was changed: %s (use --force to roll back anyway)", strings.Join(plan.Blockers, "; "))
	}
	if opts.dryRun {
		if g.json {
			return g.printJSON(plan)
		}
		g.verbosef("dry run: nothing was changed\n")
		return nil
	}
	if err := g.confirmChange("Roll back now? Files and the database will be replaced.", opts.yes); err != nil {
		return err
	}

	withDB := eng != nil && sn.Database != nil
	restoreDB := func() error {
		n, err := restoreDump(ctx, r, sn, eng, true)
		if err != nil {
			return err
		}
		g.verbosef("database restored: %s (%s)\n", plan.Database.Target, formatBytes(uint64(n)))
		return nil
	}
	// The database first, so that a failure leaves the files alone, unless the
	// SQLite file lies among the app's files: then the dump must replace the
	// file-level copy restored with them.
	dbFirst := !withDB || engineKind(cfg.Database.Engine) != "sqlite" || !fileUnder(cfg.Database.Path, sn.Paths)
	if withDB && dbFirst {
		if err := restoreDB(); err != nil {
			return fmt.Errorf("rollback: restore the database (the files were not touched): %w", err)
		}
	}
	res, rerr := restore.Run(ctx, r, sn.Tree, restore.Options{Target: "/", Include: sn.Paths, InPlace: true,
		Delete: true, Owners: os.Geteuid() == 0})
	for _, e := range res.Errors {
		fmt.Fprintf(g.stderr, "cairn: error: %v\n", e)
	}
	if withDB && !dbFirst {
		if errors.Is(rerr, context.Canceled) {
			return fmt.Errorf("rollback interrupted while restoring the files, the database was not restored: %w", rerr)
		}
		if err := restoreDB(); err != nil {
			return fmt.Errorf("rollback: the files were restored, but not the database: %w", errors.Join(err, rerr))
		}
	}
	plan.Done = rerr == nil
	plan.Restore = map[string]any{"files": res.Files, "dirs": res.Dirs, "symlinks": res.Symlinks, "bytes": res.Bytes,
		"deleted": res.Deleted, "errors": len(res.Errors)}
	if g.json {
		if err := g.printJSON(plan); err != nil {
			return err
		}
	} else {
		g.verbosef("files restored: %d files, %d dirs, %d symlinks, %s; %d deleted\n", res.Files, res.Dirs, res.Symlinks,
			formatBytes(res.Bytes), res.Deleted)
		fmt.Fprintln(g.stdout, installAdvice(plan))
	}
	if rerr != nil {
		return fmt.Errorf("rollback incomplete: some files were not restored: %w", rerr)
	}
	return nil
}

// planRollback probes the running app and compares it with the snapshot.
func planRollback(ctx context.Context, g *globalOptions, r *repo.Repository, cfg *appconfig.Config, eng dbdump.Engine, sn *snapshot.Snapshot) (*rollbackPlan, error) {
	p := &rollbackPlan{SnapshotID: sn.ID.String(), Time: sn.Time, App: cfg.App.Name, Paths: sn.Paths,
		Migrations: []rollbackMigration{}, Changes: []rollbackChange{}}
	var snapMigs map[string]string
	if sn.App != nil {
		if sn.App.Name != "" {
			p.App = sn.App.Name
		}
		if sn.App.Name != cfg.App.Name {
			p.Blockers = append(p.Blockers, fmt.Sprintf("snapshot %s is of app %q, the config describes %q", sn.ID.Short(), sn.App.Name, cfg.App.Name))
		}
		p.SnapshotVersion = sn.App.Version
		snapMigs = sn.App.Migrations
	}
	if snapMigs == nil && sn.Database != nil {
		snapMigs = sn.Database.Migrations
	}
	if p.SnapshotVersion == "" {
		p.Warnings = append(p.Warnings, "the snapshot does not record the app version")
	}
	if v := cfg.App.Version; v.Literal != "" || v.File != "" || len(v.Command) > 0 {
		ver, err := v.Resolve(ctx)
		if err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("installed version unknown: %v", err))
		} else {
			p.InstalledVersion = ver
		}
	}

	// The database.
	if eng != nil {
		if sn.Database == nil {
			p.Blockers = append(p.Blockers, fmt.Sprintf("snapshot %s has no database dump, so the database cannot be rolled back with the files", sn.ID.Short()))
		} else {
			if engineKind(sn.Database.Engine) != engineKind(cfg.Database.Engine) {
				return nil, fmt.Errorf("snapshot %s holds a %s dump but the configured database is %s", sn.ID.Short(), sn.Database.Engine, cfg.Database.Engine)
			}
			p.Database = &rollbackDatabase{Engine: sn.Database.Engine, Format: sn.Database.Format, Size: sn.Database.Size,
				Target: databaseLabel(cfg.Database.Engine, cfg.Database.Path, cfg.Database.DSN)}
		}
		live, err := eng.Probe(ctx)
		if err != nil {
			p.Blockers = append(p.Blockers, fmt.Sprintf("cannot probe the running database: %v", err))
		} else {
			p.compareMigrations(cfg.Database.Migrations, live.Migrations, snapMigs)
		}
	} else if sn.Database != nil {
		p.Warnings = append(p.Warnings, "the config has no [database]: only files are rolled back, the snapshot's database dump is not restored")
	}

	// The files: the snapshot's paths, where they were backed up.
	if cfgPaths := slices.Sorted(slices.Values(cfg.App.Paths)); len(cfgPaths) > 0 && !slices.Equal(cfgPaths, slices.Sorted(slices.Values(sn.Paths))) {
		p.Warnings = append(p.Warnings, fmt.Sprintf("the snapshot's paths (%s) differ from app.paths (%s): the snapshot's are restored",
			strings.Join(sn.Paths, ", "), strings.Join(cfg.App.Paths, ", ")))
	}
	var listed int
	err := snapshot.DiffLive(ctx, r, sn.Tree, sn.Paths, func(c snapshot.Change) error {
		var what string
		switch c.Kind {
		case snapshot.Added:
			what = "restored"
			if c.New.Type != snapshot.TypeDir {
				p.Files.Restored++
			}
		case snapshot.Removed:
			what = "deleted"
			if c.Old.Type != snapshot.TypeDir {
				p.Files.Deleted++
			}
		case snapshot.Modified, snapshot.TypeChanged:
			what = c.Kind.String()
			p.Files.Changed++
		case snapshot.MetadataOnly:
			if c.New.Type != snapshot.TypeDir {
				p.Files.Metadata++
			}
			return nil
		}
		if (c.New != nil && c.New.Type == snapshot.TypeDir && c.Kind == snapshot.Added) ||
			(c.Old != nil && c.Old.Type == snapshot.TypeDir && c.Kind == snapshot.Removed) {
			return nil
		}
		if listed < rollbackListMax || g.json {
			rc := rollbackChange{Path: c.Path, Change: what}
			if c.New != nil {
				rc.Size = c.New.Size
			}
			if c.Old != nil {
				rc.Live = c.Old.Size
			}
			p.Changes = append(p.Changes, rc)
		}
		listed++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("compare the snapshot with the live files: %w", err)
	}
	p.Install = p.App
	if p.SnapshotVersion != "" {
		p.Install += " " + p.SnapshotVersion
	}
	return p, nil
}

// compareMigrations fills Migrations, Warnings and Blockers from the installed
// (live) and the snapshot's migrations, as the migration system allows.
func (p *rollbackPlan) compareMigrations(system string, live, snap map[string]string) {
	for _, c := range snapshot.DiffMigrations(live, snap) {
		m := rollbackMigration{Key: c.Key, Installed: c.Old, Snapshot: c.New}
		switch system {
		case appconfig.MigrationsDjango:
			cmp, ok := snapshot.CompareDjangoMigrations(c.New, c.Old)
			switch {
			case !ok:
				p.Warnings = append(p.Warnings, fmt.Sprintf("cannot order migrations of %s: %q installed, %q in the snapshot", c.Key, c.Old, c.New))
			case cmp > 0:
				m.Newer = true
				installed := c.Old
				if installed == "" {
					installed = "none"
				}
				p.Blockers = append(p.Blockers, fmt.Sprintf("the snapshot's migration %s %s is newer than the installed app's (%s)", c.Key, c.New, installed))
			case cmp == 0:
				p.Warnings = append(p.Warnings, fmt.Sprintf("migrations of %s differ but have the same number: %q installed, %q in the snapshot", c.Key, c.Old, c.New))
			}
		default:
			what := "migration value"
			if system == appconfig.MigrationsAlembic {
				what = "Alembic revision"
			}
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s %s differs (%q installed, %q in the snapshot) and cannot be ordered: make sure the version you install runs on it", what, c.Key, c.Old, c.New))
		}
		p.Migrations = append(p.Migrations, m)
	}
}

func printRollbackPlan(g *globalOptions, p *rollbackPlan) {
	w := g.stdout
	if g.quiet {
		w = io.Discard
	}
	fmt.Fprintf(w, "rollback of %s to snapshot %s of %s\n", p.App, p.SnapshotID[:8], p.Time.Local().Format("2006-01-02 15:04:05 MST"))
	inst, snap := p.InstalledVersion, p.SnapshotVersion
	if inst == "" {
		inst = "unknown"
	}
	if snap == "" {
		snap = "unknown"
	}
	if inst == snap {
		fmt.Fprintf(w, "  version:    %s (installed and in the snapshot)\n", inst)
	} else {
		fmt.Fprintf(w, "  version:    %s installed -> %s in the snapshot\n", inst, snap)
	}
	if len(p.Migrations) == 0 {
		fmt.Fprintf(w, "  migrations: unchanged\n")
	}
	for i, m := range p.Migrations {
		label := "  migrations: "
		if i > 0 {
			label = "              "
		}
		inst, snap := m.Installed, m.Snapshot
		if inst == "" {
			inst = "(none)"
		}
		if snap == "" {
			snap = "(none)"
		}
		note := ""
		if m.Newer {
			note = "  NEWER than installed"
		}
		fmt.Fprintf(w, "%s%s %s -> %s%s\n", label, m.Key, inst, snap, note)
	}
	if d := p.Database; d != nil {
		fmt.Fprintf(w, "  database:   %s replaced by the snapshot's %s dump (%s)\n", d.Target, d.Format, formatBytes(d.Size))
	}
	fmt.Fprintf(w, "  files:      %d changed, %d restored, %d deleted, %d with metadata only, under %s\n",
		p.Files.Changed, p.Files.Restored, p.Files.Deleted, p.Files.Metadata, strings.Join(p.Paths, ", "))
	for _, c := range p.Changes {
		switch c.Change {
		case "deleted":
			fmt.Fprintf(w, "    %-12s %s\n", c.Change, c.Path)
		case "restored":
			fmt.Fprintf(w, "    %-12s %s (%s)\n", c.Change, c.Path, formatBytes(c.Size))
		default:
			fmt.Fprintf(w, "    %-12s %s (%s -> %s)\n", c.Change, c.Path, formatBytes(c.Live), formatBytes(c.Size))
		}
	}
	if n := p.Files.Changed + p.Files.Restored + p.Files.Deleted - len(p.Changes); n > 0 {
		fmt.Fprintf(w, "    … and %d more\n", n)
	}
	for _, s := range p.Warnings {
		fmt.Fprintf(g.stderr, "cairn: warning: %s\n", s)
	}
	for _, s := range p.Blockers {
		fmt.Fprintf(g.stderr, "cairn: refused: %s\n", s)
	}
}

// installAdvice is the last line of a rollback: which version to install.
func installAdvice(p *rollbackPlan) string {
	switch {
	case p.SnapshotVersion == "":
		return fmt.Sprintf("the snapshot does not record the %s version: install the version that ran on %s before starting the app",
			p.App, p.Time.Local().Format("2006-01-02 15:04"))
	case p.SnapshotVersion == p.InstalledVersion:
		return fmt.Sprintf("%s %s is installed, as in the snapshot: you can start the app", p.App, p.SnapshotVersion)
	}
	return fmt.Sprintf("install %s before starting the app", p.Install)
}
