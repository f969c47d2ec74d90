package crypto_test

import (
	"errors"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/crypto"
)

func TestKeyFileRoundTrip(t *testing.T) {
	s, err := crypto.Generate(crypto.GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := crypto.NewPassphrase("pw", crypto.MinScryptWorkFactor)
	data, err := crypto.SealKey(s, pw)
	if err != nil {
		t.Fatal(err)
	}
	if crypto.KeyKind(data) != "passphrase" {
		t.Fatalf("kind %q", crypto.KeyKind(data))
	}
	got, err := crypto.OpenKey(data, pw)
	if err != nil {
		t.Fatal(err)
	}
	if got.RepoID != s.RepoID || got.IDKey != s.IDKey || got.WriteOnly() {
		t.Fatal("secrets differ")
	}
	wrong, _ := crypto.NewPassphrase("nope", crypto.MinScryptWorkFactor)
	if _, err := crypto.OpenKey(data, wrong); !errors.Is(err, crypto.ErrNoMatchingKey) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	id, _ := age.GenerateX25519Identity()
	idf, err := crypto.ParseIdentityFile(strings.NewReader("# comment\n" + id.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crypto.OpenKey(data, idf); !errors.Is(err, crypto.ErrNoMatchingKey) {
		t.Fatalf("identity on passphrase key: %v", err)
	}
	data2, err := crypto.SealKey(s.WriteOnlyCopy(), idf)
	if err != nil {
		t.Fatal(err)
	}
	wo, err := crypto.OpenKey(data2, idf)
	if err != nil {
		t.Fatal(err)
	}
	if !wo.WriteOnly() {
		t.Fatal("write-only copy has data identity")
	}
	if _, err := wo.DataIdentityString(); !errors.Is(err, crypto.ErrWriteOnly) {
		t.Fatal(err)
	}
}

func TestPostQuantum(t *testing.T) {
	s, err := crypto.Generate(crypto.GenerateOptions{PostQuantum: true})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := s.MarshalJSON()
	if !strings.Contains(string(js), "AGE-SECRET-KEY-PQ-1") {
		t.Fatalf("not a hybrid identity: %s", js)
	}
	if _, err := crypto.ParseSecrets(js); err != nil {
		t.Fatal(err)
	}
}

func TestBlobMAC(t *testing.T) {
	var k1, k2 [32]byte
	k2[0] = 1
	a := crypto.NewBlobMAC(k1).Sum([]byte("x"))
	b := crypto.NewBlobMAC(k2).Sum([]byte("x"))
	if a == b {
		t.Fatal("MAC ignores its key")
	}
	if a != crypto.NewBlobMAC(k1).Sum([]byte("x")) {
		t.Fatal("MAC not deterministic")
	}
}

func FuzzParseSecrets(f *testing.F) {
	s, _ := crypto.Generate(crypto.GenerateOptions{})
	js, _ := s.MarshalJSON()
	f.Add(js)
	wo, _ := s.WriteOnlyCopy().MarshalJSON()
	f.Add(wo)
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := crypto.ParseSecrets(data)
		if err != nil {
			return
		}
		if s.DataRecipient == nil || s.IndexIdentity == nil || s.IndexRecipient == nil {
			t.Fatal("accepted secrets without recipients")
		}
		_ = crypto.KeyKind(data)
	})
}
