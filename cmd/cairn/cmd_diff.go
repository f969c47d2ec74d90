package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/spf13/cobra"
)

func newDiffCommand(g *globalOptions) *cobra.Command {
	var fo snapshotFilterOptions
	c := &cobra.Command{
		Use:   "diff SNAPSHOT-A SNAPSHOT-B",
		Short: "Show what changed between two snapshots",
		Long: `Show what changed from snapshot A to snapshot B: files and directories added (+),
removed (-), changed (M, with both sizes), changed in type (T), and changed in
metadata only (U: mode, owner, modification time); then the app version, the
migrations and the database dump. Unchanged directories are skipped without being
read, so comparing snapshots of large, slowly changing data is quick.` + selectorHelp + exitStatusHelp,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withFullRepo(cmd.Context(), "diff", "", false, func(r *repo.Repository) error {
				return runDiff(cmd.Context(), g, r, args[0], args[1], fo.filter())
			})
		},
	}
	fo.addFlags(c)
	return c
}

type diffSnapshotJSON struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
}

type diffChangeJSON struct {
	Path     string     `json:"path"`
	Change   string     `json:"change"` // added, removed, changed, type changed, metadata
	Type     string     `json:"type"`
	OldType  string     `json:"old_type,omitempty"`
	OldSize  *uint64    `json:"old_size,omitempty"`
	NewSize  *uint64    `json:"new_size,omitempty"`
	Meta     []string   `json:"metadata,omitempty"`
	OldMode  string     `json:"old_mode,omitempty"`
	NewMode  string     `json:"new_mode,omitempty"`
	OldOwner string     `json:"old_owner,omitempty"`
	NewOwner string     `json:"new_owner,omitempty"`
	OldMTime *time.Time `json:"old_mtime,omitempty"`
	NewMTime *time.Time `json:"new_mtime,omitempty"`
}

type diffValueJSON struct {
	Old string `json:"old"`
	New string `json:"new"`
}

type diffDatabaseJSON struct {
	Changed bool   `json:"changed"`
	Old     string `json:"old"` // "sqlite sqlite-file 36864 bytes", "" when absent
	New     string `json:"new"`
	OldSize uint64 `json:"old_size"`
	NewSize uint64 `json:"new_size"`
}

type diffSummaryJSON struct {
	Added       int    `json:"added"`
	Removed     int    `json:"removed"`
	Changed     int    `json:"changed"`
	TypeChanged int    `json:"type_changed"`
	Metadata    int    `json:"metadata_only"`
	BytesAdded  uint64 `json:"bytes_added"`
	BytesRemove uint64 `json:"bytes_removed"`
}

type diffJSON struct {
	A          diffSnapshotJSON           `json:"a"`
	B          diffSnapshotJSON           `json:"b"`
	Changes    []diffChangeJSON           `json:"changes"`
	Version    *diffValueJSON             `json:"app_version,omitempty"`
	Migrations []snapshot.MigrationChange `json:"migrations"`
	Database   *diffDatabaseJSON          `json:"database,omitempty"`
	Summary    diffSummaryJSON            `json:"summary"`
}

func runDiff(ctx context.Context, g *globalOptions, r *repo.Repository, refA, refB string, f snapshot.Filter) error {
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	snaps, err := loadSnapshots(ctx, g, r)
	if err != nil {
		return err
	}
	a, err := snapshot.Select(snaps, refA, f, time.Local)
	if err != nil {
		return fmt.Errorf("snapshot A: %w", err)
	}
	b, err := snapshot.Select(snaps, refB, f, time.Local)
	if err != nil {
		return fmt.Errorf("snapshot B: %w", err)
	}
	out := diffJSON{A: diffSnapshotJSON{a.ID.String(), a.Time}, B: diffSnapshotJSON{b.ID.String(), b.Time},
		Changes: []diffChangeJSON{}, Migrations: []snapshot.MigrationChange{}}
	if !g.json {
		fmt.Fprintf(g.stdout, "comparing %s\n     with %s\n", describeSnapshot(a), describeSnapshot(b))
	}
	err = snapshot.Diff(ctx, r, a.Tree, b.Tree, func(c snapshot.Change) error {
		j := diffChange(c)
		s := &out.Summary
		switch c.Kind {
		case snapshot.Added:
			s.Added++
			s.BytesAdded += c.New.Size
		case snapshot.Removed:
			s.Removed++
			s.BytesRemove += c.Old.Size
		case snapshot.Modified:
			s.Changed++
		case snapshot.TypeChanged:
			s.TypeChanged++
		case snapshot.MetadataOnly:
			s.Metadata++
		}
		if g.json {
			out.Changes = append(out.Changes, j)
			return nil
		}
		fmt.Fprintln(g.stdout, diffLine(c))
		return nil
	})
	if err != nil {
		return fmt.Errorf("compare trees: %w", err)
	}

	var va, vb string
	var ma, mb map[string]string
	if a.App != nil {
		va, ma = a.App.Version, a.App.Migrations
	}
	if b.App != nil {
		vb, mb = b.App.Version, b.App.Migrations
	}
	if ma == nil && a.Database != nil {
		ma = a.Database.Migrations
	}
	if mb == nil && b.Database != nil {
		mb = b.Database.Migrations
	}
	if va != vb {
		out.Version = &diffValueJSON{Old: va, New: vb}
	}
	out.Migrations = append(out.Migrations, snapshot.DiffMigrations(ma, mb)...)
	if a.Database != nil || b.Database != nil {
		db, err := diffDatabases(ctx, r, a.Database, b.Database)
		if err != nil {
			return err
		}
		out.Database = db
	}
	if g.json {
		return g.printJSON(out)
	}
	w := g.stdout
	if out.Version != nil {
		fmt.Fprintf(w, "app version: %s -> %s\n", orNone(va), orNone(vb))
	}
	for _, m := range out.Migrations {
		fmt.Fprintf(w, "migration %s: %s -> %s\n", m.Key, orNone(m.Old), orNone(m.New))
	}
	if d := out.Database; d != nil {
		switch {
		case d.Old == "":
			fmt.Fprintf(w, "database: added (%s)\n", d.New)
		case d.New == "":
			fmt.Fprintf(w, "database: removed (was %s)\n", d.Old)
		case d.Changed:
			fmt.Fprintf(w, "database: changed, %s -> %s\n", d.Old, d.New)
		default:
			fmt.Fprintf(w, "database: unchanged (%s)\n", d.New)
		}
	}
	s := out.Summary
	fmt.Fprintf(w, "%d added (%s), %d removed (%s), %d changed, %d type changed, %d metadata only\n",
		s.Added, formatBytes(s.BytesAdded), s.Removed, formatBytes(s.BytesRemove), s.Changed, s.TypeChanged, s.Metadata)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// diffDatabases compares two dumps by content.
func diffDatabases(ctx context.Context, r *repo.Repository, a, b *snapshot.Database) (*diffDatabaseJSON, error) {
	d := &diffDatabaseJSON{}
	var na, nb *snapshot.Node
	var err error
	if a != nil {
		d.Old, d.OldSize = fmt.Sprintf("%s %s dump, %d bytes", a.Engine, a.Format, a.Size), a.Size
		if na, err = snapshot.DumpNode(ctx, r, a); err != nil {
			return nil, fmt.Errorf("snapshot A: %w", err)
		}
	}
	if b != nil {
		d.New, d.NewSize = fmt.Sprintf("%s %s dump, %d bytes", b.Engine, b.Format, b.Size), b.Size
		if nb, err = snapshot.DumpNode(ctx, r, b); err != nil {
			return nil, fmt.Errorf("snapshot B: %w", err)
		}
	}
	d.Changed = na == nil || nb == nil || !slices.Equal(na.Content, nb.Content) || a.Engine != b.Engine || a.Format != b.Format
	return d, nil
}

func diffChange(c snapshot.Change) diffChangeJSON {
	j := diffChangeJSON{Path: c.Path, Change: c.Kind.String(), Meta: c.Meta}
	if c.New != nil {
		j.Type = c.New.Type
		if c.New.Type == snapshot.TypeFile {
			j.NewSize = &c.New.Size
		}
	}
	if c.Old != nil {
		if c.New == nil {
			j.Type = c.Old.Type
		} else if c.Old.Type != c.New.Type {
			j.OldType = c.Old.Type
		}
		if c.Old.Type == snapshot.TypeFile {
			j.OldSize = &c.Old.Size
		}
	}
	for _, m := range c.Meta {
		switch m {
		case "mode":
			j.OldMode, j.NewMode = fmt.Sprintf("%04o", c.Old.Mode), fmt.Sprintf("%04o", c.New.Mode)
		case "owner":
			j.OldOwner, j.NewOwner = ownerString(c.Old), ownerString(c.New)
		case "mtime":
			j.OldMTime, j.NewMTime = &c.Old.ModTime, &c.New.ModTime
		}
	}
	return j
}

func ownerString(n *snapshot.Node) string {
	u, gr := n.User, n.Group
	if u == "" {
		u = fmt.Sprint(n.UID)
	}
	if gr == "" {
		gr = fmt.Sprint(n.GID)
	}
	return u + ":" + gr
}

// diffLine is the human form of one change.
func diffLine(c snapshot.Change) string {
	name := quoteName(c.Path)
	dirSuffix := func(n *snapshot.Node) string {
		if n.Type == snapshot.TypeDir {
			return "/"
		}
		return ""
	}
	switch c.Kind {
	case snapshot.Added:
		return fmt.Sprintf("+ %s%s%s", name, dirSuffix(c.New), sizeNote(c.New))
	case snapshot.Removed:
		return fmt.Sprintf("- %s%s%s", name, dirSuffix(c.Old), sizeNote(c.Old))
	case snapshot.TypeChanged:
		return fmt.Sprintf("T %s  (%s -> %s)", name, c.Old.Type, c.New.Type)
	}
	var parts []string
	if c.Kind == snapshot.Modified {
		switch c.New.Type {
		case snapshot.TypeFile:
			parts = append(parts, fmt.Sprintf("%d -> %d bytes", c.Old.Size, c.New.Size))
		case snapshot.TypeSymlink:
			parts = append(parts, fmt.Sprintf("-> %s now -> %s", quoteName(c.Old.Target()), quoteName(c.New.Target())))
		}
	}
	for _, m := range c.Meta {
		switch m {
		case "mode":
			parts = append(parts, fmt.Sprintf("mode %04o -> %04o", c.Old.Mode, c.New.Mode))
		case "owner":
			parts = append(parts, fmt.Sprintf("owner %s -> %s", ownerString(c.Old), ownerString(c.New)))
		case "mtime":
			layout := "2006-01-02 15:04:05"
			if c.Old.ModTime.Truncate(time.Second).Equal(c.New.ModTime.Truncate(time.Second)) {
				layout = "2006-01-02 15:04:05.000000000"
			}
			parts = append(parts, fmt.Sprintf("mtime %s -> %s", c.Old.ModTime.Local().Format(layout), c.New.ModTime.Local().Format(layout)))
		}
	}
	mark := "M"
	if c.Kind == snapshot.MetadataOnly {
		mark = "U"
	}
	return fmt.Sprintf("%s %s%s  (%s)", mark, name, dirSuffix(c.New), strings.Join(parts, ", "))
}

func sizeNote(n *snapshot.Node) string {
	if n.Type != snapshot.TypeFile {
		return ""
	}
	return fmt.Sprintf("  (%d bytes)", n.Size)
}
