package main

import (
	"context"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend/location"
	"github.com/cairn-backup/cairn/repo/cache"
	"github.com/spf13/cobra"
)

// installCache adds the global --no-cache flag to root and makes every repository
// that a command opens use the local cache (attachCache).
func installCache(g *globalOptions, root *cobra.Command) {
	var noCache bool
	root.PersistentFlags().BoolVar(&noCache, "no-cache", false, "do not use the local cache of repository metadata (default: on for s3: and sftp: repositories)")
	prev := root.PersistentPreRunE
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if prev != nil {
			if err := prev(cmd, args); err != nil {
				return err
			}
		}
		// check verifies the repository's own files, never cached copies.
		if noCache || cmd.Name() == "check" {
			return nil
		}
		cmd.SetContext(repo.WithOpenHook(cmd.Context(), func(ctx context.Context, r *repo.Repository) error {
			attachCache(g, r)
			return nil
		}))
		return nil
	}
}

// attachCache gives a remote repository (s3:, sftp:) its local cache: cache_dir from
// cairn.toml, else $XDG_CACHE_HOME/cairn or ~/.cache/cairn, one directory per
// repository ID. Local repositories are read directly. A cache that cannot be opened
// is a warning; the command then works without.
func attachCache(g *globalOptions, r *repo.Repository) {
	loc, err := location.Parse(r.Backend().Location())
	if err != nil || loc.Kind == location.Local {
		return
	}
	base := ""
	if cfg, err := g.appConfig(); err == nil && cfg != nil {
		base = cfg.CacheDir
	}
	if base == "" {
		if base, err = cache.DefaultBase(); err != nil {
			g.warnf("no local cache: %v", err)
			return
		}
	}
	c, err := cache.Open(base, r.Config().ID)
	if err != nil {
		g.warnf("no local cache: %v", err)
		return
	}
	r.SetCache(c)
}
