// Package miniotest runs a private MinIO server for tests that kill and restart the
// server (reconnects, resumed uploads) without disturbing tests that share the main
// one. It is test support only: the binary comes from CAIRN_TEST_MINIO_BIN, set by
// scripts/services/minio.sh (run by scripts/test-all.sh).
package miniotest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Server is a MinIO of one test's own. It restarts on the same address and data
// directory.
type Server struct {
	Addr string // host:port on loopback
	Data string // data directory

	t              testing.TB
	bin, log       string
	access, secret string
	cmd            *exec.Cmd
}

// Start starts a private server with the given root credentials, or skips the test
// when CAIRN_TEST_MINIO_BIN is not set. The server is killed when the test ends.
func Start(t testing.TB, access, secret string) *Server {
	t.Helper()
	bin := os.Getenv("CAIRN_TEST_MINIO_BIN")
	if bin == "" {
		t.Skip("no MinIO binary: set CAIRN_TEST_MINIO_BIN (scripts/services/minio.sh, run by scripts/test-all.sh)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	dir := t.TempDir()
	m := &Server{Addr: addr, Data: filepath.Join(dir, "data"), t: t, bin: bin, log: filepath.Join(dir, "minio.log"),
		access: access, secret: secret}
	m.Restart()
	t.Cleanup(m.Kill)
	return m
}

// Restart starts the (killed) server again and waits until it is ready.
func (m *Server) Restart() {
	m.t.Helper()
	logf, err := os.OpenFile(m.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		m.t.Fatal(err)
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.Addr, "--console-address", "127.0.0.1:0", m.Data)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.access, "MINIO_ROOT_PASSWORD="+m.secret,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.cmd = cmd
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m.ready() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(m.log)
	m.t.Fatalf("private minio on %s did not become ready: %s", m.Addr, log)
}

// ready reports whether the server answers S3 requests. /minio/health/ready can say
// yes a moment before the object layer is up; until then an S3 request gets 503
// "Server not initialized yet" (seen as a failed `cairn init` right after a start).
// An anonymous ListBuckets is refused with 403 once the server is initialized.
func (m *Server) ready() bool {
	for _, path := range []string{"/minio/health/ready", "/"} {
		resp, err := http.Get("http://" + m.Addr + path)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		if resp.StatusCode >= 500 || (path != "/" && resp.StatusCode != http.StatusOK) {
			return false
		}
	}
	return true
}

// Kill stops the server at once, as a crash would.
func (m *Server) Kill() {
	if m.cmd != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
		m.cmd = nil
	}
}
