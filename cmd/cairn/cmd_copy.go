package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/snapshot"
	snapcopy "github.com/cairn-backup/cairn/snapshot/copy"
	"github.com/spf13/cobra"
)

type copyOptions struct {
	from            string
	to              string
	passwordFile    string
	passwordCommand string
	identityFile    string
	fo              snapshotFilterOptions
}

// newCopyCommand returns the copy command.
func newCopyCommand(g *globalOptions) *cobra.Command {
	var opts copyOptions
	c := &cobra.Command{
		Use:   "copy --from REPO [--to REPO] [SNAPSHOT...]",
		Short: "Copy snapshots to another repository (e.g. offsite)",
		Long: `Copy snapshots from the repository --from into the destination repository (--to, or
--repo / $CAIRN_REPOSITORY / cairn.toml). Without SNAPSHOT arguments every snapshot
of the source that passes --host, --tag and --app and that the destination lacks is
copied; a snapshot counts as present when the destination has a record equal in
everything but IDs (time, host, paths, tags, app, database) and its trees agree.

Blob IDs are keyed per repository, so each needed blob is read from the source, given
its destination ID and uploaded only if the destination lacks it; trees and the
snapshot record are rewritten with the new IDs. Copying a new snapshot after an
earlier one reads only what changed.

The source is unlocked by its own credential: --from-password-file,
--from-password-command or --from-identity-file (or $CAIRN_FROM_PASSWORD_FILE,
$CAIRN_FROM_PASSWORD_COMMAND, $CAIRN_FROM_IDENTITY_FILE); the destination uses the
usual flags and variables. The destination holds a shared backup lock meanwhile.` + exitStatusHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCopy(cmd.Context(), g, opts, args)
		},
	}
	f := c.Flags()
	f.StringVar(&opts.from, "from", "", "source repository location (default: $CAIRN_FROM_REPOSITORY)")
	f.StringVar(&opts.to, "to", "", "destination repository location (default: --repo, $CAIRN_REPOSITORY)")
	f.StringVar(&opts.passwordFile, "from-password-file", "", "read the source's passphrase from a file")
	f.StringVar(&opts.passwordCommand, "from-password-command", "", "shell command printing the source's passphrase")
	f.StringVar(&opts.identityFile, "from-identity-file", "", "age identity file unlocking the source")
	opts.fo.addFlags(c)
	return c
}

// sourceCredential returns the credential of the copy's source: the --from-* flags,
// else the CAIRN_FROM_* variables. It never falls back to the destination's.
func (o *copyOptions) sourceCredential(ctx context.Context) (crypto.Credential, error) {
	file, command, identity := o.passwordFile, o.passwordCommand, o.identityFile
	if file == "" && command == "" && identity == "" {
		file = os.Getenv("CAIRN_FROM_PASSWORD_FILE")
		command = os.Getenv("CAIRN_FROM_PASSWORD_COMMAND")
		identity = os.Getenv("CAIRN_FROM_IDENTITY_FILE")
	}
	n := 0
	for _, s := range []string{file, command, identity} {
		if s != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, errors.New("no credential for the source: give --from-password-file, --from-password-command or --from-identity-file")
	case n > 1:
		return nil, errors.New("give only one of --from-password-file, --from-password-command and --from-identity-file")
	case identity != "":
		f, err := os.Open(identity)
		if err != nil {
			return nil, fmt.Errorf("open source identity file: %w", err)
		}
		defer f.Close()
		return crypto.ParseIdentityFile(f)
	}
	var pw string
	var err error
	if file != "" {
		pw, err = readPasswordFile(file)
	} else {
		pw, err = runPasswordCommand(ctx, command)
	}
	if err != nil {
		return nil, fmt.Errorf("source passphrase: %w", err)
	}
	return crypto.NewPassphrase(pw, 0)
}

// openSource opens the copy's source repository; storage credentials (S3, SFTP)
// come from the same cairn.toml as the destination's.
func (o *copyOptions) openSource(ctx context.Context, g *globalOptions) (*repo.Repository, error) {
	from := o.from
	if from == "" {
		from = os.Getenv("CAIRN_FROM_REPOSITORY")
	}
	if from == "" {
		return nil, errors.New("no source repository: give --from REPO (or set CAIRN_FROM_REPOSITORY)")
	}
	cred, err := o.sourceCredential(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := g.appConfig(); err != nil {
		return nil, err
	}
	sg := &globalOptions{repo: from, configFile: g.configFile, cfg: g.cfg, cfgLoaded: g.cfgLoaded,
		stdin: g.stdin, stdout: g.stdout, stderr: g.stderr}
	be, err := sg.openBackend(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	r, err := repo.Open(ctx, be, cred)
	if err != nil {
		be.Close()
		return nil, fmt.Errorf("source %s: %w", be.Location(), err)
	}
	return r, nil
}

type copyJSON struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Status      string `json:"status"` // copied or present
	BlobsAdded  int64  `json:"blobs_added,omitempty"`
	BytesAdded  int64  `json:"bytes_added,omitempty"`
}

func runCopy(ctx context.Context, g *globalOptions, opts copyOptions, args []string) error {
	if opts.to != "" {
		if g.repo != "" && g.repo != opts.to {
			return errors.New("--to and --repo name different repositories; give one")
		}
		g.repo = opts.to
	}
	src, err := opts.openSource(ctx, g)
	if err != nil {
		return err
	}
	defer src.Close()
	return g.withRepo(ctx, "backup", false, func(dst *repo.Repository) error {
		if src.Config().ID == dst.Config().ID {
			return errors.New("source and destination are the same repository")
		}
		snaps, err := snapshot.List(ctx, src)
		if err != nil {
			if len(snaps) == 0 {
				return fmt.Errorf("source: %w", err)
			}
			g.warnf("source: %v", err)
		}
		sel := []*snapshot.Snapshot{}
		if len(args) == 0 {
			for _, sn := range snaps {
				if opts.fo.filter().Match(sn) {
					sel = append(sel, sn)
				}
			}
		}
		for _, ref := range args {
			sn, err := snapshot.Find(snaps, ref, opts.fo.filter())
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			sel = append(sel, sn)
		}
		res, err := snapcopy.Run(ctx, src, dst, snapcopy.Options{Snapshots: sel,
			Copied: func(p snapcopy.Pair, st repo.WriterStats) {
				g.verbosef("snapshot %s copied to %s: %d new blobs, %s (%s stored)\n", describeSnapshot(p.Source),
					p.Dest.ID.Short(), st.BlobsAdded, formatBytes(uint64(st.BytesRaw)), formatBytes(uint64(st.PackBytes)))
			}})
		if res != nil && g.json {
			out := []copyJSON{}
			for _, p := range res.Present {
				out = append(out, copyJSON{Source: p.Source.ID.String(), Destination: p.Dest.ID.String(), Status: "present"})
			}
			for _, p := range res.Copied {
				out = append(out, copyJSON{Source: p.Source.ID.String(), Destination: p.Dest.ID.String(), Status: "copied"})
			}
			if jerr := g.printJSON(out); jerr != nil && err == nil {
				err = jerr
			}
		}
		if err != nil {
			return fmt.Errorf("copy to %s: %w", dst.Backend().Location(), err)
		}
		g.verbosef("%d snapshots copied, %d already present; added %s (%s stored), read %d blobs from the source\n",
			len(res.Copied), len(res.Present), formatBytes(uint64(res.Stats.BytesRaw)), formatBytes(uint64(res.Stats.PackBytes)), res.BlobsRead)
		return nil
	})
}
