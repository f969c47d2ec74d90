package pack_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/pack"
)

func buildPack(t testing.TB) ([]byte, []pack.Entry) {
	var buf bytes.Buffer
	w := pack.NewWriter(&buf)
	for i, s := range []string{"hello", "", "world!!"} {
		id := blob.ID{byte(i + 1)}
		if err := w.Add(blob.Type(i%2), id, pack.CompressionNone, []byte(s), len(s)); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := w.Finalize()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), ents
}

func parse(p []byte) ([]pack.Entry, error) {
	if len(p) < pack.TrailerSize {
		return nil, pack.ErrInvalid
	}
	n, err := pack.ParseTrailer(p[len(p)-pack.TrailerSize:], int64(len(p)))
	if err != nil {
		return nil, err
	}
	start := len(p) - pack.TrailerSize - n
	return pack.ParseHeader(p[start:len(p)-pack.TrailerSize], int64(len(p)))
}

func TestRoundTrip(t *testing.T) {
	p, want := buildPack(t)
	got, err := parse(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries", len(got))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("entry %d: %+v != %+v", i, got[i], want[i])
		}
		if s := p[got[i].Offset : got[i].Offset+got[i].Length]; string(s) != []string{"hello", "", "world!!"}[i] {
			t.Fatalf("blob %d = %q", i, s)
		}
	}
}

func TestRejects(t *testing.T) {
	p, _ := buildPack(t)
	cases := map[string]func([]byte) []byte{
		"bad magic":       func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
		"header too long": func(b []byte) []byte { b[len(b)-pack.TrailerSize] = 0xff; return b },
		"unknown type":    func(b []byte) []byte { b[len(b)-pack.TrailerSize-3*pack.EntrySize] = 7; return b },
		"reserved byte":   func(b []byte) []byte { b[len(b)-pack.TrailerSize-3*pack.EntrySize+2] = 1; return b },
		"truncated":       func(b []byte) []byte { return b[1:] },
	}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parse(mut(bytes.Clone(p)))
			if !errors.Is(err, pack.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	p, _ := buildPack(f)
	f.Add(p)
	f.Add(p[:len(p)-1])
	f.Add([]byte(pack.Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		ents, err := parse(data)
		if err != nil {
			if !errors.Is(err, pack.ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			return
		}
		// Accepted headers describe blobs inside the data.
		for _, e := range ents {
			if int(e.Offset)+int(e.Length) > len(data) {
				t.Fatalf("entry outside data: %+v", e)
			}
		}
	})
}
