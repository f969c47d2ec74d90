package s3_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/backendtest"
	"github.com/cairn-backup/cairn/repo/backend/retry"
	"github.com/cairn-backup/cairn/repo/backend/s3"
)

// privateMinio runs its own MinIO server from CAIRN_TEST_MINIO_BIN so the test can
// kill and restart it without disturbing tests that share the main server.
type privateMinio struct {
	t                   *testing.T
	bin, data, addr     string
	access, secret, log string
	cmd                 *exec.Cmd
}

func (m *privateMinio) start() {
	m.t.Helper()
	logf, err := os.OpenFile(m.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		m.t.Fatal(err)
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.addr, "--console-address", "127.0.0.1:0", m.data)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.access, "MINIO_ROOT_PASSWORD="+m.secret,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + m.addr + "/minio/health/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(m.log)
	m.t.Fatalf("private minio on %s did not become ready: %s", m.addr, log)
}

func (m *privateMinio) kill() {
	if m.cmd != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
		m.cmd = nil
	}
}

func TestRetryAcrossServerRestart(t *testing.T) {
	s := testServer(t)
	bin := os.Getenv("CAIRN_TEST_MINIO_BIN")
	if bin == "" {
		t.Skip("no MinIO binary: set CAIRN_TEST_MINIO_BIN (scripts/test-all.sh starts a real server)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	dir := t.TempDir()
	m := &privateMinio{t: t, bin: bin, data: filepath.Join(dir, "data"), addr: addr,
		access: s.access, secret: s.secret, log: filepath.Join(dir, "minio.log")}
	m.start()
	t.Cleanup(m.kill)

	ctx := context.Background()
	raw, err := s3.Create(ctx, "s3:http://"+addr+"/restart/repo", s.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = raw.Close() }()
	var retries int
	be := retry.New(raw, retry.Options{Attempts: 30, Base: 50 * time.Millisecond, MaxDelay: 500 * time.Millisecond,
		OnRetry: func(int, error, time.Duration) { retries++ }})
	first := backend.Handle{Type: backend.PackFile, Name: backendtest.RandomID()}
	backendtest.Save(t, be, first, []byte("before the restart"))

	m.kill()
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(time.Second)
		m.start()
	}()
	data := backendtest.RandomData(1 << 20)
	second := backend.Handle{Type: backend.PackFile, Name: backendtest.RandomID()}
	err = be.Save(ctx, second, backend.NewByteReader(data))
	<-restarted
	if err != nil {
		t.Fatalf("save while the server restarts: %v", err)
	}
	if retries == 0 {
		t.Fatal("save succeeded without a retry although the server was down")
	}
	if got := backendtest.Load(t, be, second); !bytes.Equal(got, data) {
		t.Fatal("content saved across the restart differs")
	}
	if got := backendtest.Load(t, be, first); string(got) != "before the restart" {
		t.Fatalf("content saved before the restart: %q", got)
	}
	t.Logf("%d retries; stats %+v", retries, raw.Stats())
}
