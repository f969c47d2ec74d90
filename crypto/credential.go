package crypto

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"filippo.io/age/plugin"
)

// DefaultScryptWorkFactor is the scrypt cost (log2 N) of new passphrase key files:
// about 0.09 s and 32 MiB on this project's reference machine, paid once per command.
// docs/SECURITY.md §Passphrases explains the choice: at 16 the KDF was half of an
// unchanged re-backup and set a backup's peak memory.
const DefaultScryptWorkFactor = 15

// MaxScryptWorkFactor is the largest cost accepted when creating or opening a key
// (2^20: 1 GiB of memory).
const MaxScryptWorkFactor = 20

// MinScryptWorkFactor is the smallest cost accepted when creating a key (tests use it).
const MinScryptWorkFactor = 10

// Credential is what a user presents to open a repository: it seals a key file (the
// recipient side) and opens key files (the identity side).
type Credential interface {
	// Recipient returns the recipient a new key file for this credential is encrypted to.
	Recipient() (age.Recipient, error)
	// Identities returns the identities that open key files sealed for this credential.
	Identities() []age.Identity
	// Kind names the credential type for messages: "passphrase", "identity" or
	// "plugin" (an age plugin identity, e.g. a hardware key).
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
	if workFactor < MinScryptWorkFactor || workFactor > MaxScryptWorkFactor {
		return nil, fmt.Errorf("scrypt work factor %d out of range %d..%d", workFactor, MinScryptWorkFactor, MaxScryptWorkFactor)
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
	// A key file planted by the storage provider must not make opening cost age's
	// maximum (2^22: 4 GiB, seconds): accept what cairn itself creates, no more.
	id.SetMaxWorkFactor(MaxScryptWorkFactor)
	return []age.Identity{id}
}

// Kind implements Credential.
func (p *Passphrase) Kind() string { return "passphrase" }

// IdentityFile is a credential made of age identities, as in an `age-keygen` file, or
// of age plugin identities ("AGE-PLUGIN-NAME-1…", hardware keys such as
// age-plugin-yubikey), which run the program age-plugin-NAME to unwrap key files.
type IdentityFile struct {
	ids []age.Identity
	ui  *plugin.ClientUI

	derived  age.Recipient // recipient of the first native identity
	comment  age.Recipient // recipient named by a comment above the first plugin identity
	explicit age.Recipient // SetRecipient
}

// ParseIdentityFile reads age identities (one per line, '#' comments allowed):
// X25519 ("AGE-SECRET-KEY-1…"), hybrid post-quantum ("AGE-SECRET-KEY-PQ-1…") and age
// plugin identities ("AGE-PLUGIN-NAME-1…"). Plugins talk to the user through
// DefaultPluginUI.
func ParseIdentityFile(r io.Reader) (*IdentityFile, error) {
	return ParseIdentityFileUI(r, DefaultPluginUI())
}

// ParseIdentityFileUI is ParseIdentityFile with the given user interface for plugins.
//
// A plugin identity cannot derive its recipient: it is taken from SetRecipient, or
// from a "# Recipient: age1…" or "# public key: age1…" comment above the identity (as
// age-plugin-yubikey and age-keygen write them).
func ParseIdentityFileUI(r io.Reader, ui *plugin.ClientUI) (*IdentityFile, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	f := &IdentityFile{ui: ui}
	var pending string
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			if rec, ok := recipientComment(line); ok {
				pending = rec
			}
			continue
		}
		// Errors never quote the line: it is secret key material.
		switch {
		case strings.HasPrefix(line, "AGE-PLUGIN-"):
			pid, err := plugin.NewIdentity(line, ui)
			if err != nil {
				return nil, fmt.Errorf("parse identity file: line %d: invalid age plugin identity", n+1)
			}
			if len(f.ids) == 0 && pending != "" {
				if f.comment, err = parseRecipientString(pending, ui); err != nil {
					return nil, fmt.Errorf("parse identity file: recipient comment above line %d: %w", n+1, err)
				}
			}
			f.ids = append(f.ids, &pluginIdentity{id: pid})
		case strings.HasPrefix(line, "AGE-SECRET-KEY-PQ-1"):
			id, err := age.ParseHybridIdentity(line)
			if err != nil {
				return nil, fmt.Errorf("parse identity file: line %d: invalid post-quantum identity", n+1)
			}
			if len(f.ids) == 0 {
				f.derived = id.Recipient()
			}
			f.ids = append(f.ids, id)
		case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
			id, err := age.ParseX25519Identity(line)
			if err != nil {
				return nil, fmt.Errorf("parse identity file: line %d: invalid X25519 identity", n+1)
			}
			if len(f.ids) == 0 {
				f.derived = id.Recipient()
			}
			f.ids = append(f.ids, id)
		default:
			return nil, fmt.Errorf("parse identity file: line %d: not an age identity (AGE-SECRET-KEY-1…, AGE-SECRET-KEY-PQ-1… or AGE-PLUGIN-…)", n+1)
		}
		pending = ""
	}
	if len(f.ids) == 0 {
		return nil, errors.New("parse identity file: no identities found")
	}
	return f, nil
}

// Recipient implements Credential: the recipient of the file's first identity, or
// the one set with SetRecipient.
func (f *IdentityFile) Recipient() (age.Recipient, error) {
	switch {
	case f.explicit != nil:
		return f.explicit, nil
	case f.derived != nil:
		return f.derived, nil
	case f.comment != nil:
		return f.comment, nil
	}
	return nil, fmt.Errorf("the age plugin identity (%s) cannot derive its recipient: give the recipient the plugin printed (age1%s1…) with --new-recipient, or put a \"# Recipient: age1…\" line above the identity in its file", strings.Join(f.Plugins(), ", "), firstOr(f.Plugins(), "name"))
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// recipientUnverified reports whether the recipient was given rather than derived
// from the identity, so that SealKey must check the identity opens what it sealed.
func (f *IdentityFile) recipientUnverified() bool {
	return f.explicit != nil || (f.derived == nil && f.comment != nil)
}

// Identities implements Credential.
func (f *IdentityFile) Identities() []age.Identity { return f.ids }

// Kind implements Credential: "plugin" when the first identity is an age plugin's,
// else "identity".
func (f *IdentityFile) Kind() string {
	if _, ok := f.ids[0].(*pluginIdentity); ok {
		return "plugin"
	}
	return "identity"
}

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
	if v, ok := cred.(interface{ recipientUnverified() bool }); ok && v.recipientUnverified() {
		// A mistyped recipient would give a key nobody can open (and key passwd
		// removes the old key): check the identity opens it first.
		if _, err := OpenKey(buf.Bytes(), cred); err != nil {
			if errors.Is(err, ErrNoMatchingKey) {
				return nil, fmt.Errorf("seal key: the identity does not open a key encrypted to recipient %s: is it the identity's recipient?", recipientString(rec))
			}
			return nil, fmt.Errorf("seal key: check that the identity opens the new key: %w", err)
		}
	}
	return buf.Bytes(), nil
}

func recipientString(r age.Recipient) string {
	if s, ok := r.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", r)
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
		// A failing plugin surfaces as a *PluginError (errors.Is ErrPlugin).
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
