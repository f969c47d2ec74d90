package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/cairn-backup/cairn/appconfig"
	"github.com/cairn-backup/cairn/dbdump"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
	"github.com/spf13/cobra"
)

// appConfig loads cairn.toml (--config, $CAIRN_CONFIG or ./cairn.toml) once. It
// returns nil when there is none.
func (g *globalOptions) appConfig() (*appconfig.Config, error) {
	if g.cfgLoaded {
		return g.cfg, nil
	}
	g.cfgLoaded = true
	path, err := appconfig.Find(g.configFile)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, nil
	}
	cfg, err := appconfig.Load(path)
	if err != nil {
		return nil, err
	}
	g.cfg = cfg
	return cfg, nil
}

// dbEngine builds the dump engine of the configured database.
func dbEngine(cfg *appconfig.Config) (dbdump.Engine, error) {
	d := cfg.Database
	return dbdump.New(dbdump.Config{Engine: d.Engine, Path: d.Path, DSN: d.DSN, Format: d.Format,
		Migrations: d.Migrations, MigrationsQuery: d.MigrationsQuery, DumpOptions: d.DumpOptions})
}

// appBackupOptions fills backup options from the config: paths, excludes, the app's
// version and the database dump with its migrations.
func appBackupOptions(ctx context.Context, cfg *appconfig.Config, opts *backup.Options) error {
	if len(opts.Paths) == 0 {
		opts.Paths = cfg.App.Paths
	}
	opts.Excludes = append(opts.Excludes, cfg.App.Exclude...)
	if opts.Host == "" {
		opts.Host = cfg.Host
	}
	app := &snapshot.App{Name: cfg.App.Name}
	if v := cfg.App.Version; v.Literal != "" || v.File != "" || len(v.Command) > 0 {
		v, err := cfg.App.Version.Resolve(ctx)
		if err != nil {
			return fmt.Errorf("app version: %w", err)
		}
		app.Version = v
	}
	opts.App = app
	if cfg.Database == nil {
		return nil
	}
	eng, err := dbEngine(cfg)
	if err != nil {
		return err
	}
	opts.DatabaseName = cfg.Database.Engine + ".dump"
	opts.Database = func(ctx context.Context, w io.Writer) (*snapshot.Database, error) {
		info, err := eng.Dump(ctx, w)
		if err != nil {
			return nil, err
		}
		app.Migrations = info.Migrations
		return &snapshot.Database{Engine: info.Engine, ServerVersion: info.ServerVersion, Format: info.Format,
			Name: info.Database, Migrations: info.Migrations}, nil
	}
	return nil
}

func newConfigCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Write and check cairn.toml",
	}
	var preset, output string
	var force bool
	initCmd := &cobra.Command{
		Use:   "init --preset NAME",
		Short: "Write a commented cairn.toml for an application",
		Long: "Write a commented cairn.toml with the application's default layout and database.\nPresets: " +
			strings.Join(appconfig.Presets(), ", ") + ". docs/PRESETS.md explains each." + exitStatusHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := appconfig.Preset(preset)
			if err != nil {
				return fmt.Errorf("%w (known presets: %s)", err, strings.Join(appconfig.Presets(), ", "))
			}
			if output == "-" {
				_, err := g.stdout.Write(data)
				return err
			}
			if !force {
				if _, err := os.Stat(output); err == nil {
					return fmt.Errorf("%s exists; use --force to overwrite it", output)
				}
			}
			if err := os.WriteFile(output, data, 0o600); err != nil {
				return fmt.Errorf("write config: %w", err)
			}
			g.verbosef("wrote %s for %s: edit the paths, database and repository, then run `cairn init`\n", output, preset)
			return nil
		},
	}
	initCmd.Flags().StringVar(&preset, "preset", "", "application: "+strings.Join(appconfig.Presets(), ", "))
	initCmd.Flags().StringVarP(&output, "output", "o", "cairn.toml", "file to write (- for stdout)")
	initCmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	_ = initCmd.MarkFlagRequired("preset")

	check := &cobra.Command{
		Use:   "check",
		Short: "Validate cairn.toml and probe the app's version and database",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.appConfig()
			if err != nil {
				return err
			}
			if cfg == nil {
				return fmt.Errorf("no config: give --config, set CAIRN_CONFIG or create ./cairn.toml")
			}
			g.verbosef("%s: ok (app %s, %d paths)\n", cfg.Path, cfg.App.Name, len(cfg.App.Paths))
			if v, err := cfg.App.Version.Resolve(cmd.Context()); err == nil {
				g.verbosef("version: %s\n", v)
			} else {
				return fmt.Errorf("app version: %w", err)
			}
			if cfg.Database != nil {
				eng, err := dbEngine(cfg)
				if err != nil {
					return err
				}
				info, err := eng.Probe(cmd.Context())
				if err != nil {
					return fmt.Errorf("probe database: %w", err)
				}
				g.verbosef("database: %s %s\n", info.Engine, info.ServerVersion)
				keys := make([]string, 0, len(info.Migrations))
				for k := range info.Migrations {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					g.verbosef("  migration %s: %s\n", k, info.Migrations[k])
				}
			}
			return nil
		},
	}
	c.AddCommand(initCmd, check)
	return c
}
