package backup_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/snapshot/restore"
)

// TestLargeTree backs up and restores 10,000 files in 100 directories, with ownership
// when running as root. Normally the files are small (about 20 MB in all); with
// CAIRN_BIG_TESTS=1 they add up to about 2 GB (the documented large run:
// `CAIRN_BIG_TESTS=1 go test -run TestLargeTree -timeout 30m ./snapshot/backup`).
func TestLargeTree(t *testing.T) {
	avg := 2 << 10
	if os.Getenv("CAIRN_BIG_TESTS") != "" {
		avg = 200 << 10
	}
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(11, 12))
	root := os.Geteuid() == 0
	mt := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 10000; i++ {
		p := filepath.Join(src, fmt.Sprintf("d%02d", i%100), fmt.Sprintf("f%05d.bin", i))
		writeFile(t, p, randBytes(rng, rng.IntN(2*avg)), os.FileMode(0o600|(i%3)*0o40), mt.Add(time.Duration(i)*time.Second))
		if root && i%1000 == 0 {
			if err := os.Lchown(p, 1000+i/1000, 2000); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < 100; i++ {
		d := filepath.Join(src, fmt.Sprintf("d%02d", i))
		os.Chtimes(d, mt, mt)
	}
	_, be := newRepo(t)
	res := runBackup(t, openRepo(t, be), []string{src}, nil)
	if res.Snapshot.Summary.TotalFiles != 10000 {
		t.Fatalf("backed up %d files", res.Snapshot.Summary.TotalFiles)
	}
	target := t.TempDir()
	if _, err := restore.Run(context.Background(), openRepo(t, be), res.Snapshot.Tree, restore.Options{Target: target, Owners: root}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, filepath.Join(target, src))
	if root {
		for i := 0; i < 10000; i += 1000 {
			p := filepath.Join(target, src, fmt.Sprintf("d%02d", i%100), fmt.Sprintf("f%05d.bin", i))
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != uint32(1000+i/1000) || st.Gid != 2000 {
				t.Errorf("%s: owner %d:%d", p, st.Uid, st.Gid)
			}
		}
	}
}
