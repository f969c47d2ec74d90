package main

// The "docs" data set imitates a Paperless-ngx document manager:
//
//	media/documents/originals/YYYY/NNNNNN.pdf   uploaded scans, 50 KB–40 MB
//	media/documents/archive/YYYY/NNNNNN.pdf     OCR'd PDF/A derivatives
//	media/documents/thumbnails/NNNNNN.webp      5–30 KB previews
//	data/db.sqlite3                             ~100 MB of extracted text
//
// PDFs are mostly incompressible (random "image" streams standing in for
// JPEG/JBIG2 data) with an uncompressed text layer of 5–10 % of the file. An
// archive file re-uses the original's image streams for about 60 % of the
// documents (OCR tools pass images through) and re-encodes them otherwise, so
// there is some, but not complete, redundancy between the two trees.

import (
	"bytes"
	"fmt"
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
	docsCount        = 2000  // documents at scale 1
	docsOrigBytes    = 920e6 // total size of originals at scale 1
	docsOrigMedian   = 215e3 // median original size before normalisation
	docsOrigSigma    = 1.3   // log-normal sigma of original sizes
	docsOrigMin      = 50e3  // smallest original
	docsOrigMax      = 40e6  // largest original
	docsPageBytes    = 120e3 // average original bytes per page
	docsContentMed   = 33e3  // median extracted-text length per document
	docsFirstYear    = 2014  // year of the first document
	docsYears        = 12    // documents span this many years
	docsPassThrough  = 0.6   // share of archive files that keep the original images
	docsOriginalsDir = "media/documents/originals"
	docsArchiveDir   = "media/documents/archive"
	docsThumbsDir    = "media/documents/thumbnails"
	docsDBPath       = "data/db.sqlite3"
)

// doc describes one document; src namespaces its seeds ("g<seed>" for the
// initial data set, "m<seed>" for documents added by a mutation).
type doc struct {
	src      string
	id       int
	year     int
	origSize int64
	created  time.Time
}

func origPath(root string, id, year int) string {
	return filepath.Join(root, docsOriginalsDir, strconv.Itoa(year), fmt.Sprintf("%06d.pdf", id))
}

func archivePath(root string, id, year int) string {
	return filepath.Join(root, docsArchiveDir, strconv.Itoa(year), fmt.Sprintf("%06d.pdf", id))
}

func thumbPath(root string, id int) string {
	return filepath.Join(root, docsThumbsDir, fmt.Sprintf("%06d.webp", id))
}

// newDoc draws a document's size and dates. factor rescales the size (used to
// normalise the initial data set to its target size).
func newDoc(src string, id, year int, factor float64) doc {
	r := newRand(src, "doc", id)
	size := logNormal(r, docsOrigMedian, docsOrigSigma, docsOrigMin, docsOrigMax) * factor
	size = math.Max(docsOrigMin, math.Min(docsOrigMax, size))
	created := time.Date(year, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(364*86400)) * time.Second)
	return doc{src: src, id: id, year: year, origSize: int64(size), created: created}
}

// genDocs creates the docs data set under root.
func genDocs(root string, seed uint64, scale float64) (stats, error) {
	n := max(1, int(math.Round(docsCount*scale)))
	src := "g" + strconv.FormatUint(seed, 10)

	// Draw sizes first and normalise the total so the data set size is
	// predictable even at small scales.
	docs := make([]doc, n)
	var sum float64
	for i := range docs {
		id := i + 1
		year := docsFirstYear + i*docsYears/n
		docs[i] = newDoc(src, id, year, 1)
		sum += float64(docs[i].origSize)
	}
	factor := docsOrigBytes * scale / sum
	for i := range docs {
		docs[i] = newDoc(src, docs[i].id, docs[i].year, factor)
	}

	var st stats
	errc := make(chan error, 1)
	var dbBytes int64
	go func() {
		var err error
		dbBytes, err = buildDB(filepath.Join(root, docsDBPath), docs)
		errc <- err
	}()
	if err := writeDocs(root, docs, &st); err != nil {
		<-errc
		return st, err
	}
	if err := <-errc; err != nil {
		return st, err
	}
	st.files++
	st.bytes += dbBytes
	return st, nil
}

// writeDocs writes original, archive and thumbnail of each document in
// parallel.
func writeDocs(root string, docs []doc, st *stats) error {
	var files, total atomic.Int64
	var firstErr error
	var mu sync.Mutex
	jobs := make(chan doc)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for d := range jobs {
				nf, nb, err := writeDoc(root, d, buf)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				files.Add(nf)
				total.Add(nb)
			}
		}()
	}
	for _, d := range docs {
		jobs <- d
	}
	close(jobs)
	wg.Wait()
	st.files += files.Load()
	st.bytes += total.Load()
	return firstErr
}

// writeDoc writes the three files of one document.
func writeDoc(root string, d doc, buf []byte) (files, size int64, err error) {
	r := newRand(d.src, "layout", d.id)
	pages := int(math.Max(1, math.Min(300, float64(d.origSize)/docsPageBytes+r.Float64()*2)))
	textFrac := 0.05 + 0.05*r.Float64()
	textTotal := int64(float64(d.origSize) * textFrac)
	imgTotal := d.origSize - textTotal - int64(700+420*pages)
	imgTotal = max(imgTotal, int64(pages)*1024)

	// Split image bytes across pages with random weights.
	weights := make([]float64, pages)
	var wsum float64
	for i := range weights {
		weights[i] = 0.5 + r.Float64()
		wsum += weights[i]
	}
	origImgs := make([]pdfImage, pages)
	for i := range origImgs {
		origImgs[i] = pdfImage{label: []any{d.src, "img", d.id, i}, size: int64(float64(imgTotal) * weights[i] / wsum)}
	}

	mtime := d.created.Add(time.Duration(r.IntN(3*86400)) * time.Second)
	orig := pdfDoc{
		producer: "Canon iR-ADV C5535 PDF",
		created:  d.created,
		images:   origImgs,
		textPer:  int(textTotal) / pages,
		text:     newTextGen(newRand(d.src, "otext", d.id)),
		fileID:   seedFor(d.src, "fileid", d.id),
	}
	n, err := writeFile(origPath(root, d.id, d.year), mtime, func(w *countingWriter) error { return orig.write(w, buf) })
	if err != nil {
		return 0, 0, err
	}
	files, size = 1, n

	// Archive version: same page structure, OCR text layer, images either
	// passed through or re-encoded to 55–95 % of their size.
	passThrough := r.Float64() < docsPassThrough
	archImgs := make([]pdfImage, pages)
	for i, im := range origImgs {
		if passThrough {
			archImgs[i] = im
		} else {
			archImgs[i] = pdfImage{label: []any{d.src, "aimg", d.id, i}, size: int64(float64(im.size) * (0.55 + 0.4*r.Float64()))}
		}
	}
	arch := pdfDoc{
		producer: "ocrmypdf 16.4.2 / Tesseract OCR-PDF 5.3.4",
		created:  d.created,
		images:   archImgs,
		textPer:  int(float64(textTotal)*(1.1+0.3*r.Float64())) / pages,
		text:     newTextGen(newRand(d.src, "atext", d.id)),
		ocr:      true,
		fileID:   seedFor(d.src, "afileid", d.id),
	}
	n, err = writeFile(archivePath(root, d.id, d.year), mtime.Add(90*time.Second), func(w *countingWriter) error { return arch.write(w, buf) })
	if err != nil {
		return 0, 0, err
	}
	files, size = files+1, size+n

	n, err = writeThumb(thumbPath(root, d.id), []any{d.src, "thumb", d.id}, mtime.Add(95*time.Second), buf)
	if err != nil {
		return 0, 0, err
	}
	return files + 1, size + n, nil
}

// writeThumb writes a WebP-like file of 5–30 KB of incompressible data.
func writeThumb(path string, label []any, mtime time.Time, buf []byte) (int64, error) {
	r := newRand(append(label, "size")...)
	size := int64(logNormal(r, 12e3, 0.45, 5e3, 30e3))
	src := newChaCha(label...)
	return writeFile(path, mtime, func(w *countingWriter) error {
		var hdr [20]byte
		copy(hdr[0:], "RIFF")
		putLE32(hdr[4:], uint32(size-8))
		copy(hdr[8:], "WEBPVP8 ")
		putLE32(hdr[16:], uint32(size-20))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		return writeRandom(w, src, size-20, buf)
	})
}

func putLE32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// pdfImage is one page image; its bytes come from the ChaCha8 stream named by
// label, so two files using the same label contain identical image bytes.
type pdfImage struct {
	label []any
	size  int64
}

// pdfDoc is a structurally plausible PDF: catalog, page tree, info, font, and
// per page an image XObject plus an uncompressed content stream that draws
// the image and a text layer.
type pdfDoc struct {
	producer string
	created  time.Time
	images   []pdfImage
	textPer  int
	text     *textGen
	ocr      bool
	fileID   [32]byte
}

func (p *pdfDoc) write(w *countingWriter, buf []byte) error {
	pages := len(p.images)
	nobj := 4 + 3*pages
	offsets := make([]int64, nobj+1)
	begin := func(i int) {
		offsets[i] = w.n
		fmt.Fprintf(w, "%d 0 obj\n", i)
	}
	fmt.Fprintf(w, "%%PDF-1.7\n%%\xe2\xe3\xcf\xd3\n")

	begin(1)
	fmt.Fprintf(w, "<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
	begin(2)
	var kids strings.Builder
	for i := 0; i < pages; i++ {
		fmt.Fprintf(&kids, "%d 0 R ", 5+3*i)
	}
	fmt.Fprintf(w, "<< /Type /Pages /Kids [%s] /Count %d >>\nendobj\n", kids.String(), pages)
	begin(3)
	date := p.created.Format("20060102150405")
	fmt.Fprintf(w, "<< /Producer (%s) /CreationDate (D:%s+00'00') /ModDate (D:%s+00'00') >>\nendobj\n", p.producer, date, date)
	begin(4)
	fmt.Fprintf(w, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n")

	var content bytes.Buffer
	var text []byte
	for i, im := range p.images {
		pageObj, imgObj, contObj := 5+3*i, 6+3*i, 7+3*i
		begin(pageObj)
		fmt.Fprintf(w, "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> /XObject << /Im0 %d 0 R >> >> /Contents %d 0 R >>\nendobj\n", imgObj, contObj)

		begin(imgObj)
		fmt.Fprintf(w, "<< /Type /XObject /Subtype /Image /Width 2480 /Height 3508 /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n", im.size)
		if err := writeRandom(w, newChaCha(im.label...), im.size, buf); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nendstream\nendobj\n")

		content.Reset()
		content.WriteString("q 595 0 0 842 0 0 cm /Im0 Do Q\nBT /F1 10 Tf 12 TL 1 0 0 1 56 800 Tm\n")
		if p.ocr {
			content.WriteString("3 Tr\n")
		}
		text = p.text.appendText(text[:0], p.textPer)
		for len(text) > 0 {
			line := text
			if len(line) > 90 {
				cut := bytes.LastIndexByte(line[:90], ' ')
				if cut <= 0 {
					cut = 90
				}
				line = line[:cut]
			}
			text = bytes.TrimLeft(text[len(line):], " ")
			line = bytes.TrimRight(line, "\n")
			content.WriteByte('(')
			for _, c := range line {
				if c == '\n' {
					c = ' '
				}
				content.WriteByte(c)
			}
			content.WriteString(") '\n")
		}
		content.WriteString("ET\n")
		begin(contObj)
		fmt.Fprintf(w, "<< /Length %d >>\nstream\n", content.Len())
		if _, err := w.Write(content.Bytes()); err != nil {
			return err
		}
		fmt.Fprintf(w, "endstream\nendobj\n")
	}

	xref := w.n
	fmt.Fprintf(w, "xref\n0 %d\n0000000000 65535 f \n", nobj+1)
	for i := 1; i <= nobj; i++ {
		fmt.Fprintf(w, "%010d 00000 n \n", offsets[i])
	}
	fmt.Fprintf(w, "trailer\n<< /Size %d /Root 1 0 R /Info 3 0 R /ID [<%x> <%x>] >>\nstartxref\n%d\n%%%%EOF\n",
		nobj+1, p.fileID[:16], p.fileID[16:], xref)
	return nil
}

// existingDocs scans the originals tree and returns id -> year.
func existingDocs(root string) (map[int]int, error) {
	docs := map[int]int{}
	base := filepath.Join(root, docsOriginalsDir)
	years, err := os.ReadDir(base)
	if err != nil {
		return nil, err
	}
	for _, y := range years {
		year, err := strconv.Atoi(y.Name())
		if err != nil || !y.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(base, y.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			id, err := strconv.Atoi(strings.TrimSuffix(f.Name(), ".pdf"))
			if err == nil && strings.HasSuffix(f.Name(), ".pdf") {
				docs[id] = year
			}
		}
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no documents under %s", base)
	}
	return docs, nil
}

// mutateDocs simulates one day of a document manager: about 1 % new
// documents, a few deletions, a few dozen regenerated thumbnails, and the
// matching database changes applied in place with SQL.
func mutateDocs(root string, seed uint64) (mutation, error) {
	var m mutation
	existing, err := existingDocs(root)
	if err != nil {
		return m, err
	}
	ids := make([]int, 0, len(existing))
	maxID, maxYear := 0, 0
	for id, y := range existing {
		ids = append(ids, id)
		maxID, maxYear = max(maxID, id), max(maxYear, y)
	}
	sort.Ints(ids)
	n := len(ids)
	r := newRand("mutate-docs", seed)
	day := mutationTime(seed)
	src := "m" + strconv.FormatUint(seed, 10)

	nNew := max(1, int(math.Round(0.01*float64(n))))
	nDel := min(n-1, max(1, int(math.Round(0.0015*float64(n)))))
	nThumb := max(1, int(math.Round(0.015*float64(n))))
	nEdit := max(1, int(math.Round(0.015*float64(n))))

	// New documents, created during the day.
	newDocs := make([]doc, nNew)
	for i := range newDocs {
		d := newDoc(src, maxID+1+i, maxYear, 1)
		d.created = day.Add(time.Duration(i*600) * time.Second)
		newDocs[i] = d
	}
	buf := make([]byte, 256<<10)
	for _, d := range newDocs {
		nf, nb, err := writeDoc(root, d, buf)
		if err != nil {
			return m, err
		}
		m.newFiles += nf
		m.newBytes += nb
	}

	// Deletions: any existing document.
	perm := r.Perm(n)
	deleted := make([]int, 0, nDel)
	isDeleted := map[int]bool{}
	for _, k := range perm[:nDel] {
		id := ids[k]
		deleted = append(deleted, id)
		isDeleted[id] = true
		for _, p := range []string{origPath(root, id, existing[id]), archivePath(root, id, existing[id]), thumbPath(root, id)} {
			if err := os.Remove(p); err != nil {
				return m, err
			}
			m.deletedFiles++
		}
	}

	// Regenerated thumbnails of surviving documents.
	for _, k := range perm[nDel:min(n, nDel+nThumb)] {
		id := ids[k]
		if _, err := writeThumb(thumbPath(root, id), []any{src, "thumb-edit", id}, day.Add(time.Duration(k)*time.Second), buf); err != nil {
			return m, err
		}
		m.editedFiles++
	}

	// Edited rows: among the most recent 10 % of surviving documents.
	recentFrom := ids[n-max(nEdit, n/10):]
	var edits []int
	for _, k := range r.Perm(len(recentFrom)) {
		if len(edits) == nEdit {
			break
		}
		if id := recentFrom[k]; !isDeleted[id] {
			edits = append(edits, id)
		}
	}
	sort.Ints(edits)
	rows, err := mutateDB(filepath.Join(root, docsDBPath), src, newDocs, edits, deleted, day, r)
	if err != nil {
		return m, err
	}
	m.dbRows = rows
	m.editedFiles++ // the database file itself
	return m, nil
}

// mutationTime is the simulated wall-clock time of mutation seed.
func mutationTime(seed uint64) time.Time {
	return time.Date(2025, 12, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(seed%3650) * 24 * time.Hour)
}

// contentFor returns the deterministic extracted text of a document.
func contentFor(src string, id int) (title, content string) {
	r := newRand(src, "content", id)
	n := int(logNormal(r, docsContentMed, 0.9, 500, 1<<20))
	tg := newTextGen(r)
	title = tg.title()
	return title, string(tg.appendText(make([]byte, 0, n+64), n))
}
