package crashtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// WriteSeedsEnv makes TestFuzzSeedCorpus (re)write the seed corpora instead of
// checking them.
const WriteSeedsEnv = "CAIRN_WRITE_FUZZ_SEEDS"

// seedFiles maps corpus files (relative to the module root) to their content: the
// decrypted files of testdata/vectors/repo-v1 for every fuzz target that parses
// repository data (docs/FORMAT.md §1).
func seedFiles(v *Vectors) map[string][]byte {
	out := map[string][]byte{}
	add := func(dir, name string, list ...[]byte) {
		for i, b := range list {
			out[filepath.Join(dir, "testdata", "fuzz", name, fmt.Sprintf("vector-%d", i))] = b
		}
	}
	add("crypto", "FuzzParseSecrets", v.KeyPlain...)
	add("repo/index", "FuzzDecode", v.Index...)
	add("repo/pack", "FuzzParse", append(append([][]byte{}, v.Packs...), v.PackHeaders...)...)
	add("snapshot", "FuzzDecodeTree", v.Trees...)
	add("snapshot", "FuzzSnapshotRecord", v.Snapshots...)
	add("repo", "FuzzParseConfig", v.Config)
	add("repo", "FuzzOpenKey", v.KeyFiles...)
	return out
}

// corpusFile encodes one []byte input in the go test fuzz corpus format.
func corpusFile(b []byte) []byte {
	return []byte("go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n")
}

// TestFuzzSeedCorpus keeps the checked-in seed corpora (*/testdata/fuzz/Fuzz*/vector-*)
// equal to the decrypted test vectors. With CAIRN_WRITE_FUZZ_SEEDS=1 it writes them.
func TestFuzzSeedCorpus(t *testing.T) {
	v := LoadVectors(t)
	root := filepath.Join(filepath.Dir(VectorDir()), "..", "..")
	write := os.Getenv(WriteSeedsEnv) == "1"
	files := seedFiles(v)
	if len(files) < 8 {
		t.Fatalf("only %d seed files", len(files))
	}
	for rel, b := range files {
		p := filepath.Join(root, rel)
		want := corpusFile(b)
		if write {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("seed corpus %s is missing or stale (%v): run %s=1 go test -run TestFuzzSeedCorpus ./internal/crashtest", rel, err, WriteSeedsEnv)
		}
	}
}
