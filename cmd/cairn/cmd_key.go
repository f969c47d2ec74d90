package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/spf13/cobra"
)

type newCredentialOptions struct {
	passwordFile string
	identityFile string
	recipient    string
}

func (o *newCredentialOptions) addFlags(c *cobra.Command) {
	c.Flags().StringVar(&o.passwordFile, "new-password-file", "", "read the new passphrase from a file")
	c.Flags().StringVar(&o.identityFile, "new-identity-file", "", "use the age identity in this file as the new credential (an AGE-PLUGIN-… identity runs its age plugin)")
	c.Flags().StringVar(&o.recipient, "new-recipient", "", "with --new-identity-file: the identity's recipient (age1NAME1…), for age plugin identities that cannot derive it")
}

func (o *newCredentialOptions) credential(ctx context.Context, g *globalOptions) (crypto.Credential, error) {
	if o.recipient != "" && o.identityFile == "" {
		return nil, errors.New("--new-recipient needs --new-identity-file")
	}
	switch {
	case o.identityFile != "":
		f, err := os.Open(o.identityFile)
		if err != nil {
			return nil, fmt.Errorf("open identity file: %w", err)
		}
		defer f.Close()
		idf, err := crypto.ParseIdentityFile(f)
		if err != nil {
			return nil, err
		}
		if o.recipient != "" {
			if err := idf.SetRecipient(o.recipient); err != nil {
				return nil, fmt.Errorf("--new-recipient: %w", err)
			}
		}
		return idf, nil
	case o.passwordFile != "":
		pw, err := readPasswordFile(o.passwordFile)
		if err != nil {
			return nil, err
		}
		return crypto.NewPassphrase(pw, g.kdfWorkFactor)
	}
	pw, err := g.passphrase(ctx, true, "new passphrase")
	if err != nil {
		return nil, err
	}
	return crypto.NewPassphrase(pw, g.kdfWorkFactor)
}

func newKeyCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "key",
		Short: "Manage the credentials that open the repository",
		Long: `Each key file holds the repository's secrets encrypted to one credential: a passphrase
or an age identity. Several keys open one repository; the last one cannot be removed.`,
	}
	var addOpts newCredentialOptions
	var writeOnly bool
	add := &cobra.Command{
		Use:   "add",
		Short: "Add a key for a new passphrase or age identity",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return g.withFullRepo(ctx, "key add", "key", true, func(r *repo.Repository) error {
				cred, err := addOpts.credential(ctx, g)
				if err != nil {
					return err
				}
				g.warnClassicalKey(r.Secrets(), cred)
				id, err := r.AddKey(ctx, cred, writeOnly)
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(map[string]any{"id": id, "kind": cred.Kind(), "write_only": writeOnly})
				}
				kind := cred.Kind()
				if writeOnly {
					kind = "write-only " + kind
				}
				g.verbosef("added %s key %s\n", kind, id[:8])
				return nil
			})
		},
	}
	addOpts.addFlags(add)
	add.Flags().BoolVar(&writeOnly, "write-only", false, "the key can add backups but not read, restore, forget or prune")

	list := &cobra.Command{
		Use:   "list",
		Short: "List keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withRepo(cmd.Context(), "", false, func(r *repo.Repository) error {
				keys, err := r.Keys(cmd.Context())
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(keys)
				}
				t := &table{header: []string{" ", "ID", "Kind"}}
				for _, k := range keys {
					cur := " "
					if k.Current {
						cur = "*"
					}
					t.add(cur, k.ID[:8], k.Kind)
				}
				fmt.Fprint(g.stdout, t.String())
				return nil
			})
		},
	}

	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withFullRepo(cmd.Context(), "key remove", "key", true, func(r *repo.Repository) error {
				if len(args[0]) >= 4 && r.KeyID()[:min(len(args[0]), len(r.KeyID()))] == args[0] {
					return errors.New("cannot remove the key in use: open the repository with another key to remove this one")
				}
				id, err := r.RemoveKey(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(map[string]any{"removed": id})
				}
				g.verbosef("removed key %s\n", id[:8])
				return nil
			})
		},
	}

	var passwdOpts newCredentialOptions
	passwd := &cobra.Command{
		Use:   "passwd",
		Short: "Replace the current key with one for a new passphrase or identity",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return g.withFullRepo(ctx, "key passwd", "key", true, func(r *repo.Repository) error {
				cred, err := passwdOpts.credential(ctx, g)
				if err != nil {
					return err
				}
				g.warnClassicalKey(r.Secrets(), cred)
				id, err := r.ChangeKey(ctx, cred)
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(map[string]any{"id": id})
				}
				g.verbosef("saved new key %s, removed the old one\n", id[:8])
				return nil
			})
		},
	}
	passwdOpts.addFlags(passwd)

	export := &cobra.Command{
		Use:   "export-identity",
		Short: "Print the repository's age data identity",
		Long: `Print the repository's data identity (AGE-SECRET-KEY-…). With it, the standard age tool
decrypts every file under data/, index/, snapshots/, locks/ and the config:
  cairn key export-identity > repo.key
  age -d -i repo.key REPO/snapshots/<id>
Anyone holding it can read all backups: store it like the passphrase.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withFullRepo(cmd.Context(), "key export-identity", "", false, func(r *repo.Repository) error {
				s, err := r.Secrets().DataIdentityString()
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "# cairn repository %s data identity\n%s\n", r.Config().ID[:8], s)
				return nil
			})
		},
	}
	c.AddCommand(add, list, remove, passwd, export)
	return c
}
