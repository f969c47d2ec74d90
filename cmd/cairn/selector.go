package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// atHelp describes --at and "@TIME" references.
const atHelp = "the newest snapshot taken at or before `TIME`: RFC 3339 or local \"YYYY-MM-DD[ HH:MM]\""

// selectorHelp is the part of a command's help about choosing a snapshot.
const selectorHelp = `

SNAPSHOT is an ID prefix (at least 4 hex digits), "latest", or "@TIME": the newest
snapshot taken at or before TIME, given in RFC 3339 (2026-11-23T14:00:00Z) or as local
"YYYY-MM-DD[ HH:MM[:SS]]" (a date alone means 00:00 of that day); --at TIME, where a
command has it, is the same. "latest" and times consider only the snapshots that pass
--host, --tag and --app.
`

// snapshotSelector picks one snapshot for a command: a SNAPSHOT argument or --at,
// narrowed by --host, --tag and --app.
type snapshotSelector struct {
	at string
	fo snapshotFilterOptions
}

func (s *snapshotSelector) addFlags(c *cobra.Command) {
	s.fo.addFlags(c)
	c.Flags().StringVar(&s.at, "at", "", atHelp)
}

// ref returns the snapshot reference given by args (at most one) and --at; def is
// used when neither is given ("" makes that an error).
func (s *snapshotSelector) ref(args []string, def string) (string, error) {
	switch {
	case s.at != "" && len(args) > 0:
		return "", fmt.Errorf("give a snapshot (%s) or --at, not both", args[0])
	case s.at != "":
		return "@" + s.at, nil
	case len(args) > 0:
		return args[0], nil
	case def != "":
		return def, nil
	}
	return "", errors.New("no snapshot given: give an ID prefix, latest, or --at TIME")
}

// selectSnapshot loads the snapshots and resolves ref among them (snapshot.Select,
// local times in the local zone).
func selectSnapshot(ctx context.Context, g *globalOptions, r *repo.Repository, ref string, f snapshot.Filter) (*snapshot.Snapshot, []*snapshot.Snapshot, error) {
	snaps, err := loadSnapshots(ctx, g, r)
	if err != nil {
		return nil, nil, err
	}
	sn, err := snapshot.Select(snaps, ref, f, time.Local)
	return sn, snaps, err
}

// describeSnapshot names a snapshot for people: "1a2b3c4d of 2026-11-23 14:00:00 (host h, tags a,b)".
func describeSnapshot(sn *snapshot.Snapshot) string {
	s := fmt.Sprintf("%s of %s (host %s", sn.ID.Short(), sn.Time.Local().Format("2006-01-02 15:04:05 MST"), sn.Host)
	if len(sn.Tags) > 0 {
		s += ", tags " + strings.Join(sn.Tags, ",")
	}
	return s + ")"
}

// errNotConfirmed means the user (or the lack of a terminal) did not allow a change.
var errNotConfirmed = errors.New("not confirmed, nothing was changed")

// confirmChange asks question on the terminal unless yes. Without a terminal on stdin it
// refuses: scripts must pass --yes.
func (g *globalOptions) confirmChange(question string, yes bool) error {
	if yes {
		return nil
	}
	f, ok := g.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return fmt.Errorf("%w: no terminal to ask for confirmation; rerun with --yes to proceed", errNotConfirmed)
	}
	fmt.Fprintf(g.stderr, "%s [y/N] ", question)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("%w: read answer: %v", errNotConfirmed, err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errNotConfirmed
}
