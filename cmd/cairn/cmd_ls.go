package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/spf13/cobra"
)

func newLsCommand(g *globalOptions) *cobra.Command {
	var fo snapshotFilterOptions
	var long bool
	c := &cobra.Command{
		Use:   "ls SNAPSHOT|latest [PATH]",
		Short: "List files in a snapshot",
		Long:  `List the files and directories of a snapshot, or of the subtree at PATH (an absolute path as backed up).` + exitStatusHelp,
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withFullRepo(cmd.Context(), "ls", "", false, func(r *repo.Repository) error {
				prefix := ""
				if len(args) == 2 {
					prefix = args[1]
				}
				return runLs(cmd.Context(), g, r, args[0], fo.filter(), prefix, long)
			})
		},
	}
	fo.addFlags(c)
	c.Flags().BoolVarP(&long, "long", "l", false, "show mode, owner, size and time")
	return c
}

type nodeJSON struct {
	Path       string    `json:"path"`
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	Mode       string    `json:"mode"`
	Size       uint64    `json:"size"`
	ModTime    time.Time `json:"mtime"`
	UID        uint32    `json:"uid"`
	GID        uint32    `json:"gid"`
	User       string    `json:"user,omitempty"`
	Group      string    `json:"group,omitempty"`
	LinkTarget string    `json:"link_target,omitempty"`
}

// resolveSnapshot loads the snapshots and finds ref among them.
func resolveSnapshot(ctx context.Context, g *globalOptions, r *repo.Repository, ref string, f snapshot.Filter) (*snapshot.Snapshot, []*snapshot.Snapshot, error) {
	snaps, err := loadSnapshots(ctx, g, r)
	if err != nil {
		return nil, nil, err
	}
	sn, err := snapshot.Select(snaps, ref, f, time.Local)
	return sn, snaps, err
}

func runLs(ctx context.Context, g *globalOptions, r *repo.Repository, ref string, f snapshot.Filter, prefix string, long bool) error {
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	sn, _, err := resolveSnapshot(ctx, g, r, ref, f)
	if err != nil {
		return err
	}
	prefix = strings.TrimSuffix(path.Clean("/"+prefix), "/")
	first := true
	if g.json {
		fmt.Fprint(g.stdout, "[")
	}
	found := prefix == ""
	err = snapshot.Walk(ctx, r, sn.Tree, func(p string, n *snapshot.Node) error {
		full := "/" + p
		if prefix != "" && full != prefix && !strings.HasPrefix(full, prefix+"/") {
			if strings.HasPrefix(prefix, full+"/") {
				return nil // a directory leading to the prefix
			}
			return snapshot.SkipDir
		}
		found = true
		if g.json {
			j := nodeJSON{Path: full, Name: n.RawName(), Type: n.Type, Mode: n.FileMode().String(), Size: n.Size,
				ModTime: n.ModTime, UID: n.UID, GID: n.GID, User: n.User, Group: n.Group, LinkTarget: n.Target()}
			b, err := json.Marshal(j)
			if err != nil {
				return err
			}
			if !first {
				fmt.Fprint(g.stdout, ",")
			}
			first = false
			fmt.Fprintf(g.stdout, "\n  %s", b)
			return nil
		}
		if long {
			owner := n.User
			if owner == "" {
				owner = fmt.Sprint(n.UID)
			}
			group := n.Group
			if group == "" {
				group = fmt.Sprint(n.GID)
			}
			line := fmt.Sprintf("%s %8s %8s %12d %s %s", n.FileMode(), owner, group, n.Size,
				n.ModTime.Local().Format("2006-01-02 15:04:05"), quoteName(full))
			if n.Type == snapshot.TypeSymlink {
				line += " -> " + quoteName(n.Target())
			}
			fmt.Fprintln(g.stdout, line)
			return nil
		}
		fmt.Fprintln(g.stdout, quoteName(full))
		return nil
	})
	if g.json {
		fmt.Fprint(g.stdout, "\n]\n")
	}
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("path %s not found in snapshot %s", prefix, sn.ID.Short())
	}
	return nil
}

// quoteName makes names with control characters or invalid UTF-8 printable.
func quoteName(s string) string {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == '\uFFFD' {
			q := fmt.Sprintf("%q", s)
			return q
		}
	}
	return s
}
