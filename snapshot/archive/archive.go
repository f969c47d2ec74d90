// Package archive writes a whole snapshot as one tar or zip stream: every directory,
// file and symlink under its root tree with its path (without the leading "/"), mode,
// modification time and, in tar, owner; and the database dump as one more file,
// "database/<dump name>". Content is streamed blob by blob, each verified against its
// ID, so memory stays bounded whatever the snapshot's size and the output may be a
// pipe.
package archive

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

// Archive formats.
const (
	FormatTar = "tar"
	FormatZip = "zip"
)

// DefaultDatabaseDir is the directory holding the database dump in an archive.
const DefaultDatabaseDir = "database"

// ErrIncomplete is wrapped by Write's error when some entries were damaged: the
// archive is complete in structure, every other entry is intact, and the damaged ones
// are listed in Result.Errors.
var ErrIncomplete = errors.New("archive incomplete")

// Options configures Write.
type Options struct {
	// Format is FormatTar (the default when empty) or FormatZip.
	Format string
	// DatabaseDir is the archive directory of the database dump (DefaultDatabaseDir
	// when empty). If the snapshot's root has an entry of that name, "_" is
	// prepended until it has none.
	DatabaseDir string
}

// Result counts what Write wrote. Errors names every damaged entry: a file whose
// content could not be read completely (the missing bytes are written as zeros, so
// the archive keeps the recorded size) or a directory whose listing could not be read
// (its entries are missing).
type Result struct {
	Files    int64
	Dirs     int64
	Symlinks int64
	Bytes    uint64 // content bytes of files, the dump included
	Database string // archive name of the dump; "" when the snapshot has none
	Errors   []error
}

// entryWriter is one archive format.
type entryWriter interface {
	dir(name string, n *snapshot.Node) error
	symlink(name string, n *snapshot.Node) error
	// file starts a regular file of n.Size bytes; its content is written next.
	file(name string, n *snapshot.Node) (io.Writer, error)
	close() error
}

// Write writes the snapshot sn as one archive to w. It returns an error wrapping
// ErrIncomplete, after writing everything else, when entries were damaged, and stops
// at once when w fails or ctx is done.
func Write(ctx context.Context, l snapshot.BlobLoader, sn *snapshot.Snapshot, w io.Writer, opts Options) (Result, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	var ew entryWriter
	switch opts.Format {
	case "", FormatTar:
		ew = &tarWriter{tw: tar.NewWriter(bw)}
	case FormatZip:
		ew = &zipWriter{zw: zip.NewWriter(bw)}
	default:
		return Result{}, fmt.Errorf("archive: unknown format %q (want %s or %s)", opts.Format, FormatTar, FormatZip)
	}
	a := &archiver{ctx: ctx, l: l, ew: ew}
	root, err := snapshot.LoadTree(ctx, l, sn.Tree)
	if err != nil {
		return Result{}, fmt.Errorf("archive: %w", err)
	}
	if err := a.dir("", root.Nodes); err != nil {
		return a.res, err
	}
	if sn.Database != nil {
		if err := a.database(sn, root, opts.DatabaseDir); err != nil {
			return a.res, err
		}
	}
	if err := ew.close(); err != nil {
		return a.res, fmt.Errorf("archive: finish: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return a.res, fmt.Errorf("archive: write: %w", err)
	}
	if n := len(a.res.Errors); n > 0 {
		return a.res, fmt.Errorf("%w: %d damaged entries (first: %v)", ErrIncomplete, n, a.res.Errors[0])
	}
	return a.res, nil
}

type archiver struct {
	ctx context.Context
	l   snapshot.BlobLoader
	ew  entryWriter
	res Result
}

// dir writes the entries of the directory at archive name prefix ("" for the root).
func (a *archiver) dir(prefix string, nodes []snapshot.Node) error {
	for i := range nodes {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		n := &nodes[i]
		name := path.Join(prefix, n.RawName())
		switch n.Type {
		case snapshot.TypeDir:
			if err := a.ew.dir(name, n); err != nil {
				return fmt.Errorf("archive %s: %w", name, err)
			}
			a.res.Dirs++
			t, err := snapshot.LoadTree(a.ctx, a.l, *n.Subtree)
			if err != nil {
				if a.ctx.Err() != nil {
					return a.ctx.Err()
				}
				a.res.Errors = append(a.res.Errors, fmt.Errorf("%q: entries missing: %w", "/"+name, err))
				continue
			}
			if err := a.dir(name, t.Nodes); err != nil {
				return err
			}
		case snapshot.TypeSymlink:
			if err := a.ew.symlink(name, n); err != nil {
				return fmt.Errorf("archive %s: %w", name, err)
			}
			a.res.Symlinks++
		case snapshot.TypeFile:
			if err := a.file(name, "/"+name, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// file writes one regular file. Damaged content is zero-filled and recorded.
func (a *archiver) file(name, display string, n *snapshot.Node) error {
	fw, err := a.ew.file(name, n)
	if err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	lw := &limitWriter{w: fw, left: int64(n.Size)}
	written, err := snapshot.WriteContent(a.ctx, a.l, n, lw)
	var ce *snapshot.ContentError
	switch {
	case errors.As(err, &ce):
		a.res.Errors = append(a.res.Errors, fmt.Errorf("%q: %w (zero-filled from byte %d)", display, err, written))
	case errors.Is(err, errTooLong):
		a.res.Errors = append(a.res.Errors, fmt.Errorf("%q: content longer than the recorded size %d (cut)", display, n.Size))
	case err != nil:
		return fmt.Errorf("archive %s: %w", name, err)
	case lw.left > 0:
		a.res.Errors = append(a.res.Errors, fmt.Errorf("%q: content is %d bytes, recorded size %d (zero-filled)", display, written, n.Size))
	}
	if lw.left > 0 {
		if err := writeZeros(fw, lw.left); err != nil {
			return fmt.Errorf("archive %s: %w", name, err)
		}
	}
	a.res.Files++
	a.res.Bytes += n.Size
	return nil
}

// database writes the dump as DatabaseDir/<name>.
func (a *archiver) database(sn *snapshot.Snapshot, root *snapshot.Tree, dir string) error {
	if dir == "" {
		dir = DefaultDatabaseDir
	}
	for root.Find(dir) != nil {
		dir = "_" + dir
	}
	n, err := snapshot.DumpNode(a.ctx, a.l, sn.Database)
	if err != nil {
		if a.ctx.Err() != nil {
			return a.ctx.Err()
		}
		a.res.Errors = append(a.res.Errors, fmt.Errorf("database dump: %w", err))
		return nil
	}
	d := &snapshot.Node{Type: snapshot.TypeDir, Mode: 0o700, ModTime: sn.Time, UID: n.UID, GID: n.GID}
	if err := a.ew.dir(dir, d); err != nil {
		return fmt.Errorf("archive %s: %w", dir, err)
	}
	name := dir + "/" + n.RawName()
	a.res.Database = name
	return a.file(name, "database dump "+name, n)
}

var errTooLong = errors.New("content longer than recorded")

// limitWriter passes at most left bytes on and fails with errTooLong beyond.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	over := false
	if int64(len(p)) > l.left {
		p, over = p[:l.left], true
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	if err == nil && over {
		err = errTooLong
	}
	return n, err
}

func writeZeros(w io.Writer, n int64) error {
	var zeros [32 << 10]byte
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

type tarWriter struct{ tw *tar.Writer }

func (t *tarWriter) header(name string, typ byte, n *snapshot.Node) *tar.Header {
	return &tar.Header{Typeflag: typ, Name: name, Mode: int64(n.Mode), ModTime: n.ModTime,
		Uid: int(n.UID), Gid: int(n.GID), Uname: n.User, Gname: n.Group, Format: tar.FormatPAX}
}

func (t *tarWriter) dir(name string, n *snapshot.Node) error {
	return t.tw.WriteHeader(t.header(name+"/", tar.TypeDir, n))
}

func (t *tarWriter) symlink(name string, n *snapshot.Node) error {
	h := t.header(name, tar.TypeSymlink, n)
	h.Linkname = n.Target()
	return t.tw.WriteHeader(h)
}

func (t *tarWriter) file(name string, n *snapshot.Node) (io.Writer, error) {
	h := t.header(name, tar.TypeReg, n)
	h.Size = int64(n.Size)
	if err := t.tw.WriteHeader(h); err != nil {
		return nil, err
	}
	return t.tw, nil
}

func (t *tarWriter) close() error { return t.tw.Close() }

type zipWriter struct{ zw *zip.Writer }

func (z *zipWriter) header(name string, n *snapshot.Node) *zip.FileHeader {
	h := &zip.FileHeader{Name: name, Modified: zipTime(n.ModTime)}
	h.SetMode(n.FileMode())
	return h
}

// zipTime keeps the time in the local zone: zip's MS-DOS time fields are local time
// (the extended timestamp field holds the exact UTC second).
func zipTime(t time.Time) time.Time { return t.Local() }

func (z *zipWriter) dir(name string, n *snapshot.Node) error {
	h := z.header(name+"/", n)
	_, err := z.zw.CreateHeader(h)
	return err
}

func (z *zipWriter) symlink(name string, n *snapshot.Node) error {
	h := z.header(name, n)
	h.SetMode(fs.ModeSymlink | 0o777)
	w, err := z.zw.CreateHeader(h)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, n.Target())
	return err
}

func (z *zipWriter) file(name string, n *snapshot.Node) (io.Writer, error) {
	h := z.header(name, n)
	h.Method = zip.Deflate
	return z.zw.CreateHeader(h)
}

func (z *zipWriter) close() error { return z.zw.Close() }
