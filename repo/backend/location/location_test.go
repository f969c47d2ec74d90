package location_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/backendtest"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/backend/location"
	"github.com/cairn-backup/cairn/repo/backend/retry"
	"github.com/cairn-backup/cairn/repo/backend/s3"
	"github.com/cairn-backup/cairn/repo/backend/sftp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		loc  string
		want location.Location
	}{
		{"/srv/backup", location.Location{Kind: location.Local, Path: "/srv/backup"}},
		{"backup/repo", location.Location{Kind: location.Local, Path: "backup/repo"}},
		{"./repo", location.Location{Kind: location.Local, Path: "./repo"}},
		{"local:/srv/a:b", location.Location{Kind: location.Local, Path: "/srv/a:b"}},
		{`C:\backup`, location.Location{Kind: location.Local, Path: `C:\backup`}},
		{"/srv/with:colon", location.Location{Kind: location.Local, Path: "/srv/with:colon"}},
		{"dir with space/x:y", location.Location{Kind: location.Local, Path: "dir with space/x:y"}},
		{"s3:http://127.0.0.1:9000/bucket/prefix", location.Location{Kind: location.S3,
			S3: s3.Config{Endpoint: "127.0.0.1:9000", Bucket: "bucket", Prefix: "prefix"}}},
		{"s3:https://s3.amazonaws.com/bucket", location.Location{Kind: location.S3,
			S3: s3.Config{Endpoint: "s3.amazonaws.com", Secure: true, Bucket: "bucket"}}},
		{"sftp:alice@host:/srv/repo", location.Location{Kind: location.SFTP,
			SFTP: sftp.Config{User: "alice", Host: "host", Port: "22", Path: "/srv/repo"}}},
		{"sftp://alice@host:2222/srv/repo", location.Location{Kind: location.SFTP,
			SFTP: sftp.Config{User: "alice", Host: "host", Port: "2222", Path: "/srv/repo"}}},
	}
	for _, tc := range tests {
		got, err := location.Parse(tc.loc)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.loc, err)
		}
		if got != tc.want {
			t.Fatalf("parse %q: got %+v, want %+v", tc.loc, got, tc.want)
		}
	}
	bad := map[string]string{
		"":                "empty location",
		"b2:bucket/path":  `unsupported backend "b2"`,
		"rest:http://x/":  `unsupported backend "rest"`,
		"local:":          "missing path",
		"s3:http://host":  "missing bucket",
		"sftp:host":       "want sftp:[user@]host:path",
		"sftp://host:22/": "missing repository path",
	}
	for loc, want := range bad {
		_, err := location.Parse(loc)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("parse %q: want an error containing %q, got %v", loc, want, err)
		}
	}
}

func TestLocal(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := location.Open(ctx, dir, location.Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open a missing local repository: want fs.ErrNotExist, got %v", err)
	}
	be, err := location.Create(ctx, dir, location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := be.(*local.Backend); !ok {
		t.Fatalf("create %s: got %T, want *local.Backend (local storage is not retried)", dir, be)
	}
	backendtest.Save(t, be, backend.Handle{Type: backend.ConfigFile}, []byte("c"))
	re, err := location.Open(ctx, "local:"+dir, location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := backendtest.Load(t, re, backend.Handle{Type: backend.ConfigFile}); string(got) != "c" {
		t.Fatalf("load through local: prefix: %q", got)
	}
	if re.Location() != "local:"+dir {
		t.Fatalf("location %q, want as written", re.Location())
	}
}

func TestRemoteIsRetried(t *testing.T) {
	endpoint := os.Getenv("CAIRN_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Skip("no S3 server: set CAIRN_TEST_S3_ENDPOINT, CAIRN_TEST_S3_ACCESS_KEY and CAIRN_TEST_S3_SECRET_KEY (scripts/test-all.sh starts a real server)")
	}
	ctx := context.Background()
	opts := location.Options{S3: s3.Options{
		AccessKeyID:     os.Getenv("CAIRN_TEST_S3_ACCESS_KEY"),
		SecretAccessKey: os.Getenv("CAIRN_TEST_S3_SECRET_KEY"),
		Region:          "us-east-1",
	}}
	bucket := "cairn-test-loc-" + backendtest.RandomID()[:12]
	loc := "s3:" + endpoint + "/" + bucket
	be, err := location.Create(ctx, loc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		inner := be.(backend.Unwrapper).Unwrap().(*s3.Backend)
		_ = inner.Client().RemoveBucket(context.Background(), bucket)
	}()
	if _, ok := be.(*retry.Backend); !ok {
		t.Fatalf("create %s: got %T, want *retry.Backend", loc, be)
	}
	if _, err := location.Open(ctx, loc, opts); err != nil {
		t.Fatal(err)
	}
}
