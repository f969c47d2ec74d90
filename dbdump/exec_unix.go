//go:build unix

package dbdump

import (
	"os/exec"
	"syscall"
)

// killGroup makes cmd run in its own process group and be killed with all its
// children (a wrapper script's pg_dump, a shell's pipeline) when its context ends.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
