package s3_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/miniotest"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/backendtest"
	"github.com/cairn-backup/cairn/repo/backend/retry"
	"github.com/cairn-backup/cairn/repo/backend/s3"
)

func TestRetryAcrossServerRestart(t *testing.T) {
	s := testServer(t)
	m := miniotest.Start(t, s.access, s.secret)
	addr := m.Addr

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

	m.Kill()
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(time.Second)
		m.Restart()
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
