package archive_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/archive"
)

type memStore map[blob.ID][]byte

func (m memStore) LoadBlob(_ context.Context, id blob.ID, dst []byte) ([]byte, error) {
	b, ok := m[id]
	if !ok {
		return nil, fmt.Errorf("blob %s: not found", id.Short())
	}
	return append(dst[:0], b...), nil
}

func (m memStore) put(b []byte) blob.ID {
	id := blob.ID(sha256.Sum256(b))
	m[id] = b
	return id
}

func (m memStore) tree(t *testing.T, nodes ...snapshot.Node) blob.ID {
	t.Helper()
	tr := snapshot.Tree{Nodes: nodes}
	data, err := tr.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return m.put(data)
}

var mtime = time.Date(2026, 11, 23, 14, 0, 0, 123456789, time.UTC)

func (m memStore) file(name string, mode uint32, chunks ...string) snapshot.Node {
	n := snapshot.Node{Type: snapshot.TypeFile, Mode: mode, ModTime: mtime, UID: 1000, GID: 1000, User: "app", Group: "app"}
	n.SetName(name)
	for _, c := range chunks {
		n.Content = append(n.Content, m.put([]byte(c)))
		n.Size += uint64(len(c))
	}
	return n
}

func dirNode(name string, sub blob.ID) snapshot.Node {
	n := snapshot.Node{Type: snapshot.TypeDir, Mode: 0o750, ModTime: mtime.Add(-time.Hour), Subtree: &sub}
	n.SetName(name)
	return n
}

// sample builds /srv/app/media with a big multi-chunk file, an empty file, a setgid
// file, a symlink and a name with a space, plus a database dump.
func sample(t *testing.T) (memStore, *snapshot.Snapshot) {
	m := memStore{}
	big := strings.Repeat("0123456789", 5000) + strings.Repeat("abcdefghij", 5000)
	link := snapshot.Node{Type: snapshot.TypeSymlink, Mode: 0o777, ModTime: mtime}
	link.SetName("latest.pdf")
	link.SetTarget("docs/a b.pdf")
	docs := m.tree(t, m.file("a b.pdf", 0o644, "%PDF", "-1.4"), m.file("big.bin", 0o2755, big[:50000], big[50000:]),
		m.file("empty", 0o600))
	media := m.tree(t, dirNode("docs", docs), link)
	app := m.tree(t, dirNode("media", media))
	root := m.tree(t, dirNode("srv", m.tree(t, dirNode("app", app))))
	dump := m.tree(t, m.file("postgres.dump", 0o600, "CREATE TABLE x;\n", "COPY x FROM stdin;\n"))
	sn := &snapshot.Snapshot{Time: mtime, Tree: root, Database: &snapshot.Database{Engine: "postgres", Format: "pg-ordered-v1", Dump: dump}}
	return m, sn
}

type entry struct {
	typ     string
	mode    fs.FileMode
	mtime   time.Time
	content string
	link    string
}

func readTar(t *testing.T, data []byte) (map[string]entry, []string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	out := map[string]entry{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		e := entry{mode: h.FileInfo().Mode(), mtime: h.ModTime, content: string(body), link: h.Linkname}
		switch h.Typeflag {
		case tar.TypeDir:
			e.typ = "dir"
		case tar.TypeReg:
			e.typ = "file"
		case tar.TypeSymlink:
			e.typ = "symlink"
		}
		if h.Typeflag == tar.TypeReg && (h.Uname != "app" || h.Uid != 1000) && !strings.HasPrefix(h.Name, "database/") {
			t.Errorf("%s: owner %s/%d", h.Name, h.Uname, h.Uid)
		}
		out[h.Name] = e
		order = append(order, h.Name)
	}
	return out, order
}

func readZip(t *testing.T, data []byte) (map[string]entry, []string) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]entry{}
	var order []string
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		e := entry{mode: f.Mode(), mtime: f.Modified, content: string(body)}
		switch {
		case f.Mode().IsDir():
			e.typ = "dir"
		case f.Mode()&fs.ModeSymlink != 0:
			e.typ, e.link, e.content = "symlink", string(body), ""
		default:
			e.typ = "file"
		}
		out[f.Name] = e
		order = append(order, f.Name)
	}
	return out, order
}

func TestWrite(t *testing.T) {
	m, sn := sample(t)
	big := strings.Repeat("0123456789", 5000) + strings.Repeat("abcdefghij", 5000)
	for _, format := range []string{archive.FormatTar, archive.FormatZip} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			res, err := archive.Write(context.Background(), m, sn, &buf, archive.Options{Format: format})
			if err != nil {
				t.Fatal(err)
			}
			if res.Files != 4 || res.Dirs != 4 || res.Symlinks != 1 || res.Database != "database/postgres.dump" {
				t.Errorf("result %+v", res)
			}
			var got map[string]entry
			var order []string
			if format == archive.FormatTar {
				got, order = readTar(t, buf.Bytes())
			} else {
				got, order = readZip(t, buf.Bytes())
			}
			wantOrder := "srv/ srv/app/ srv/app/media/ srv/app/media/docs/ srv/app/media/docs/a b.pdf srv/app/media/docs/big.bin " +
				"srv/app/media/docs/empty srv/app/media/latest.pdf database/ database/postgres.dump"
			if strings.Join(order, " ") != wantOrder {
				t.Errorf("entries:\n got %s\nwant %s", strings.Join(order, " "), wantOrder)
			}
			// Zip stores whole seconds (extended timestamp); tar (PAX) nanoseconds.
			wantTime := mtime
			if format == archive.FormatZip {
				wantTime = mtime.Truncate(time.Second)
			}
			check := func(name string, want entry) {
				t.Helper()
				e, ok := got[name]
				if !ok {
					t.Errorf("%s missing", name)
					return
				}
				if e.typ != want.typ || e.mode != want.mode || e.content != want.content || e.link != want.link {
					t.Errorf("%s: got %s %v %q -> %q, want %s %v %q -> %q", name, e.typ, e.mode, excerpt(e.content), e.link,
						want.typ, want.mode, excerpt(want.content), want.link)
				}
				if !want.mtime.IsZero() && !e.mtime.Equal(want.mtime) {
					t.Errorf("%s: mtime %v, want %v", name, e.mtime, want.mtime)
				}
			}
			check("srv/app/media/docs/a b.pdf", entry{typ: "file", mode: 0o644, mtime: wantTime, content: "%PDF-1.4"})
			check("srv/app/media/docs/big.bin", entry{typ: "file", mode: 0o755 | fs.ModeSetgid, mtime: wantTime, content: big})
			check("srv/app/media/docs/empty", entry{typ: "file", mode: 0o600, mtime: wantTime})
			linkMode := fs.ModeSymlink | 0o777
			check("srv/app/media/latest.pdf", entry{typ: "symlink", mode: linkMode, link: "docs/a b.pdf", mtime: wantTime})
			check("srv/app/media/docs/", entry{typ: "dir", mode: fs.ModeDir | 0o750})
			check("database/postgres.dump", entry{typ: "file", mode: 0o600, content: "CREATE TABLE x;\nCOPY x FROM stdin;\n"})
		})
	}
}

func excerpt(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}

func TestWriteDamaged(t *testing.T) {
	m, sn := sample(t)
	// Lose the second chunk of big.bin.
	big := strings.Repeat("0123456789", 5000) + strings.Repeat("abcdefghij", 5000)
	delete(m, blob.ID(sha256.Sum256([]byte(big[50000:]))))
	for _, format := range []string{archive.FormatTar, archive.FormatZip} {
		var buf bytes.Buffer
		res, err := archive.Write(context.Background(), m, sn, &buf, archive.Options{Format: format})
		if !errors.Is(err, archive.ErrIncomplete) {
			t.Fatalf("%s: want ErrIncomplete, got %v", format, err)
		}
		if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Error(), `"/srv/app/media/docs/big.bin"`) {
			t.Fatalf("%s: errors %v", format, res.Errors)
		}
		var got map[string]entry
		if format == archive.FormatTar {
			got, _ = readTar(t, buf.Bytes())
		} else {
			got, _ = readZip(t, buf.Bytes())
		}
		want := big[:50000] + strings.Repeat("\x00", 50000)
		if got["srv/app/media/docs/big.bin"].content != want {
			t.Errorf("%s: damaged file not zero-filled to its size", format)
		}
		if got["database/postgres.dump"].content == "" || got["srv/app/media/docs/a b.pdf"].content != "%PDF-1.4" {
			t.Errorf("%s: the intact entries are missing", format)
		}
	}
}

func TestWriteDatabaseDirCollision(t *testing.T) {
	m, sn := sample(t)
	db := dirNode("database", m.tree(t))
	root, err := snapshot.LoadTree(context.Background(), m, sn.Tree)
	if err != nil {
		t.Fatal(err)
	}
	sn.Tree = m.tree(t, append([]snapshot.Node{db}, root.Nodes...)...)
	var buf bytes.Buffer
	res, err := archive.Write(context.Background(), m, sn, &buf, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Database != "_database/postgres.dump" {
		t.Errorf("dump at %s", res.Database)
	}
	if _, err := archive.Write(context.Background(), m, sn, &buf, archive.Options{Format: "rar"}); err == nil {
		t.Error("unknown format accepted")
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteOutputFails(t *testing.T) {
	m, sn := sample(t)
	_, err := archive.Write(context.Background(), m, sn, &failWriter{n: 1000}, archive.Options{})
	if err == nil || errors.Is(err, archive.ErrIncomplete) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("want the writer's error, got %v", err)
	}
}
