package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-backup/cairn/appconfig"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/serve"
	"github.com/cairn-backup/cairn/serve/auth"
	"github.com/cairn-backup/cairn/serve/notify"
	"github.com/cairn-backup/cairn/serve/web"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newServeCommand(g *globalOptions) *cobra.Command {
	var listen string
	c := &cobra.Command{
		Use:   "serve --config cairn.toml",
		Short: "Run the scheduled jobs and the web dashboard of an app",
		Long: `Run as a long-lived service for the app of cairn.toml: back up, forget+prune and check
on the [schedule] of the file (one job at a time), notify [notify] targets of failures
(and successes with on_success), and serve the web dashboard, a JSON API and
Prometheus metrics (/metrics) on serve.listen (default 127.0.0.1:8467).

A run missed while serve was stopped is caught up once at start; the last runs are kept
in serve-<app>.json under the cache directory, which ` + "`cairn status`" + ` reads too.
SIGTERM or SIGINT stop it gracefully: the running job is canceled and will be caught up.

The web interface needs a login: the password whose hash is in serve.password_hash_file
(make one with ` + "`cairn serve hash-password`" + `), or the token of serve.token_file. With
neither, serve makes up a token at start and writes it to serve-<app>.token in the
cache directory. docs/SERVE.md describes everything, with systemd units.` + exitStatusHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), g, listen)
		},
	}
	c.Flags().StringVar(&listen, "listen", "", "address of the web interface, host:port (default: serve.listen of cairn.toml)")
	c.AddCommand(newHashPasswordCommand(g))
	return c
}

func newHashPasswordCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "hash-password",
		Short: "Print an argon2id hash of a web interface password for serve.password_hash_file",
		Long: `Read a password (asked twice on a terminal, else the first line of standard input) and
print its argon2id hash, to be stored in the file named by serve.password_hash_file:

    cairn serve hash-password > /etc/cairn/web-password.hash` + exitStatusHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var pw string
			if f, ok := g.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				p, err := promptPassword("web password", true)
				if err != nil {
					return err
				}
				pw = p
			} else {
				line, err := bufio.NewReader(g.stdin).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read password: %w", err)
				}
				pw = strings.TrimRight(line, "\r\n")
			}
			if pw == "" {
				return errors.New("empty password")
			}
			h, err := auth.HashPassword(pw)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]string{"hash": h})
			}
			fmt.Fprintln(g.stdout, h)
			return nil
		},
	}
}

// jobArgs returns the global flags a job's command line inherits from serve's own.
func (g *globalOptions) jobArgs(cfg *appconfig.Config) []string {
	args := []string{"--config", cfg.Path}
	for _, f := range []struct{ name, value string }{
		{"--repo", g.repo}, {"--password-file", g.passwordFile}, {"--password-command", g.passwordCommand},
		{"--identity-file", g.identityFile},
	} {
		if f.value != "" {
			args = append(args, f.name+"="+f.value)
		}
	}
	return args
}

func runServe(ctx context.Context, g *globalOptions, listen string) error {
	cfg, err := g.appConfig()
	if err != nil {
		return err
	}
	if cfg == nil {
		return errors.New("cairn serve needs the app's cairn.toml: give --config, set CAIRN_CONFIG or run where ./cairn.toml is")
	}
	if listen != "" {
		cfg.Serve.Listen = listen
	}
	var handler slog.Handler = slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	if g.json {
		handler = slog.NewJSONHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	log := slog.New(handler)

	inServer.Store(true)
	base := g.jobArgs(cfg)
	exec := func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		full := append(append([]string(nil), base...), args...)
		return run(ctx, full, strings.NewReader(""), stdout, stderr)
	}
	// The dashboard's view opens the repository with serve's own options, once.
	vg := &globalOptions{repo: g.repo, passwordFile: g.passwordFile, passwordCommand: g.passwordCommand,
		identityFile: g.identityFile, configFile: cfg.Path, stdin: strings.NewReader(""), stdout: io.Discard, stderr: g.stderr}
	openRepo := func(ctx context.Context) (*repo.Repository, error) { return vg.openRepo(ctx) }

	n := notify.New(cfg.Notify, log)
	n.UserAgent = "cairn/" + version
	srv, err := serve.New(serve.Options{Config: cfg, Exec: exec, OpenRepo: openRepo, Notifier: n, Log: log, Version: version})
	if err != nil {
		return err
	}
	hash, token, err := serveCredential(cfg, log)
	if err != nil {
		return err
	}
	h, err := web.New(web.Options{Server: srv, PasswordHash: hash, Token: token, Log: log})
	if err != nil {
		return err
	}
	return srv.Run(ctx, h)
}

// serveCredential reads the web interface's password hash or token. With neither
// configured it makes up a token and writes it to serve-<app>.token in the cache
// directory, readable by the owner only.
func serveCredential(cfg *appconfig.Config, log *slog.Logger) (hash, token string, err error) {
	switch {
	case cfg.Serve.PasswordHashFile != "":
		data, err := os.ReadFile(cfg.Serve.PasswordHashFile)
		if err != nil {
			return "", "", fmt.Errorf("serve.password_hash_file: %w", err)
		}
		hash = strings.TrimSpace(string(data))
		if err := auth.CheckHash(hash); err != nil {
			return "", "", fmt.Errorf("serve.password_hash_file %s: %w (make one with `cairn serve hash-password`)", cfg.Serve.PasswordHashFile, err)
		}
		return hash, "", nil
	case cfg.Serve.TokenFile != "":
		data, err := os.ReadFile(cfg.Serve.TokenFile)
		if err != nil {
			return "", "", fmt.Errorf("serve.token_file: %w", err)
		}
		token = strings.TrimSpace(string(data))
		if len(token) < 16 {
			return "", "", fmt.Errorf("serve.token_file %s: the token must have at least 16 characters", cfg.Serve.TokenFile)
		}
		return "", token, nil
	}
	state, err := serve.StatePath(cfg)
	if err != nil {
		return "", "", err
	}
	path := strings.TrimSuffix(state, ".json") + ".token"
	token, err = auth.RandomToken(24)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", fmt.Errorf("create cache directory: %w", err)
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write serve token: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return "", "", fmt.Errorf("write serve token: %w", err)
	}
	log.Warn("no serve.password_hash_file or serve.token_file: log in with the token written to the file", "file", path)
	return "", token, nil
}
