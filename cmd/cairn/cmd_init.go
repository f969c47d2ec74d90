package main

import (
	"github.com/cairn-backup/cairn/repo"
	"github.com/spf13/cobra"
)

type initOptions struct {
	postQuantum   bool
	formatVersion int
}

func newInitCommand(g *globalOptions) *cobra.Command {
	var opts initOptions
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a new repository",
		Long: `Create a new, empty repository at --repo (or $CAIRN_REPOSITORY). The directory must be
empty or not exist. The first key is made from the passphrase (asked twice on a
terminal, or read from CAIRN_PASSWORD_FILE / CAIRN_PASSWORD_COMMAND) or from the age
identity in --identity-file.` + exitStatusHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInit(cmd, g, opts)
		},
	}
	c.Flags().BoolVar(&opts.postQuantum, "pq", false, "wrap data and index keys to hybrid post-quantum (ML-KEM-768 + X25519) recipients")
	c.Flags().IntVar(&opts.formatVersion, "format-version", repo.FormatVersion, "repository format version to create: 1 stays readable by cairn 0.1, 2 stores data in less space and time, 3 also chunks media faster (docs/FORMAT.md §13)")
	return c
}

func runInit(cmd *cobra.Command, g *globalOptions, opts initOptions) error {
	ctx := cmd.Context()
	cred, err := g.credential(ctx, true)
	if err != nil {
		return err
	}
	be, err := g.openBackend(ctx, true)
	if err != nil {
		return err
	}
	defer be.Close()
	r, err := repo.Init(ctx, be, cred, repo.InitOptions{PostQuantum: opts.postQuantum, Version: opts.formatVersion})
	if err != nil {
		return err
	}
	g.warnClassicalKey(r.Secrets(), cred)
	if g.json {
		return g.printJSON(map[string]any{"id": r.Config().ID, "location": be.Location(), "key": r.KeyID(), "format_version": r.Config().Version})
	}
	g.verbosef("created cairn repository %s at %s\n", r.Config().ID[:8], be.Location())
	g.verbosef("keep the passphrase or identity safe: without it the data cannot be recovered\n")
	return nil
}
