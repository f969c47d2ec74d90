// Package auth holds the login machinery of cairn serve's web interface: password
// hashes (argon2id in the PHC string format, bcrypt accepted), server-side sessions
// with idle and absolute expiry and a CSRF token each, and a per-IP limit on failed
// logins. It knows nothing about HTTP routing; package serve/web uses it.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// ErrBadHash is wrapped by errors about malformed password hashes.
var ErrBadHash = errors.New("auth: malformed password hash")

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// DefaultParams follow RFC 9106's second recommendation (64 MiB, 3 passes), with two
// lanes.
var DefaultParams = Params{Memory: 64 << 10, Time: 3, Threads: 2}

// HashPassword returns the argon2id hash of password with DefaultParams, as
// "$argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>".
func HashPassword(password string) (string, error) {
	return HashPasswordParams(password, DefaultParams)
}

// HashPasswordParams is HashPassword with explicit costs.
func HashPasswordParams(password string, p Params) (string, error) {
	if password == "" {
		return "", errors.New("auth: empty password")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckHash reports whether encoded is a hash VerifyPassword understands.
func CheckHash(encoded string) error {
	encoded = strings.TrimSpace(encoded)
	if strings.HasPrefix(encoded, "$2") {
		if _, err := bcrypt.Cost([]byte(encoded)); err != nil {
			return fmt.Errorf("%w: bcrypt: %v", ErrBadHash, err)
		}
		return nil
	}
	_, _, _, err := parseArgon2id(encoded)
	return err
}

// VerifyPassword reports whether password matches encoded, an argon2id PHC string or
// a bcrypt hash ($2a$, $2b$, $2y$). The comparison takes constant time.
func VerifyPassword(encoded, password string) (bool, error) {
	encoded = strings.TrimSpace(encoded)
	if strings.HasPrefix(encoded, "$2") {
		err := bcrypt.CompareHashAndPassword([]byte(encoded), []byte(password))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		}
		return false, fmt.Errorf("%w: bcrypt: %v", ErrBadHash, err)
	}
	p, salt, want, err := parseArgon2id(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

func parseArgon2id(s string) (Params, []byte, []byte, error) {
	var p Params
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("%w: want $argon2id$v=19$m=…,t=…,p=…$salt$hash or a bcrypt hash ($2b$…)", ErrBadHash)
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: argon2 version %q, want v=%d", ErrBadHash, parts[2], argon2.Version)
	}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return p, nil, nil, fmt.Errorf("%w: parameter %q", ErrBadHash, kv)
		}
		switch k {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return p, nil, nil, fmt.Errorf("%w: parallelism %d", ErrBadHash, n)
			}
			p.Threads = uint8(n)
		default:
			return p, nil, nil, fmt.Errorf("%w: unknown parameter %q", ErrBadHash, k)
		}
	}
	if p.Memory < 8 || p.Time < 1 || p.Threads < 1 || p.Memory > 4<<20 || p.Time > 100 {
		return p, nil, nil, fmt.Errorf("%w: parameters m=%d,t=%d,p=%d out of range", ErrBadHash, p.Memory, p.Time, p.Threads)
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return p, nil, nil, fmt.Errorf("%w: salt", ErrBadHash)
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 {
		return p, nil, nil, fmt.Errorf("%w: hash", ErrBadHash)
	}
	return p, salt, key, nil
}

// TokenEqual compares a presented token with the expected one in constant time.
func TokenEqual(got, want string) bool {
	if want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// RandomToken returns n random bytes, base64url-encoded.
func RandomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Session is one logged-in browser.
type Session struct {
	ID   string
	CSRF string
	// Created and LastSeen drive the absolute and idle expiry.
	Created  time.Time
	LastSeen time.Time
}

// Session lifetimes.
const (
	DefaultIdle     = 30 * time.Minute
	DefaultAbsolute = 12 * time.Hour
)

// Sessions is an in-memory session store; safe for concurrent use. Sessions do not
// survive a restart of cairn serve.
type Sessions struct {
	Now      func() time.Time
	Idle     time.Duration
	Absolute time.Duration

	mu sync.Mutex
	m  map[string]*Session
}

// NewSessions returns a store with the default lifetimes.
func NewSessions(now func() time.Time) *Sessions {
	if now == nil {
		now = time.Now
	}
	return &Sessions{Now: now, Idle: DefaultIdle, Absolute: DefaultAbsolute, m: map[string]*Session{}}
}

// Create starts a session.
func (s *Sessions) Create() (*Session, error) {
	id, err := RandomToken(32)
	if err != nil {
		return nil, err
	}
	csrf, err := RandomToken(32)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	sess := &Session{ID: id, CSRF: csrf, Created: now, LastSeen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gcLocked(now)
	s.m[id] = sess
	return sess, nil
}

// Get returns the live session with the id and marks it used, or nil when there is
// none or it expired (idle or absolute); an expired session is deleted.
func (s *Sessions) Get(id string) *Session {
	if id == "" {
		return nil
	}
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[id]
	if sess == nil {
		return nil
	}
	if s.expired(sess, now) {
		delete(s.m, id)
		return nil
	}
	sess.LastSeen = now
	c := *sess
	return &c
}

// Delete ends a session.
func (s *Sessions) Delete(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// Len returns the number of stored sessions.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *Sessions) expired(sess *Session, now time.Time) bool {
	return now.Sub(sess.LastSeen) >= s.Idle || now.Sub(sess.Created) >= s.Absolute
}

func (s *Sessions) gcLocked(now time.Time) {
	for id, sess := range s.m {
		if s.expired(sess, now) {
			delete(s.m, id)
		}
	}
}

// Limiter counts failed logins per client address: after Max failures within Window,
// further attempts are refused until the oldest failure leaves the window.
type Limiter struct {
	Now    func() time.Time
	Max    int
	Window time.Duration

	mu       sync.Mutex
	failures map[string][]time.Time
}

// NewLimiter returns a limiter allowing 5 failures per 15 minutes.
func NewLimiter(now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{Now: now, Max: 5, Window: 15 * time.Minute, failures: map[string][]time.Time{}}
}

// Allow reports whether key may try to log in, and if not, how long to wait.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	now := l.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.pruneLocked(key, now)
	if len(f) < l.Max {
		return true, 0
	}
	return false, f[0].Add(l.Window).Sub(now)
}

// Fail records a failed attempt of key.
func (l *Limiter) Fail(key string) {
	now := l.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures[key] = append(l.pruneLocked(key, now), now)
	if len(l.failures) > 10000 {
		for k := range l.failures {
			if len(l.pruneLocked(k, now)) == 0 {
				delete(l.failures, k)
			}
		}
	}
}

// Reset forgets the failures of key (after a successful login).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	delete(l.failures, key)
	l.mu.Unlock()
}

func (l *Limiter) pruneLocked(key string, now time.Time) []time.Time {
	f := l.failures[key]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= l.Window {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(l.failures, key)
		return nil
	}
	l.failures[key] = f
	return f
}
