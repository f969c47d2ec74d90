package main

// The "small" data set is a source-tree/home-directory-like collection of
// many small files (0.5–20 KB, log-uniform) in about 200 nested directories:
// text and code-like files, incompressible binaries, semi-compressible binary
// records, and about 5 % exact duplicates of other files.

import (
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	smallFiles   = 40000 // files at scale 1
	smallDirs    = 200   // directories at scale 1
	smallMinSize = 512
	smallMaxSize = 20 << 10
	smallDupRate = 0.05
	smallMaxDeep = 6
)

const (
	kindText = iota
	kindCode
	kindRandom
	kindRecords
)

var kindExts = [][]string{
	kindText:    {".txt", ".md", ".csv", ".html", ".log"},
	kindCode:    {".go", ".py", ".js", ".c", ".json", ".yaml"},
	kindRandom:  {".jpg", ".png", ".gz", ".zip", ".bin"},
	kindRecords: {".o", ".db", ".dat", ".idx", ".class"},
}

// contentSpec describes file content number k.
type contentSpec struct {
	k    int
	kind int
	size int64
}

func smallContent(src string, k int) contentSpec {
	r := newRand(src, "content", k)
	var kind int
	switch p := r.Float64(); {
	case p < 0.55:
		kind = kindText
	case p < 0.70:
		kind = kindCode
	case p < 0.85:
		kind = kindRandom
	default:
		kind = kindRecords
	}
	return contentSpec{k: k, kind: kind, size: int64(logUniform(r, smallMinSize, smallMaxSize))}
}

// writeContent writes the bytes of content c.
func (c contentSpec) write(src string, w *countingWriter, buf []byte) error {
	switch c.kind {
	case kindText:
		t := newTextGen(newRand(src, "text", c.k)).appendText(nil, int(c.size))
		_, err := w.Write(t)
		return err
	case kindCode:
		r := newRand(src, "code", c.k)
		tg := newTextGen(r)
		var out []byte
		for int64(len(out)) < c.size {
			out = append(out, strings.Repeat("\t", r.IntN(4))...)
			out = tg.appendText(out, 10+r.IntN(60))
			out = append(out, ";\n"...)
		}
		_, err := w.Write(out[:c.size])
		return err
	case kindRandom:
		return writeRandom(w, newChaCha(src, "bin", c.k), c.size, buf)
	default:
		// Fixed-size records: a counter, a type tag, zero padding and 8
		// random bytes. Compresses about 2:1.
		src := newChaCha(src, "rec", c.k)
		out := make([]byte, c.size+32)
		tag := byte(c.k)
		for i := 0; i+32 <= len(out); i += 32 {
			putLE32(out[i:], uint32(i/32))
			out[i+4] = tag
			_, _ = src.Read(out[i+16 : i+32])
		}
		_, err := w.Write(out[:c.size])
		return err
	}
}

type smallFile struct {
	path    string
	content contentSpec
	mtime   time.Time
}

// smallLayout computes directories and files of the data set.
func smallLayout(root, src string, scale float64) ([]string, []smallFile) {
	nd := max(1, int(math.Round(smallDirs*scale)))
	nf := max(1, int(math.Round(smallFiles*scale)))
	r := newRand(src, "dirs")
	dirs := make([]string, nd)
	depth := make([]int, nd)
	for i := range dirs {
		name := fmt.Sprintf("%s_%03d", wordList[r.IntN(len(wordList))], i)
		parent := -1
		if i >= 6 && r.IntN(6) != 0 {
			parent = r.IntN(i)
			if depth[parent] >= smallMaxDeep {
				parent = -1
			}
		}
		if parent < 0 {
			dirs[i] = filepath.Join(root, name)
		} else {
			dirs[i] = filepath.Join(dirs[parent], name)
			depth[i] = depth[parent] + 1
		}
	}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	files := make([]smallFile, nf)
	for j := range files {
		r := newRand(src, "file", j)
		c := smallContent(src, j)
		if j > 100 && r.Float64() < smallDupRate {
			c = smallContent(src, r.IntN(j))
		}
		exts := kindExts[c.kind]
		name := fmt.Sprintf("%s_%05d%s", wordList[r.IntN(len(wordList))], j, exts[r.IntN(len(exts))])
		files[j] = smallFile{
			path:    filepath.Join(dirs[r.IntN(nd)], name),
			content: c,
			mtime:   base.Add(time.Duration(r.IntN(365*86400)) * time.Second),
		}
	}
	return dirs, files
}

func genSmall(root string, seed uint64, scale float64) (stats, error) {
	src := "g" + strconv.FormatUint(seed, 10)
	dirs, files := smallLayout(root, src, scale)
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return stats{}, err
		}
	}
	var total, count atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	jobs := make(chan smallFile, 64)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for f := range jobs {
				n, err := writeFile(f.path, f.mtime, func(w *countingWriter) error { return f.content.write(src, w, buf) })
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				total.Add(n)
				count.Add(1)
			}
		}()
	}
	for _, f := range files {
		jobs <- f
	}
	close(jobs)
	wg.Wait()
	return stats{files: count.Load(), bytes: total.Load()}, firstErr
}

// mutateSmall touches about 0.5 % of the files (new mtime only), modifies
// about 0.5 % in place (overwrite a region or append), adds and deletes about
// 0.1 %.
func mutateSmall(root string, seed uint64) (mutation, error) {
	var m mutation
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return m, err
	}
	if len(paths) < 2 {
		return m, fmt.Errorf("%s: no data set to mutate", root)
	}
	sort.Strings(paths)
	n := len(paths)
	r := newRand("mutate-small", seed)
	day := mutationTime(seed)
	src := "m" + strconv.FormatUint(seed, 10)
	nTouch := max(1, int(math.Round(0.005*float64(n))))
	nMod := max(1, int(math.Round(0.005*float64(n))))
	nDel := max(1, int(math.Round(0.001*float64(n))))
	nNew := max(1, int(math.Round(0.001*float64(n))))
	perm := r.Perm(n)
	take := func(k int) []int {
		k = min(k, len(perm))
		s := perm[:k]
		perm = perm[k:]
		return s
	}

	for i, k := range take(nTouch) {
		t := day.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(paths[k], t, t); err != nil {
			return m, err
		}
		m.touchedFiles++
	}
	rnd := newChaCha(src, "modify")
	for i, k := range take(nMod) {
		f, err := os.OpenFile(paths[k], os.O_RDWR, 0)
		if err != nil {
			return m, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return m, err
		}
		size := fi.Size()
		patch := make([]byte, 1+r.IntN(2048))
		_, _ = rnd.Read(patch)
		off := size
		if r.IntN(10) < 7 && size > 0 {
			off = r.Int64N(size)
		}
		if _, err := f.WriteAt(patch, off); err != nil {
			f.Close()
			return m, err
		}
		if err := f.Close(); err != nil {
			return m, err
		}
		t := day.Add(time.Duration(3600+i) * time.Second)
		if err := os.Chtimes(paths[k], t, t); err != nil {
			return m, err
		}
		m.editedFiles++
	}
	for _, k := range take(nDel) {
		if err := os.Remove(paths[k]); err != nil {
			return m, err
		}
		m.deletedFiles++
	}
	buf := make([]byte, 32<<10)
	for i, k := range take(nNew) {
		c := contentSpec{k: i, kind: kindText, size: int64(logUniform(r, smallMinSize, smallMaxSize))}
		p := filepath.Join(filepath.Dir(paths[k]), fmt.Sprintf("new_%d_%04d.txt", seed, i))
		nb, err := writeFile(p, day.Add(time.Duration(7200+i)*time.Second), func(w *countingWriter) error { return c.write(src, w, buf) })
		if err != nil {
			return m, err
		}
		m.newFiles++
		m.newBytes += nb
	}
	return m, nil
}
