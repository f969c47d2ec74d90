package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appconfig"
)

// Job kinds. Backup, prune and check can be scheduled; restore is started from the
// web interface only.
const (
	JobBackup  = "backup"
	JobPrune   = "prune"
	JobCheck   = "check"
	JobRestore = "restore"
)

// ScheduledKinds are the job kinds with a schedule, in display order.
var ScheduledKinds = []string{JobBackup, JobPrune, JobCheck}

// State is what cairn serve remembers across restarts, in a small JSON file under the
// cache directory (StatePath): when each job last ran and how it went. It lets a
// restarted serve catch up a missed run, and `cairn status` report the last results.
type State struct {
	App string `json:"app"`
	// Since is when serve first ran with this file: runs due before it are not
	// considered missed.
	Since time.Time            `json:"since"`
	Jobs  map[string]*JobState `json:"jobs"`
}

// JobState is the record of one job kind.
type JobState struct {
	// LastRun is the start of the latest finished run (canceled runs do not count).
	LastRun     time.Time `json:"last_run,omitzero"`
	LastEnd     time.Time `json:"last_end,omitzero"`
	LastResult  string    `json:"last_result,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastTrigger string    `json:"last_trigger,omitempty"`
	// LastDuration is in seconds.
	LastDuration  float64   `json:"last_duration_seconds"`
	LastSuccess   time.Time `json:"last_success,omitzero"`
	LastSnapshot  string    `json:"last_snapshot,omitempty"`
	Runs          int64     `json:"runs_total"`
	Failures      int64     `json:"failures_total"`
	ConsecFailure int64     `json:"consecutive_failures"`
}

// CacheDir returns the cache directory of cfg: cache_dir, else the user cache
// directory's "cairn" folder.
func CacheDir(cfg *appconfig.Config) (string, error) {
	if cfg != nil && cfg.CacheDir != "" {
		return cfg.CacheDir, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory (set cache_dir in cairn.toml): %w", err)
	}
	return filepath.Join(d, "cairn"), nil
}

// StatePath returns the state file of cfg's app: <cache dir>/serve-<app>.json.
func StatePath(cfg *appconfig.Config) (string, error) {
	dir, err := CacheDir(cfg)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "serve-"+fileSafe(cfg.App.Name)+".json"), nil
}

// fileSafe maps an app name to a file name part.
func fileSafe(name string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, name)
	if s == "" || strings.Trim(s, ".") == "" {
		return "app"
	}
	return s
}

// LoadState reads a state file. A missing file gives an empty State and no error.
func LoadState(path string) (*State, error) {
	st := &State{Jobs: map[string]*JobState{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read serve state: %w", err)
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("serve state %s: %w", path, err)
	}
	if st.Jobs == nil {
		st.Jobs = map[string]*JobState{}
	}
	return st, nil
}

// Save writes the state file atomically (a temporary file renamed over it).
func (st *State) Save(path string) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode serve state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create cache directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".serve-state-*")
	if err != nil {
		return fmt.Errorf("write serve state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write serve state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write serve state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write serve state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write serve state: %w", err)
	}
	return nil
}

// clone returns a deep copy.
func (st *State) clone() *State {
	c := &State{App: st.App, Since: st.Since, Jobs: make(map[string]*JobState, len(st.Jobs))}
	for k, v := range st.Jobs {
		j := *v
		c.Jobs[k] = &j
	}
	return c
}

// job returns the record of kind, creating it.
func (st *State) job(kind string) *JobState {
	j := st.Jobs[kind]
	if j == nil {
		j = &JobState{}
		st.Jobs[kind] = j
	}
	return j
}
