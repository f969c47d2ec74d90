package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"
	"github.com/cairn-backup/cairn/crypto"
	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/blob"
	"github.com/cairn-backup/cairn/repo/index"
	"github.com/cairn-backup/cairn/repo/pack"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

var (
	zstdDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(pack.MaxBlobSize))
)

// LoadIndex reads every index file into memory. It is called once per command; later
// calls do nothing. A damaged index file is an error naming it.
func (r *Repository) LoadIndex(ctx context.Context) error {
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	if r.idxLoaded {
		return nil
	}
	var files []backend.FileInfo
	var total int64
	err := r.be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		files = append(files, fi)
		total += fi.Size
		return nil
	})
	if err != nil {
		return fmt.Errorf("list index: %w", err)
	}
	idx := index.New()
	idx.Grow(int(total / 48))
	treePacks := map[ID]bool{}
	listed := make([]ID, 0, len(files))
	for _, fi := range files {
		id, err := blob.ParseID(fi.Name)
		if err != nil {
			continue
		}
		listed = append(listed, id)
		f, err := r.loadIndexFile(ctx, id)
		if err != nil {
			if errors.Is(err, ErrFileNotFound) {
				continue // removed by a concurrent prune after listing
			}
			return err
		}
		for _, p := range f.Packs {
			onlyTrees, seen := treePacks[p.ID]
			if !seen {
				onlyTrees = len(p.Entries) > 0
			}
			for _, e := range p.Entries {
				onlyTrees = onlyTrees && e.Type == blob.Tree
			}
			treePacks[p.ID] = onlyTrees
		}
		idx.AddFile(id, f)
	}
	idx.Sort()
	// Superseded index files still present (prune deletes them right after writing
	// their replacement) are merged too: a pack live in any file is live (FORMAT.md §8).
	for p, onlyTrees := range treePacks {
		if !onlyTrees {
			delete(treePacks, p)
		}
	}
	r.idx = idx
	r.idxLoaded = true
	r.treePacks = treePacks
	if r.cache != nil {
		// Evict what the repository no longer has: index files not listed, packs no
		// index file names (deleted by prune).
		r.evictUnlisted(backend.IndexFile, listed)
		_, _ = r.cache.Retain(backend.PackFile, func(name string) bool {
			id, err := blob.ParseID(name)
			return err == nil && treePacks[id]
		})
	}
	return nil
}

// cachedTreePack reports whether the pack holds only trees and is read through the
// cache.
func (r *Repository) cachedTreePack(id ID) bool {
	if r.cache == nil {
		return false
	}
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	return r.treePacks[id]
}

func (r *Repository) loadIndexFile(ctx context.Context, id ID) (*index.File, error) {
	h := backend.Handle{Type: backend.IndexFile, Name: id.String()}
	plain, err := r.loadSealed(ctx, h, r.secrets.IndexIdentity)
	if err != nil {
		return nil, err
	}
	f, err := index.Decode(plain)
	if err != nil {
		return nil, &CorruptError{Handle: h, Err: err}
	}
	return f, nil
}

// LoadIndexFile loads and decodes one index file.
func (r *Repository) LoadIndexFile(ctx context.Context, id ID) (*index.File, error) {
	return r.loadIndexFile(ctx, id)
}

// SaveIndexFile encrypts and stores an index file, returning its ID.
func (r *Repository) SaveIndexFile(ctx context.Context, f *index.File) (ID, error) {
	id, err := r.saveSealed(ctx, backend.IndexFile, f.Encode(), r.secrets.Recipients()...)
	if err != nil {
		return ID{}, fmt.Errorf("save index: %w", err)
	}
	return id, nil
}

// Index returns the in-memory index (LoadIndex first).
func (r *Repository) Index() *index.Index {
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	return r.idx
}

// ResetIndex forgets the loaded index so the next LoadIndex reads it again.
func (r *Repository) ResetIndex() {
	r.idxMu.Lock()
	r.idx = index.New()
	r.idxLoaded = false
	r.idxMu.Unlock()
}

// LookupBlob returns where a blob is stored.
func (r *Repository) LookupBlob(id ID) (index.Location, bool) { return r.Index().Lookup(id) }

// HasBlob reports whether the index knows the blob.
func (r *Repository) HasBlob(id ID) bool { return r.Index().Has(id) }

// fileKeyCache keeps unwrapped age file keys of packs, so that reading many blobs of
// one pack unwraps its header once.
type fileKeyCache struct {
	mu   sync.Mutex
	keys map[ID][]byte
}

func newFileKeyCache() *fileKeyCache { return &fileKeyCache{keys: map[ID][]byte{}} }

const maxCachedFileKeys = 4096

func (c *fileKeyCache) get(id ID) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys[id]
}

func (c *fileKeyCache) put(id ID, key []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) >= maxCachedFileKeys {
		for k := range c.keys {
			delete(c.keys, k)
			break
		}
	}
	c.keys[id] = key
}

// backendReaderAt reads a stored file through ranged Loads.
type backendReaderAt struct {
	ctx context.Context
	be  backend.Backend
	h   backend.Handle
}

func (b *backendReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	err := b.be.Load(b.ctx, b.h, len(p), off, func(rd io.Reader) error {
		var err error
		n, err = io.ReadFull(rd, p)
		return err
	})
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return n, io.EOF
		}
		return n, err
	}
	return n, nil
}

// packIdentity returns an identity for a pack's file key, unwrapping it once.
func (r *Repository) packIdentity(ctx context.Context, packID ID) (age.Identity, error) {
	if k := r.keyCache.get(packID); k != nil {
		return age.NewInjectedFileKeyIdentity(k), nil
	}
	h := backend.Handle{Type: backend.PackFile, Name: packID.String()}
	// An age header is small: 4 KiB holds any X25519 or hybrid header. Read only
	// that much (a ranged read, so a remote backend transfers no more), and the
	// whole file if the header is longer.
	var hdrBuf []byte
	length := 4 << 10
	if size, ok := r.Index().PackSize(packID); ok && size < uint64(length) {
		length = 0
	}
	readHeader := func(length int) error {
		return r.be.Load(ctx, h, length, 0, func(rd io.Reader) error {
			hdr, err := age.ExtractHeader(io.LimitReader(rd, 64<<10))
			hdrBuf = hdr
			return err
		})
	}
	err := readHeader(length)
	if err != nil && length != 0 && !backend.IsNotExist(err) && ctx.Err() == nil {
		err = readHeader(0)
	}
	if err != nil {
		if backend.IsNotExist(err) {
			return nil, fmt.Errorf("%w: %s", ErrFileNotFound, h)
		}
		return nil, &CorruptError{Handle: h, Err: fmt.Errorf("read age header: %w", err)}
	}
	return r.unwrapPackKey(h, packID, hdrBuf)
}

// unwrapPackKey decrypts a pack's age header and remembers the file key.
func (r *Repository) unwrapPackKey(h backend.Handle, packID ID, hdrBuf []byte) (age.Identity, error) {
	key, err := age.DecryptHeader(hdrBuf, r.secrets.DataIdentity)
	if err != nil {
		return nil, &CorruptError{Handle: h, Err: fmt.Errorf("decrypt header: %w", err)}
	}
	r.keyCache.put(packID, key)
	return age.NewInjectedFileKeyIdentity(key), nil
}

// LoadBlob reads a blob, decompresses it and verifies its ID, appending the plaintext to
// dst[:0]. A blob whose bytes do not match its ID yields a *CorruptError.
func (r *Repository) LoadBlob(ctx context.Context, id ID, dst []byte) ([]byte, error) {
	if r.secrets.WriteOnly() {
		return nil, fmt.Errorf("load blob %s: %w", id.Short(), ErrWriteOnly)
	}
	loc, ok := r.LookupBlob(id)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrBlobNotFound, id)
	}
	h := backend.Handle{Type: backend.PackFile, Name: loc.Pack.String()}
	if r.cachedTreePack(loc.Pack) {
		out, err := r.loadCachedBlob(ctx, h, loc, dst)
		if err == nil || ctx.Err() != nil {
			return out, err
		}
		// Never trust a cached copy that failed: drop it and read from the backend.
		_ = r.cache.Remove(h)
	}
	size, ok := r.Index().PackSize(loc.Pack)
	if !ok || size == 0 {
		fi, err := r.be.Stat(ctx, h)
		if err != nil {
			if backend.IsNotExist(err) {
				return nil, fmt.Errorf("%w: %s (holding blob %s)", ErrFileNotFound, h, id.Short())
			}
			return nil, fmt.Errorf("stat %s: %w", h, err)
		}
		size = uint64(fi.Size)
	}
	ident, err := r.packIdentity(ctx, loc.Pack)
	if err != nil {
		return nil, err
	}
	ra, plainSize, err := age.DecryptReaderAt(&backendReaderAt{ctx: ctx, be: r.be, h: h}, int64(size), ident)
	if err != nil {
		if backend.IsNotExist(err) {
			return nil, fmt.Errorf("%w: %s (holding blob %s)", ErrFileNotFound, h, id.Short())
		}
		return nil, &CorruptError{Handle: h, Blob: &id, Err: fmt.Errorf("decrypt: %w", err)}
	}
	e := loc.Entry
	if int64(e.Offset)+int64(e.Length) > plainSize {
		return nil, &CorruptError{Handle: h, Blob: &id, Err: fmt.Errorf("blob at %d+%d lies outside the pack (%d bytes)", e.Offset, e.Length, plainSize)}
	}
	stored := make([]byte, e.Length)
	if _, err := ra.ReadAt(stored, int64(e.Offset)); err != nil && !(errors.Is(err, io.EOF) && int64(e.Offset)+int64(e.Length) == plainSize) {
		return nil, &CorruptError{Handle: h, Blob: &id, Err: fmt.Errorf("decrypt: %w", err)}
	}
	out, err := DecodeBlob(e, stored, dst, crypto.NewBlobMAC(r.secrets.IDKey))
	if err != nil {
		return nil, &CorruptError{Handle: h, Blob: &id, Err: err}
	}
	return out, nil
}

// loadCachedBlob reads a blob from the cached copy of its pack, downloading the whole
// pack into the cache first if needed (the cache verifies the pack's name).
func (r *Repository) loadCachedBlob(ctx context.Context, h backend.Handle, loc index.Location, dst []byte) ([]byte, error) {
	id := loc.Entry.ID
	f, size, err := r.cache.Fetch(h, func(save func(io.Reader) error) error {
		return r.be.Load(ctx, h, 0, 0, save)
	})
	if err != nil {
		if backend.IsNotExist(err) {
			return nil, fmt.Errorf("%w: %s (holding blob %s)", ErrFileNotFound, h, id.Short())
		}
		return nil, fmt.Errorf("load %s into the cache: %w", h, err)
	}
	defer f.Close()
	var ident age.Identity
	if k := r.keyCache.get(loc.Pack); k != nil {
		ident = age.NewInjectedFileKeyIdentity(k)
	} else {
		hdr, err := age.ExtractHeader(io.NewSectionReader(f, 0, min(size, 64<<10)))
		if err != nil {
			return nil, &CorruptError{Handle: h, Err: fmt.Errorf("read age header of cached copy: %w", err)}
		}
		if ident, err = r.unwrapPackKey(h, loc.Pack, hdr); err != nil {
			return nil, err
		}
	}
	ra, plainSize, err := age.DecryptReaderAt(f, size, ident)
	if err != nil {
		return nil, &CorruptError{Handle: h, Blob: &id, Err: fmt.Errorf("decrypt cached copy: %w", err)}
	}
	e := loc.Entry
	if int64(e.Offset)+int64(e.Length) > plainSize {
		return nil, &CorruptError{Handle: h, Blob: &id, Err: fmt.Errorf("blob at %d+%d lies outside the pack (%d bytes)", e.Offset, e.Length, plainSize)}
	}
	stored := make([]byte, e.Length)
	if _, err := ra.ReadAt(stored, int64(e.Offset)); err != nil && !(errors.Is(err, io.EOF) && int64(e.Offset)+int64(e.Length) == plainSize) {
		return nil, &CorruptError{Handle: h, Blob: &id, Err: fmt.Errorf("decrypt cached copy: %w", err)}
	}
	out, err := DecodeBlob(e, stored, dst, crypto.NewBlobMAC(r.secrets.IDKey))
	if err != nil {
		return nil, &CorruptError{Handle: h, Blob: &id, Err: err}
	}
	return out, nil
}

// DecodeBlob decompresses a stored blob into dst[:0] and verifies it against e.ID.
func DecodeBlob(e pack.Entry, stored, dst []byte, mac *crypto.BlobMAC) ([]byte, error) {
	var out []byte
	switch e.Compression {
	case pack.CompressionNone:
		out = append(dst[:0], stored...)
	case pack.CompressionZstd:
		if cap(dst) < int(e.RawLength) {
			dst = make([]byte, 0, e.RawLength)
		}
		var err error
		out, err = zstdDecoder.DecodeAll(stored, dst[:0])
		if err != nil {
			return nil, fmt.Errorf("decompress: %w", err)
		}
	default:
		return nil, fmt.Errorf("unknown compression %d", e.Compression)
	}
	if err := verifyBlob(e, out, mac); err != nil {
		return nil, err
	}
	return out, nil
}

// verifyBlob checks a blob's plaintext against its entry: length and ID.
func verifyBlob(e pack.Entry, plain []byte, mac *crypto.BlobMAC) error {
	if len(plain) != int(e.RawLength) {
		return fmt.Errorf("length %d, index says %d", len(plain), e.RawLength)
	}
	if got := mac.Sum(plain); got != e.ID {
		return fmt.Errorf("content does not match its id (got %s)", blob.ID(got).Short())
	}
	return nil
}

// PackReader gives access to the blobs of a whole pack, read once, decrypted and
// with its header parsed (ReadPack, which also verifies the pack's name, or
// FetchPack and OpenPack).
type PackReader struct {
	Entries []pack.Entry
	plain   []byte
	loaded  bool // plain is a loadedPacks buffer
	mac     *crypto.BlobMAC
	h       backend.Handle
}

// packBufs recycles pack plaintext buffers between streamed ReadPack calls.
var packBufs sync.Pool

// loadedPacks recycles the aligned buffers a FileLoader reads whole packs into (and
// which then hold their plaintext). A short free list rather than a sync.Pool: a
// restore reads packs of 16–24 MiB back to back, and a pool emptied by every GC
// would have the next pack allocate afresh.
var loadedPacks = make(chan []byte, 4)

func getLoadedPackBuf() []byte {
	select {
	case b := <-loadedPacks:
		return b
	default:
		return nil
	}
}

func putLoadedPackBuf(b []byte) {
	select {
	case loadedPacks <- b[:0]:
	default:
	}
}

// FetchedPack is a pack read from storage and not yet decrypted (FetchPack). Open or
// Release it.
type FetchedPack struct {
	id     ID
	stored []byte // the whole stored file; nil: OpenPack reads it as a stream
}

// Release recycles the buffer of a fetched pack that will not be opened.
func (fp *FetchedPack) Release() {
	if fp != nil && fp.stored != nil {
		putLoadedPackBuf(fp.stored)
		fp.stored = nil
	}
}

// FetchPack reads a whole pack from storage without decrypting it, where the backend
// can read a whole file at once (backend.FileLoader: the local directory, past the
// page cache). From other backends it returns a FetchedPack that OpenPack reads as a
// stream. Reading apart from decrypting lets a restore keep the disk busy while the
// processors decrypt (docs/PERFORMANCE.md §Restore).
func (r *Repository) FetchPack(ctx context.Context, packID ID) (*FetchedPack, error) {
	if r.secrets.WriteOnly() {
		return nil, fmt.Errorf("read pack %s: %w", packID.Short(), ErrWriteOnly)
	}
	fp := &FetchedPack{id: packID}
	fl, ok := r.be.(backend.FileLoader)
	if !ok {
		return fp, nil
	}
	h := backend.Handle{Type: backend.PackFile, Name: packID.String()}
	stored, err := fl.LoadFile(ctx, h, getLoadedPackBuf())
	if err != nil {
		return nil, loadError(h, err)
	}
	fp.stored = stored
	return fp, nil
}

func loadError(h backend.Handle, err error) error {
	if backend.IsNotExist(err) {
		return fmt.Errorf("%w: %s", ErrFileNotFound, h)
	}
	return fmt.Errorf("load %s: %w", h, err)
}

// ReadPack reads a whole pack once, verifying its name (the BLAKE3 hash of the stored
// bytes) and decrypting it, and parses its header: FetchPack, then OpenPack. Call
// Close when done to recycle the buffer.
func (r *Repository) ReadPack(ctx context.Context, packID ID) (*PackReader, error) {
	fp, err := r.FetchPack(ctx, packID)
	if err != nil {
		return nil, err
	}
	return r.openPack(ctx, fp, true)
}

// OpenPack decrypts a fetched pack and parses its header, for a caller that takes
// blobs from it with PackReader.Blob or View, which verify each blob against its ID.
// It does not hash the pack to check its name, which ReadPack does: the decryption
// authenticates every byte of the pack, and the blob IDs prove the plaintext is what
// the index says, so the name adds nothing for such a caller and hashing the pack
// costs a restore a sixth of its processor time (docs/PERFORMANCE.md §Restore).
// A pack read whole is decrypted in its own buffer, which passes to the PackReader;
// others are read now as a stream and decrypted as they arrive. Call Close when done
// to recycle the buffer.
func (r *Repository) OpenPack(ctx context.Context, fp *FetchedPack) (*PackReader, error) {
	return r.openPack(ctx, fp, false)
}

// openPack is OpenPack, checking the pack's name as well if checkName is set.
func (r *Repository) openPack(ctx context.Context, fp *FetchedPack, checkName bool) (*PackReader, error) {
	packID := fp.id
	h := backend.Handle{Type: backend.PackFile, Name: packID.String()}
	var plain []byte
	var decErr, err error
	loaded := fp.stored != nil
	if loaded {
		plain, decErr = decryptPackInPlace(packID, fp.stored, r.secrets.DataIdentity, checkName)
		fp.stored = nil // the PackReader owns the buffer now
	} else {
		if b, ok := packBufs.Get().(*[]byte); ok {
			plain = (*b)[:0]
		}
		if size, ok := r.Index().PackSize(packID); ok && uint64(cap(plain)) < size {
			// The plaintext is a little smaller than the stored file: one exact allocation.
			plain = make([]byte, 0, size)
		}
		err = r.be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
			decErr = nil
			var hasher *blake3.Hasher
			src := rd
			if checkName {
				hasher = blake3.New()
				src = io.TeeReader(rd, hasher)
			}
			ar, err := age.Decrypt(src, r.secrets.DataIdentity)
			if err == nil {
				plain, err = readAllInto(ar, plain[:0])
			}
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				// Decryption failures are data errors, not transport errors: do not retry.
				decErr = err
				return nil
			}
			if hasher == nil {
				return nil
			}
			if _, err := io.Copy(hasher, rd); err != nil {
				return err
			}
			if got := ID(hasher.Sum(nil)); got != packID {
				decErr = nameMismatch(got)
			}
			return nil
		})
	}
	pr := &PackReader{plain: plain, loaded: loaded, h: h}
	if err != nil {
		pr.Close()
		return nil, loadError(h, err)
	}
	if decErr != nil {
		pr.Close()
		return nil, &CorruptError{Handle: h, Err: fmt.Errorf("decrypt: %w", decErr)}
	}
	entries, err := ParsePackPlaintext(plain)
	if err != nil {
		pr.Close()
		return nil, &CorruptError{Handle: h, Err: err}
	}
	pr.Entries, pr.mac = entries, crypto.NewBlobMAC(r.secrets.IDKey)
	return pr, nil
}

// decryptPackInPlace decrypts a whole stored pack into the same buffer, returning
// the plaintext (a prefix of stored), and checks the pack's name if checkName is
// set. The plaintext never overtakes the ciphertext still to be read: every 64 KiB
// chunk shrinks by its 16-byte tag and the age header comes first. A decryption
// error is reported before a name mismatch, as the streaming path does.
func decryptPackInPlace(packID ID, stored []byte, ident age.Identity, checkName bool) ([]byte, error) {
	sum := packID
	if checkName {
		sum = ID(blake3.Sum256(stored))
	}
	ar, err := age.Decrypt(bytes.NewReader(stored), ident)
	plain := stored[:0]
	if err == nil {
		plain, err = readAllInto(ar, plain)
	}
	if err != nil {
		return plain, err
	}
	if len(plain) > 0 && &plain[0] != &stored[0] {
		return plain, errors.New("plaintext outgrew its buffer") // cannot happen: age only shrinks
	}
	if sum != packID {
		return plain, nameMismatch(sum)
	}
	return plain, nil
}

// nameMismatch is the error for a pack whose stored bytes hash to got, not its name.
func nameMismatch(got ID) error {
	return fmt.Errorf("content hash %s does not match its name", got.Short())
}

// readAllInto reads rd to its end, appending to buf, growing it by half at a time.
func readAllInto(rd io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, cap(buf)/2+64<<10)...)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// Close recycles the pack's buffer; the PackReader and blobs it returned without
// copying must not be used afterwards.
func (p *PackReader) Close() {
	if p.plain == nil {
		return
	}
	if p.loaded {
		putLoadedPackBuf(p.plain)
	} else {
		b := p.plain[:0]
		packBufs.Put(&b)
	}
	p.plain = nil
}

// ParsePackPlaintext parses the header of a decrypted pack.
func ParsePackPlaintext(plain []byte) ([]pack.Entry, error) {
	if len(plain) < pack.TrailerSize {
		return nil, fmt.Errorf("%w: %d bytes", pack.ErrInvalid, len(plain))
	}
	n, err := pack.ParseTrailer(plain[len(plain)-pack.TrailerSize:], int64(len(plain)))
	if err != nil {
		return nil, err
	}
	hdrStart := len(plain) - pack.TrailerSize - n
	return pack.ParseHeader(plain[hdrStart:len(plain)-pack.TrailerSize], int64(len(plain)))
}

// Blob returns the verified plaintext of entry e of the pack, appended to dst[:0].
func (p *PackReader) Blob(e pack.Entry, dst []byte) ([]byte, error) {
	stored, err := p.stored(e)
	if err != nil {
		return nil, err
	}
	out, err := DecodeBlob(e, stored, dst, p.mac)
	if err != nil {
		return nil, &CorruptError{Handle: p.h, Blob: &e.ID, Err: err}
	}
	return out, nil
}

// View is Blob without a copy for a blob stored uncompressed: the verified plaintext
// is then a slice of the pack's buffer, valid until Close and not to be written to.
// Compressed blobs are decoded into dst[:0] as by Blob.
func (p *PackReader) View(e pack.Entry, dst []byte) ([]byte, error) {
	if e.Compression != pack.CompressionNone {
		return p.Blob(e, dst)
	}
	out, err := p.stored(e)
	if err != nil {
		return nil, err
	}
	if err := verifyBlob(e, out, p.mac); err != nil {
		return nil, &CorruptError{Handle: p.h, Blob: &e.ID, Err: err}
	}
	return out, nil
}

// stored returns entry e's stored bytes, a full slice of the pack's buffer.
func (p *PackReader) stored(e pack.Entry) ([]byte, error) {
	end := int(e.Offset) + int(e.Length)
	if end > len(p.plain) {
		return nil, &CorruptError{Handle: p.h, Blob: &e.ID, Err: errors.New("blob lies outside the pack")}
	}
	return p.plain[e.Offset:end:end], nil
}

// Find returns the entry with the given blob ID.
func (p *PackReader) Find(id ID) (pack.Entry, bool) {
	for _, e := range p.Entries {
		if e.ID == id {
			return e, true
		}
	}
	return pack.Entry{}, false
}
