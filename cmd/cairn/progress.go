package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/cairn-backup/cairn/snapshot/backup"
)

// startProgress shows a one-line progress display on stderr when it is a terminal,
// and returns a function that clears it.
func startProgress(g *globalOptions, p *backup.Progress) func() {
	if g.quiet || !isTerminal(g.stderr) {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(stopped)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(g.stderr, "\r\033[K")
				return
			case <-t.C:
				el := time.Since(start).Seconds()
				b := p.Bytes.Load()
				rate := float64(b) / el
				cur := ""
				if c := p.Current.Load(); c != nil {
					cur = filepath.Base(*c)
				}
				fmt.Fprintf(g.stderr, "\r\033[K[%s] %d files, %s, %s/s, %d errors  %s",
					formatDuration(time.Since(start).Truncate(time.Second)), p.Files.Load(), formatBytes(b),
					formatBytes(uint64(rate)), p.Errors.Load(), cur)
			}
		}
	}()
	return func() { close(done); <-stopped }
}
