package crashtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/local"
	"github.com/cairn-backup/cairn/repo/blob"
)

// Vectors holds the files of the frozen repository testdata/vectors/repo-v1, stored
// and decrypted with its password: the real-file seeds of the fuzz targets.
type Vectors struct {
	Config      []byte   // plaintext
	KeyFiles    [][]byte // as stored (age files)
	KeyPlain    [][]byte // decrypted key documents
	Index       [][]byte // plaintexts
	Packs       [][]byte // plaintexts of packs up to 64 KiB (larger ones make slow seeds)
	PackHeaders [][]byte // header || trailer of every pack, as ParseHeader sees it
	Trees       [][]byte // tree blobs
	Snapshots   [][]byte // snapshot record plaintexts
	Names       []string // node names and link targets of every tree
}

// VectorDir returns the directory of the frozen repository.
func VectorDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "vectors", "repo-v1")
}

// LoadVectors opens testdata/vectors/repo-v1 with its password and decrypts every file.
func LoadVectors(tb testing.TB) *Vectors {
	tb.Helper()
	v, err := loadVectors()
	if err != nil {
		tb.Fatalf("test vectors: %v", err)
	}
	return v
}

func loadVectors() (*Vectors, error) {
	ctx := context.Background()
	dir := VectorDir()
	pw, err := os.ReadFile(dir + ".password")
	if err != nil {
		return nil, fmt.Errorf("read vector password: %w", err)
	}
	be, err := local.Open(dir)
	if err != nil {
		return nil, err
	}
	cred, err := crypto.NewPassphrase(string(bytes.TrimSpace(pw)), 0)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, be, cred)
	if err != nil {
		return nil, fmt.Errorf("open vectors: %w", err)
	}
	defer r.Close()
	ids := r.Secrets().Identities()
	decrypt := func(enc []byte) ([]byte, error) {
		rd, err := age.Decrypt(bytes.NewReader(enc), ids...)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(rd)
	}
	v := &Vectors{}
	load := func(h backend.Handle) ([]byte, []byte, error) {
		enc, err := backend.LoadAll(ctx, be, h)
		if err != nil {
			return nil, nil, fmt.Errorf("load %s: %w", h, err)
		}
		plain, err := decrypt(enc)
		if err != nil {
			return enc, nil, fmt.Errorf("decrypt %s: %w", h, err)
		}
		return enc, plain, nil
	}
	if _, v.Config, err = load(backend.Handle{Type: backend.ConfigFile}); err != nil {
		return nil, err
	}
	for _, t := range []backend.FileType{backend.KeyFile, backend.IndexFile, backend.SnapshotFile, backend.PackFile} {
		files, err := r.List(ctx, t)
		if err != nil {
			return nil, err
		}
		for _, id := range files {
			h := backend.Handle{Type: t, Name: id.String()}
			switch t {
			case backend.KeyFile:
				enc, err := backend.LoadAll(ctx, be, h)
				if err != nil {
					return nil, err
				}
				s, err := crypto.OpenKey(enc, cred)
				if err != nil {
					return nil, fmt.Errorf("open %s: %w", h, err)
				}
				doc, err := s.MarshalJSON()
				if err != nil {
					return nil, err
				}
				v.KeyFiles, v.KeyPlain = append(v.KeyFiles, enc), append(v.KeyPlain, doc)
			case backend.IndexFile, backend.SnapshotFile:
				_, plain, err := load(h)
				if err != nil {
					return nil, err
				}
				if t == backend.IndexFile {
					v.Index = append(v.Index, plain)
				} else {
					v.Snapshots = append(v.Snapshots, plain)
				}
			case backend.PackFile:
				_, plain, err := load(h)
				if err != nil {
					return nil, err
				}
				if len(plain) <= 64<<10 {
					v.Packs = append(v.Packs, plain)
				}
				ents, err := repo.ParsePackPlaintext(plain)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", h, err)
				}
				var end uint32
				for _, e := range ents {
					end = max(end, e.Offset+e.Length)
				}
				v.PackHeaders = append(v.PackHeaders, plain[end:])
				rd, err := r.ReadPack(ctx, id)
				if err != nil {
					return nil, err
				}
				for _, e := range ents {
					if e.Type != blob.Tree {
						continue
					}
					b, err := rd.Blob(e, nil)
					if err != nil {
						return nil, err
					}
					v.Trees = append(v.Trees, b)
				}
				rd.Close()
			}
		}
	}
	names := map[string]bool{}
	for _, tr := range v.Trees {
		for _, key := range [][]byte{[]byte(`"name":"`), []byte(`"link_target":"`)} {
			for rest := tr; ; {
				i := bytes.Index(rest, key)
				if i < 0 {
					break
				}
				rest = rest[i+len(key):]
				if j := bytes.IndexByte(rest, '"'); j >= 0 {
					names[string(rest[:j])] = true
				}
			}
		}
	}
	for n := range names {
		v.Names = append(v.Names, n)
	}
	sort.Strings(v.Names)
	if len(v.KeyFiles) == 0 || len(v.Index) == 0 || len(v.Trees) == 0 || len(v.Snapshots) == 0 || len(v.PackHeaders) == 0 {
		return nil, fmt.Errorf("vector repository %s is incomplete", dir)
	}
	return v, nil
}
