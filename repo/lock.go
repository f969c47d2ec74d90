package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/repo/backend"
)

// Lock timing (docs/FORMAT.md §Locks).
const (
	// LockRefreshInterval is how often a held lock is rewritten with a new time.
	LockRefreshInterval = 5 * time.Minute
	// LockStaleAfter: a lock not refreshed for this long is stale.
	LockStaleAfter = 30 * time.Minute
)

// ErrLocked is wrapped by the error of a lock that conflicts with another.
var ErrLocked = errors.New("repo: repository is locked")

// LockInfo is the content of a lock file.
type LockInfo struct {
	Name      string    `json:"-"`
	Session   string    `json:"session"` // 32 hex digits, stable across refreshes
	Kind      string    `json:"kind"`    // backup, prune, key, repair, check, …
	Exclusive bool      `json:"exclusive"`
	Created   time.Time `json:"created"`
	Time      time.Time `json:"time"` // last refresh
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	User      string    `json:"user"`
}

func (l LockInfo) String() string {
	mode := "shared"
	if l.Exclusive {
		mode = "exclusive"
	}
	return fmt.Sprintf("%s %s lock by %s@%s (pid %d), created %s, refreshed %s", mode, l.Kind, l.User, l.Host,
		l.PID, l.Created.Local().Format(time.DateTime), l.Time.Local().Format(time.DateTime))
}

// Stale reports whether the lock's holder is gone: not refreshed for LockStaleAfter,
// or held by a process that no longer runs on this host.
func (l LockInfo) Stale(now time.Time) bool {
	if now.Sub(l.Time) > LockStaleAfter {
		return true
	}
	host, _ := os.Hostname()
	if l.Host == host && l.PID > 0 {
		if err := syscall.Kill(l.PID, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
	}
	return false
}

// Locks lists the lock files. Unreadable lock files are returned with only Name set
// and Kind "unreadable".
func (r *Repository) Locks(ctx context.Context) ([]LockInfo, error) {
	var names []string
	if err := r.be.List(ctx, backend.LockFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	var out []LockInfo
	for _, name := range names {
		h := backend.Handle{Type: backend.LockFile, Name: name}
		plain, err := r.loadSealed(ctx, h, r.secrets.Identities()...)
		if errors.Is(err, ErrFileNotFound) {
			continue
		}
		var li LockInfo
		if err != nil || json.Unmarshal(plain, &li) != nil {
			out = append(out, LockInfo{Name: name, Kind: "unreadable"})
			continue
		}
		li.Name = name
		out = append(out, li)
	}
	return out, nil
}

// Lock is a held lock; it refreshes itself until Unlock.
type Lock struct {
	r    *Repository
	mu   sync.Mutex
	info LockInfo
	stop chan struct{}
	done chan struct{}
	lost error
}

// Info returns the lock's current content.
func (l *Lock) Info() LockInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info
}

// Lost returns an error if a refresh failed or the lock file disappeared (someone
// removed it as stale): the holder must not trust that its view is still protected.
func (l *Lock) Lost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("cairn: internal error: random: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// Lock takes a lock of the given kind. An exclusive lock conflicts with every other
// live lock; shared locks conflict as the lock-kind table says (LockInfo.Conflicts).
// A conflict returns an error wrapping ErrLocked that names the holder. Stale locks
// never conflict. The kind table can make a kind exclusive even when exclusive is
// false ("repair", "key").
func (r *Repository) Lock(ctx context.Context, kind string, exclusive bool) (*Lock, error) {
	host, usr := hostAndUser()
	now := time.Now().UTC()
	info := LockInfo{Name: randomHex(32), Session: randomHex(16), Kind: kind,
		Exclusive: exclusive || lockRules[kind].exclusive,
		Created:   now, Time: now, Host: host, PID: os.Getpid(), User: usr}
	if err := r.checkLockConflicts(ctx, info); err != nil {
		return nil, err
	}
	if err := r.writeLock(ctx, info); err != nil {
		return nil, err
	}
	// Re-check after writing: two processes that checked at once both see each other now.
	if err := r.checkLockConflicts(ctx, info); err != nil {
		_ = r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: info.Name})
		return nil, err
	}
	l := &Lock{r: r, info: info, stop: make(chan struct{}), done: make(chan struct{})}
	go l.refresher()
	return l, nil
}

func (r *Repository) checkLockConflicts(ctx context.Context, mine LockInfo) error {
	locks, err := r.Locks(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, other := range locks {
		if other.Name == mine.Name || other.Kind == "unreadable" || other.Stale(now) {
			continue
		}
		if mine.Conflicts(other) {
			return fmt.Errorf("%w: %s (cairn unlock removes stale locks)", ErrLocked, other)
		}
	}
	return nil
}

func (r *Repository) writeLock(ctx context.Context, info LockInfo) error {
	plain, err := json.Marshal(info)
	if err != nil {
		return err
	}
	enc, err := seal(plain, r.secrets.Recipients()...)
	if err != nil {
		return err
	}
	h := backend.Handle{Type: backend.LockFile, Name: info.Name}
	if err := r.be.Save(ctx, h, backend.NewByteReader(enc)); err != nil {
		return fmt.Errorf("write lock: %w", err)
	}
	return nil
}

func (l *Lock) refresher() {
	defer close(l.done)
	t := time.NewTicker(LockRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := l.Refresh(ctx)
			cancel()
			if err != nil {
				l.mu.Lock()
				if l.lost == nil {
					l.lost = err
				}
				l.mu.Unlock()
			}
		}
	}
}

// Refresh rewrites the lock with the current time. If the lock file was removed
// meanwhile, it reports that as lost.
func (l *Lock) Refresh(ctx context.Context) error {
	l.mu.Lock()
	info := l.info
	l.mu.Unlock()
	if _, err := l.r.be.Stat(ctx, backend.Handle{Type: backend.LockFile, Name: info.Name}); err != nil {
		return fmt.Errorf("lock %s vanished (removed as stale?): %w", info.Name[:8], err)
	}
	info.Time = time.Now().UTC()
	if err := l.r.writeLock(ctx, info); err != nil {
		return err
	}
	l.mu.Lock()
	l.info = info
	l.mu.Unlock()
	return nil
}

// Unlock stops refreshing and removes the lock file.
func (l *Lock) Unlock(ctx context.Context) error {
	close(l.stop)
	<-l.done
	err := l.r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: l.info.Name})
	if err != nil && !backend.IsNotExist(err) {
		return fmt.Errorf("remove lock: %w", err)
	}
	return nil
}

// RemoveLocks removes stale locks, or all locks with all=true, and returns them.
func (r *Repository) RemoveLocks(ctx context.Context, all bool) ([]LockInfo, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	var removed []LockInfo
	now := time.Now()
	for _, l := range locks {
		if !all && l.Kind != "unreadable" && !l.Stale(now) {
			continue
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: l.Name}); err != nil && !backend.IsNotExist(err) {
			return removed, fmt.Errorf("remove lock %s: %w", l.Name[:8], err)
		}
		removed = append(removed, l)
	}
	return removed, nil
}
