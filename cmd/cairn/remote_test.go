package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/internal/miniotest"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend/retry"
	"github.com/cairn-backup/cairn/repo/backend/s3"
	"github.com/cairn-backup/cairn/repo/cache"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/backup"
	"github.com/cairn-backup/cairn/snapshot/restore"
	"github.com/minio/minio-go/v7"
	"golang.org/x/crypto/ssh"
)

// The tests in this file run every command against MinIO (s3:) and sshd (sftp:),
// started by scripts/test-all.sh or scripts/services/{minio,sshd}.sh. Without their
// variables they skip and say which is missing.

type s3Server struct {
	endpoint, access, secret, region string
}

func needS3(t *testing.T) s3Server {
	t.Helper()
	s := s3Server{os.Getenv("CAIRN_TEST_S3_ENDPOINT"), os.Getenv("CAIRN_TEST_S3_ACCESS_KEY"),
		os.Getenv("CAIRN_TEST_S3_SECRET_KEY"), os.Getenv("CAIRN_TEST_S3_REGION")}
	if s.endpoint == "" || s.access == "" || s.secret == "" {
		t.Skip("no S3 server: set CAIRN_TEST_S3_ENDPOINT, CAIRN_TEST_S3_ACCESS_KEY and CAIRN_TEST_S3_SECRET_KEY (scripts/services/minio.sh, run by scripts/test-all.sh)")
	}
	if s.region == "" {
		s.region = "us-east-1"
	}
	return s
}

// location returns a fresh s3: location in a bucket of its own.
func (s s3Server) location(t *testing.T) string {
	return "s3:" + s.endpoint + "/" + uniqueName("cairn-remote") + "/repo"
}

func (s s3Server) opts() s3.Options {
	return s3.Options{AccessKeyID: s.access, SecretAccessKey: s.secret, Region: s.region}
}

type sftpServer struct {
	addr, user, key, knownHosts, dir string
}

func needSFTP(t *testing.T) sftpServer {
	t.Helper()
	s := sftpServer{os.Getenv("CAIRN_TEST_SFTP_ADDR"), os.Getenv("CAIRN_TEST_SFTP_USER"), os.Getenv("CAIRN_TEST_SFTP_KEY"),
		os.Getenv("CAIRN_TEST_SFTP_KNOWN_HOSTS"), os.Getenv("CAIRN_TEST_SFTP_DIR")}
	if s.addr == "" || s.user == "" || s.key == "" || s.knownHosts == "" || s.dir == "" {
		t.Skip("no SFTP server: set CAIRN_TEST_SFTP_ADDR, _USER, _KEY, _KNOWN_HOSTS and _DIR (scripts/services/sshd.sh, run by scripts/test-all.sh)")
	}
	return s
}

func (s sftpServer) location() string {
	return "sftp://" + s.user + "@" + s.addr + filepath.ToSlash(filepath.Join(s.dir, uniqueName("repo")))
}

func uniqueName(prefix string) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// remoteCLI runs cairn in-process with a cairn.toml holding the storage credentials
// and a private cache directory ($XDG_CACHE_HOME).
type remoteCLI struct {
	t     *testing.T
	cfg   string
	pw    string
	cache string // the cache base directory
}

// newRemoteCLI writes a cairn.toml for repository loc (credentials of the S3 and SFTP
// servers as given; extra is appended) and clears the environment of other
// repositories and credentials.
func newRemoteCLI(t *testing.T, loc string, s3s *s3Server, sftps *sftpServer, extra string) *remoteCLI {
	t.Helper()
	dir := t.TempDir()
	c := &remoteCLI{t: t, cfg: filepath.Join(dir, "cairn.toml"), pw: filepath.Join(dir, "pw"),
		cache: filepath.Join(dir, "xdg-cache", "cairn")}
	for _, v := range []string{"CAIRN_REPOSITORY", "CAIRN_PASSWORD_FILE", "CAIRN_PASSWORD_COMMAND", "CAIRN_IDENTITY_FILE",
		"CAIRN_CONFIG", "CAIRN_FROM_PASSWORD_FILE", "CAIRN_FROM_PASSWORD_COMMAND", "CAIRN_FROM_IDENTITY_FILE", "CAIRN_FROM_REPOSITORY"} {
		t.Setenv(v, "")
	}
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "xdg-cache"))
	if err := os.WriteFile(c.pw, []byte("remote passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "repository = %q\n%s\n[app]\nname = \"remote-test\"\npaths = [%q]\nversion = { literal = \"1.0\" }\n", loc, extra, dir)
	if s3s != nil {
		fmt.Fprintf(&b, "[s3]\naccess_key_id = %q\nsecret_access_key = %q\nregion = %q\n", s3s.access, s3s.secret, s3s.region)
	}
	if sftps != nil {
		fmt.Fprintf(&b, "[sftp]\nkey_file = %q\nknown_hosts = %q\n", sftps.key, sftps.knownHosts)
	}
	if err := os.WriteFile(c.cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *remoteCLI) run(args ...string) (string, string, int) {
	c.t.Helper()
	args = append([]string{"--config", c.cfg, "--password-file", c.pw, "--kdf-work-factor", "10"}, args...)
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func (c *remoteCLI) ok(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("cairn %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (c *remoteCLI) fail(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != exitFailure {
		c.t.Fatalf("cairn %s: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return errs
}

// sourceData writes a small app tree: random and compressible files, nested
// directories, an empty file and a symlink.
func sourceData(t *testing.T, seed uint64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "srv", "app")
	rng := mrand.New(mrand.NewChaCha8([32]byte{byte(seed)}))
	files := map[string][]byte{
		"media/originals/scan.pdf":   randomBytes(rng, 2<<20+12345),
		"media/originals/notes.txt":  bytes.Repeat([]byte("notes of the day\n"), 20000),
		"media/thumbnails/a.webp":    randomBytes(rng, 70000),
		"media/thumbnails/deep/b/c":  randomBytes(rng, 10),
		"media/empty":                nil,
		"data/db.sqlite3":            randomBytes(rng, 600000),
		"media/originals/name with ": []byte("spaces\n"),
	}
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("originals/scan.pdf", filepath.Join(dir, "media", "latest.pdf")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomBytes(rng *mrand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// TestRemoteEndToEnd runs init, backup, snapshots, ls, restore and check against S3
// (MinIO) and SFTP (sshd), restoring byte-identical trees, and shows that the second
// listing is served from the cache.
func TestRemoteEndToEnd(t *testing.T) {
	for _, kind := range []string{"s3", "sftp"} {
		t.Run(kind, func(t *testing.T) {
			var c *remoteCLI
			var loc string
			switch kind {
			case "s3":
				s := needS3(t)
				loc = s.location(t)
				c = newRemoteCLI(t, loc, &s, nil, "")
			case "sftp":
				s := needSFTP(t)
				loc = s.location()
				c = newRemoteCLI(t, loc, nil, &s, "")
			}
			src := sourceData(t, 1)
			c.ok("init", "--repo", loc)
			c.ok("backup", "--repo", loc, "--tag", "first", src)
			// A second backup after a change, planned against the first.
			writeFile(t, filepath.Join(src, "media", "originals", "new.txt"), "added later\n")
			out := c.ok("backup", "--repo", loc, "--json", src)
			if !strings.Contains(out, `"files_unchanged": 7`) {
				t.Errorf("second backup did not reuse the parent:\n%s", out)
			}
			out = c.ok("snapshots", "--repo", loc)
			if !strings.Contains(out, "2 snapshots") || !strings.Contains(out, "first") {
				t.Fatalf("snapshots:\n%s", out)
			}
			// Every index and snapshot file is cached now: a second listing, with the
			// backend's files gone from the cache's point of view, reads them locally.
			cached := cachedFiles(t, c.cache)
			if cached["snapshots"] != 2 || cached["index"] == 0 || cached["data"] == 0 {
				t.Fatalf("cache holds %v, want 2 snapshots, index files and tree packs", cached)
			}
			if out2 := c.ok("snapshots", "--repo", loc, "--no-cache"); out2 != out {
				t.Errorf("--no-cache lists differently:\n%s\nvs\n%s", out2, out)
			}
			out = c.ok("ls", "--repo", loc, "latest", src+"/media/originals")
			for _, want := range []string{"/scan.pdf", "/new.txt", "/name with "} {
				if !strings.Contains(out, want) {
					t.Errorf("ls lacks %s:\n%s", want, out)
				}
			}
			target := t.TempDir()
			c.ok("restore", "--repo", loc, "latest", "--target", target)
			sameState(t, "restored tree", treeState(t, filepath.Join(target, src)), treeState(t, src))
			// One file, read with ranged requests.
			one := t.TempDir()
			c.ok("restore", "--repo", loc, "latest", "--target", one, "--include", src+"/data/db.sqlite3")
			if !bytes.Equal(readFile(t, filepath.Join(one, src, "data", "db.sqlite3")), readFile(t, filepath.Join(src, "data", "db.sqlite3"))) {
				t.Error("single restored file differs")
			}
			c.ok("check", "--repo", loc, "--read-data")
		})
	}
}

// cachedFiles counts the files in the cache per type directory.
func cachedFiles(t *testing.T, base string) map[string]int {
	t.Helper()
	n := map[string]int{}
	_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") || d.Name() == "CACHEDIR.TAG" {
			return nil
		}
		rel, _ := filepath.Rel(base, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) >= 3 {
			n[parts[1]]++
		}
		return nil
	})
	return n
}

// TestRemoteCopy copies a local repository's snapshots to MinIO and from there to a
// second local repository, each with its own passphrase, and restores them
// byte-identical; repeated copies add nothing.
func TestRemoteCopy(t *testing.T) {
	s := needS3(t)
	remote := s.location(t)
	c := newRemoteCLI(t, remote, &s, nil, "")
	dir := t.TempDir()
	localA, localC := filepath.Join(dir, "a"), filepath.Join(dir, "c")
	pwA := filepath.Join(dir, "pw-a")
	if err := os.WriteFile(pwA, []byte("local A\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := sourceData(t, 2)
	c.ok("init", "--repo", localA, "--password-file", pwA)
	c.ok("backup", "--repo", localA, "--password-file", pwA, "--tag", "one", src)
	writeFile(t, filepath.Join(src, "media", "day2.txt"), "day two\n")
	c.ok("backup", "--repo", localA, "--password-file", pwA, "--tag", "two", src)

	c.ok("init", "--repo", remote)
	out := c.ok("copy", "--from", localA, "--from-password-file", pwA, "--to", remote)
	if !strings.Contains(out, "2 snapshots copied, 0 already present") {
		t.Fatalf("copy to MinIO:\n%s", out)
	}
	out = c.ok("copy", "--from", localA, "--from-password-file", pwA, "--to", remote)
	if !strings.Contains(out, "0 snapshots copied, 2 already present") || !strings.Contains(out, "read 0 blobs") {
		t.Fatalf("second copy to MinIO:\n%s", out)
	}

	c.ok("init", "--repo", localC)
	out = c.ok("copy", "--json", "--from", remote, "--from-password-file", c.pw, "--to", localC, "latest")
	if strings.Count(out, `"status": "copied"`) != 1 {
		t.Fatalf("copy of latest from MinIO:\n%s", out)
	}
	target := t.TempDir()
	c.ok("restore", "--repo", localC, "latest", "--target", target)
	sameState(t, "tree copied local → MinIO → local", treeState(t, filepath.Join(target, src)), treeState(t, src))
	out = c.ok("snapshots", "--repo", localC)
	if !strings.Contains(out, "two") || !strings.Contains(out, "1 snapshots") {
		t.Fatalf("destination snapshots:\n%s", out)
	}
	c.ok("check", "--repo", localC, "--read-data")
	c.ok("check", "--repo", remote)

	// Wrong source credentials fail clearly, before anything is written.
	errs := c.fail("copy", "--from", localA, "--from-password-file", c.pw, "--to", remote)
	if !strings.Contains(errs, "source") || !strings.Contains(errs, "wrong passphrase") {
		t.Fatalf("copy with a wrong source passphrase:\n%s", errs)
	}
	errs = c.fail("copy", "--from", localA, "--to", remote)
	if !strings.Contains(errs, "--from-password-file") {
		t.Fatalf("copy without a source credential:\n%s", errs)
	}
}

// TestRemoteErrors: wrong S3 credentials, a missing bucket and a mismatching SSH host
// key fail with exit status 1 and a message that says so.
func TestRemoteErrors(t *testing.T) {
	t.Run("s3", func(t *testing.T) {
		s := needS3(t)
		loc := s.location(t)
		good := newRemoteCLI(t, loc, &s, nil, "")
		good.ok("init", "--repo", loc)

		bad := s
		bad.secret = "not-the-secret"
		c := newRemoteCLI(t, loc, &bad, nil, "")
		start := time.Now()
		errs := c.fail("snapshots", "--repo", loc)
		if !strings.Contains(errs, "check the credentials") || strings.Contains(errs, bad.secret) {
			t.Errorf("wrong secret key:\n%s", errs)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("refused credentials took %v: they must not be retried", d)
		}
		bad = s
		bad.access = "nobody"
		c = newRemoteCLI(t, loc, &bad, nil, "")
		if errs := c.fail("snapshots", "--repo", loc); !strings.Contains(errs, "check the credentials") {
			t.Errorf("unknown access key:\n%s", errs)
		}
		missing := "s3:" + s.endpoint + "/" + uniqueName("no-such-bucket") + "/repo"
		if errs := good.fail("snapshots", "--repo", missing); !strings.Contains(errs, "does not exist") {
			t.Errorf("missing bucket:\n%s", errs)
		}
	})
	t.Run("sftp", func(t *testing.T) {
		s := needSFTP(t)
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sshPub, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(s.addr)
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := fmt.Sprintf("[%s]:%s %s", host, port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))))
		if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.knownHosts = kh
		loc := s.location()
		c := newRemoteCLI(t, loc, nil, &s, "")
		errs := c.fail("init", "--repo", loc)
		if !strings.Contains(errs, "host key") || !strings.Contains(errs, "known_hosts") {
			t.Errorf("mismatching host key:\n%s", errs)
		}
	})
}

// recordingTransport remembers the method and kind of every S3 request.
type recordingTransport struct {
	rt   http.RoundTripper
	mu   sync.Mutex
	reqs []string
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	kind := req.Method
	if req.Method == http.MethodGet && req.URL.Query().Has("list-type") {
		kind = "LIST"
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, kind+" "+req.URL.Path)
	r.mu.Unlock()
	return r.rt.RoundTrip(req)
}

func (r *recordingTransport) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

// openS3Repo opens the repository at loc through the s3 backend (with retries), with
// a cache in cacheBase ("" for none), counting requests.
func openS3Repo(t *testing.T, s s3Server, loc, cacheBase string, rec *recordingTransport) (*repo.Repository, *s3.Backend) {
	t.Helper()
	opts := s.opts()
	if rec != nil {
		tr, err := minio.DefaultTransport(false)
		if err != nil {
			t.Fatal(err)
		}
		rec.rt = tr
		opts.Transport = rec
	}
	raw, err := s3.Open(context.Background(), loc, opts)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := crypto.NewPassphrase("remote passphrase", 10)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if cacheBase != "" {
		ctx = repo.WithOpenHook(ctx, func(ctx context.Context, r *repo.Repository) error {
			c, err := cache.Open(cacheBase, r.Config().ID)
			r.SetCache(c)
			return err
		})
	}
	r, err := repo.Open(ctx, retry.New(raw, retry.Options{}), cred)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, raw
}

// TestS3CacheListsOnly: after a first run filled the cache, listing snapshots and
// planning a backup (index, snapshots, the parent's trees) against S3 send only LIST
// requests; opening the repository reads just the config and a key file.
func TestS3CacheListsOnly(t *testing.T) {
	s := needS3(t)
	loc := s.location(t)
	c := newRemoteCLI(t, loc, &s, nil, "")
	src := sourceData(t, 3)
	c.ok("init", "--repo", loc)
	c.ok("backup", "--repo", loc, src)
	c.ok("backup", "--repo", loc, "--force", src)
	base := t.TempDir()

	plan := func(r *repo.Repository) {
		t.Helper()
		ctx := context.Background()
		if err := r.LoadIndex(ctx); err != nil {
			t.Fatal(err)
		}
		snaps, err := snapshot.List(ctx, r)
		if err != nil || len(snaps) != 2 {
			t.Fatalf("list: %d snapshots, %v", len(snaps), err)
		}
		if err := snapshot.Walk(ctx, r, snaps[1].Tree, func(string, *snapshot.Node) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for round := 1; round <= 2; round++ {
		rec := &recordingTransport{}
		r, raw := openS3Repo(t, s, loc, base, rec)
		opened := rec.take()
		before := raw.Stats()
		plan(r)
		reqs := rec.take()
		after := raw.Stats()
		var other []string
		for _, q := range reqs {
			if !strings.HasPrefix(q, "LIST ") {
				other = append(other, q)
			}
		}
		t.Logf("round %d: open %d requests %v; plan %d requests, %d bytes read", round, len(opened), opened,
			after.Requests-before.Requests, after.BytesRead-before.BytesRead)
		if round == 1 && len(other) == 0 {
			t.Fatal("first round downloaded nothing: the cache was not empty")
		}
		if round == 2 && len(other) > 0 {
			t.Fatalf("second round made non-LIST requests: %v", other)
		}
	}
}

// TestS3RestoreOneFileTransfersLittle restores one 1 MB file from a large repository
// on MinIO and checks that less than 20 MB is transferred, with a cold cache
// (index, snapshots and trees included). The repository is 256 MB by default
// (CAIRN_TEST_LARGE_REPO_MB sets another size, e.g. 2048): what a single-file restore
// transfers does not depend on the repository's size but on its pack size (16 MiB),
// and 256 MB spread over 16 packs already makes a whole-pack restore fail the bound.
func TestS3RestoreOneFileTransfersLittle(t *testing.T) {
	s := needS3(t)
	if testing.Short() {
		t.Skip("large repository: skipped with -short")
	}
	size := 256
	if v := os.Getenv("CAIRN_TEST_LARGE_REPO_MB"); v != "" {
		if _, err := fmt.Sscan(v, &size); err != nil {
			t.Fatalf("CAIRN_TEST_LARGE_REPO_MB=%q: %v", v, err)
		}
	}
	loc := s.location(t)
	c := newRemoteCLI(t, loc, &s, nil, "")
	c.ok("init", "--repo", loc)
	src := filepath.Join(t.TempDir(), "big")
	rng := mrand.New(mrand.NewChaCha8([32]byte{42}))
	const fileSize = 8 << 20
	for i := 0; i < size<<20/fileSize; i++ {
		p := filepath.Join(src, fmt.Sprintf("d%02d", i%8), fmt.Sprintf("f%03d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, randomBytes(rng, fileSize), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := randomBytes(rng, 1<<20)
	one := filepath.Join(src, "d03", "wanted.bin")
	if err := os.WriteFile(one, want, 0o644); err != nil {
		t.Fatal(err)
	}
	// Back up through the library: the CLI would do the same, this is quicker to set up.
	r, _ := openS3Repo(t, s, loc, "", nil)
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := backup.Run(context.Background(), r, backup.Options{Paths: []string{src}, Host: "big"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backed up %d MB to MinIO in %v", res.Snapshot.Summary.TotalBytes>>20, time.Since(start).Round(time.Millisecond))

	r2, raw := openS3Repo(t, s, loc, t.TempDir(), nil)
	before := raw.Stats()
	ctx := context.Background()
	if err := r2.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.List(ctx, r2)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if _, err := restore.Run(ctx, r2, snaps[0].Tree, restore.Options{Target: target, Include: []string{one}}); err != nil {
		t.Fatal(err)
	}
	after := raw.Stats()
	if !bytes.Equal(readFile(t, filepath.Join(target, one)), want) {
		t.Fatal("restored file differs")
	}
	read := after.BytesRead - before.BytesRead
	t.Logf("restoring 1 MB from a %d MB repository read %.2f MB in %d requests", res.Snapshot.Summary.TotalBytes>>20,
		float64(read)/(1<<20), after.Requests-before.Requests)
	if read >= 20<<20 {
		t.Fatalf("restoring one 1 MB file transferred %d bytes, want < 20 MB", read)
	}
}

// packsStored counts the pack objects MinIO holds under dir (one directory per
// object in its single-drive layout).
func packsStored(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if err == nil && d.Name() == "xl.meta" && strings.Contains(filepath.ToSlash(rel), "/repo/data/") {
			n++
		}
		return nil
	})
	return n
}

// TestS3ServerGoesAwayMidBackup kills MinIO while a backup uploads: the backup fails
// (or, if it finished first, succeeds), no snapshot names missing data (check passes),
// and after the server is back the next backup succeeds and restores.
func TestS3ServerGoesAwayMidBackup(t *testing.T) {
	s := needS3(t)
	m := miniotest.Start(t, s.access, s.secret)
	s.endpoint = "http://" + m.Addr
	loc := s.location(t)
	c := newRemoteCLI(t, loc, &s, nil, "")
	c.ok("init", "--repo", loc)
	src := filepath.Join(t.TempDir(), "data")
	rng := mrand.New(mrand.NewChaCha8([32]byte{7}))
	for i := range 12 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%02d", i)), string(randomBytes(rng, 8<<20)))
	}
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		deadline := time.Now().Add(60 * time.Second)
		for packsStored(m.Data) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		m.Kill()
	}()
	out, errs, code := c.run("backup", "--repo", loc, src)
	<-killed
	switch code {
	case exitFailure:
		if !strings.Contains(errs, "no snapshot was written") {
			t.Errorf("failed backup says:\n%s", errs)
		}
		t.Logf("backup during the outage failed as it should:\n%s", errs)
	case exitOK:
		t.Logf("the backup finished before the server went away:\n%s", out)
	default:
		t.Fatalf("backup: exit %d\n%s\n%s", code, out, errs)
	}
	m.Restart()
	// The failed backup's lock is ours and this process lives: clear it.
	c.ok("unlock", "--repo", loc, "--remove-all")
	c.ok("check", "--repo", loc)
	c.ok("backup", "--repo", loc, src)
	c.ok("check", "--repo", loc, "--read-data")
	target := t.TempDir()
	c.ok("restore", "--repo", loc, "latest", "--target", target)
	sameState(t, "restored after the outage", treeState(t, filepath.Join(target, src)), treeState(t, src))
}
