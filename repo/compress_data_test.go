package repo

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/repo/blob"
)

// BenchmarkCompressDataSet compresses 1 MiB pieces of the files under
// $CAIRN_BENCH_DATA (for example a data set made by bench/gen) and reports the
// stored/raw ratio, v1 (whole blobs) against v2 (text-like stretches only).
func BenchmarkCompressDataSet(b *testing.B) {
	dir := os.Getenv("CAIRN_BENCH_DATA")
	if dir == "" {
		b.Skip("set CAIRN_BENCH_DATA to a directory of sample files")
	}
	var blocks [][]byte
	total := 0
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || total >= 256<<20 {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for len(data) > 0 {
			n := min(len(data), 1<<20)
			blocks = append(blocks, data[:n])
			total += n
			data = data[n:]
		}
		return nil
	})
	for _, v := range []int{1, 2} {
		b.Run(map[int]string{1: "v1", 2: "v2"}[v], func(b *testing.B) {
			b.SetBytes(int64(total))
			out := 0
			for i := 0; i < b.N; i++ {
				out = 0
				for _, blk := range blocks {
					c, _ := compress(nil, blk, blob.Data, v >= 2)
					out += len(c)
				}
			}
			b.ReportMetric(float64(out)/float64(total), "ratio")
		})
	}
}
