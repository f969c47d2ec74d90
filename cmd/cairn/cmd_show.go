package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/spf13/cobra"
)

func newShowCommand(g *globalOptions) *cobra.Command {
	var sel snapshotSelector
	c := &cobra.Command{
		Use:   "show [SNAPSHOT|latest|@TIME] [--at TIME]",
		Short: "Print a snapshot's whole record",
		Long:  `Print everything a snapshot records: time, host, paths, app version and migrations, database engine, server version, dump format and size, and the backup summary.` + selectorHelp + exitStatusHelp,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := sel.ref(args, "latest")
			if err != nil {
				return err
			}
			return g.withFullRepo(cmd.Context(), "show", "", false, func(r *repo.Repository) error {
				sn, _, err := resolveSnapshot(cmd.Context(), g, r, ref, sel.fo.filter())
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(toSnapshotJSON(sn))
				}
				w := g.stdout
				fmt.Fprintf(w, "snapshot %s\n", sn.ID)
				fmt.Fprintf(w, "  time:     %s\n", sn.Time.Local().Format(time.RFC3339))
				fmt.Fprintf(w, "  host:     %s\n", sn.Host)
				if sn.Username != "" {
					fmt.Fprintf(w, "  user:     %s\n", sn.Username)
				}
				if len(sn.Tags) > 0 {
					fmt.Fprintf(w, "  tags:     %s\n", strings.Join(sn.Tags, ", "))
				}
				fmt.Fprintf(w, "  paths:    %s\n", strings.Join(sn.Paths, ", "))
				if sn.Parent != nil {
					fmt.Fprintf(w, "  parent:   %s\n", sn.Parent.Short())
				}
				if a := sn.App; a != nil {
					fmt.Fprintf(w, "  app:      %s %s\n", a.Name, a.Version)
					printMigrations(g, a.Migrations)
				}
				if d := sn.Database; d != nil {
					fmt.Fprintf(w, "  database: %s %s, dump format %s, %s\n", d.Engine, d.ServerVersion, d.Format, formatBytes(d.Size))
				}
				if s := sn.Summary; s != nil {
					fmt.Fprintf(w, "  files:    %d (%s); %d new, %d changed, %d unchanged\n", s.TotalFiles, formatBytes(s.TotalBytes), s.FilesNew, s.FilesChanged, s.FilesUnchanged)
					fmt.Fprintf(w, "  added:    %s (%s stored) in %s\n", formatBytes(s.BytesAdded), formatBytes(s.BytesStored), formatDuration(s.End.Sub(s.Start)))
				}
				return nil
			})
		},
	}
	sel.addFlags(c)
	return c
}

func printMigrations(g *globalOptions, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(g.stdout, "  migration %s: %s\n", k, m[k])
	}
}
