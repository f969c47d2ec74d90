// Package repo owns a cairn repository: its config, key files, encrypted files, blob
// storage in packs, the index, write sessions and locks. It knows nothing of snapshots,
// apps or databases; those live in snapshot/ and dbdump/. See docs/FORMAT.md.
package repo

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/cache"
	"github.com/cairn-backup/cairn/repo/index"
)

// ID is the identifier of blobs and files.
type ID = blob.ID

// FormatVersion is the repository format version this package writes and the newest it
// reads (docs/FORMAT.md §Versioning).
const FormatVersion = 3

// OldestWritableVersion is the oldest format version Init can create: cairn keeps
// writing version 1 repositories in version 1's form, so older cairn binaries can
// still read them.
const OldestWritableVersion = 1

// Sentinel errors callers branch on.
var (
	ErrNotRepository = errors.New("repo: not a cairn repository")
	ErrNewerFormat   = errors.New("repo: repository format is newer than this version of cairn")
	ErrWrongPassword = errors.New("repo: wrong passphrase or identity: no key in the repository opens with it")
	ErrBlobNotFound  = errors.New("repo: blob not in index")
	ErrLastKey       = errors.New("repo: cannot remove the last key")
	ErrWriteOnly     = crypto.ErrWriteOnly
	ErrRepoExists    = errors.New("repo: a repository already exists there")
	ErrNotEmpty      = errors.New("repo: directory is not empty and not a repository")
	ErrFileNotFound  = errors.New("repo: file not found")
	ErrAmbiguousID   = errors.New("repo: ambiguous id prefix")
)

// CorruptError reports a damaged repository file or blob.
type CorruptError struct {
	Handle backend.Handle // the file (for a blob, its pack)
	Blob   *blob.ID       // the blob, if the damage was found reading one
	Err    error
}

func (e *CorruptError) Error() string {
	if e.Blob != nil {
		return fmt.Sprintf("corrupt %s (blob %s): %v", e.Handle, e.Blob.Short(), e.Err)
	}
	return fmt.Sprintf("corrupt %s: %v", e.Handle, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Config is the repository's configuration file (docs/FORMAT.md §Config).
type Config struct {
	Version           int                 `json:"version"`
	ID                string              `json:"id"`
	Created           time.Time           `json:"created"`
	ChunkerPolynomial string              `json:"chunker_polynomial"`
	PackSize          int                 `json:"pack_size"`
	Chunking          map[string]Chunking `json:"chunking"`
}

// Chunking is one named chunker parameter set stored in the config.
type Chunking struct {
	Min         uint `json:"min"`
	Max         uint `json:"max"`
	AverageBits int  `json:"average_bits"`
}

// Params converts to the chunk package's parameters.
func (c Chunking) Params() chunk.Params {
	return chunk.Params{Min: c.Min, Max: c.Max, AverageBits: c.AverageBits}
}

// Repository is an open repository. Its methods are safe for concurrent use.
type Repository struct {
	be      backend.Backend
	secrets *crypto.Secrets
	cfg     Config
	pol     chunk.Pol
	keyID   string // the key file that opened it

	idxMu     sync.Mutex
	idx       *index.Index
	idxLoaded bool
	// treePacks are the packs the loaded index files list with tree blobs only
	// (guarded by idxMu); with a cache, they are read from it.
	treePacks map[ID]bool

	keyCache *fileKeyCache
	// cache, if set, keeps verified copies of index files, snapshot files and tree
	// packs (SetCache).
	cache *cache.Cache
}

// SetCache makes the repository read index files, snapshot files and packs holding
// only trees through c (nil: straight from the backend). Cached files are verified on
// every first read and fetched again when damaged; files the repository no longer
// lists are evicted when the index or the snapshots are listed. Call it before use,
// not concurrently with other methods.
func (r *Repository) SetCache(c *cache.Cache) { r.cache = c }

// Cache returns the cache set with SetCache, or nil.
func (r *Repository) Cache() *cache.Cache { return r.cache }

// OpenHook is run by Open on the repository it opened, before Open returns it: the CLI
// uses it to attach the local cache to every repository a command opens. An error
// fails Open.
type OpenHook func(ctx context.Context, r *Repository) error

type openHookKey struct{}

// WithOpenHook returns a context that makes Open run h.
func WithOpenHook(ctx context.Context, h OpenHook) context.Context {
	return context.WithValue(ctx, openHookKey{}, h)
}

// InitOptions configures a new repository.
type InitOptions struct {
	PostQuantum bool
	PackSize    int // bytes; 0 = 16 MiB
	// Version is the format version to create (0: FormatVersion). Version 1 is
	// readable by every cairn release; version 2 stores data blobs in less space and
	// time; version 3 chunks media files in larger pieces, which costs the chunker
	// less (docs/FORMAT.md §13).
	Version int
}

// DefaultPackSize is the target plaintext size of a pack.
const DefaultPackSize = 16 << 20

// Init creates a repository in be (which must be empty) with one key for cred.
func Init(ctx context.Context, be backend.Backend, cred crypto.Credential, opts InitOptions) (*Repository, error) {
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err == nil {
		return nil, fmt.Errorf("%w at %s", ErrRepoExists, be.Location())
	} else if !backend.IsNotExist(err) {
		return nil, fmt.Errorf("check for existing config: %w", err)
	}
	s, err := crypto.Generate(crypto.GenerateOptions{PostQuantum: opts.PostQuantum})
	if err != nil {
		return nil, err
	}
	s.Host, s.User = hostAndUser()
	pol, err := chunk.RandomPolynomial()
	if err != nil {
		return nil, fmt.Errorf("generate chunker polynomial: %w", err)
	}
	if opts.PackSize == 0 {
		opts.PackSize = DefaultPackSize
	}
	if opts.Version == 0 {
		opts.Version = FormatVersion
	}
	if opts.Version < OldestWritableVersion || opts.Version > FormatVersion {
		return nil, fmt.Errorf("repo: cannot create format version %d: this cairn creates versions %d to %d", opts.Version, OldestWritableVersion, FormatVersion)
	}
	files := chunk.Files
	if opts.Version < 3 {
		files = chunk.FilesV2
	}
	cfg := Config{Version: opts.Version, ID: s.RepoID, Created: time.Now().UTC(),
		ChunkerPolynomial: fmt.Sprintf("%x", uint64(pol)), PackSize: opts.PackSize,
		Chunking: map[string]Chunking{
			"files":    {files.Min, files.Max, files.AverageBits},
			"database": {chunk.Database.Min, chunk.Database.Max, chunk.Database.AverageBits},
		}}
	r := &Repository{be: be, secrets: s, cfg: cfg, pol: pol, idx: index.New(), idxLoaded: true, keyCache: newFileKeyCache()}
	// The key first, the config last: a repository without config is not a repository,
	// so a crash in between leaves a directory init can retry on.
	keyID, err := r.saveKey(ctx, s, cred)
	if err != nil {
		return nil, err
	}
	r.keyID = keyID
	plain, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := r.saveSealed(ctx, backend.ConfigFile, plain, s.Recipients()...); err != nil {
		return nil, fmt.Errorf("save config: %w", err)
	}
	return r, nil
}

func hostAndUser() (string, string) {
	host, _ := os.Hostname()
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return host, name
}

// Open opens the repository in be with the credential.
func Open(ctx context.Context, be backend.Backend, cred crypto.Credential) (*Repository, error) {
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err != nil {
		if backend.IsNotExist(err) {
			return nil, fmt.Errorf("%w: %s has no config file", ErrNotRepository, be.Location())
		}
		return nil, fmt.Errorf("open repository %s: %w", be.Location(), err)
	}
	var names []string
	err := be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	sort.Strings(names)
	var secrets *crypto.Secrets
	var keyID string
	var damaged []string
	for _, name := range names {
		h := backend.Handle{Type: backend.KeyFile, Name: name}
		data, err := backend.LoadAll(ctx, be, h)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", h, err)
		}
		if want := cred.Kind(); !kindMatches(want, crypto.KeyKind(data)) {
			continue
		}
		s, err := crypto.OpenKey(data, cred)
		if errors.Is(err, crypto.ErrNoMatchingKey) {
			continue
		}
		if err != nil {
			if errors.Is(err, crypto.ErrNewerKeyFormat) || errors.Is(err, crypto.ErrPlugin) {
				return nil, fmt.Errorf("open %s: %w", h, err)
			}
			damaged = append(damaged, fmt.Sprintf("%s: %v", h, err))
			continue
		}
		// Prefer a full key when one credential opens several.
		if secrets == nil || (secrets.WriteOnly() && !s.WriteOnly()) {
			secrets, keyID = s, name
		}
		if !secrets.WriteOnly() {
			break
		}
	}
	if secrets == nil {
		if len(damaged) > 0 {
			return nil, fmt.Errorf("%w (damaged key files: %s)", ErrWrongPassword, strings.Join(damaged, "; "))
		}
		return nil, ErrWrongPassword
	}
	r := &Repository{be: be, secrets: secrets, keyID: keyID, idx: index.New(), keyCache: newFileKeyCache()}
	plain, err := r.loadSealed(ctx, backend.Handle{Type: backend.ConfigFile}, secrets.Identities()...)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	cfg, pol, err := ParseConfig(plain)
	if err != nil {
		return nil, err
	}
	r.cfg, r.pol = cfg, pol
	if cfg.ID != secrets.RepoID {
		return nil, fmt.Errorf("key %s belongs to repository %s, not to this one (%s)", shortName(keyID), shortName(secrets.RepoID), shortName(cfg.ID))
	}
	if h, ok := ctx.Value(openHookKey{}).(OpenHook); ok && h != nil {
		if err := h(ctx, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func kindMatches(credKind, fileKind string) bool {
	if credKind == "passphrase" {
		return fileKind == "passphrase"
	}
	return fileKind != "passphrase"
}

// ParseConfig decodes and validates the config's plaintext (docs/FORMAT.md §Config).
func ParseConfig(plain []byte) (Config, chunk.Pol, error) {
	corrupt := func(err error) error {
		return &CorruptError{Handle: backend.Handle{Type: backend.ConfigFile}, Err: err}
	}
	var c Config
	if err := json.Unmarshal(plain, &c); err != nil {
		return c, 0, corrupt(fmt.Errorf("parse config: %w", err))
	}
	if c.Version > FormatVersion {
		return c, 0, fmt.Errorf("%w (repository version %d, this cairn reads up to %d): upgrade cairn", ErrNewerFormat, c.Version, FormatVersion)
	}
	if c.Version < 1 {
		return c, 0, corrupt(fmt.Errorf("invalid version %d", c.Version))
	}
	if b, err := hex.DecodeString(c.ID); err != nil || len(b) != 32 {
		return c, 0, corrupt(fmt.Errorf("invalid repository id %q", c.ID))
	}
	pol, err := chunk.ParsePolynomial(c.ChunkerPolynomial)
	if err != nil {
		return c, 0, corrupt(err)
	}
	if c.PackSize < 1<<20 || c.PackSize > 1<<30 {
		return c, 0, corrupt(fmt.Errorf("invalid pack size %d", c.PackSize))
	}
	for _, name := range []string{"files", "database"} {
		ch, ok := c.Chunking[name]
		if !ok {
			return c, 0, corrupt(fmt.Errorf("missing chunking %q", name))
		}
		validate := ch.Params().Validate
		if c.Version < 3 {
			validate = ch.Params().ValidateV2
		}
		if err := validate(); err != nil {
			return c, 0, corrupt(err)
		}
	}
	return c, pol, nil
}

func shortName(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

// Config returns the repository's configuration.
func (r *Repository) Config() Config { return r.cfg }

// Polynomial returns the chunker polynomial.
func (r *Repository) Polynomial() chunk.Pol { return r.pol }

// ChunkParams returns the named chunker parameters ("files" or "database").
func (r *Repository) ChunkParams(name string) chunk.Params {
	if c, ok := r.cfg.Chunking[name]; ok {
		return c.Params()
	}
	return r.cfg.Chunking["files"].Params()
}

// Backend returns the storage backend.
func (r *Repository) Backend() backend.Backend { return r.be }

// Secrets returns the key material the repository was opened with.
func (r *Repository) Secrets() *crypto.Secrets { return r.secrets }

// KeyID returns the name of the key file that opened the repository.
func (r *Repository) KeyID() string { return r.keyID }

// WriteOnly reports whether the repository was opened with a write-only key.
func (r *Repository) WriteOnly() bool { return r.secrets.WriteOnly() }

// Close closes the backend.
func (r *Repository) Close() error { return r.be.Close() }

// NewBlobMAC returns a MAC computing blob IDs for this repository (one per goroutine).
func (r *Repository) NewBlobMAC() *crypto.BlobMAC { return crypto.NewBlobMAC(r.secrets.IDKey) }

// saveSealed encrypts plain to the recipients and stores it. Content-addressed types
// are named by the BLAKE3 hash of the stored bytes; the config has no name; locks get
// their name from the caller through saveSealedAs.
func (r *Repository) saveSealed(ctx context.Context, t backend.FileType, plain []byte, recipients ...age.Recipient) (ID, error) {
	enc, err := seal(plain, recipients...)
	if err != nil {
		return ID{}, err
	}
	id := ID(crypto.FileHash(enc))
	h := backend.Handle{Type: t, Name: id.String()}
	if t == backend.ConfigFile {
		h.Name = ""
	}
	if err := r.be.Save(ctx, h, backend.NewByteReader(enc)); err != nil {
		return ID{}, err
	}
	if r.cache != nil && (t == backend.IndexFile || t == backend.SnapshotFile) {
		_ = r.cache.Save(h, enc) // best effort: a missing cached copy is fetched when needed
	}
	return id, nil
}

func seal(plain []byte, recipients ...age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(plain) + 512 + len(plain)/(64<<10)*16)
	w, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return buf.Bytes(), nil
}

// loadSealed loads and decrypts a file, verifying content-addressed names. Index and
// snapshot files come from the cache when one is set and holds a verified copy; a
// cached copy that fails to decrypt is evicted and the file loaded again.
func (r *Repository) loadSealed(ctx context.Context, h backend.Handle, ids ...age.Identity) ([]byte, error) {
	cached := r.cache != nil && (h.Type == backend.IndexFile || h.Type == backend.SnapshotFile)
	if cached {
		if enc, ok := r.cache.Load(h); ok {
			plain, err := r.openSealed(h, enc, ids...)
			var ce *CorruptError
			if !errors.As(err, &ce) {
				return plain, err
			}
			_ = r.cache.Remove(h)
		}
	}
	enc, err := backend.LoadAll(ctx, r.be, h)
	if err != nil {
		if backend.IsNotExist(err) {
			return nil, fmt.Errorf("%w: %s", ErrFileNotFound, h)
		}
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
	plain, err := r.openSealed(h, enc, ids...)
	if err == nil && cached {
		_ = r.cache.Save(h, enc) // best effort
	}
	return plain, err
}

func (r *Repository) openSealed(h backend.Handle, enc []byte, ids ...age.Identity) ([]byte, error) {
	if contentAddressed(h.Type) {
		if got := ID(crypto.FileHash(enc)).String(); got != h.Name {
			return nil, &CorruptError{Handle: h, Err: fmt.Errorf("content hash %s does not match its name", got[:16])}
		}
	}
	rd, err := age.Decrypt(bytes.NewReader(enc), ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) && r.secrets.WriteOnly() {
			return nil, fmt.Errorf("decrypt %s: %w", h, ErrWriteOnly)
		}
		return nil, &CorruptError{Handle: h, Err: fmt.Errorf("decrypt: %w", err)}
	}
	plain, err := io.ReadAll(rd)
	if err != nil {
		return nil, &CorruptError{Handle: h, Err: fmt.Errorf("decrypt: %w", err)}
	}
	return plain, nil
}

func contentAddressed(t backend.FileType) bool {
	return t == backend.PackFile || t == backend.IndexFile || t == backend.SnapshotFile || t == backend.KeyFile
}

// SaveJSON stores v as a JSON document in a new file of type t (snapshots), encrypted
// to the data recipient, and returns the file's ID.
func (r *Repository) SaveJSON(ctx context.Context, t backend.FileType, v any) (ID, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return ID{}, fmt.Errorf("encode %s: %w", t, err)
	}
	id, err := r.saveSealed(ctx, t, plain, r.secrets.DataRecipient)
	if err != nil {
		return ID{}, fmt.Errorf("save %s file: %w", t, err)
	}
	return id, nil
}

// LoadJSON loads and decodes a JSON file of type t. A write-only key gets ErrWriteOnly.
func (r *Repository) LoadJSON(ctx context.Context, t backend.FileType, id ID, v any) error {
	if r.secrets.WriteOnly() {
		return fmt.Errorf("load %s/%s: %w", t, id.Short(), ErrWriteOnly)
	}
	h := backend.Handle{Type: t, Name: id.String()}
	plain, err := r.loadSealed(ctx, h, r.secrets.DataIdentity)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return &CorruptError{Handle: h, Err: fmt.Errorf("parse: %w", err)}
	}
	return nil
}

// List returns the IDs of all files of a content-addressed type, sorted. Names that
// are not IDs (foreign files) are skipped.
func (r *Repository) List(ctx context.Context, t backend.FileType) ([]ID, error) {
	var ids []ID
	err := r.be.List(ctx, t, func(fi backend.FileInfo) error {
		id, err := blob.ParseID(fi.Name)
		if err == nil {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", t, err)
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	if r.cache != nil && (t == backend.IndexFile || t == backend.SnapshotFile) {
		r.evictUnlisted(t, ids)
	}
	return ids, nil
}

// evictUnlisted removes cached files of type t that a complete listing did not name.
func (r *Repository) evictUnlisted(t backend.FileType, listed []ID) {
	keep := make(map[string]bool, len(listed))
	for _, id := range listed {
		keep[id.String()] = true
	}
	_, _ = r.cache.Retain(t, func(name string) bool { return keep[name] }) // best effort
}

// FindID resolves a hex prefix of a file ID of type t.
func (r *Repository) FindID(ctx context.Context, t backend.FileType, prefix string) (ID, error) {
	ids, err := r.List(ctx, t)
	if err != nil {
		return ID{}, err
	}
	var found []ID
	for _, id := range ids {
		if strings.HasPrefix(id.String(), strings.ToLower(prefix)) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return ID{}, fmt.Errorf("%w: no %s file with id %q", ErrFileNotFound, t, prefix)
	case 1:
		return found[0], nil
	}
	return ID{}, fmt.Errorf("%w %q matches %d %s files", ErrAmbiguousID, prefix, len(found), t)
}
