package crypto

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
)

// DefaultScryptWorkFactor is the scrypt cost (log2 N) of passphrase key files: about
// 0.2 s and 64 MiB on this project's reference machine, paid once per command.
// docs/SECURITY.md §Passphrases explains the choice (memory is the binding limit: at
// 17 the KDF alone would double a backup's peak RSS).
const DefaultScryptWorkFactor = 16

// MinScryptWorkFactor is the smallest cost accepted when creating a key (tests use it).
const MinScryptWorkFactor = 10

// Credential is what a user presents to open a repository: it seals a key file (the
// recipient side) and opens key files (the identity side).
type Credential interface {
	// Recipient returns the recipient a new key file for this credential is encrypted to.
	Recipient() (age.Recipient, error)
	// Identities returns the identities that open key files sealed for this credential.
	Identities() []age.Identity
	// Kind names the credential type for messages: "passphrase" or "identity".
	Kind() string
}

// Passphrase is a credential derived from a passphrase with age's scrypt recipient.
type Passphrase struct {
	secret     string
	workFactor int
}

// NewPassphrase returns a passphrase credential. workFactor is scrypt's log2 N for
// new key files (0 means DefaultScryptWorkFactor).
func NewPassphrase(secret string, workFactor int) (*Passphrase, error) {
	if secret == "" {
		return nil, errors.New("empty passphrase")
	}
	if workFactor == 0 {
		workFactor = DefaultScryptWorkFactor
	}
	if workFactor < MinScryptWorkFactor || workFactor > 22 {
		return nil, fmt.Errorf("scrypt work factor %d out of range %d..22", workFactor, MinScryptWorkFactor)
	}
	return &Passphrase{secret: secret, workFactor: workFactor}, nil
}

// Recipient implements Credential.
func (p *Passphrase) Recipient() (age.Recipient, error) {
	r, err := age.NewScryptRecipient(p.secret)
	if err != nil {
		return nil, err
	}
	r.SetWorkFactor(p.workFactor)
	return r, nil
}

// Identities implements Credential.
func (p *Passphrase) Identities() []age.Identity {
	id, err := age.NewScryptIdentity(p.secret)
	if err != nil {
		return nil
	}
	return []age.Identity{id}
}

// Kind implements Credential.
func (p *Passphrase) Kind() string { return "passphrase" }

// IdentityFile is a credential made of age identities, as in an `age-keygen` file.
type IdentityFile struct {
	ids  []age.Identity
	recs []age.Recipient
}

// ParseIdentityFile reads age identities (one per line, '#' comments allowed):
// X25519 ("AGE-SECRET-KEY-1…") and hybrid post-quantum ("AGE-SECRET-KEY-PQ-1…").
func ParseIdentityFile(r io.Reader) (*IdentityFile, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse identity file: %w", err)
	}
	f := &IdentityFile{ids: ids}
	for _, id := range ids {
		switch id := id.(type) {
		case *age.X25519Identity:
			f.recs = append(f.recs, id.Recipient())
		case *age.HybridIdentity:
			f.recs = append(f.recs, id.Recipient())
		}
	}
	return f, nil
}

// Recipient implements Credential: the recipient of the file's first identity.
func (f *IdentityFile) Recipient() (age.Recipient, error) {
	if len(f.recs) == 0 {
		return nil, errors.New("identity file holds no X25519 or hybrid identity to derive a recipient from")
	}
	return f.recs[0], nil
}

// Identities implements Credential.
func (f *IdentityFile) Identities() []age.Identity { return f.ids }

// Kind implements Credential.
func (f *IdentityFile) Kind() string { return "identity" }

// SealKey encrypts the secrets into a key file for the credential.
func SealKey(s *Secrets, cred Credential) ([]byte, error) {
	rec, err := cred.Recipient()
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	plain, err := s.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rec)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	return buf.Bytes(), nil
}

// OpenKey decrypts a key file with the credential. A credential that does not match
// yields an error wrapping ErrNoMatchingKey; a damaged file any other error.
func OpenKey(data []byte, cred Credential) (*Secrets, error) {
	ids := cred.Identities()
	if len(ids) == 0 {
		return nil, ErrNoMatchingKey
	}
	if _, ok := cred.(*Passphrase); !ok && KeyKind(data) == "passphrase" {
		// age refuses to try non-scrypt identities on scrypt files with an error that
		// is not ErrIncorrectIdentity; treat it as "not this key".
		return nil, ErrNoMatchingKey
	}
	r, err := age.Decrypt(bytes.NewReader(data), ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.Is(err, age.ErrIncorrectIdentity) || errors.As(err, &nm) {
			return nil, ErrNoMatchingKey
		}
		return nil, fmt.Errorf("decrypt key: %w", err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("decrypt key: %w", err)
	}
	return ParseSecrets(plain)
}

// KeyKind reads the credential type from a key file's age header without
// decrypting it: "passphrase" (scrypt), "identity" (X25519), "post-quantum"
// (ML-KEM hybrid), "ssh", "plugin:<name>", or "unknown".
func KeyKind(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			if line != "age-encryption.org/v1" {
				return "unknown"
			}
			first = false
			continue
		}
		if !strings.HasPrefix(line, "-> ") {
			continue
		}
		fields := strings.Fields(line[3:])
		if len(fields) == 0 {
			return "unknown"
		}
		switch t := fields[0]; {
		case t == "scrypt":
			return "passphrase"
		case t == "X25519":
			return "identity"
		case t == "mlkem768x25519":
			return "post-quantum"
		case strings.HasPrefix(t, "ssh-"):
			return "ssh"
		default:
			return "plugin:" + t
		}
	}
	return "unknown"
}
