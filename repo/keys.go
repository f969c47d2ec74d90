package repo

import (
	"context"
	"fmt"
	"sort"

	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo/backend"
)

func (r *Repository) saveKey(ctx context.Context, s *crypto.Secrets, cred crypto.Credential) (string, error) {
	data, err := crypto.SealKey(s, cred)
	if err != nil {
		return "", err
	}
	id := ID(crypto.FileHash(data)).String()
	if err := r.be.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: id}, backend.NewByteReader(data)); err != nil {
		return "", fmt.Errorf("save key: %w", err)
	}
	return id, nil
}

// KeyInfo describes a key file as seen without opening it.
type KeyInfo struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"` // from the age header: passphrase, identity, post-quantum, ssh, plugin:NAME
	Current bool   `json:"current"`
}

// Keys lists the key files.
func (r *Repository) Keys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := r.be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		out = append(out, KeyInfo{ID: fi.Name})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	for i := range out {
		data, err := backend.LoadAll(ctx, r.be, backend.Handle{Type: backend.KeyFile, Name: out[i].ID})
		if err != nil {
			return nil, fmt.Errorf("load key %s: %w", out[i].ID, err)
		}
		out[i].Kind = crypto.KeyKind(data)
		out[i].Current = out[i].ID == r.keyID
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// AddKey adds a key file for cred holding the current secrets (or, with writeOnly, the
// secrets without the data identity). Adding keys needs a full key.
func (r *Repository) AddKey(ctx context.Context, cred crypto.Credential, writeOnly bool) (string, error) {
	if r.secrets.WriteOnly() {
		return "", fmt.Errorf("add key: %w", ErrWriteOnly)
	}
	s := r.secrets
	if writeOnly {
		s = s.WriteOnlyCopy()
	}
	c := *s
	c.Host, c.User = hostAndUser()
	return r.saveKey(ctx, &c, cred)
}

// RemoveKey deletes a key file by ID or unique prefix. The last key cannot be removed;
// nor can the last full (non-write-only) key when only the current key is full — the
// caller checks that by opening keys it can open.
func (r *Repository) RemoveKey(ctx context.Context, prefix string) (string, error) {
	if r.secrets.WriteOnly() {
		return "", fmt.Errorf("remove key: %w", ErrWriteOnly)
	}
	id, err := r.FindID(ctx, backend.KeyFile, prefix)
	if err != nil {
		return "", err
	}
	keys, err := r.Keys(ctx)
	if err != nil {
		return "", err
	}
	if len(keys) <= 1 {
		return "", ErrLastKey
	}
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.KeyFile, Name: id.String()}); err != nil {
		return "", fmt.Errorf("remove key %s: %w", id.Short(), err)
	}
	return id.String(), nil
}

// ChangeKey replaces the current key with one for the new credential: the new key is
// written first, then the old one removed, so a crash leaves at least one working key.
func (r *Repository) ChangeKey(ctx context.Context, cred crypto.Credential) (string, error) {
	if r.secrets.WriteOnly() {
		return "", fmt.Errorf("change key: %w", ErrWriteOnly)
	}
	old := r.keyID
	id, err := r.saveKey(ctx, r.secrets, cred)
	if err != nil {
		return "", err
	}
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.KeyFile, Name: old}); err != nil {
		return id, fmt.Errorf("new key %s saved, but removing the old key %s failed: %w", id[:8], old[:8], err)
	}
	r.keyID = id
	return id, nil
}
