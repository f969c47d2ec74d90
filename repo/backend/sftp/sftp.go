// Package sftp owns the SFTP backend: a repository stored in a directory of an SSH
// server, reached with golang.org/x/crypto/ssh and github.com/pkg/sftp. It parses
// "sftp:" locations, authenticates with the SSH agent or key files, verifies host keys
// against known_hosts, and saves atomically through a temporary file and a rename.
package sftp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/retry"
)

// TempPrefix starts the names of the temporary files Save writes; List skips them.
const TempPrefix = ".tmp-"

// Host key errors; the messages of errors wrapping them name the host and the
// fingerprint the server offered.
var (
	ErrUnknownHostKey  = errors.New("sftp: host key is unknown")
	ErrHostKeyMismatch = errors.New("sftp: host key does not match known_hosts")
)

// Options configure the connection. Zero values take defaults.
type Options struct {
	// KeyFile is a private key (without passphrase) to log in with; empty means
	// ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa and ~/.ssh/id_rsa, whichever exist.
	KeyFile string
	// KnownHostsFile lists trusted host keys; empty means ~/.ssh/known_hosts.
	KnownHostsFile string
	// NoAgent disables the SSH agent at SSH_AUTH_SOCK.
	NoAgent bool
	// Timeout bounds connecting and logging in; default 30s.
	Timeout time.Duration
}

// Backend is a repository on an SFTP server. It reconnects after the connection
// broke (the retry decorator then repeats the failed operation).
type Backend struct {
	cfg  Config
	loc  string
	opts Options
	root string // absolute repository directory on the server

	mu     sync.Mutex
	conn   *conn
	closed bool
}

var _ backend.Backend = (*Backend)(nil)

// conn is one SSH connection with its SFTP session.
type conn struct {
	ssh        *ssh.Client
	sftp       *sftp.Client
	dead       atomic.Bool
	posix      bool // posix-rename@openssh.com
	statvfs    bool // statvfs@openssh.com
	closedOnce sync.Once
}

// note marks the connection broken when err says so, so the next call reconnects
// without waiting for the connection's watcher.
func (c *conn) note(err error) {
	if err != nil && (errors.Is(err, sftp.ErrSSHFxConnectionLost) ||
		errors.Is(err, sftp.ErrSSHFxNoConnection) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) ||
		// pkg/sftp reports a write to a closed SSH channel as "failed to send packet: EOF".
		(errors.Is(err, io.EOF) && strings.Contains(err.Error(), "failed to send packet"))) {
		c.dead.Store(true)
	}
}

func (c *conn) close() {
	c.closedOnce.Do(func() {
		_ = c.sftp.Close()
		_ = c.ssh.Close()
	})
}

// Open connects to an existing repository directory.
func Open(ctx context.Context, loc string, opts Options) (*Backend, error) {
	b, err := connect(ctx, loc, opts)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	fi, err := b.conn.sftp.Stat(b.root)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	if !fi.IsDir() {
		b.Close()
		return nil, fmt.Errorf("open %s: %s is not a directory", loc, b.root)
	}
	return b, nil
}

// Create connects and makes the directory layout of a new repository; a directory
// holding a config file yields an error wrapping backend.ErrExists.
func Create(ctx context.Context, loc string, opts Options) (*Backend, error) {
	b, err := connect(ctx, loc, opts)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", loc, err)
	}
	c := b.conn.sftp
	if _, err := c.Stat(path.Join(b.root, "config")); err == nil {
		b.Close()
		return nil, fmt.Errorf("create %s: config file already present: %w", loc, backend.ErrExists)
	}
	for _, t := range backend.AllTypes {
		if t == backend.ConfigFile {
			continue
		}
		if err := c.MkdirAll(path.Join(b.root, t.String())); err != nil {
			b.Close()
			return nil, fmt.Errorf("create %s: make directory %s: %w", loc, path.Join(b.root, t.String()), err)
		}
	}
	return b, nil
}

func connect(ctx context.Context, loc string, opts Options) (*Backend, error) {
	cfg, err := ParseLocation(loc)
	if err != nil {
		return nil, err
	}
	if cfg.User == "" {
		if cfg.User = os.Getenv("USER"); cfg.User == "" {
			if u, err := user.Current(); err == nil {
				cfg.User = u.Username
			}
		}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	b := &Backend{cfg: cfg, loc: loc, opts: opts}
	c, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	b.conn = c
	b.root = cfg.Path
	if !path.IsAbs(b.root) {
		wd, err := c.sftp.Getwd()
		if err != nil {
			c.close()
			return nil, fmt.Errorf("resolve relative path %s: %w", cfg.Path, err)
		}
		b.root = path.Join(wd, b.root)
	}
	b.root = path.Clean(b.root)
	return b, nil
}

// dial opens a new SSH connection and SFTP session.
func (b *Backend) dial(ctx context.Context) (*conn, error) {
	addr := b.cfg.Addr()
	hostKeys, algos, err := b.hostKeyCallback(addr)
	if err != nil {
		return nil, err
	}
	auth, closeAgent, err := b.authMethods()
	if err != nil {
		return nil, err
	}
	defer closeAgent()
	var keyErr error
	config := &ssh.ClientConfig{
		User: b.cfg.User,
		Auth: auth,
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			keyErr = hostKeys(hostname, remote, key)
			return keyErr
		},
		HostKeyAlgorithms: algos,
		Timeout:           b.opts.Timeout,
	}
	dctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	// Bound the handshake by the same deadline.
	if dl, ok := dctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, config)
	if err != nil {
		_ = nc.Close()
		if keyErr != nil {
			return nil, keyErr
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, retry.Permanent(fmt.Errorf("log in to %s as %s: %w (keys tried: %s)", addr, b.cfg.User, err, b.keySources()))
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	client := ssh.NewClient(sc, chans, reqs)
	sc2, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true), sftp.UseFstat(true))
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("start sftp session on %s: %w", addr, err)
	}
	c := &conn{ssh: client, sftp: sc2}
	_, c.posix = sc2.HasExtension("posix-rename@openssh.com")
	_, c.statvfs = sc2.HasExtension("statvfs@openssh.com")
	go func() {
		_ = client.Wait()
		c.dead.Store(true)
	}()
	return c, nil
}

func home() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return ""
}

// hostKeyCallback checks host keys against the known_hosts file and returns the key
// algorithms known for addr, so the server offers a key that can be checked.
func (b *Backend) hostKeyCallback(addr string) (ssh.HostKeyCallback, []string, error) {
	file := b.opts.KnownHostsFile
	if file == "" {
		file = filepath.Join(home(), ".ssh", "known_hosts")
	}
	check, err := knownhosts.New(file)
	if errors.Is(err, fs.ErrNotExist) && b.opts.KnownHostsFile == "" {
		check = func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
	} else if err != nil {
		return nil, nil, retry.Permanent(fmt.Errorf("read known hosts: %w", err))
	}
	// Probe with a throwaway key: the mismatch lists every key known for addr.
	var algos []string
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	probe, _ := ssh.NewPublicKey(pub)
	var kerr *knownhosts.KeyError
	if err := check(addr, &net.TCPAddr{}, probe); errors.As(err, &kerr) {
		seen := map[string]bool{}
		for _, k := range kerr.Want {
			for _, a := range algorithmsFor(k.Key.Type()) {
				if !seen[a] {
					seen[a] = true
					algos = append(algos, a)
				}
			}
		}
	}
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := check(hostname, remote, key)
		if err == nil {
			return nil
		}
		fp := key.Type() + " " + ssh.FingerprintSHA256(key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			if len(ke.Want) == 0 {
				host, port, _ := net.SplitHostPort(addr)
				return retry.Permanent(fmt.Errorf("%w: %s offered %s, which %s does not list; "+
					"verify the fingerprint with the server's administrator, then add it with: ssh-keyscan -p %s %s >> %s",
					ErrUnknownHostKey, addr, fp, file, port, host, file))
			}
			var known []string
			for _, k := range ke.Want {
				known = append(known, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
			}
			return retry.Permanent(fmt.Errorf("%w: %s offered %s but %s lists %s; "+
				"the server was reinstalled or someone is intercepting the connection",
				ErrHostKeyMismatch, addr, fp, file, strings.Join(known, ", ")))
		}
		return retry.Permanent(fmt.Errorf("check host key of %s (%s): %w", addr, fp, err))
	}
	return cb, algos, nil
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// keyFiles returns the private key files to try.
func (b *Backend) keyFiles() []string {
	if b.opts.KeyFile != "" {
		return []string{b.opts.KeyFile}
	}
	dir := filepath.Join(home(), ".ssh")
	var files []string
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			files = append(files, filepath.Join(dir, name))
		}
	}
	return files
}

func (b *Backend) useAgent() bool { return !b.opts.NoAgent && os.Getenv("SSH_AUTH_SOCK") != "" }

func (b *Backend) keySources() string {
	var s []string
	if b.useAgent() {
		s = append(s, "SSH agent")
	}
	s = append(s, b.keyFiles()...)
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// authMethods collects the agent's keys and the key files.
func (b *Backend) authMethods() ([]ssh.AuthMethod, func(), error) {
	var signers []ssh.Signer
	closeAgent := func() {}
	if b.useAgent() {
		if ac, err := net.Dial("unix", os.Getenv("SSH_AUTH_SOCK")); err == nil {
			closeAgent = func() { _ = ac.Close() }
			if s, err := agent.NewClient(ac).Signers(); err == nil {
				signers = append(signers, s...)
			}
		}
	}
	var skipped []string
	for _, f := range b.keyFiles() {
		pem, err := os.ReadFile(f)
		if err != nil {
			closeAgent()
			return nil, nil, retry.Permanent(fmt.Errorf("read SSH key: %w", err))
		}
		s, err := ssh.ParsePrivateKey(pem)
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			skipped = append(skipped, f+" (has a passphrase: load it into ssh-agent)")
			continue
		}
		if err != nil {
			closeAgent()
			return nil, nil, retry.Permanent(fmt.Errorf("parse SSH key %s: %w", f, err))
		}
		signers = append(signers, s)
	}
	if len(signers) == 0 {
		msg := "no SSH key to log in with: start ssh-agent (SSH_AUTH_SOCK) or create ~/.ssh/id_ed25519"
		if len(skipped) > 0 {
			msg += "; skipped " + strings.Join(skipped, ", ")
		}
		closeAgent()
		return nil, nil, retry.Permanent(errors.New(msg))
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, closeAgent, nil
}

// client returns a live connection, reconnecting if the last one broke.
func (b *Backend) client(ctx context.Context) (*conn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("backend %s is closed", b.loc)
	}
	if b.conn != nil && !b.conn.dead.Load() {
		return b.conn, nil
	}
	if b.conn != nil {
		b.conn.close()
		b.conn = nil
	}
	c, err := b.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("reconnect: %w", err)
	}
	b.conn = c
	return c, nil
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.loc }

// Root returns the absolute repository directory on the server.
func (b *Backend) Root() string { return b.root }

func (b *Backend) filename(h backend.Handle) string { return path.Join(b.root, h.Path()) }

func (b *Backend) start(ctx context.Context, op string, h backend.Handle) (*conn, error) {
	if err := h.Valid(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, h, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, h, err)
	}
	c, err := b.client(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, h, err)
	}
	return c, nil
}

// Save implements backend.Backend: the data goes to a temporary file in the target
// directory, which is fsynced (where the server supports fsync@openssh.com) and
// renamed into place. New files use the plain SFTP rename, which never replaces an
// existing file; lock files use posix-rename@openssh.com, which replaces atomically.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) (err error) {
	c, err := b.start(ctx, "save", h)
	if err != nil {
		return err
	}
	defer func() { c.note(err) }()
	final := b.filename(h)
	dir := path.Dir(final)
	if h.Type != backend.LockFile {
		if _, err := c.sftp.Lstat(final); err == nil {
			return fmt.Errorf("save %s: %w", h, backend.ErrExists)
		}
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(dir, TempPrefix+hex.EncodeToString(rnd[:]))
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	f, err := c.sftp.OpenFile(tmp, flags)
	if errors.Is(err, fs.ErrNotExist) {
		if err = c.sftp.MkdirAll(dir); err != nil {
			return fmt.Errorf("save %s: make directory %s: %w", h, dir, b.mapErr(c, dir, 0, err))
		}
		f, err = c.sftp.OpenFile(tmp, flags)
	}
	if err != nil {
		return fmt.Errorf("save %s: create %s: %w", h, tmp, b.mapErr(c, dir, rd.Length(), err))
	}
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = c.sftp.Remove(tmp)
		}
	}()
	n, err := f.ReadFrom(backend.ContextReader(ctx, rd))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("save %s: %w", h, cerr)
		}
		return fmt.Errorf("save %s: write %s: %w", h, tmp, b.mapErr(c, dir, rd.Length(), err))
	}
	if want := rd.Length(); n != want {
		return fmt.Errorf("save %s: wrote %d bytes, reader announced %d", h, n, want)
	}
	if err := f.Sync(); err != nil && !errors.Is(err, sftp.ErrSSHFxOpUnsupported) {
		return fmt.Errorf("save %s: sync %s: %w", h, tmp, b.mapErr(c, dir, rd.Length(), err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save %s: close %s: %w", h, tmp, b.mapErr(c, dir, rd.Length(), err))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	if h.Type == backend.LockFile {
		if c.posix {
			err = c.sftp.PosixRename(tmp, final)
		} else {
			// Without posix-rename the old lock must go first; a crash in between
			// leaves no lock, which a lock refresh tolerates.
			if rerr := c.sftp.Remove(final); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				return fmt.Errorf("save %s: replace: %w", h, rerr)
			}
			err = c.sftp.Rename(tmp, final)
		}
		if err != nil {
			return fmt.Errorf("save %s: rename: %w", h, b.mapErr(c, dir, 0, err))
		}
	} else if err := c.sftp.Rename(tmp, final); err != nil {
		if _, serr := c.sftp.Lstat(final); serr == nil {
			return fmt.Errorf("save %s: %w", h, backend.ErrExists)
		}
		return fmt.Errorf("save %s: rename: %w", h, b.mapErr(c, dir, 0, err))
	}
	done = true
	return nil
}

// mapErr marks errors that mean "storage full": the SFTP status codes for a full
// file system or quota, server messages saying so, and generic failures while the
// server reports less free space than the file needs.
func (b *Backend) mapErr(c *conn, dir string, need int64, err error) error {
	var se *sftp.StatusError
	if !errors.As(err, &se) {
		return err
	}
	const fxNoSpace, fxQuota = 14, 15
	msg := strings.ToLower(se.Error())
	full := se.Code == fxNoSpace || se.Code == fxQuota ||
		strings.Contains(msg, "no space") || strings.Contains(msg, "quota")
	if !full && se.FxCode() == sftp.ErrSSHFxFailure && c.statvfs {
		if vfs, verr := c.sftp.StatVFS(dir); verr == nil && vfs.Bavail*vfs.Frsize < uint64(max(need, 1)) {
			full = true
		}
	}
	if full {
		return fmt.Errorf("%w: %w", backend.ErrNoSpace, err)
	}
	return err
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) (err error) {
	c, err := b.start(ctx, "load", h)
	if err != nil {
		return err
	}
	defer func() { c.note(err) }()
	if err := backend.CheckRange(h, length, offset); err != nil {
		return err
	}
	f, err := c.sftp.Open(b.filename(h))
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	n, err := backend.RangeLength(h, fi.Size(), length, offset)
	if err != nil {
		return err
	}
	if err := fn(backend.ContextReader(ctx, io.NewSectionReader(f, offset, n))); err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	return nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (_ backend.FileInfo, err error) {
	c, err := b.start(ctx, "stat", h)
	if err != nil {
		return backend.FileInfo{}, err
	}
	defer func() { c.note(err) }()
	fi, err := c.sftp.Stat(b.filename(h))
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	if !fi.Mode().IsRegular() {
		return backend.FileInfo{}, fmt.Errorf("stat %s: not a regular file", h)
	}
	return backend.FileInfo{Name: h.Name, Size: fi.Size()}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	c, err := b.client(ctx)
	if err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	defer func() { c.note(err) }()
	switch t {
	case backend.ConfigFile:
		fi, err := c.sftp.Stat(path.Join(b.root, "config"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		return fn(backend.FileInfo{Size: fi.Size()})
	case backend.PackFile:
		top := path.Join(b.root, t.String())
		subs, err := c.sftp.ReadDirContext(ctx, top)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		for _, sub := range subs {
			if !sub.IsDir() || strings.HasPrefix(sub.Name(), ".") {
				continue
			}
			if err := b.listDir(ctx, c, t, path.Join(top, sub.Name()), fn); err != nil {
				return err
			}
		}
		return nil
	case backend.KeyFile, backend.IndexFile, backend.SnapshotFile, backend.LockFile:
		return b.listDir(ctx, c, t, path.Join(b.root, t.String()), fn)
	}
	return fmt.Errorf("list %s: invalid file type", t)
}

func (b *Backend) listDir(ctx context.Context, c *conn, t backend.FileType, dir string, fn func(backend.FileInfo) error) error {
	entries, err := c.sftp.ReadDirContext(ctx, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("list %s: %w", t, cerr)
		}
		return fmt.Errorf("list %s: %w", t, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		if !e.Mode().IsRegular() || (backend.Handle{Type: t, Name: e.Name()}).Valid() != nil {
			continue
		}
		if err := fn(backend.FileInfo{Name: e.Name(), Size: e.Size()}); err != nil {
			return err
		}
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) (err error) {
	c, err := b.start(ctx, "remove", h)
	if err != nil {
		return err
	}
	defer func() { c.note(err) }()
	if err := c.sftp.Remove(b.filename(h)); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	return nil
}

// Close implements backend.Backend.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.conn != nil {
		b.conn.close()
		b.conn = nil
	}
	return nil
}
