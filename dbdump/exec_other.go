//go:build !unix

package dbdump

import "os/exec"

// killGroup is a no-op where process groups do not exist: the context kills the
// program itself.
func killGroup(cmd *exec.Cmd) {}
