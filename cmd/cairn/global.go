package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/appconfig"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	repo            string
	passwordFile    string
	passwordCommand string
	identityFile    string
	json            bool
	quiet           bool
	kdfWorkFactor   int
	configFile      string

	cfg       *appconfig.Config
	cfgLoaded bool

	stdin          io.Reader
	stdout, stderr io.Writer
}

func (g *globalOptions) addFlags(c *cobra.Command) {
	f := c.PersistentFlags()
	f.StringVarP(&g.repo, "repo", "r", "", "repository location (default: $CAIRN_REPOSITORY)")
	f.StringVar(&g.passwordFile, "password-file", "", "read the passphrase from a file (default: $CAIRN_PASSWORD_FILE)")
	f.StringVar(&g.passwordCommand, "password-command", "", "run a shell command that prints the passphrase (default: $CAIRN_PASSWORD_COMMAND)")
	f.StringVar(&g.identityFile, "identity-file", "", "use an age identity file instead of a passphrase (default: $CAIRN_IDENTITY_FILE)")
	f.BoolVar(&g.json, "json", false, "print machine-readable JSON on stdout")
	f.BoolVarP(&g.quiet, "quiet", "q", false, "print only errors and warnings")
	f.IntVar(&g.kdfWorkFactor, "kdf-work-factor", 0, "scrypt cost (log2 N, 10-22) of new passphrase keys; each step doubles time and memory (default 15)")
	f.StringVar(&g.configFile, "config", "", "application config file (default: $CAIRN_CONFIG or ./cairn.toml)")
}

func (g *globalOptions) location() (string, error) {
	loc := g.repo
	if loc == "" {
		cfg, err := g.appConfig()
		if err != nil {
			return "", err
		}
		if cfg != nil {
			loc = cfg.Repository
		}
	}
	if loc == "" {
		loc = os.Getenv("CAIRN_REPOSITORY")
	}
	if loc == "" {
		return "", errors.New("no repository given: use --repo or set CAIRN_REPOSITORY")
	}
	return loc, nil
}

// openBackend opens (or, with create, creates) the storage at the repository location.
func (g *globalOptions) openBackend(ctx context.Context, create bool) (backend.Backend, error) {
	loc, err := g.location()
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(loc, "s3:") || strings.HasPrefix(loc, "sftp:") {
		return g.openRemote(ctx, loc, create)
	}
	if create {
		if entries, err := os.ReadDir(loc); err == nil && len(entries) > 0 {
			if _, err := os.Stat(filepath.Join(loc, "config")); err == nil {
				return nil, fmt.Errorf("%w at %s", repo.ErrRepoExists, loc)
			}
			return nil, fmt.Errorf("%w: %s", repo.ErrNotEmpty, loc)
		}
		return local.Create(loc)
	}
	be, err := local.Open(loc)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist", repo.ErrNotRepository, loc)
		}
		return nil, err
	}
	return be, nil
}

// credential returns the credential to open or create a repository with. With
// confirm (init, key add) a TTY prompt asks twice.
func (g *globalOptions) credential(ctx context.Context, confirm bool) (crypto.Credential, error) {
	cfg, err := g.appConfig()
	if err != nil {
		return nil, err
	}
	if cfg != nil && g.identityFile == "" && g.passwordFile == "" && g.passwordCommand == "" {
		g.identityFile, g.passwordFile, g.passwordCommand = cfg.IdentityFile, cfg.PasswordFile, cfg.PasswordCommand
	}
	idFile := g.identityFile
	if idFile == "" && g.passwordFile == "" && g.passwordCommand == "" {
		idFile = os.Getenv("CAIRN_IDENTITY_FILE")
	}
	if idFile != "" {
		f, err := os.Open(idFile)
		if err != nil {
			return nil, fmt.Errorf("open identity file: %w", err)
		}
		defer f.Close()
		return crypto.ParseIdentityFile(f)
	}
	pw, err := g.passphrase(ctx, confirm, "")
	if err != nil {
		return nil, err
	}
	return crypto.NewPassphrase(pw, g.kdfWorkFactor)
}

// passphrase reads a passphrase from --password-file, --password-command, their
// environment variables, or a TTY prompt, in that order.
func (g *globalOptions) passphrase(ctx context.Context, confirm bool, prompt string) (string, error) {
	file := g.passwordFile
	if file == "" {
		file = os.Getenv("CAIRN_PASSWORD_FILE")
	}
	command := g.passwordCommand
	if command == "" {
		command = os.Getenv("CAIRN_PASSWORD_COMMAND")
	}
	if prompt == "" {
		switch {
		case file != "":
			return readPasswordFile(file)
		case command != "":
			return runPasswordCommand(ctx, command)
		}
		prompt = "passphrase"
	}
	return promptPassword(prompt, confirm)
}

func readPasswordFile(name string) (string, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("password file %s is empty", name)
	}
	return pw, nil
}

func runPasswordCommand(ctx context.Context, command string) (string, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("password command failed: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	pw := strings.TrimRight(string(out), "\r\n")
	if pw == "" {
		return "", errors.New("password command printed nothing")
	}
	return pw, nil
}

func promptPassword(prompt string, confirm bool) (string, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		return "", errors.New("no passphrase: set CAIRN_PASSWORD_FILE or CAIRN_PASSWORD_COMMAND, give --identity-file, or run on a terminal")
	}
	defer tty.Close()
	read := func(p string) (string, error) {
		fmt.Fprintf(tty, "enter %s: ", p)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return "", fmt.Errorf("read passphrase: %w", err)
		}
		return string(b), nil
	}
	pw, err := read(prompt)
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", errors.New("empty passphrase")
	}
	if confirm {
		again, err := read(prompt + " again")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", errors.New("passphrases do not match")
		}
	}
	return pw, nil
}

// openRepo opens the repository with the user's credential.
func (g *globalOptions) openRepo(ctx context.Context) (*repo.Repository, error) {
	be, err := g.openBackend(ctx, false)
	if err != nil {
		return nil, err
	}
	cred, err := g.credential(ctx, false)
	if err != nil {
		be.Close()
		return nil, err
	}
	r, err := repo.Open(ctx, be, cred)
	if err != nil {
		be.Close()
		// repo.Open counts a key file a failing age plugin could not open as
		// damaged; say that the plugin (a hardware key) failed instead.
		if idf, ok := cred.(*crypto.IdentityFile); ok && errors.Is(err, repo.ErrWrongPassword) {
			if perr := idf.PluginErr(); perr != nil {
				return nil, fmt.Errorf("open repository: %w", perr)
			}
		}
		return nil, err
	}
	// scrypt's working memory is garbage now; hand it back so it does not count
	// against the rest of the command's resident memory.
	debug.FreeOSMemory()
	return r, nil
}

// backupWorkingSet is what a backup keeps live besides the index: per worker an
// 8 MiB chunk buffer and a compression buffer, zstd's encoder state, pack staging
// buffers (three of 512 KiB per open pack, two being written while one fills;
// docs/PERFORMANCE.md §Memory), with room for the garbage between GCs.
const backupWorkingSet = 60 << 20

// inServer is set by `cairn serve`, which runs commands in its own process.
var inServer atomic.Bool

// limitMemory sets the Go runtime's soft memory limit to the heap now live (the
// index, once loaded) plus working. GOGC alone lets the heap reach 1.5× a peak of
// in-flight buffers, and the runtime returns freed pages to the system only lazily;
// with the limit, a backup's resident memory stays near what it uses. The limit grows
// with the index, so large repositories are not starved (GOGC=50 still paces the GC
// below it). GOMEMLIMIT in the environment overrides it.
//
// `cairn serve` runs its jobs in its own process, where a limit would outlive the job
// and bind the server: there it is not set (inServer).
func limitMemory(working int64) {
	if os.Getenv("GOMEMLIMIT") != "" || inServer.Load() {
		return
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	debug.SetMemoryLimit(int64(ms.HeapAlloc) + working)
}

// withRepo opens the repository, optionally takes a lock, runs fn and closes all.
func (g *globalOptions) withRepo(ctx context.Context, lockKind string, exclusive bool, fn func(*repo.Repository) error) error {
	r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	if lockKind != "" {
		l, err := r.Lock(ctx, lockKind, exclusive)
		if err != nil {
			return err
		}
		defer func() { _ = l.Unlock(context.WithoutCancel(ctx)) }()
	}
	return fn(r)
}

// warnClassicalKey warns when a key file for cred would be sealed with X25519 in a
// post-quantum repository: breaking that key file breaks the hybrid identities in it.
func (g *globalOptions) warnClassicalKey(s *crypto.Secrets, cred crypto.Credential) {
	if _, pq := s.DataRecipient.(*age.HybridRecipient); !pq {
		return
	}
	if rec, err := cred.Recipient(); err == nil {
		if _, classical := rec.(*age.X25519Recipient); classical {
			g.warnf("this repository is post-quantum (init --pq), but the key file for this X25519 identity is not: " +
				"use a hybrid identity (AGE-SECRET-KEY-PQ-1…, age-keygen -pq) or a passphrase (docs/KEYS.md)")
		}
	}
}

// withFullRepo is withRepo for commands that read or remove backups: a write-only
// key is refused (with crypto.ErrWriteOnly, whose text explains why) before any lock
// is taken. what names the command in the message.
func (g *globalOptions) withFullRepo(ctx context.Context, what, lockKind string, exclusive bool, fn func(*repo.Repository) error) error {
	return g.withRepo(ctx, "", false, func(r *repo.Repository) error {
		if r.WriteOnly() {
			return fmt.Errorf("%s: %w", what, crypto.ErrWriteOnly)
		}
		if lockKind == "" {
			return fn(r)
		}
		l, err := r.Lock(ctx, lockKind, exclusive)
		if err != nil {
			return err
		}
		defer func() { _ = l.Unlock(context.WithoutCancel(ctx)) }()
		return fn(r)
	})
}

func (g *globalOptions) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// verbosef prints a human message to stdout unless --quiet or --json.
func (g *globalOptions) verbosef(format string, args ...any) {
	if g.quiet || g.json {
		return
	}
	fmt.Fprintf(g.stdout, format, args...)
}

func (g *globalOptions) warnf(format string, args ...any) {
	fmt.Fprintf(g.stderr, "cairn: warning: "+format+"\n", args...)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
