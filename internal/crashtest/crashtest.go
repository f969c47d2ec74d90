// Package crashtest runs the cairn binary as real processes, kills them with SIGKILL
// at chosen points and checks the repository afterwards. Kill points are chosen by
// operation: the local backend's hook (local.CrashAfterEnv) makes the process kill
// itself at its N-th Save or Remove, before it or in its middle (content written to
// the temporary file, not yet renamed), so every run is stopped at every point where
// the repository changes. docs/RELIABILITY.md describes what is checked after a kill.
package crashtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend/local"
)

// Password is the passphrase of every repository the harness creates.
const Password = "crash test passphrase"

// KDFWorkFactor keeps scrypt cheap: every process opens the repository.
const KDFWorkFactor = 10

// Build compiles the cairn command into a temporary directory of t and returns the
// binary's path.
func Build(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "cairn")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/cairn-backup/cairn/cmd/cairn")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build cairn: %v\n%s", err, out)
	}
	return bin
}

// Cairn runs one binary against one repository.
type Cairn struct {
	T    testing.TB
	Bin  string
	Repo string
	// PasswordFile holds Password.
	PasswordFile string
	// Timeout bounds each process (default 2 minutes).
	Timeout time.Duration
}

// New returns a runner for the repository directory repoDir (which need not exist
// yet), with a password file in a temporary directory.
func New(t testing.TB, bin, repoDir string) *Cairn {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &Cairn{T: t, Bin: bin, Repo: repoDir, PasswordFile: pw}
}

// WithRepo returns a copy of c for another repository directory.
func (c *Cairn) WithRepo(dir string) *Cairn {
	d := *c
	d.Repo = dir
	return &d
}

// Init creates the repository in-process (the CLI has no pack size option): small
// packs give many kill points with little data.
func (c *Cairn) Init(packSize int) {
	c.T.Helper()
	be, err := local.Create(c.Repo)
	if err != nil {
		c.T.Fatal(err)
	}
	cred, err := crypto.NewPassphrase(Password, KDFWorkFactor)
	if err != nil {
		c.T.Fatal(err)
	}
	r, err := repo.Init(context.Background(), be, cred, repo.InitOptions{PackSize: packSize})
	if err != nil {
		c.T.Fatal(err)
	}
	if err := r.Close(); err != nil {
		c.T.Fatal(err)
	}
}

// Result is how one process ended.
type Result struct {
	Args           []string
	Stdout, Stderr string
	Code           int  // exit status; -1 if killed
	Killed         bool // ended by SIGKILL
	Elapsed        time.Duration
}

func (r Result) String() string {
	state := fmt.Sprintf("exit %d", r.Code)
	if r.Killed {
		state = "killed"
	}
	return fmt.Sprintf("cairn %s: %s\nstdout:\n%s\nstderr:\n%s", strings.Join(r.Args, " "), state, r.Stdout, r.Stderr)
}

// Start starts a process without waiting for it.
func (c *Cairn) Start(env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	c.T.Helper()
	cmd := exec.Command(c.Bin, args...)
	cmd.Env = append(os.Environ(), "CAIRN_REPOSITORY="+c.Repo, "CAIRN_PASSWORD_FILE="+c.PasswordFile,
		"CAIRN_PASSWORD_COMMAND=", "CAIRN_IDENTITY_FILE=", "CAIRN_CONFIG=", "GOMAXPROCS=2")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		c.T.Fatalf("start cairn %v: %v", args, err)
	}
	return cmd, &stdout, &stderr
}

// Wait waits for a started process and reports how it ended.
func (c *Cairn) Wait(cmd *exec.Cmd, stdout, stderr *bytes.Buffer, args []string, start time.Time) Result {
	c.T.Helper()
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		c.T.Fatalf("cairn %v did not finish within %s\nstderr:\n%s", args, timeout, stderr)
	}
	res := Result{Args: args, Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			res.Killed, res.Code = true, -1
		}
	default:
		c.T.Fatalf("cairn %v: %v", args, err)
	}
	return res
}

// Run runs cairn with extra environment variables and returns how it ended.
func (c *Cairn) Run(env []string, args ...string) Result {
	c.T.Helper()
	start := time.Now()
	cmd, so, se := c.Start(env, args...)
	return c.Wait(cmd, so, se, args, start)
}

// Must runs cairn and fails the test unless it exits with status 0.
func (c *Cairn) Must(args ...string) string {
	c.T.Helper()
	res := c.Run(nil, args...)
	if res.Code != 0 {
		c.T.Fatalf("%s", res)
	}
	return res.Stdout
}

// MustJSON runs cairn with --json and decodes its output into v.
func (c *Cairn) MustJSON(v any, args ...string) {
	c.T.Helper()
	out := c.Must(append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.T.Fatalf("cairn %v: decode JSON: %v\n%s", args, err, out)
	}
}

// Snapshot is the part of `cairn snapshots --json` the harness uses.
type Snapshot struct {
	ID    string    `json:"id"`
	Time  time.Time `json:"time"`
	Paths []string  `json:"paths"`
	Tags  []string  `json:"tags"`
}

// Snapshots lists the repository's snapshots.
func (c *Cairn) Snapshots() []Snapshot {
	c.T.Helper()
	var out []Snapshot
	c.MustJSON(&out, "snapshots")
	return out
}

// CheckReport is the part of `cairn check --json` the harness uses.
type CheckReport struct {
	Errors        int `json:"errors"`
	Warnings      int `json:"warnings"`
	Packs         int `json:"packs"`
	OrphanPacks   int `json:"orphan_packs"`
	ObsoletePacks int `json:"obsolete_packs"`
	PacksRead     int `json:"packs_read"`
	Issues        []struct {
		Severity string `json:"severity"`
		File     string `json:"file"`
		Message  string `json:"message"`
	} `json:"issues"`
}

// Check runs `cairn check` (with --read-data if readData) and fails the test if it
// reports an error.
func (c *Cairn) Check(readData bool) CheckReport {
	c.T.Helper()
	args := []string{"--json", "check"}
	if readData {
		args = append(args, "--read-data")
	}
	res := c.Run(nil, args...)
	var rep CheckReport
	if err := json.Unmarshal([]byte(res.Stdout), &rep); err != nil || res.Code != 0 || rep.Errors != 0 {
		c.T.Fatalf("check failed (%v): %s", err, res)
	}
	return rep
}

// Restore restores snapshot id into a new directory and returns it.
func (c *Cairn) Restore(id string) string {
	c.T.Helper()
	dir := filepath.Join(c.T.TempDir(), "restore")
	c.Must("-q", "restore", id, "--target", dir)
	return dir
}

// Tree is the content of a directory tree: slash paths of regular files to their
// bytes, of symlinks to "-> target", of directories to "/".
type Tree map[string]string

// ReadTree records the files, directories and symlinks under dir.
func ReadTree(t testing.TB, dir string) Tree {
	t.Helper()
	out := Tree{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "-> " + target
		case d.IsDir():
			out[rel] = "/"
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		default:
			out[rel] = "special " + d.Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Diff describes how got differs from want ("" if equal).
func (want Tree) Diff(got Tree) string {
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, "missing "+p)
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%s differs (%d bytes, want %d)", p, len(g), len(w)))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, "unexpected "+p)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 8 {
		diffs = append(diffs[:8], fmt.Sprintf("… %d more", len(diffs)-8))
	}
	return strings.Join(diffs, "; ")
}

// RestoreEqual restores snapshot id and fails the test unless the restored copy of
// the source directory src equals want.
func (c *Cairn) RestoreEqual(id, src string, want Tree) {
	c.T.Helper()
	dir := c.Restore(id)
	defer os.RemoveAll(dir)
	got := ReadTree(c.T, filepath.Join(dir, src))
	if d := want.Diff(got); d != "" {
		c.T.Fatalf("snapshot %.8s of %s does not restore byte-identical: %s", id, src, d)
	}
}

// Usage is the repository's size by kind of file.
type Usage struct {
	Packs, PackBytes int64
	Temp, TempBytes  int64 // temporary files of interrupted saves (".tmp-*")
	IndexFiles       int64
	Locks            int64
}

// DiskUsage measures the repository directory.
func DiskUsage(t testing.TB, dir string) Usage {
	t.Helper()
	var u Usage
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case strings.HasPrefix(d.Name(), "."):
			u.Temp++
			u.TempBytes += fi.Size()
		case strings.HasPrefix(rel, "data/"):
			u.Packs++
			u.PackBytes += fi.Size()
		case strings.HasPrefix(rel, "index/"):
			u.IndexFiles++
		case strings.HasPrefix(rel, "locks/"):
			u.Locks++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// CopyDir copies a repository (or any tree of regular files and directories).
func CopyDir(t testing.TB, dst, src string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// Point is one kill point: the process dies at its (Op+1)-th backend mutation, on
// entry or (Mid) halfway through it.
type Point struct {
	Op  int
	Mid bool
}

// Env is the environment variable arming the hook for p.
func (p Point) Env() string {
	v := fmt.Sprintf("%s=%d", local.CrashAfterEnv, p.Op)
	if p.Mid {
		v += ":mid"
	}
	return v
}

func (p Point) String() string {
	if p.Mid {
		return fmt.Sprintf("inside mutation %d", p.Op+1)
	}
	return fmt.Sprintf("before mutation %d", p.Op+1)
}

// Scenario is one command to kill everywhere, as a table entry of KillEverywhere.
type Scenario struct {
	Name string
	// Template is the repository state the command starts from; every kill point
	// starts from a fresh copy of it.
	Template string
	// Args is the command line.
	Args []string
	// OK reports whether an unkilled exit is success (nil: exit status 0).
	OK func(Result) bool
	// AfterKill checks the copy c.Repo after the process was killed at p. It must
	// also run the command again to completion and check the result (the harness
	// calls it for kills only).
	AfterKill func(c *Cairn, p Point, killed Result)
	// MaxOps bounds the search (default 400).
	MaxOps int
}

// KillEverywhere runs s.Args on copies of s.Template, killing it before and inside
// its 1st, 2nd, … backend mutation until a run completes without reaching the kill
// point. It returns the number of runs killed.
func KillEverywhere(t *testing.T, c *Cairn, s Scenario) int {
	t.Helper()
	maxOps := s.MaxOps
	if maxOps == 0 {
		maxOps = 400
	}
	ok := s.OK
	if ok == nil {
		ok = func(r Result) bool { return r.Code == 0 }
	}
	killed := 0
	for op := 0; op < maxOps; op++ {
		finished := false
		for _, mid := range []bool{false, true} {
			p := Point{Op: op, Mid: mid}
			work := c.WithRepo(filepath.Join(t.TempDir(), "repo"))
			CopyDir(t, work.Repo, s.Template)
			res := work.Run([]string{p.Env()}, s.Args...)
			if !res.Killed {
				if !ok(res) {
					t.Fatalf("%s with kill point %s: %s", s.Name, p, res)
				}
				finished = true
				os.RemoveAll(filepath.Dir(work.Repo))
				break
			}
			killed++
			s.AfterKill(work, p, res)
			if t.Failed() {
				t.Fatalf("%s: checks failed after the kill %s", s.Name, p)
			}
			os.RemoveAll(filepath.Dir(work.Repo))
		}
		if finished {
			return killed
		}
	}
	t.Fatalf("%s still reached its kill point after %d mutations", s.Name, maxOps)
	return killed
}
