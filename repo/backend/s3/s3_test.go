package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/backendtest"
	"github.com/cairn-backup/cairn/repo/backend/s3"
)

type server struct {
	endpoint, access, secret string
}

// testServer returns the MinIO server that scripts/services/minio.sh started, or
// skips the test.
func testServer(t *testing.T) server {
	t.Helper()
	s := server{
		endpoint: os.Getenv("CAIRN_TEST_S3_ENDPOINT"),
		access:   os.Getenv("CAIRN_TEST_S3_ACCESS_KEY"),
		secret:   os.Getenv("CAIRN_TEST_S3_SECRET_KEY"),
	}
	if s.endpoint == "" || s.access == "" || s.secret == "" {
		t.Skip("no S3 server: set CAIRN_TEST_S3_ENDPOINT, CAIRN_TEST_S3_ACCESS_KEY and CAIRN_TEST_S3_SECRET_KEY (scripts/test-all.sh starts a real server)")
	}
	return s
}

func (s server) opts() s3.Options {
	return s3.Options{AccessKeyID: s.access, SecretAccessKey: s.secret, Region: "us-east-1"}
}

func (s server) loc(bucket, prefix string) string {
	loc := "s3:" + s.endpoint + "/" + bucket
	if prefix != "" {
		loc += "/" + prefix
	}
	return loc
}

// newBucket returns a fresh bucket name that is emptied and removed after the test.
func newBucket(t *testing.T, s server) string {
	t.Helper()
	name := "cairn-test-" + backendtest.RandomID()[:16]
	t.Cleanup(func() { removeBucket(t, s, name) })
	return name
}

func removeBucket(t *testing.T, s server, bucket string) {
	be, err := s3.Open(context.Background(), s.loc(bucket, ""), s.opts())
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		t.Errorf("clean up bucket %s: %v", bucket, err)
		return
	}
	defer func() { _ = be.Close() }()
	c := be.Client()
	ctx := context.Background()
	objs := c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true, WithVersions: true})
	for e := range c.RemoveObjects(ctx, bucket, objs, minio.RemoveObjectsOptions{GovernanceBypass: true}) {
		t.Errorf("clean up bucket %s: remove %s: %v", bucket, e.ObjectName, e.Err)
	}
	if err := c.RemoveBucket(ctx, bucket); err != nil {
		t.Errorf("clean up bucket %s: %v", bucket, err)
	}
}

func TestConformance(t *testing.T) {
	s := testServer(t)
	bucket := newBucket(t, s)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		be, err := s3.Create(context.Background(), s.loc(bucket, "repo-"+backendtest.RandomID()[:8]), s.opts())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = be.Close() })
		return be
	})
}

func TestConformanceBucketRoot(t *testing.T) {
	s := testServer(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		be, err := s3.Create(context.Background(), s.loc(newBucket(t, s), ""), s.opts())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = be.Close() })
		return be
	})
}

func TestRangedLoadTransfersLittle(t *testing.T) {
	s := testServer(t)
	be, err := s3.Create(context.Background(), s.loc(newBucket(t, s), "r"), s.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	h := backend.Handle{Type: backend.PackFile, Name: backendtest.RandomID()}
	data := backendtest.RandomData(4 << 20)
	before := be.Stats()
	backendtest.Save(t, be, h, data)
	saved := be.Stats()
	if w := saved.BytesWritten - before.BytesWritten; w < int64(len(data)) || w > int64(len(data))+64<<10 {
		t.Fatalf("save wrote %d bytes, want about %d", w, len(data))
	}
	var got []byte
	err = be.Load(context.Background(), h, 100, 2<<20, func(rd io.Reader) error {
		var err error
		got, err = io.ReadAll(rd)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[2<<20:2<<20+100]) {
		t.Fatal("ranged load returned the wrong bytes")
	}
	after := be.Stats()
	if r := after.BytesRead - saved.BytesRead; r > 16<<10 {
		t.Fatalf("ranged load of 100 bytes read %d bytes", r)
	}
	if n := after.Requests - saved.Requests; n != 1 {
		t.Fatalf("ranged load took %d requests, want 1", n)
	}
}

func TestWrongCredentials(t *testing.T) {
	s := testServer(t)
	bucket := newBucket(t, s)
	be, err := s3.Create(context.Background(), s.loc(bucket, ""), s.opts())
	if err != nil {
		t.Fatal(err)
	}
	_ = be.Close()
	opts := s.opts()
	opts.SecretAccessKey = "wrong-secret-do-not-print"
	_, err = s3.Open(context.Background(), s.loc(bucket, ""), opts)
	if err == nil {
		t.Fatal("open with a wrong secret key succeeded")
	}
	msg := err.Error()
	t.Logf("wrong secret key: %v", err)
	if !strings.Contains(msg, "check the credentials") || !strings.Contains(msg, "open "+s.loc(bucket, "")) {
		t.Fatalf("open with a wrong secret key: unhelpful error %q", msg)
	}
	if strings.Contains(msg, "wrong-secret-do-not-print") || strings.Contains(msg, s.secret) {
		t.Fatalf("error %q reveals a secret", msg)
	}
	opts = s.opts()
	opts.AccessKeyID = "nosuchuser"
	_, err = s3.Open(context.Background(), s.loc(bucket, ""), opts)
	t.Logf("unknown access key: %v", err)
	if err == nil || !strings.Contains(err.Error(), "check the credentials") {
		t.Fatalf("open with an unknown access key: want a credentials error, got %v", err)
	}
}

func TestMissingBucket(t *testing.T) {
	s := testServer(t)
	loc := s.loc("cairn-no-such-bucket-"+backendtest.RandomID()[:8], "repo")
	_, err := s3.Open(context.Background(), loc, s.opts())
	t.Logf("missing bucket: %v", err)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("open with a missing bucket: want a not-found error naming the bucket, got %v", err)
	}
}

func TestCreate(t *testing.T) {
	s := testServer(t)
	bucket := newBucket(t, s)
	ctx := context.Background()
	be, err := s3.Create(ctx, s.loc(bucket, "x/y"), s.opts())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := be.Client().BucketExists(ctx, bucket); err != nil || !ok {
		t.Fatalf("create did not make bucket %s: %v", bucket, err)
	}
	backendtest.Save(t, be, backend.Handle{Type: backend.ConfigFile}, []byte("config"))
	if info, err := be.Client().StatObject(ctx, bucket, "x/y/config", minio.StatObjectOptions{}); err != nil || info.Size != 6 {
		t.Fatalf("config not stored at x/y/config: %v", err)
	}
	if _, err := s3.Create(ctx, s.loc(bucket, "x/y"), s.opts()); !errors.Is(err, backend.ErrExists) {
		t.Fatalf("create over an existing repository: want ErrExists, got %v", err)
	}
	re, err := s3.Open(ctx, s.loc(bucket, "x/y"), s.opts())
	if err != nil {
		t.Fatal(err)
	}
	if got := backendtest.Load(t, re, backend.Handle{Type: backend.ConfigFile}); string(got) != "config" {
		t.Fatalf("load config through a reopened backend: %q", got)
	}
	// Objects outside the layout are not listed.
	for _, key := range []string{"x/y/data/abfile", "x/y/data/ab/cd/ef", "x/y/keys/sub/k1", "x/y/keys/.tmp"} {
		if _, err := be.Client().PutObject(ctx, bucket, key, strings.NewReader("z"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if names := backendtest.ListNames(t, be, backend.PackFile); len(names) != 0 {
		t.Fatalf("list data: foreign objects listed: %v", names)
	}
	if names := backendtest.ListNames(t, be, backend.KeyFile); len(names) != 0 {
		t.Fatalf("list keys: foreign objects listed: %v", names)
	}
}

func TestCredentialsChain(t *testing.T) {
	s := testServer(t)
	bucket := newBucket(t, s)
	ctx := context.Background()
	if _, err := s3.Create(ctx, s.loc(bucket, ""), s.opts()); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_DEFAULT_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", s.access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.secret)
	if _, err := s3.Open(ctx, s.loc(bucket, ""), s3.Options{}); err != nil {
		t.Fatalf("open with credentials from the environment: %v", err)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	file := filepath.Join(t.TempDir(), "credentials")
	content := "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n" +
		"[cairn]\naws_access_key_id = " + s.access + "\naws_secret_access_key = " + s.secret + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_PROFILE", "cairn")
	if _, err := s3.Open(ctx, s.loc(bucket, ""), s3.Options{}); err != nil {
		t.Fatalf("open with credentials from profile cairn: %v", err)
	}
	t.Setenv("AWS_PROFILE", "")
	if _, err := s3.Open(ctx, s.loc(bucket, ""), s3.Options{}); err == nil {
		t.Fatal("open with the wrong default profile succeeded")
	}
	if _, err := s3.Open(ctx, s.loc(bucket, ""), s3.Options{Profile: "cairn", CredentialsFile: file}); err != nil {
		t.Fatalf("open with an explicit profile: %v", err)
	}
}

func TestObjectLock(t *testing.T) {
	s := testServer(t)
	ctx := context.Background()

	// Retention needs a bucket with object locking.
	plain := newBucket(t, s)
	if _, err := s3.Create(ctx, s.loc(plain, ""), s.opts()); err != nil {
		t.Fatal(err)
	}
	opts := s.opts()
	opts.LockRetention = time.Hour
	if _, err := s3.Open(ctx, s.loc(plain, ""), opts); err == nil || !strings.Contains(err.Error(), "has no object locking") {
		t.Fatalf("open a bucket without object locking with retention: got %v", err)
	}

	locked := newBucket(t, s)
	be, err := s3.Create(ctx, s.loc(locked, "repo"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	start := time.Now()
	pack := backend.Handle{Type: backend.PackFile, Name: backendtest.RandomID()}
	lock := backend.Handle{Type: backend.LockFile, Name: backendtest.RandomID()}
	key := backend.Handle{Type: backend.KeyFile, Name: backendtest.RandomID()}
	for _, h := range []backend.Handle{pack, lock, key} {
		backendtest.Save(t, be, h, []byte("content of "+h.String()))
	}
	mode, until, err := be.Client().GetObjectRetention(ctx, locked, be.Key(pack), "")
	if err != nil || mode == nil || *mode != minio.Governance || until.Before(start.Add(time.Hour-time.Minute)) {
		t.Fatalf("retention of %s: mode %v until %v, err %v; want GOVERNANCE for an hour", pack, mode, until, err)
	}
	err = be.Remove(ctx, pack)
	t.Logf("remove retained pack: %v", err)
	if !errors.Is(err, s3.ErrObjectLocked) {
		t.Fatalf("remove a retained pack: want ErrObjectLocked, got %v", err)
	}
	if date := until.UTC().Format(time.RFC3339); !strings.Contains(err.Error(), date) {
		t.Fatalf("remove a retained pack: error %q does not name the date %s", err, date)
	}
	if got := backendtest.Load(t, be, pack); string(got) != "content of "+pack.String() {
		t.Fatal("retained pack changed after a refused remove")
	}
	// Locks and keys get no retention: replacing and removing them works.
	backendtest.Save(t, be, lock, []byte("refreshed"))
	for _, h := range []backend.Handle{lock, key} {
		if err := be.Remove(ctx, h); err != nil {
			t.Fatalf("remove %s: %v", h, err)
		}
		if _, err := be.Stat(ctx, h); !backend.IsNotExist(err) {
			t.Fatalf("stat %s after remove: %v", h, err)
		}
	}
	if names := backendtest.ListNames(t, be, backend.LockFile); len(names) != 0 {
		t.Fatalf("list locks after remove: %v", names)
	}
}
