package repo

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"filippo.io/age"
	"github.com/zeebo/blake3"
)

// fuzzPackKey is a fixed identity, so that a crasher found once reproduces.
const fuzzPackKey = "AGE-SECRET-KEY-1AJ238XHA6ZHC4CEV9JDJ092Q9S9DVNP55D6UHC6MUUQDSQTNQUESN6ZW8S"

// FuzzDecryptPackInPlace: a stored pack decrypted in its own buffer (the path a
// local restore takes) yields exactly what decrypting a copy into another buffer
// yields, or an error, with or without the name check; with it, bytes that do not
// hash to the pack's name are never accepted.
func FuzzDecryptPackInPlace(f *testing.F) {
	id, err := age.ParseX25519Identity(fuzzPackKey)
	if err != nil {
		f.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{0, 1, 100, 64 << 10, 64<<10 + 1} {
		plain := make([]byte, n)
		for i := range plain {
			plain[i] = byte(rng.Uint32())
		}
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, id.Recipient())
		if err != nil {
			f.Fatal(err)
		}
		w.Write(plain)
		w.Close()
		f.Add(buf.Bytes(), true)
	}
	f.Fuzz(func(t *testing.T, stored []byte, rightName bool) {
		var name ID
		if rightName {
			name = ID(blake3.Sum256(stored))
		}
		var want []byte
		ar, refErr := age.Decrypt(bytes.NewReader(bytes.Clone(stored)), id)
		if refErr == nil {
			want, refErr = io.ReadAll(ar)
		}
		plain, err := decryptPackInPlace(name, bytes.Clone(stored), id, true)
		// Without the name check (OpenPack), the name must not matter.
		unchecked, uerr := decryptPackInPlace(ID{}, bytes.Clone(stored), id, false)
		if (uerr == nil) != (refErr == nil) || (uerr == nil && !bytes.Equal(unchecked, want)) {
			t.Fatalf("unchecked in place: %v, %d bytes; from a copy: %v, %d bytes", uerr, len(unchecked), refErr, len(want))
		}
		switch {
		case refErr != nil:
			if err == nil {
				t.Fatalf("decrypted in place what does not decrypt from a copy (%v)", refErr)
			}
		case !rightName:
			if err == nil {
				t.Fatal("accepted a pack whose name does not match its bytes")
			}
		case err != nil:
			t.Fatalf("in place: %v; from a copy: fine", err)
		case !bytes.Equal(plain, want):
			t.Fatalf("in place: %d bytes differing from the %d decrypted from a copy", len(plain), len(want))
		}
	})
}
