// Command cairn backs up self-hosted web applications — media files, database dump,
// app version and migrations — into a deduplicating, encrypted repository.
//
// This package is the CLI only: flags, output and exit codes. The work is done by the
// packages under repo/, snapshot/, dbdump/ and crypto/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"syscall"

	"github.com/cairn-backup/cairn/repo"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	// exitPartial: the snapshot was saved but some source files could not be read.
	exitPartial = 3
)

// errPartial is returned by backup when the snapshot lacks unreadable files.
var errPartial = errors.New("snapshot saved, but some source files could not be read")

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

const exitStatusHelp = `
EXIT STATUS
  0  success
  1  failure (nothing was changed unless the message says otherwise)
  3  backup: snapshot saved, but some source files could not be read (named on stderr)
`

func main() {
	if os.Getenv("GOGC") == "" {
		// The heap is mostly large pointer-free buffers (chunks, packs): collecting
		// more often is cheap and keeps peak memory near the live set.
		debug.SetGCPercent(50)
	}
	stopProfile := startProfile(os.Getenv("CAIRN_CPU_PROFILE"))
	stopTrace := startTrace(os.Getenv("CAIRN_TRACE"))
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	cancel()
	stopTrace()
	stopProfile()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globalOptions{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	code := exitFailure
	if errors.As(err, &ee) {
		code = ee.code
		if ee.code == exitPartial {
			fmt.Fprintf(stderr, "cairn: warning: %v\n", ee.err)
			return code
		}
	}
	fmt.Fprintf(stderr, "cairn: error: %v\n", err)
	if h := hint(err); h != "" {
		fmt.Fprintf(stderr, "cairn: hint: %s\n", h)
	}
	return code
}

func hint(err error) string {
	switch {
	case errors.Is(err, repo.ErrWrongPassword):
		return "check CAIRN_PASSWORD_FILE, CAIRN_PASSWORD_COMMAND or --identity-file; `cairn key list` shows which kinds of keys exist"
	case errors.Is(err, repo.ErrNotRepository):
		return "create one with `cairn init --repo PATH`, or check --repo / CAIRN_REPOSITORY"
	case errors.Is(err, repo.ErrNewerFormat):
		return "this repository was written by a newer cairn; install that version to read it"
	case errors.Is(err, repo.ErrLocked):
		return "if the holder is gone, `cairn unlock` removes stale locks"
	}
	return ""
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "cairn",
		Short: "Encrypted, deduplicating backups of self-hosted web apps",
		Long: `cairn backs up an application's media files and database, with its version and
migration numbers, into a deduplicating, compressed, age-encrypted repository.` + exitStatusHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	g.addFlags(root)
	installCache(g, root)
	root.AddCommand(
		newInitCommand(g),
		newBackupCommand(g),
		newSnapshotsCommand(g),
		newLsCommand(g),
		newRestoreCommand(g),
		newStatsCommand(g),
		newKeyCommand(g),
		newUnlockCommand(g),
		newVersionCommand(g),
		newConfigCommand(g),
		newShowCommand(g),
		newForgetCommand(g),
		newPruneCommand(g),
		newCheckCommand(g),
		newRepairCommand(g),
		newRollbackCommand(g),
		newDiffCommand(g),
		newFindCommand(g),
		newDumpCommand(g),
		newServeCommand(g),
		newStatusCommand(g),
		newCopyCommand(g),
	)
	return root
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print cairn's version and repository format version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.json {
				return g.printJSON(map[string]any{"version": version, "format_version": repo.FormatVersion})
			}
			fmt.Fprintf(g.stdout, "cairn %s (repository format %d)\n", version, repo.FormatVersion)
			return nil
		},
	}
}

// startProfile writes a CPU profile of the whole run to path, if path is set
// (CAIRN_CPU_PROFILE; docs/PERFORMANCE.md §Profiling), and returns the function that
// finishes it.
func startProfile(path string) func() {
	return startRecording(path, "CPU profile", pprof.StartCPUProfile, pprof.StopCPUProfile)
}

// startTrace writes a runtime execution trace of the whole run to path, if path is
// set (CAIRN_TRACE; docs/PERFORMANCE.md §Profiling): where goroutines wait, and on
// what, which a CPU profile does not show. It returns the function that finishes it.
func startTrace(path string) func() {
	return startRecording(path, "trace", trace.Start, trace.Stop)
}

// startRecording starts a recording into a new file at path, if path is set; a
// failure is a warning, not an error.
func startRecording(path, what string, start func(io.Writer) error, stop func()) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = start(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn: warning: %s %s: %v\n", what, path, err)
		return func() {}
	}
	return func() {
		stop()
		if err := f.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "cairn: warning: %s %s: %v\n", what, path, err)
		}
	}
}
