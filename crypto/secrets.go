package crypto

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"filippo.io/age"
)

// KeyFileVersion is the version of the key file's JSON document (docs/FORMAT.md §Keys).
const KeyFileVersion = 1

// Sentinel errors.
var (
	// ErrNoMatchingKey: no key file opens with the given credential.
	ErrNoMatchingKey = errors.New("crypto: no key matches the given credential")
	// ErrWriteOnly: the operation needs the data identity, which a write-only key lacks.
	// Its text is shown to users as is (docs/KEYS.md).
	ErrWriteOnly = errors.New("this key is write-only: it can add backups but not read, list, forget or prune; use a full key")
	// ErrNewerKeyFormat: a key file of a newer version than this cairn understands.
	ErrNewerKeyFormat = errors.New("crypto: key file format is newer than this version of cairn")
)

// Secrets is the key material of one repository.
//
// A full key holds all of it. A write-only key lacks DataIdentity: it can encrypt new
// data (to DataRecipient), read the index and config (IndexIdentity) and compute blob
// IDs (IDKey), but cannot decrypt packs, trees or snapshots.
type Secrets struct {
	RepoID string // hex repository ID, binds the key to its repository

	DataIdentity  age.Identity // nil for a write-only key
	DataRecipient age.Recipient
	dataIDText    string
	dataRecText   string

	IndexIdentity  age.Identity
	IndexRecipient age.Recipient
	indexIDText    string
	indexRecText   string

	IDKey [32]byte

	// Metadata stored with the key (informational).
	Created time.Time
	Host    string
	User    string
}

// WriteOnly reports whether the secrets lack the data identity.
func (s *Secrets) WriteOnly() bool { return s.DataIdentity == nil }

// DataIdentityString returns the data identity in age's text form
// ("AGE-SECRET-KEY-1…"), for `cairn key export-identity`. It fails for write-only keys.
func (s *Secrets) DataIdentityString() (string, error) {
	if s.DataIdentity == nil {
		return "", ErrWriteOnly
	}
	return s.dataIDText, nil
}

// Recipients returns the recipients repository files that every key may read are
// encrypted to (config, index, locks): the data and the index recipient.
func (s *Secrets) Recipients() []age.Recipient {
	return []age.Recipient{s.DataRecipient, s.IndexRecipient}
}

// Identities returns every identity the secrets hold, data first.
func (s *Secrets) Identities() []age.Identity {
	var ids []age.Identity
	if s.DataIdentity != nil {
		ids = append(ids, s.DataIdentity)
	}
	return append(ids, s.IndexIdentity)
}

// GenerateOptions selects the kind of identities a new repository gets.
type GenerateOptions struct {
	// PostQuantum selects hybrid ML-KEM-768 + X25519 identities for data and index.
	PostQuantum bool
}

// Generate creates fresh secrets for a new repository.
func Generate(opts GenerateOptions) (*Secrets, error) {
	var repoID [32]byte
	if _, err := rand.Read(repoID[:]); err != nil {
		return nil, fmt.Errorf("generate repository id: %w", err)
	}
	s := &Secrets{RepoID: hex.EncodeToString(repoID[:]), Created: time.Now().UTC()}
	if _, err := rand.Read(s.IDKey[:]); err != nil {
		return nil, fmt.Errorf("generate id key: %w", err)
	}
	gen := func() (string, string, error) {
		if opts.PostQuantum {
			id, err := age.GenerateHybridIdentity()
			if err != nil {
				return "", "", err
			}
			return id.String(), id.Recipient().String(), nil
		}
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return "", "", err
		}
		return id.String(), id.Recipient().String(), nil
	}
	d, dr, err := gen()
	if err != nil {
		return nil, fmt.Errorf("generate data identity: %w", err)
	}
	i, ir, err := gen()
	if err != nil {
		return nil, fmt.Errorf("generate index identity: %w", err)
	}
	doc := keyDoc{Version: KeyFileVersion, Repository: s.RepoID, DataIdentity: d, DataRecipient: dr,
		IndexIdentity: i, IndexRecipient: ir, IDKey: hex.EncodeToString(s.IDKey[:]), Created: s.Created}
	return fromDoc(doc)
}

// WriteOnlyCopy returns the secrets without the data identity.
func (s *Secrets) WriteOnlyCopy() *Secrets {
	c := *s
	c.DataIdentity = nil
	c.dataIDText = ""
	return &c
}

// keyDoc is the JSON document inside a key file (docs/FORMAT.md §Keys).
type keyDoc struct {
	Version        int       `json:"version"`
	Repository     string    `json:"repository"`
	WriteOnly      bool      `json:"write_only,omitempty"`
	DataIdentity   string    `json:"data_identity,omitempty"`
	DataRecipient  string    `json:"data_recipient"`
	IndexIdentity  string    `json:"index_identity"`
	IndexRecipient string    `json:"index_recipient"`
	IDKey          string    `json:"id_key"`
	Created        time.Time `json:"created"`
	Host           string    `json:"host,omitempty"`
	User           string    `json:"user,omitempty"`
}

func (s *Secrets) doc() keyDoc {
	return keyDoc{
		Version: KeyFileVersion, Repository: s.RepoID, WriteOnly: s.WriteOnly(),
		DataIdentity: s.dataIDText, DataRecipient: s.dataRecText,
		IndexIdentity: s.indexIDText, IndexRecipient: s.indexRecText,
		IDKey: hex.EncodeToString(s.IDKey[:]), Created: s.Created, Host: s.Host, User: s.User,
	}
}

// MarshalJSON encodes the secrets as the key file document.
func (s *Secrets) MarshalJSON() ([]byte, error) { return json.Marshal(s.doc()) }

// ParseSecrets decodes a key file document (the plaintext of a key file).
func ParseSecrets(data []byte) (*Secrets, error) {
	var doc keyDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	if doc.Version > KeyFileVersion {
		return nil, fmt.Errorf("%w (key version %d, supported %d)", ErrNewerKeyFormat, doc.Version, KeyFileVersion)
	}
	if doc.Version < 1 {
		return nil, fmt.Errorf("parse key: invalid version %d", doc.Version)
	}
	return fromDoc(doc)
}

func fromDoc(doc keyDoc) (*Secrets, error) {
	s := &Secrets{RepoID: doc.Repository, Created: doc.Created, Host: doc.Host, User: doc.User,
		dataRecText: doc.DataRecipient, indexIDText: doc.IndexIdentity, indexRecText: doc.IndexRecipient}
	if b, err := hex.DecodeString(doc.Repository); err != nil || len(b) != 32 {
		return nil, fmt.Errorf("parse key: invalid repository id %q", doc.Repository)
	}
	k, err := hex.DecodeString(doc.IDKey)
	if err != nil || len(k) != len(s.IDKey) {
		return nil, errors.New("parse key: invalid id_key")
	}
	copy(s.IDKey[:], k)
	if s.DataRecipient, err = parseRecipient(doc.DataRecipient); err != nil {
		return nil, fmt.Errorf("parse key: data_recipient: %w", err)
	}
	if s.IndexRecipient, err = parseRecipient(doc.IndexRecipient); err != nil {
		return nil, fmt.Errorf("parse key: index_recipient: %w", err)
	}
	if s.IndexIdentity, err = parseIdentity(doc.IndexIdentity); err != nil {
		return nil, fmt.Errorf("parse key: index_identity: %w", err)
	}
	if doc.DataIdentity != "" {
		if doc.WriteOnly {
			return nil, errors.New("parse key: write-only key holds a data identity")
		}
		if s.DataIdentity, err = parseIdentity(doc.DataIdentity); err != nil {
			return nil, fmt.Errorf("parse key: data_identity: %w", err)
		}
		s.dataIDText = doc.DataIdentity
	} else if !doc.WriteOnly {
		return nil, errors.New("parse key: missing data_identity")
	}
	return s, nil
}

func parseIdentity(s string) (age.Identity, error) {
	if strings.ContainsAny(s, "\n\r") || s == "" {
		return nil, errors.New("invalid identity")
	}
	ids, err := age.ParseIdentities(strings.NewReader(s))
	if err != nil {
		return nil, err
	}
	if len(ids) != 1 {
		return nil, errors.New("want exactly one identity")
	}
	return ids[0], nil
}

func parseRecipient(s string) (age.Recipient, error) {
	if strings.ContainsAny(s, "\n\r") || s == "" {
		return nil, errors.New("invalid recipient")
	}
	rs, err := age.ParseRecipients(strings.NewReader(s))
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 {
		return nil, errors.New("want exactly one recipient")
	}
	return rs[0], nil
}
