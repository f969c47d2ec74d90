package backend

import (
	"context"
	"fmt"
	"io"
)

// CheckRange rejects a Load range with a negative offset or length. Every backend
// calls it before touching the store.
func CheckRange(h Handle, length int, offset int64) error {
	if length < 0 || offset < 0 {
		return fmt.Errorf("load %s: invalid range offset %d length %d", h, offset, length)
	}
	return nil
}

// RangeLength returns how many bytes a Load of (length, offset) covers in a file of
// size bytes (length 0: to the end), or an error wrapping io.ErrUnexpectedEOF if the
// range goes past the end.
func RangeLength(h Handle, size int64, length int, offset int64) (int64, error) {
	if offset > size || length > 0 && offset+int64(length) > size {
		return 0, fmt.Errorf("load %s: range offset %d length %d beyond file size %d: %w",
			h, offset, length, size, io.ErrUnexpectedEOF)
	}
	if length > 0 {
		return int64(length), nil
	}
	return size - offset, nil
}

// ContextReader returns a reader of r that fails with ctx's error once ctx is done,
// so a long Load stops when its command is cancelled.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
