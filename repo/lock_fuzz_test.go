package repo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/internal/crashtest"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/mem"
)

// Fuzz targets for the repository files this package parses: lock files (FuzzLock),
// the config (FuzzParseConfig) and key files (FuzzOpenKey). Seeds are real files: the
// frozen repository testdata/vectors/repo-v1, decrypted, and files a fresh repository
// writes; each target fails if it has no seed.

// fzRepo is a fresh in-memory repository opened with an age identity credential.
type fzRepo struct {
	r    *repo.Repository
	be   backend.Backend
	cred crypto.Credential
}

func newFzRepo(f *testing.F) *fzRepo {
	f.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	cred, err := crypto.ParseIdentityFile(strings.NewReader(id.String() + "\n"))
	if err != nil {
		f.Fatal(err)
	}
	be := mem.New()
	r, err := repo.Init(context.Background(), be, cred, repo.InitOptions{})
	if err != nil {
		f.Fatal(err)
	}
	return &fzRepo{r: r, be: be, cred: cred}
}

// files returns the stored files of type t.
func (z *fzRepo) files(f *testing.F, t backend.FileType) [][]byte {
	f.Helper()
	var out [][]byte
	ctx := context.Background()
	var names []string
	if err := z.be.List(ctx, t, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil }); err != nil {
		f.Fatal(err)
	}
	for _, n := range names {
		b, err := backend.LoadAll(ctx, z.be, backend.Handle{Type: t, Name: n})
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func (z *fzRepo) decrypt(f *testing.F, enc []byte) []byte {
	f.Helper()
	rd, err := age.Decrypt(bytes.NewReader(enc), z.r.Secrets().Identities()...)
	if err != nil {
		f.Fatal(err)
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// seeds adds every input and fails the target if there is none.
func seeds(f *testing.F, inputs ...[]byte) {
	f.Helper()
	if len(inputs) == 0 {
		f.Fatal("no seed inputs: the fuzz target would start from nothing")
	}
	for _, in := range inputs {
		f.Add(in)
	}
}

func FuzzLock(f *testing.F) {
	z := newFzRepo(f)
	ctx := context.Background()
	var in [][]byte
	for _, kind := range []string{"backup", "prune", "key"} {
		l, err := z.r.LockKind(ctx, kind)
		if err != nil {
			f.Fatal(err)
		}
		for _, enc := range z.files(f, backend.LockFile) {
			in = append(in, z.decrypt(f, enc))
		}
		if err := l.Unlock(ctx); err != nil {
			f.Fatal(err)
		}
	}
	in = append(in, []byte(`{}`), []byte(`{"pid":-1,"host":"","time":"0001-01-01T00:00:00Z"}`),
		[]byte(`{"session":"zz","kind":"\u0000","exclusive":true,"created":"9999-12-31T23:59:59Z"}`))
	seeds(f, in...)
	other := repo.LockInfo{Kind: "backup", Time: time.Now()}
	f.Fuzz(func(t *testing.T, data []byte) {
		var li repo.LockInfo
		if err := json.Unmarshal(data, &li); err != nil {
			return
		}
		li.Name = "fuzz"
		_ = li.String()
		_ = li.Stale(time.Now())
		if li.Exclusive && !li.Conflicts(other) {
			t.Fatal("an exclusive lock does not conflict")
		}
		if li.Conflicts(other) != other.Conflicts(li) {
			t.Fatal("Conflicts is not symmetric")
		}
		again, err := json.Marshal(li)
		if err != nil {
			t.Fatal(err)
		}
		var li2 repo.LockInfo
		if err := json.Unmarshal(again, &li2); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	v := crashtest.LoadVectors(f)
	z := newFzRepo(f)
	in := [][]byte{v.Config}
	for _, enc := range z.files(f, backend.ConfigFile) {
		in = append(in, z.decrypt(f, enc))
	}
	in = append(in, []byte(`{"version":2}`), []byte(`{"version":1,"id":"00","chunking":{}}`))
	seeds(f, in...)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, pol, err := repo.ParseConfig(data)
		if err != nil {
			var ce *repo.CorruptError
			if !errors.As(err, &ce) && !errors.Is(err, repo.ErrNewerFormat) {
				t.Fatalf("error is neither corruption nor a newer format: %v", err)
			}
			return
		}
		if cfg.Version < 1 || cfg.Version > repo.FormatVersion || cfg.PackSize < 1<<20 || cfg.PackSize > 1<<30 || pol == 0 {
			t.Fatalf("accepted %+v", cfg)
		}
		for _, name := range []string{"files", "database"} {
			validate := cfg.Chunking[name].Params().Validate
			if cfg.Version < 3 {
				validate = cfg.Chunking[name].Params().ValidateV2
			}
			if err := validate(); err != nil {
				t.Fatalf("accepted invalid chunking %q for version %d: %v", name, cfg.Version, err)
			}
		}
		again, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := repo.ParseConfig(again); err != nil {
			t.Fatalf("re-parse of an accepted config: %v", err)
		}
	})
}

// TestParseConfigChunking: an average below the minimum is valid from version 3 on
// and corrupt before (docs/FORMAT.md §5).
func TestParseConfigChunking(t *testing.T) {
	config := func(version int, files string) []byte {
		return []byte(fmt.Sprintf(`{"version":%d,"id":"%s","chunker_polynomial":"3dea92648f6e83","pack_size":16777216,
			"chunking":{"files":%s,"database":{"min":16384,"max":262144,"average_bits":15}}}`, version, strings.Repeat("ab", 32), files))
	}
	for _, c := range []struct {
		version int
		files   string
		err     string
	}{
		{2, `{"min":1048576,"max":8388608,"average_bits":20}`, ""},
		{3, `{"min":1048576,"max":8388608,"average_bits":20}`, ""},
		{3, `{"min":2097152,"max":8388608,"average_bits":19}`, ""},
		{2, `{"min":2097152,"max":8388608,"average_bits":19}`, "corrupt config: invalid chunker parameters min 2097152 avg 2^19 max 8388608: format versions 1 and 2 need an average of at least the minimum"},
		{1, `{"min":2097152,"max":8388608,"average_bits":19}`, "corrupt config: invalid chunker parameters min 2097152 avg 2^19 max 8388608: format versions 1 and 2 need an average of at least the minimum"},
		{3, `{"min":2097152,"max":8388608,"average_bits":24}`, "corrupt config: invalid chunker parameters min 2097152 avg 2^24 max 8388608"},
		{3, `{"min":32,"max":8388608,"average_bits":19}`, "corrupt config: invalid chunker parameters min 32 avg 2^19 max 8388608"},
		{4, `{"min":2097152,"max":8388608,"average_bits":19}`, "repo: repository format is newer than this version of cairn (repository version 4, this cairn reads up to 3): upgrade cairn"},
	} {
		cfg, _, err := repo.ParseConfig(config(c.version, c.files))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.err {
			t.Errorf("version %d files %s: error %q, want %q", c.version, c.files, got, c.err)
		}
		if err == nil && (cfg.Version != c.version || cfg.Chunking["files"].Params().Validate() != nil) {
			t.Errorf("version %d files %s: parsed %+v", c.version, c.files, cfg)
		}
	}
}

// FuzzOpenKey feeds age-encrypted key files to crypto.OpenKey with an identity
// credential: X25519 stanzas are tried, scrypt ones are refused before any key
// derivation (so no input costs a work factor).
func FuzzOpenKey(f *testing.F) {
	v := crashtest.LoadVectors(f)
	z := newFzRepo(f)
	in := append(append([][]byte{}, v.KeyFiles...), z.files(f, backend.KeyFile)...)
	seeds(f, in...)
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = crypto.KeyKind(data)
		s, err := crypto.OpenKey(data, z.cred)
		if err != nil {
			return
		}
		if s.DataRecipient == nil || s.IndexIdentity == nil || s.IndexRecipient == nil {
			t.Fatal("opened a key without recipients")
		}
	})
}
