// Command gen creates deterministic benchmark data sets for comparing cairn
// with other backup tools, and simulates a day of changes on them.
//
//	go run ./bench/gen -out DIR -kind docs|small -seed N [-scale F]
//	go run ./bench/gen -mutate DIR -seed N
//
// The same kind, seed and scale always produce byte-identical files (and the
// same modification times). A mutation with the same seed applied to the same
// data set always produces the same result.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

type stats struct {
	files int64
	bytes int64
}

type mutation struct {
	newFiles     int64
	newBytes     int64
	deletedFiles int
	editedFiles  int
	touchedFiles int
	dbRows       int
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("gen", flag.ContinueOnError)
	outDir := fl.String("out", "", "directory to create the data set in (must not exist or be empty)")
	kind := fl.String("kind", "docs", "data set kind: docs or small")
	seed := fl.Uint64("seed", 1, "seed; the same seed gives byte-identical output")
	scale := fl.Float64("scale", 1, "multiplies sizes and counts (0.05 for a smoke run)")
	mutate := fl.String("mutate", "", "apply one simulated day of changes to this existing data set")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fl.Args())
	}
	start := time.Now()
	switch {
	case *mutate != "" && *outDir != "":
		return errors.New("use either -out or -mutate")
	case *mutate != "":
		k, m, err := mutateDir(*mutate, *seed)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "mutated %s data set %s (seed %d) in %.2fs: %d new files (%d bytes), %d deleted, %d edited",
			k, *mutate, *seed, time.Since(start).Seconds(), m.newFiles, m.newBytes, m.deletedFiles, m.editedFiles)
		if k == "docs" {
			fmt.Fprintf(out, " (incl. the database), %d database rows inserted/updated/deleted\n", m.dbRows)
		} else {
			fmt.Fprintf(out, ", %d touched (mtime only)\n", m.touchedFiles)
		}
		return nil
	case *outDir == "":
		return errors.New("-out DIR or -mutate DIR is required")
	}
	if *scale <= 0 {
		return errors.New("-scale must be positive")
	}
	st, err := generate(*outDir, *kind, *seed, *scale)
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(out, "generated %s data set %s (seed %d, scale %g): %d files, %d bytes in %.2fs (%.0f MB/s)\n",
		*kind, *outDir, *seed, *scale, st.files, st.bytes, secs, float64(st.bytes)/1e6/secs)
	return nil
}

// generate creates a data set of the given kind in dir.
func generate(dir, kind string, seed uint64, scale float64) (stats, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return stats{}, fmt.Errorf("%s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return stats{}, err
	}
	switch kind {
	case "docs":
		return genDocs(dir, seed, scale)
	case "small":
		return genSmall(dir, seed, scale)
	}
	return stats{}, fmt.Errorf("unknown kind %q (want docs or small)", kind)
}

// mutateDir detects the kind of the data set in dir and mutates it.
func mutateDir(dir string, seed uint64) (string, mutation, error) {
	if fi, err := os.Stat(filepath.Join(dir, docsOriginalsDir)); err == nil && fi.IsDir() {
		m, err := mutateDocs(dir, seed)
		return "docs", m, err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", mutation{}, fmt.Errorf("%s is not a data set directory", dir)
	}
	m, err := mutateSmall(dir, seed)
	return "small", m, err
}
