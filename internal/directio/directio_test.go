package directio

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestBuffer(t *testing.T) {
	for i := 0; i < 20; i++ {
		b := Buffer(1 << 20)
		if len(b) != 0 || cap(b) != 1<<20 || !Aligned(b[:1]) {
			t.Fatalf("len %d cap %d aligned %v", len(b), cap(b), Aligned(b[:1]))
		}
	}
}

func TestReader(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3*readBufSize+12345)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []int{Flag, 0} {
		f, err := os.OpenFile(path, os.O_RDONLY|flag, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range [][2]int64{{0, int64(len(data))}, {1, 10}, {4095, 4097}, {readBufSize - 3, readBufSize + 7},
			{int64(len(data)) - 1, 1}, {12345, int64(len(data)) - 12345}, {0, 0}} {
			r := NewReader(f, c[0], c[1])
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data[c[0]:c[0]+c[1]]) {
				t.Fatalf("flag %#x offset %d length %d: %d bytes, %v", flag, c[0], c[1], len(got), err)
			}
		}
		// Asking for more than the file holds ends in ErrUnexpectedEOF.
		r := NewReader(f, int64(len(data))-10, 20)
		if _, err := io.ReadAll(r); err != io.ErrUnexpectedEOF {
			t.Fatalf("past the end: %v", err)
		}
		r.Close()
		f.Close()
	}
}
