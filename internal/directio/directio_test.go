package directio

import "testing"

func TestBuffer(t *testing.T) {
	for i := 0; i < 20; i++ {
		b := Buffer(1 << 20)
		if len(b) != 0 || cap(b) != 1<<20 || !Aligned(b[:1]) {
			t.Fatalf("len %d cap %d aligned %v", len(b), cap(b), Aligned(b[:1]))
		}
	}
}
