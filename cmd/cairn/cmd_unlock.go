package main

import (
	"github.com/cairn-backup/cairn/repo"
	"github.com/spf13/cobra"
)

func newUnlockCommand(g *globalOptions) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "unlock",
		Short: "Remove stale locks",
		Long: `Remove locks whose holder is gone: not refreshed for 30 minutes, or held by a process
that no longer runs on this host. With --remove-all, remove every lock.` + exitStatusHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withRepo(cmd.Context(), "", false, func(r *repo.Repository) error {
				removed, err := r.RemoveLocks(cmd.Context(), all)
				if g.json {
					if jerr := g.printJSON(map[string]any{"removed": removed}); jerr != nil {
						return jerr
					}
				} else {
					for _, l := range removed {
						g.verbosef("removed %s\n", l)
					}
					if len(removed) == 0 {
						g.verbosef("no stale locks\n")
					}
				}
				return err
			})
		},
	}
	c.Flags().BoolVar(&all, "remove-all", false, "remove all locks, even live ones")
	return c
}
