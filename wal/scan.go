package wal

import (
	"errors"
	"fmt"
	"io"
)

// Recovery reads segments through a recordReader: records are decoded from
// a buffer refilled chunk by chunk, so opening a WAL holds at most a chunk
// or its largest record in memory, never a whole segment, and reads only
// what the records need plus a bounded look past the end of the log.
const (
	// A reader's buffer starts at minReadChunk and doubles with each
	// refill up to readChunk: a small log is read with a small buffer, a
	// large one with few system calls.
	minReadChunk = 64 << 10
	readChunk    = 1 << 20
	// tailWindow is how far past the end of the newest segment's log
	// recovery looks at the bytes. It must be sound to stop there; see
	// tornOrCorrupt.
	tailWindow = 4 << 20
)

// recordReader reads the records of one file.
type recordReader struct {
	f      file
	size   int64  // the file's size
	buf    []byte // the file's bytes from bufOff
	bufOff int64
	chunk  int // how much the next refill reads at least
}

// newRecordReader returns a reader of f that reuses buf (a buffer an
// earlier reader is done with) if it is large enough.
func newRecordReader(f file, buf []byte) (*recordReader, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size < 0 || size > 1<<40 {
		return nil, fmt.Errorf("implausible file size %d", size)
	}
	return &recordReader{f: f, size: size, buf: buf[:0], bufOff: 0, chunk: minReadChunk}, nil
}

// record decodes the record at off as decodeRecord would given the rest of
// the file: errEnd and errShort mean what they mean there. payload aliases
// the reader's buffer and is valid until the next call.
func (r *recordReader) record(off int64) (typ byte, payload []byte, n int, err error) {
	b, err := r.bytes(off, headerSize)
	if err != nil {
		return 0, nil, 0, err
	}
	typ, payload, n, err = decodeRecord(b)
	if errors.Is(err, errShort) && n > len(b) && int64(n) <= r.size-off {
		// A sound header: fetch the whole record.
		if b, err = r.bytes(off, n); err != nil {
			return 0, nil, 0, err
		}
		typ, payload, n, err = decodeRecord(b)
	}
	return typ, payload, n, err
}

// bytes returns the file's bytes [off, off+n), or fewer where the file
// ends.
func (r *recordReader) bytes(off int64, n int) ([]byte, error) {
	n = int(min(int64(n), max(0, r.size-off)))
	if n == 0 {
		return nil, nil
	}
	if off >= r.bufOff && off+int64(n) <= r.bufOff+int64(len(r.buf)) {
		return r.buf[off-r.bufOff:][:n], nil
	}
	want := int(min(int64(max(n, r.chunk)), r.size-off))
	r.chunk = min(2*r.chunk, readChunk)
	if cap(r.buf) < want {
		r.buf = make([]byte, want)
	}
	r.buf, r.bufOff = r.buf[:want], off
	got, err := r.f.ReadAt(r.buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && got == want) {
		return nil, err
	}
	return r.buf[:n], nil
}

// nonZeroEnd returns the offset just past the last non-zero byte in
// [off, limit) (cut at the end of the file), or off when all are zero. It
// reads through the buffer as it is, never growing it: the bytes are only
// looked at, and there may be megabytes of preallocated zeros.
func (r *recordReader) nonZeroEnd(off, limit int64) (int64, error) {
	limit = min(limit, r.size)
	if cap(r.buf) < minReadChunk {
		r.buf = make([]byte, 0, minReadChunk)
	}
	buf := r.buf[:cap(r.buf)]
	end := off
	for pos := off; pos < limit; {
		n := int(min(int64(len(buf)), limit-pos))
		got, err := r.f.ReadAt(buf[:n], pos)
		if err != nil && !(errors.Is(err, io.EOF) && got == n) {
			r.buf, r.bufOff = r.buf[:0], 0
			return 0, err
		}
		r.buf, r.bufOff = buf[:n], pos
		if ext := nonZeroExtent(buf[:n]); ext > 0 {
			end = pos + ext
		}
		pos += int64(n)
	}
	return end, nil
}
