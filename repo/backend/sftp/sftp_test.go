package sftp_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/backendtest"
	"github.com/cairn-backup/cairn/repo/backend/sftp"
)

type server struct {
	addr, user, key, knownHosts, dir string
}

// testServer returns the SSH server that scripts/services/sshd.sh started, or skips.
func testServer(t *testing.T) server {
	t.Helper()
	s := server{
		addr:       os.Getenv("CAIRN_TEST_SFTP_ADDR"),
		user:       os.Getenv("CAIRN_TEST_SFTP_USER"),
		key:        os.Getenv("CAIRN_TEST_SFTP_KEY"),
		knownHosts: os.Getenv("CAIRN_TEST_SFTP_KNOWN_HOSTS"),
		dir:        os.Getenv("CAIRN_TEST_SFTP_DIR"),
	}
	if s.addr == "" || s.user == "" || s.key == "" || s.knownHosts == "" || s.dir == "" {
		t.Skip("no SFTP server: set CAIRN_TEST_SFTP_ADDR, CAIRN_TEST_SFTP_USER, CAIRN_TEST_SFTP_KEY, " +
			"CAIRN_TEST_SFTP_KNOWN_HOSTS and CAIRN_TEST_SFTP_DIR (scripts/test-all.sh starts a real server)")
	}
	return s
}

func (s server) opts() sftp.Options {
	return sftp.Options{KeyFile: s.key, KnownHostsFile: s.knownHosts, NoAgent: true}
}

// loc returns a location for a new directory below CAIRN_TEST_SFTP_DIR.
func (s server) loc(t *testing.T) string {
	dir := filepath.Join(s.dir, "repo-"+backendtest.RandomID()[:12])
	t.Cleanup(func() { _ = os.RemoveAll(dir) }) // the server runs on this machine
	return fmt.Sprintf("sftp://%s@%s%s", s.user, s.addr, dir)
}

func TestConformance(t *testing.T) {
	s := testServer(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		be, err := sftp.Create(context.Background(), s.loc(t), s.opts())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = be.Close() })
		return be
	})
}

func TestLayoutAndReopen(t *testing.T) {
	s := testServer(t)
	ctx := context.Background()
	loc := s.loc(t)
	be, err := sftp.Create(ctx, loc, s.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	root := be.Root()
	for _, sub := range []string{"keys", "data", "index", "snapshots", "locks"} {
		if fi, err := os.Stat(filepath.Join(root, sub)); err != nil || !fi.IsDir() {
			t.Fatalf("create: directory %s missing: %v", sub, err)
		}
	}
	h := backend.Handle{Type: backend.PackFile, Name: "beef" + backendtest.RandomID()[4:]}
	backendtest.Save(t, be, h, []byte("pack"))
	if _, err := os.Stat(filepath.Join(root, "data", "be", h.Name)); err != nil {
		t.Fatalf("pack not stored under data/be/: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "data", "be", sftp.TempPrefix+"leftover"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if names := backendtest.ListNames(t, be, backend.PackFile); len(names) != 1 || names[0] != h.Name {
		t.Fatalf("list data: got %v, want only %s", names, h.Name)
	}
	backendtest.Save(t, be, backend.Handle{Type: backend.ConfigFile}, []byte("cfg"))
	if _, err := sftp.Create(ctx, loc, s.opts()); !errors.Is(err, backend.ErrExists) {
		t.Fatalf("create over an existing repository: want ErrExists, got %v", err)
	}
	re, err := sftp.Open(ctx, loc, s.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = re.Close() }()
	if got := backendtest.Load(t, re, h); string(got) != "pack" {
		t.Fatalf("load through a reopened backend: %q", got)
	}
	missing := fmt.Sprintf("sftp://%s@%s%s/missing", s.user, s.addr, s.dir)
	if _, err := sftp.Open(ctx, missing, s.opts()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open a missing directory: want fs.ErrNotExist, got %v", err)
	}
}

func TestUnknownHostKey(t *testing.T) {
	s := testServer(t)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := s.opts()
	opts.KnownHostsFile = empty
	_, err := sftp.Open(context.Background(), s.loc(t), opts)
	if !errors.Is(err, sftp.ErrUnknownHostKey) {
		t.Fatalf("open with an empty known_hosts: want ErrUnknownHostKey, got %v", err)
	}
	t.Logf("unknown host key: %v", err)
	msg := err.Error()
	if !strings.Contains(msg, s.addr) || !strings.Contains(msg, "SHA256:") || !strings.Contains(msg, "ssh-keyscan") {
		t.Fatalf("unknown host key error %q does not name the host, the fingerprint and the fix", msg)
	}
}

func TestHostKeyMismatch(t *testing.T) {
	s := testServer(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "other")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyFile).CombinedOutput(); err != nil {
		t.Skipf("ssh-keygen unavailable: %v: %s", err, out)
	}
	pub, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(s.addr, ":")
	fields := strings.Fields(string(pub))
	kh := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%s %s %s\n", host, port, fields[0], fields[1])
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := s.opts()
	opts.KnownHostsFile = kh
	_, err = sftp.Open(context.Background(), s.loc(t), opts)
	if !errors.Is(err, sftp.ErrHostKeyMismatch) {
		t.Fatalf("open with a wrong known_hosts entry: want ErrHostKeyMismatch, got %v", err)
	}
	t.Logf("mismatching host key: %v", err)
	msg := err.Error()
	if !strings.Contains(msg, s.addr) || strings.Count(msg, "SHA256:") != 2 || !strings.Contains(msg, kh+":1") {
		t.Fatalf("mismatch error %q does not name the host, both fingerprints and the known_hosts line", msg)
	}
}

func TestWrongKey(t *testing.T) {
	s := testServer(t)
	keyFile := filepath.Join(t.TempDir(), "stranger")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyFile).CombinedOutput(); err != nil {
		t.Skipf("ssh-keygen unavailable: %v: %s", err, out)
	}
	opts := s.opts()
	opts.KeyFile = keyFile
	_, err := sftp.Open(context.Background(), s.loc(t), opts)
	if err == nil || !strings.Contains(err.Error(), "log in to "+s.addr+" as "+s.user) || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("open with an unauthorized key: want a login error naming the key, got %v", err)
	}
	t.Logf("unauthorized key: %v", err)
}

func TestReconnect(t *testing.T) {
	s := testServer(t)
	be, err := sftp.Create(context.Background(), s.loc(t), s.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	h := backend.Handle{Type: backend.IndexFile, Name: backendtest.RandomID()}
	backendtest.Save(t, be, h, []byte("index"))
	sftp.BreakConnection(be)
	// The first call after the break may fail; a later one reconnects.
	var got []byte
	for range 3 {
		if got, err = backend.LoadAll(context.Background(), be, h); err == nil {
			break
		}
	}
	if err != nil || string(got) != "index" {
		t.Fatalf("load after the connection broke: %q, %v", got, err)
	}
}

// TestFullDisk saves into a tiny tmpfs mounted in the server's directory (the test
// server runs on this machine); it needs root and skips otherwise.
func TestFullDisk(t *testing.T) {
	s := testServer(t)
	if os.Geteuid() != 0 {
		t.Skip("full-disk test needs root to mount a small tmpfs")
	}
	loc := s.loc(t)
	be, err := sftp.Create(context.Background(), loc, s.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	data := filepath.Join(be.Root(), "data")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", data).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", data).Run() })
	h := backend.Handle{Type: backend.PackFile, Name: "ab" + backendtest.RandomID()[2:]}
	err = be.Save(context.Background(), h, backend.NewByteReader(make([]byte, 1<<20)))
	t.Logf("full disk: %v", err)
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("save on a full disk: want ErrNoSpace, got %v", err)
	}
	if _, err := be.Stat(context.Background(), h); !backend.IsNotExist(err) {
		t.Fatalf("stat after a failed save: want not found, got %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(data, "ab")); len(entries) != 0 {
		t.Fatalf("temporary file left after a full-disk save: %v", entries)
	}
}
