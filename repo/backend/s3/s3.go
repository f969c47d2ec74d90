// Package s3 owns the S3 backend: a repository stored as objects under a prefix of
// an S3 (or S3-compatible, e.g. MinIO) bucket, accessed with minio-go. It parses
// "s3:" locations, resolves credentials, optionally protects files with object-lock
// retention and counts the bytes and requests it transfers.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/retry"
)

// ErrObjectLocked is wrapped by Remove when object-lock retention protects the file.
// It wraps backend.ErrRetained, so callers that know no S3 can test for that.
var ErrObjectLocked = fmt.Errorf("s3: object is protected by object-lock retention (%w)", backend.ErrRetained)

// Retention modes for Options.LockMode.
const (
	Governance = "GOVERNANCE"
	Compliance = "COMPLIANCE"
)

// maxSinglePut is the largest object S3 accepts in one PUT.
const maxSinglePut = 5 << 30

// Options configure the backend. Zero values take defaults; credentials come from
// the explicit fields, else from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/
// AWS_SESSION_TOKEN, else from the shared credentials file (~/.aws/credentials or
// AWS_SHARED_CREDENTIALS_FILE, profile AWS_PROFILE or "default"), else anonymous.
type Options struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Profile and CredentialsFile select the shared-credentials entry; empty means
	// AWS_PROFILE (or "default") and the AWS default files.
	Profile         string
	CredentialsFile string
	// Region of the bucket; empty means AWS_DEFAULT_REGION or AWS_REGION, and if those
	// are unset too the bucket's location is looked up.
	Region string

	// LockRetention, when positive, stores pack, index and snapshot files with an
	// object-lock retention of this duration (the bucket must have object locking).
	LockRetention time.Duration
	// LockMode is Governance (default) or Compliance.
	LockMode string

	// Transport replaces the HTTP transport (tests); it is wrapped for Stats.
	Transport http.RoundTripper
}

// Config is a parsed "s3:" location.
type Config struct {
	Endpoint string // host[:port]
	Secure   bool   // https
	Bucket   string
	Prefix   string // without leading or trailing slash; may be empty
}

// ParseLocation parses "s3:http://host:port/bucket/prefix", "s3:https://…" or
// "s3:host/bucket/prefix" (https).
func ParseLocation(loc string) (Config, error) {
	rest, ok := strings.CutPrefix(loc, "s3:")
	if !ok {
		return Config{}, fmt.Errorf("parse s3 location %q: missing s3: prefix", loc)
	}
	cfg := Config{Secure: true}
	switch {
	case strings.HasPrefix(rest, "http://") || strings.HasPrefix(rest, "https://"):
		u, err := url.Parse(rest)
		if err != nil {
			return Config{}, fmt.Errorf("parse s3 location %q: %w", loc, err)
		}
		if u.User != nil {
			return Config{}, fmt.Errorf("parse s3 location %q: credentials in the location are not supported; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", redact(loc))
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return Config{}, fmt.Errorf("parse s3 location %q: query and fragment are not supported", loc)
		}
		cfg.Secure = u.Scheme == "https"
		cfg.Endpoint = u.Host
		rest = u.Path
	case strings.HasPrefix(rest, "//"):
		return Config{}, fmt.Errorf("parse s3 location %q: want s3:http://host/bucket, s3:https://host/bucket or s3:host/bucket", loc)
	default:
		host, p, _ := strings.Cut(rest, "/")
		if strings.Contains(host, "@") {
			return Config{}, fmt.Errorf("parse s3 location %q: credentials in the location are not supported; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", redact(loc))
		}
		cfg.Endpoint = host
		rest = p
	}
	if cfg.Endpoint == "" {
		return Config{}, fmt.Errorf("parse s3 location %q: missing host", loc)
	}
	rest = strings.Trim(rest, "/")
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return Config{}, fmt.Errorf("parse s3 location %q: missing bucket name", loc)
	}
	cfg.Bucket = bucket
	cfg.Prefix = strings.Trim(path.Clean("/"+prefix), "/")
	if strings.Contains(prefix, "//") || cfg.Prefix != strings.Trim(prefix, "/") {
		return Config{}, fmt.Errorf("parse s3 location %q: prefix %q is not a clean path", loc, prefix)
	}
	return cfg, nil
}

// redact hides a user:password part of a location.
func redact(loc string) string {
	if i := strings.Index(loc, "@"); i >= 0 {
		if j := strings.LastIndex(loc[:i], "//"); j >= 0 {
			return loc[:j+2] + "***" + loc[i:]
		}
		return "s3:***" + loc[i:]
	}
	return loc
}

// Stats counts the traffic of a backend.
type Stats struct {
	Requests     int64 // HTTP requests sent
	BytesRead    int64 // response body bytes received
	BytesWritten int64 // request body bytes sent
}

// Backend is a repository in an S3 bucket.
type Backend struct {
	client   *minio.Client
	core     minio.Core
	rt       http.RoundTripper
	cfg      Config
	loc      string
	opts     Options
	requests atomic.Int64
	read     atomic.Int64
	written  atomic.Int64
}

var _ backend.Backend = (*Backend)(nil)

// Open connects to an existing repository's bucket. A missing bucket yields an error
// wrapping fs.ErrNotExist.
func Open(ctx context.Context, loc string, opts Options) (*Backend, error) {
	b, err := connect(loc, opts)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", redact(loc), err)
	}
	ok, err := b.client.BucketExists(ctx, b.cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("open %s: check bucket %s: %w", loc, b.cfg.Bucket, b.mapErr(err))
	}
	if !ok {
		return nil, fmt.Errorf("open %s: bucket %s does not exist: %w", loc, b.cfg.Bucket, fs.ErrNotExist)
	}
	if err := b.checkLocking(ctx); err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	return b, nil
}

// Create connects to the bucket for a new repository, making the bucket (with object
// locking when Options.LockRetention is set) if it is missing. A repository that
// already has a config file yields an error wrapping backend.ErrExists.
func Create(ctx context.Context, loc string, opts Options) (*Backend, error) {
	b, err := connect(loc, opts)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", redact(loc), err)
	}
	ok, err := b.client.BucketExists(ctx, b.cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("create %s: check bucket %s: %w", loc, b.cfg.Bucket, b.mapErr(err))
	}
	if !ok {
		err := b.client.MakeBucket(ctx, b.cfg.Bucket, minio.MakeBucketOptions{
			Region:        b.opts.Region,
			ObjectLocking: opts.LockRetention > 0,
		})
		if err != nil {
			var resp minio.ErrorResponse
			if !errors.As(err, &resp) || (resp.Code != "BucketAlreadyOwnedByYou" && resp.Code != "BucketAlreadyExists") {
				return nil, fmt.Errorf("create %s: make bucket %s: %w", loc, b.cfg.Bucket, b.mapErr(err))
			}
		}
	}
	if err := b.checkLocking(ctx); err != nil {
		return nil, fmt.Errorf("create %s: %w", loc, err)
	}
	if _, err := b.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err == nil {
		return nil, fmt.Errorf("create %s: config file already present: %w", loc, backend.ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("create %s: %w", loc, err)
	}
	return b, nil
}

func connect(loc string, opts Options) (*Backend, error) {
	cfg, err := ParseLocation(loc)
	if err != nil {
		return nil, err
	}
	switch strings.ToUpper(opts.LockMode) {
	case "", Governance:
		opts.LockMode = Governance
	case Compliance:
		opts.LockMode = Compliance
	default:
		return nil, fmt.Errorf("invalid object-lock mode %q (want %s or %s)", opts.LockMode, Governance, Compliance)
	}
	if opts.LockRetention < 0 {
		return nil, fmt.Errorf("negative object-lock retention %v", opts.LockRetention)
	}
	if opts.Region == "" {
		opts.Region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if opts.Region == "" {
		opts.Region = os.Getenv("AWS_REGION")
	}
	creds := credentialsFor(opts)

	b := &Backend{cfg: cfg, loc: loc, opts: opts}
	rt := opts.Transport
	if rt == nil {
		tr, err := minio.DefaultTransport(cfg.Secure)
		if err != nil {
			return nil, err
		}
		rt = tr
	}
	b.rt = rt
	b.client, err = minio.New(cfg.Endpoint, &minio.Options{
		Creds:     creds,
		Secure:    cfg.Secure,
		Region:    opts.Region,
		Transport: &countingTransport{rt: rt, b: b},
		// The retry decorator retries; one attempt per call here keeps failures prompt.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, err
	}
	b.core = minio.Core{Client: b.client}
	return b, nil
}

func credentialsFor(opts Options) *credentials.Credentials {
	if opts.AccessKeyID != "" || opts.SecretAccessKey != "" {
		return credentials.NewStaticV4(opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken)
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{Filename: opts.CredentialsFile, Profile: opts.Profile},
		&credentials.EnvMinio{},
	})
}

// checkLocking verifies that a bucket used with retention has object locking.
func (b *Backend) checkLocking(ctx context.Context) error {
	if b.opts.LockRetention <= 0 {
		return nil
	}
	enabled, _, _, _, err := b.client.GetObjectLockConfig(ctx, b.cfg.Bucket)
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && resp.Code == "ObjectLockConfigurationNotFoundError" {
			enabled = ""
		} else {
			return fmt.Errorf("check object lock of bucket %s: %w", b.cfg.Bucket, b.mapErr(err))
		}
	}
	if enabled != "Enabled" {
		return fmt.Errorf("bucket %s has no object locking, which a retention of %v needs (create the bucket with object locking)", b.cfg.Bucket, b.opts.LockRetention)
	}
	return nil
}

// Location implements backend.Backend.
func (b *Backend) Location() string { return b.loc }

// Config returns the parsed location.
func (b *Backend) Config() Config { return b.cfg }

// Client returns the underlying minio client (for tests and administration).
func (b *Backend) Client() *minio.Client { return b.client }

// Stats returns the traffic counted since the backend was opened.
func (b *Backend) Stats() Stats {
	return Stats{Requests: b.requests.Load(), BytesRead: b.read.Load(), BytesWritten: b.written.Load()}
}

// Key returns the object key of a file.
func (b *Backend) Key(h backend.Handle) string {
	if b.cfg.Prefix == "" {
		return h.Path()
	}
	return b.cfg.Prefix + "/" + h.Path()
}

func (b *Backend) check(ctx context.Context, op string, h backend.Handle) error {
	if err := h.Valid(); err != nil {
		return fmt.Errorf("%s %s: %w", op, h, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, h, err)
	}
	return nil
}

// mapErr turns S3 error responses into the errors callers branch on.
func (b *Backend) mapErr(err error) error {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return err
	}
	switch resp.Code {
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("%w (%s)", fs.ErrNotExist, resp.Code)
	case "NoSuchBucket":
		return fmt.Errorf("bucket %s does not exist: %w", b.cfg.Bucket, fs.ErrNotExist)
	case "XMinioStorageFull", "XMinioAdminBucketQuotaExceeded", "QuotaExceeded":
		return fmt.Errorf("%w: %s: %s", backend.ErrNoSpace, resp.Code, resp.Message)
	case "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return retry.Permanent(fmt.Errorf("access to %s refused, check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_PROFILE): %s: %s",
			b.cfg.Endpoint, resp.Code, resp.Message))
	case "AccessDenied":
		return retry.Permanent(fmt.Errorf("access denied by %s, check the credentials and the bucket policy: %s",
			b.cfg.Endpoint, resp.Message))
	case "InvalidBucketName", "InvalidRequest", "InvalidArgument", "MethodNotAllowed", "NotImplemented":
		return retry.Permanent(fmt.Errorf("%s: %s", resp.Code, resp.Message))
	}
	return err
}

func isCode(err error, codes ...string) bool {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return false
	}
	for _, c := range codes {
		if resp.Code == c {
			return true
		}
	}
	return false
}

// retainsFiles reports whether files of type t get a retention date.
func retainsFiles(t backend.FileType) bool {
	return t == backend.PackFile || t == backend.IndexFile || t == backend.SnapshotFile
}

// Save implements backend.Backend. Existing non-lock files are refused after a
// StatObject; two clients saving the same new file at the same moment may both
// succeed, which is harmless for content-addressed files.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd backend.RewindReader) error {
	if err := b.check(ctx, "save", h); err != nil {
		return err
	}
	key := b.Key(h)
	if h.Type != backend.LockFile {
		_, err := b.client.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
		if err == nil {
			return fmt.Errorf("save %s: %w", h, backend.ErrExists)
		}
		if !isCode(err, "NoSuchKey", "NotFound") {
			return fmt.Errorf("save %s: check for an existing file: %w", h, b.mapErr(err))
		}
	}
	size := rd.Length()
	opts := minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		DisableMultipart: size <= maxSinglePut,
	}
	if b.opts.LockRetention > 0 && retainsFiles(h.Type) {
		opts.Mode = minio.RetentionMode(b.opts.LockMode)
		opts.RetainUntilDate = time.Now().Add(b.opts.LockRetention).UTC().Truncate(time.Second).Add(time.Second)
		opts.SendContentMd5 = true
	}
	info, err := b.client.PutObject(ctx, b.cfg.Bucket, key, rd, size, opts)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return fmt.Errorf("save %s: %w (%w)", h, cerr, err)
		}
		return fmt.Errorf("save %s: %w", h, b.mapErr(err))
	}
	if info.Size != size {
		return fmt.Errorf("save %s: stored %d bytes, want %d", h, info.Size, size)
	}
	return nil
}

// Load implements backend.Backend with one ranged GET.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	if err := b.check(ctx, "load", h); err != nil {
		return err
	}
	if err := backend.CheckRange(h, length, offset); err != nil {
		return err
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		_ = opts.SetRange(offset, offset+int64(length)-1)
	case offset > 0:
		_ = opts.SetRange(offset, 0)
	}
	body, info, _, err := b.core.GetObject(ctx, b.cfg.Bucket, b.Key(h), opts)
	if err != nil {
		if isCode(err, "InvalidRange") {
			return b.loadInvalidRange(ctx, h, length, offset, fn)
		}
		return fmt.Errorf("load %s: %w", h, b.mapErr(err))
	}
	defer func() { _ = body.Close() }()
	if length > 0 && info.Size < int64(length) {
		return fmt.Errorf("load %s: range offset %d length %d beyond the end of the file (got %d bytes): %w",
			h, offset, length, info.Size, io.ErrUnexpectedEOF)
	}
	if err := fn(io.LimitReader(body, info.Size)); err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	return nil
}

// loadInvalidRange handles a range the server rejected: an empty tail of the file
// (offset equal to the size) is fine, anything else is beyond the end.
func (b *Backend) loadInvalidRange(ctx context.Context, h backend.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	fi, err := b.Stat(ctx, h)
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	if length == 0 && offset == fi.Size {
		if err := fn(bytes.NewReader(nil)); err != nil {
			return fmt.Errorf("load %s: %w", h, err)
		}
		return nil
	}
	return fmt.Errorf("load %s: range offset %d length %d beyond file size %d: %w",
		h, offset, length, fi.Size, io.ErrUnexpectedEOF)
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := b.check(ctx, "stat", h); err != nil {
		return backend.FileInfo{}, err
	}
	info, err := b.client.StatObject(ctx, b.cfg.Bucket, b.Key(h), minio.StatObjectOptions{})
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %s: %w", h, b.mapErr(err))
	}
	return backend.FileInfo{Name: h.Name, Size: info.Size}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	if t == backend.ConfigFile {
		info, err := b.client.StatObject(ctx, b.cfg.Bucket, b.Key(backend.Handle{Type: t}), minio.StatObjectOptions{})
		if isCode(err, "NoSuchKey", "NotFound") {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", t, b.mapErr(err))
		}
		return fn(backend.FileInfo{Size: info.Size})
	}
	if t < backend.ConfigFile || t > backend.LockFile {
		return fmt.Errorf("list %s: invalid file type", t)
	}
	prefix := b.Key(backend.Handle{Type: t, Name: "x"})
	prefix = prefix[:len(prefix)-1] // ".../<type>/"
	if t == backend.PackFile {
		prefix = strings.TrimSuffix(b.Key(backend.Handle{Type: t}), "/") + "/"
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := b.client.ListObjects(lctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true})
	defer func() {
		cancel()
		for range ch { // let the lister goroutine finish
		}
	}()
	for obj := range ch {
		if obj.Err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("list %s: %w", t, cerr)
			}
			return fmt.Errorf("list %s: %w", t, b.mapErr(obj.Err))
		}
		rel := strings.TrimPrefix(obj.Key, prefix)
		name := path.Base(rel)
		if t == backend.PackFile {
			// data/<xx>/<name>: exactly one subdirectory level.
			if strings.Count(rel, "/") != 1 {
				continue
			}
		} else if strings.Contains(rel, "/") {
			continue
		}
		if (backend.Handle{Type: t, Name: name}).Valid() != nil {
			continue
		}
		if err := fn(backend.FileInfo{Name: name, Size: obj.Size}); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	return nil
}

// Remove implements backend.Backend. A file with a retention date is removed by
// version, so the server refuses while the retention lasts (the error wraps
// ErrObjectLocked); other files get an ordinary delete (a delete marker in a
// versioned bucket).
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := b.check(ctx, "remove", h); err != nil {
		return err
	}
	key := b.Key(h)
	info, err := b.client.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return fmt.Errorf("remove %s: %w", h, b.mapErr(err))
	}
	mode := info.Metadata.Get("X-Amz-Object-Lock-Mode")
	until, _ := time.Parse(time.RFC3339, info.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date"))
	var opts minio.RemoveObjectOptions
	if mode != "" {
		opts.VersionID = info.VersionID
	}
	err = b.client.RemoveObject(ctx, b.cfg.Bucket, key, opts)
	if err == nil {
		return nil
	}
	if mode != "" && until.After(time.Now()) && isCode(err, "AccessDenied", "InvalidRequest", "ObjectLocked") {
		return fmt.Errorf("remove %s: %w until %s (%s mode)", h,
			ErrObjectLocked, until.UTC().Format(time.RFC3339), mode)
	}
	return fmt.Errorf("remove %s: %w", h, b.mapErr(err))
}

// Close implements backend.Backend.
func (b *Backend) Close() error {
	if tr, ok := b.rt.(interface{ CloseIdleConnections() }); ok {
		tr.CloseIdleConnections()
	}
	return nil
}

// countingTransport counts requests and body bytes in both directions.
type countingTransport struct {
	rt http.RoundTripper
	b  *Backend
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.b.requests.Add(1)
	if req.Body != nil && req.Body != http.NoBody {
		r := req.Clone(req.Context())
		r.Body = &countingBody{rc: req.Body, n: &c.b.written}
		req = r
	}
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &countingBody{rc: resp.Body, n: &c.b.read}
	return resp, nil
}

type countingBody struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingBody) Close() error { return c.rc.Close() }
