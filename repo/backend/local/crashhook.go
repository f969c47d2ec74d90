package local

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// CrashAfterEnv names the crash-test hook of the local backend (docs/RELIABILITY.md).
// When the variable holds "N" or "N:mid" with N ≥ 0, the process kills itself with
// SIGKILL at its (N+1)-th mutating call (Save or Remove) on any local backend:
//
//   - "N" (phase before): on entry, before anything is written or removed;
//   - "N:mid": for Save, after the content is written and synced to the temporary
//     file (or the staged pack is synced) and before it gets its final name; for
//     Remove, after the file is removed and before the call returns.
//
// Tests use it to stop a real cairn process at every point of its run and check the
// repository afterwards (internal/crashtest). It is read once at start; unset, it
// costs one atomic load per Save or Remove.
const CrashAfterEnv = "CAIRN_TEST_CRASH_AFTER"

// crashPhase says where inside the chosen operation the hook kills.
type crashPhase int

const (
	crashBefore crashPhase = iota
	crashMid
)

var (
	crashArmed atomic.Bool
	crashLeft  atomic.Int64 // mutating calls still allowed
	crashAt    crashPhase
)

func init() {
	v := os.Getenv(CrashAfterEnv)
	if v == "" {
		return
	}
	num, phase, _ := strings.Cut(v, ":")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || (phase != "" && phase != "mid") {
		return
	}
	if phase == "mid" {
		crashAt = crashMid
	}
	crashLeft.Store(int64(n))
	crashArmed.Store(true)
}

// crashEnter is called on entry of every Save and Remove. It kills the process when
// this is the chosen call and the phase is "before"; for "mid" it reports true, and
// the caller calls crashMidpoint at its midpoint.
func crashEnter() bool {
	if !crashArmed.Load() {
		return false
	}
	if crashLeft.Add(-1) != -1 {
		return false
	}
	if crashAt == crashBefore {
		crashNow()
	}
	return true
}

// crashMidpoint kills the process if mine is the call chosen by crashEnter.
func crashMidpoint(mine bool) {
	if mine {
		crashNow()
	}
}

// crashNow kills the process (SIGKILL on Unix) and never returns.
func crashNow() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		_ = p.Kill()
	}
	select {} // a kill cannot be caught: wait for it
}
