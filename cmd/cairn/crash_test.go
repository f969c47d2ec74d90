package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/crashtest"
)

// Crash-consistency harness (docs/RELIABILITY.md): the real cairn binary, killed with
// SIGKILL before and inside every backend mutation of a backup and of a prune, at
// evenly spread moments of an in-place restore; two backups at once; resume.

const (
	crashPackSize   = 1 << 20 // the smallest the format allows: many packs, little data
	crashIndexEvery = 4       // repo.WriterOptions.IndexEvery default
	crashUploaders  = 2       // repo.WriterOptions.Uploaders default
	crashPackers    = 2       // GOMAXPROCS of the harness's processes
)

// crashData returns n deterministic pseudo-random (incompressible) bytes.
func crashData(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// writeGeneration makes src hold generation g of the test source: a large file shared
// by all generations, one large file of its own, small files and a symlink.
func writeGeneration(t *testing.T, src string, g int) crashtest.Tree {
	return writeGenerationSize(t, src, g, 2560<<10)
}

// writeGenerationSize is writeGeneration with the size of the generation's own file.
func writeGenerationSize(t *testing.T, src string, g, size int) crashtest.Tree {
	t.Helper()
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"shared.bin":                crashData(1, 1<<20),
		fmt.Sprintf("gen%d.bin", g): crashData(uint64(100+g), size),
		"docs/readme.txt":           []byte(strings.Repeat(fmt.Sprintf("generation %d\n", g), 50)),
		"docs/empty":                nil,
	}
	for i := 0; i < 12; i++ {
		files[fmt.Sprintf("docs/sub/f%02d.txt", i)] = crashData(uint64(1000*g+i), 1000+i*700)
	}
	for name, data := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("docs/readme.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	return crashtest.ReadTree(t, src)
}

// crashCounts collects the kill points of every scenario for the closing line.
type crashCounts struct {
	mu     sync.Mutex
	counts map[string]int
	order  []string
}

func (c *crashCounts) add(name string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	if _, ok := c.counts[name]; !ok {
		c.order = append(c.order, name)
	}
	c.counts[name] += n
}

func (c *crashCounts) String() string {
	var parts []string
	for _, n := range c.order {
		parts = append(parts, fmt.Sprintf("%s at %d points", n, c.counts[n]))
	}
	return strings.Join(parts, ", ")
}

// TestCrashConsistency is the crash harness. It builds cairn once and kills it at
// every backend mutation of backups and prunes (and at spread moments of an in-place
// restore); after every kill the repository must pass `check --read-data`, earlier
// snapshots must restore byte-identical, the same command must succeed when run
// again, and what the killed run left behind must be bounded and reclaimed.
func TestCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("crash harness: runs the cairn binary a few hundred times")
	}
	start := time.Now()
	bin := crashtest.Build(t)
	var counts crashCounts
	// Sequential: the machine is small, and the scenarios measure repository sizes.
	t.Run("backup", func(t *testing.T) { crashBackup(t, bin, &counts) })
	t.Run("prune", func(t *testing.T) { crashPrune(t, bin, &counts) })
	t.Run("restore-in-place", func(t *testing.T) { crashRestoreInPlace(t, bin, &counts) })
	t.Run("copy", func(t *testing.T) { crashCopy(t, bin, &counts) })
	if t.Failed() {
		return
	}
	line := fmt.Sprintf("crash harness: killed %s in %s, all checks green", counts.String(), time.Since(start).Round(time.Second))
	t.Log(line)
	fmt.Println(line)
	if report := os.Getenv("CAIRN_CRASH_REPORT"); report != "" {
		// scripts/test-all.sh prints it: go test hides a passing package's output.
		if err := os.WriteFile(report, []byte(line+"\n"), 0o644); err != nil {
			t.Errorf("write crash report: %v", err)
		}
	}
	if counts.counts["backup"] < 50 || counts.counts["prune"] < 50 {
		t.Errorf("want at least 50 kill points each for backup and prune: %s", counts.String())
	}
}

// crashBackup builds a repository generation by generation; for each new generation
// it kills `cairn backup` at every point, starting each time from the repository of
// the generations before.
func crashBackup(t *testing.T, bin string, counts *crashCounts) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	tmpl := filepath.Join(base, "template")
	c := crashtest.New(t, bin, tmpl)
	c.Init(crashPackSize)
	want := map[string]crashtest.Tree{} // snapshot ID -> source content
	// Five packs or so per generation (chunks of 2 MiB and more, each in a pack of
	// its own at this pack size): the first index file is written after four.
	const genSize = 12 << 20
	backupGen := func(c *crashtest.Cairn, g int) {
		tree := writeGenerationSize(t, src, g, genSize)
		before := map[string]bool{}
		for _, s := range c.Snapshots() {
			before[s.ID] = true
		}
		c.Must("-q", "backup", src)
		for _, s := range c.Snapshots() {
			if !before[s.ID] {
				want[s.ID] = tree
			}
		}
	}
	backupGen(c, 0)

	maxReupload := 0.0
	for g := 1; g <= 3; g++ {
		tree := writeGenerationSize(t, src, g, genSize)
		// What a clean run adds: the reference for resume.
		clean := c.WithRepo(filepath.Join(t.TempDir(), "clean"))
		crashtest.CopyDir(t, clean.Repo, tmpl)
		clean.Must("-q", "backup", src)
		full := crashtest.DiskUsage(t, clean.Repo).PackBytes - crashtest.DiskUsage(t, tmpl).PackBytes
		os.RemoveAll(filepath.Dir(clean.Repo))
		tmplUsage := crashtest.DiskUsage(t, tmpl)

		n := crashtest.KillEverywhere(t, c, crashtest.Scenario{
			Name:     fmt.Sprintf("backup of generation %d", g),
			Template: tmpl,
			Args:     []string{"-q", "backup", src},
			AfterKill: func(w *crashtest.Cairn, p crashtest.Point, killed crashtest.Result) {
				// 1. The repository is consistent.
				rep := w.Check(true)
				u := crashtest.DiskUsage(t, w.Repo)
				if rep.OrphanPacks > crashIndexEvery+crashUploaders {
					t.Errorf("kill %s: %d unindexed packs, want at most %d", p, rep.OrphanPacks, crashIndexEvery+crashUploaders)
				}
				// Temporary files: packs being filled, uploads in flight, one other save.
				if maxTemp := int64(crashMaxTemp); u.Temp > maxTemp || u.TempBytes > maxTemp*(crashPackSize+64<<10) {
					t.Errorf("kill %s: %d temporary files (%d bytes) left, want at most %d", p, u.Temp, u.TempBytes, maxTemp)
				}
				// 2. Every earlier snapshot restores byte-identical; a snapshot the
				// killed run managed to save is complete.
				for _, s := range w.Snapshots() {
					wt, ok := want[s.ID]
					if !ok {
						wt = tree
					}
					w.RestoreEqual(s.ID, src, wt)
				}
				// 3. The same command succeeds and reuses what was uploaded.
				w.Must("-q", "backup", src)
				after := crashtest.DiskUsage(t, w.Repo)
				written := u.PackBytes - tmplUsage.PackBytes
				added := after.PackBytes - u.PackBytes
				if written > crashPackSize/2 {
					reupload := float64(added-(full-written)) / float64(written)
					maxReupload = max(maxReupload, reupload)
					if reupload > 0.05 {
						t.Errorf("kill %s: the first run wrote %d pack bytes, the second added %d (a clean run adds %d): %.1f%% uploaded again",
							p, written, added, full, 100*reupload)
					}
				}
				snaps := w.Snapshots()
				newest := snaps[len(snaps)-1]
				w.RestoreEqual(newest.ID, src, tree)
				// 4. Leftovers are reclaimed by prune; everything still checks (the
				// prune scenario reads the data after prunes).
				w.Must("-q", "prune", "--max-unused", "0")
				rep = w.Check(false)
				if rep.OrphanPacks != 0 || rep.ObsoletePacks != 0 {
					t.Errorf("kill %s: after prune %d orphaned and %d obsolete packs remain", p, rep.OrphanPacks, rep.ObsoletePacks)
				}
			},
		})
		counts.add("backup", n)
		backupGen(c, g)
	}
	t.Logf("backup: at most %.2f%% of a killed run's pack bytes were uploaded again", 100*maxReupload)
}

// crashPrune kills `cairn prune` at every point of a prune that deletes most packs.
func crashPrune(t *testing.T, bin string, counts *crashCounts) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	tmpl := filepath.Join(base, "template")
	c := crashtest.New(t, bin, tmpl)
	c.Init(crashPackSize)
	var ids []string
	trees := map[string]crashtest.Tree{}
	for g := 0; g < 6; g++ {
		tree := writeGenerationSize(t, src, g, 2<<20)
		c.Must("-q", "backup", src)
		snaps := c.Snapshots()
		id := snaps[len(snaps)-1].ID
		ids = append(ids, id)
		trees[id] = tree
	}
	// Keep generations 1 and 5: the packs of the others become unused, tree packs
	// partly used.
	c.Must("-q", "forget", ids[0], ids[2], ids[3], ids[4])
	kept := []string{ids[1], ids[5]}

	n := crashtest.KillEverywhere(t, c, crashtest.Scenario{
		Name:     "prune",
		Template: tmpl,
		Args:     []string{"-q", "prune", "--max-unused", "0"},
		AfterKill: func(w *crashtest.Cairn, p crashtest.Point, killed crashtest.Result) {
			w.Check(true)
			// Repacking fills packs like a backup does.
			if u := crashtest.DiskUsage(t, w.Repo); u.Temp > crashMaxTemp {
				t.Errorf("kill %s: %d temporary files left", p, u.Temp)
			}
			snaps := w.Snapshots()
			if len(snaps) != len(kept) {
				t.Errorf("kill %s: %d snapshots, want %d", p, len(snaps), len(kept))
			}
			for _, id := range kept {
				w.RestoreEqual(id, src, trees[id])
			}
			w.Must("-q", "prune", "--max-unused", "0")
			rep := w.Check(true)
			if rep.OrphanPacks != 0 || rep.ObsoletePacks != 0 {
				t.Errorf("kill %s: after prune ran again %d orphaned and %d obsolete packs remain", p, rep.OrphanPacks, rep.ObsoletePacks)
			}
		},
	})
	counts.add("prune", n)
}

// crashCopy kills `cairn copy` at every mutation while it copies two snapshots into
// an empty repository.
func crashCopy(t *testing.T, bin string, counts *crashCounts) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	from := crashtest.New(t, bin, filepath.Join(base, "from"))
	from.Init(crashPackSize)
	trees := map[string]crashtest.Tree{} // tag -> content
	for g := 0; g < 2; g++ {
		tag := fmt.Sprint("g", g)
		trees[tag] = writeGenerationSize(t, src, g, 4<<20)
		from.Must("-q", "backup", "--tag", tag, src)
	}
	tmpl := filepath.Join(base, "template")
	from.WithRepo(tmpl).Init(crashPackSize)
	args := []string{"-q", "copy", "--from", from.Repo, "--from-password-file", from.PasswordFile}
	// restoreAll checks that every snapshot in w restores as its source did.
	restoreAll := func(w *crashtest.Cairn, p crashtest.Point) int {
		snaps := w.Snapshots()
		for _, s := range snaps {
			if len(s.Tags) != 1 || trees[s.Tags[0]] == nil {
				t.Fatalf("kill %s: unexpected snapshot %+v", p, s)
			}
			w.RestoreEqual(s.ID, src, trees[s.Tags[0]])
		}
		return len(snaps)
	}
	n := crashtest.KillEverywhere(t, from, crashtest.Scenario{
		Name:     "copy",
		Template: tmpl,
		Args:     args,
		AfterKill: func(w *crashtest.Cairn, p crashtest.Point, killed crashtest.Result) {
			w.Check(true)
			if u := crashtest.DiskUsage(t, w.Repo); u.Temp > crashMaxTemp {
				t.Errorf("kill %s: %d temporary files left", p, u.Temp)
			}
			restoreAll(w, p)
			w.Must(args...)
			if got := restoreAll(w, p); got != 2 {
				t.Errorf("kill %s: %d snapshots after copying again, want 2", p, got)
			}
			w.Must("-q", "prune", "--max-unused", "0")
			rep := w.Check(true)
			if rep.OrphanPacks != 0 || rep.ObsoletePacks != 0 {
				t.Errorf("kill %s: after prune %d orphaned and %d obsolete packs remain", p, rep.OrphanPacks, rep.ObsoletePacks)
			}
		},
	})
	counts.add("copy", n)
}

// crashRestoreInPlace kills `cairn restore --in-place` at moments spread over its run
// (it writes nothing to the repository, so the backend hook has nothing to count):
// every file must be old or new, never partly written, and the next run completes.
func crashRestoreInPlace(t *testing.T, bin string, counts *crashCounts) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	c := crashtest.New(t, bin, filepath.Join(base, "repo"))
	c.Init(crashPackSize)
	old := writeGeneration(t, src, 7)
	c.Must("-q", "backup", src)
	oldID := c.Snapshots()[0].ID
	// Measure a clean run.
	newer := writeGeneration(t, src, 8)
	start := time.Now()
	c.Must("-q", "restore", oldID, "--in-place", "--delete", "--yes")
	d := time.Since(start)
	if diff := old.Diff(crashtest.ReadTree(t, src)); diff != "" {
		t.Fatalf("clean in-place restore: %s", diff)
	}
	const points = 12
	killed := 0
	for i := 1; i <= points; i++ {
		writeGeneration(t, src, 8)
		cmd, so, se := c.Start(nil, "-q", "restore", oldID, "--in-place", "--delete", "--yes")
		begin := time.Now()
		time.Sleep(d * time.Duration(i) / (points + 1))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		res := c.Wait(cmd, so, se, []string{"restore", "--in-place"}, begin)
		if !res.Killed {
			continue // finished first
		}
		killed++
		got := crashtest.ReadTree(t, src)
		for p, v := range got {
			if strings.HasPrefix(filepath.Base(p), ".cairn-restore-") {
				continue // temporary files of the killed run
			}
			ov, inOld := old[p]
			nv, inNew := newer[p]
			if !(inOld && v == ov) && !(inNew && v == nv) {
				t.Errorf("kill %d: %s is neither the old nor the new content (%d bytes)", i, p, len(v))
			}
		}
		c.Must("-q", "restore", oldID, "--in-place", "--delete", "--yes")
		got = crashtest.ReadTree(t, src)
		for p := range got {
			if strings.HasPrefix(filepath.Base(p), ".cairn-restore-") {
				t.Errorf("kill %d: temporary file %s survived the next restore", i, p)
				delete(got, p)
			}
		}
		if diff := old.Diff(got); diff != "" {
			t.Errorf("kill %d: restore after the kill: %s", i, diff)
		}
	}
	if killed == 0 {
		t.Errorf("the in-place restore (%s) always finished before the kill", d)
	}
	counts.add("restore --in-place", killed)
}

// TestConcurrentBackups runs two `cairn backup` processes on one repository at once:
// both must save valid snapshots.
func TestConcurrentBackups(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the cairn binary")
	}
	bin := crashtest.Build(t)
	base := t.TempDir()
	c := crashtest.New(t, bin, filepath.Join(base, "repo"))
	c.Init(crashPackSize)
	srcs := []string{filepath.Join(base, "a"), filepath.Join(base, "b")}
	trees := []crashtest.Tree{writeGeneration(t, srcs[0], 1), writeGeneration(t, srcs[1], 2)}
	for round := 0; round < 2; round++ {
		var results [2]crashtest.Result
		var wg sync.WaitGroup
		for i := range srcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = c.Run(nil, "-q", "backup", "--tag", fmt.Sprint("r", round), srcs[i])
			}()
		}
		wg.Wait()
		for _, r := range results {
			if r.Code != 0 {
				t.Fatalf("round %d: %s", round, r)
			}
		}
		c.Check(true)
		for _, s := range c.Snapshots() {
			if len(s.Tags) != 1 || s.Tags[0] != fmt.Sprint("r", round) {
				continue
			}
			i := 0
			if s.Paths[0] == srcs[1] {
				i = 1
			}
			c.RestoreEqual(s.ID, srcs[i], trees[i])
		}
		if n := len(c.Snapshots()); n != 2*(round+1) {
			t.Fatalf("round %d: %d snapshots, want %d", round, n, 2*(round+1))
		}
		// The second round shares data with the first: both dedupe at once.
		trees = []crashtest.Tree{writeGeneration(t, srcs[0], 2), writeGeneration(t, srcs[1], 1)}
	}
}

// crashMaxTemp bounds the temporary files a killed run can leave: the packs being
// filled (data packers and the tree packer), the packs queued for upload (one channel
// slot per uploader) and being uploaded, and one index or snapshot save in flight.
const crashMaxTemp = crashPackers + 1 + 2*crashUploaders + 1
