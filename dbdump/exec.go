package dbdump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// stderrLimit bounds how much of a tool's stderr is kept for error messages.
const stderrLimit = 16 << 10

// tool is one run of an external program with streamed stdin/stdout.
type tool struct {
	name   string    // program name looked up in PATH
	args   []string  // arguments (never secrets)
	env    []string  // extra environment (secrets go here)
	stdin  io.Reader // nil: no input
	stdout io.Writer // nil: output is kept like stderr for the error message
}

// lookTool finds name (or, failing that, the first of alternatives) in PATH.
func lookTool(name string, alternatives ...string) (string, error) {
	for _, n := range append([]string{name}, alternatives...) {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	if len(alternatives) > 0 {
		return "", fmt.Errorf("%w: %s not found in PATH (nor %s)", ErrToolNotFound, name, strings.Join(alternatives, ", "))
	}
	return "", fmt.Errorf("%w: %s not found in PATH", ErrToolNotFound, name)
}

// inputError marks a failure to read the tool's input (as opposed to the tool refusing it).
type inputError struct{ err error }

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// run executes the tool. A failure to read stdin kills the program before its input is
// closed, so that a program loading a single transaction never commits a partial input.
func (t tool) run(ctx context.Context) error {
	path, err := lookTool(t.name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	cmd := exec.CommandContext(ctx, path, t.args...)
	cmd.Env = append(os.Environ(), t.env...)
	cmd.WaitDelay = 10 * time.Second
	killGroup(cmd)
	stderr := &tailBuffer{max: stderrLimit}
	cmd.Stderr = stderr

	var out io.ReadCloser
	if t.stdout != nil {
		if out, err = cmd.StdoutPipe(); err != nil {
			return fmt.Errorf("%s stdout: %w", t.name, err)
		}
	} else {
		cmd.Stdout = stderr
	}
	var in io.WriteCloser
	if t.stdin != nil {
		if in, err = cmd.StdinPipe(); err != nil {
			return fmt.Errorf("%s stdin: %w", t.name, err)
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", t.name, err)
	}

	var (
		wg    sync.WaitGroup
		inErr error
	)
	if in != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := &recordingReader{r: t.stdin}
			io.Copy(in, src)
			if src.err != nil {
				inErr = &inputError{src.err}
				cancel() // kill before EOF reaches the program
				return
			}
			// A write error means the program stopped reading (it failed): Wait says why.
			in.Close()
		}()
	}

	var outErr error
	if out != nil {
		if _, err := io.Copy(t.stdout, out); err != nil {
			outErr = err
			cancel()
		}
	}
	waitErr := cmd.Wait()
	wg.Wait()

	switch {
	case inErr != nil:
		return fmt.Errorf("%s: read input: %w", t.name, inErr.(*inputError).err)
	case outErr != nil:
		return fmt.Errorf("%s: write output: %w", t.name, outErr)
	case waitErr != nil:
		return toolError(ctx, t.name, waitErr, stderr.String())
	}
	return nil
}

// toolError formats a failed run: exit status (or signal) and the tail of stderr.
func toolError(ctx context.Context, name string, err error, stderr string) error {
	msg := strings.TrimSpace(stderr)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		status := ee.String() // "exit status 2" or "signal: killed"
		if ee.ExitCode() >= 0 {
			status = fmt.Sprintf("status %d", ee.ExitCode())
		}
		if ctx.Err() != nil {
			status += " (" + context.Cause(ctx).Error() + ")"
		}
		if msg == "" {
			return fmt.Errorf("%s exited with %s and no error output", name, status)
		}
		return fmt.Errorf("%s exited with %s: %s", name, status, msg)
	}
	if msg != "" {
		return fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// tailBuffer keeps the first and the last bytes written to it (bounded memory).
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	head    bytes.Buffer
	tail    []byte
	dropped bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.max/2 - b.head.Len(); room > 0 {
		k := min(room, len(p))
		b.head.Write(p[:k])
		p = p[k:]
	}
	if len(p) > 0 {
		b.tail = append(b.tail, p...)
		if over := len(b.tail) - b.max/2; over > 0 {
			b.tail = append(b.tail[:0], b.tail[over:]...)
			b.dropped = true
		}
	}
	return n, nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return b.head.String() + "\n[…]\n" + string(b.tail)
	}
	return b.head.String() + string(b.tail)
}
