package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Segment files are named <seq>-<first>.wal, both 16 hex digits: the
// segment's sequence number (consecutive, so a missing file shows as a
// gap) and the index its first entry would have when it was created.
// Sorting names sorts segments.
const (
	segmentExt = ".wal"
	tmpSuffix  = ".tmp"
)

func segmentName(seq, first uint64) string {
	return fmt.Sprintf("%016x-%016x%s", seq, first, segmentExt)
}

// parseSegmentName returns the sequence number and first index in a
// segment file name, or ok false for any other name.
func parseSegmentName(name string) (seq, first uint64, ok bool) {
	base, found := strings.CutSuffix(name, segmentExt)
	if !found || len(base) != 33 || base[16] != '-' {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseUint(base[:16], 16, 64)
	first, err2 := strconv.ParseUint(base[17:], 16, 64)
	return seq, first, err1 == nil && err2 == nil
}

// corrupt builds the error Open returns for data it cannot trust.
func corrupt(name string, off int64, format string, args ...any) error {
	return fmt.Errorf("%w: %s offset %d: %s", ErrCorrupt, name, off, fmt.Sprintf(format, args...))
}

// recover rebuilds the in-memory state from the segments. It writes
// nothing until every segment has been checked, so a corrupt directory is
// left exactly as found.
//
// A missing segment between two others shows as a gap in the sequence
// numbers (and each header names the entry before it, checked against the
// log so far). A missing oldest segment cannot be told from compaction, nor
// a missing newest one from a log that never rolled: the WAL keeps no
// separate manifest to catch those.
func (w *WAL) recover() error {
	names, err := w.fs.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("wal: listing %s: %w", w.dir, err)
	}
	type segFile struct {
		name       string
		seq, first uint64
	}
	var files []segFile
	var tmps []string
	for _, name := range names {
		if strings.HasSuffix(name, tmpSuffix) {
			tmps = append(tmps, name)
		} else if seq, first, ok := parseSegmentName(name); ok {
			files = append(files, segFile{name, seq, first})
		}
	}
	slices.SortFunc(files, func(a, b segFile) int { return cmpUint(a.seq, b.seq) })
	w.first = 1
	var tail int64
	for i, sf := range files {
		path := filepath.Join(w.dir, sf.name)
		if i > 0 && sf.seq != files[i-1].seq+1 {
			return fmt.Errorf("%w: %s: segment %d is missing (previous is %s)",
				ErrCorrupt, path, files[i-1].seq+1, files[i-1].name)
		}
		f, err := w.fs.Open(path)
		if err != nil {
			return fmt.Errorf("wal: opening %s: %w", path, err)
		}
		seg := &segment{seq: sf.seq, name: path, f: f}
		w.segs = append(w.segs, seg)
		data, err := readAll(f)
		if err != nil {
			return fmt.Errorf("wal: reading %s: %w", path, err)
		}
		if tail, err = w.replaySegment(seg, sf.first, data, i == 0, i == len(files)-1); err != nil {
			return err
		}
	}
	for _, name := range tmps {
		// Leftovers of a segment creation cut short, never acknowledged;
		// removed before creating a segment that may reuse the name.
		if err := w.fs.Remove(filepath.Join(w.dir, name)); err != nil {
			return fmt.Errorf("wal: removing %s: %w", name, err)
		}
	}
	if len(files) == 0 {
		seg, err := w.createSegment(1, 0, 0)
		if err != nil {
			return err
		}
		w.segs = []*segment{seg}
		tail = segHeaderLen
	}
	w.active, w.tailOff = w.segs[len(w.segs)-1], tail
	if err := w.repairTail(); err != nil {
		return err
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readAll reads a whole segment; the buffer is sized by the file itself,
// so garbage can never make recovery allocate more than is on disk.
func readAll(f file) ([]byte, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size < 0 || size > 1<<40 {
		return nil, fmt.Errorf("implausible file size %d", size)
	}
	data := make([]byte, size)
	n, err := f.ReadAt(data, 0)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == size) {
		return nil, err
	}
	return data, nil
}

// replaySegment applies one segment's records to the state and returns
// where its valid data ends.
func (w *WAL) replaySegment(seg *segment, first uint64, data []byte, isFirst, isLast bool) (int64, error) {
	typ, payload, n, err := decodeRecord(data)
	if err == nil && typ != typeSegment {
		err = fmt.Errorf("first record has type %#x", typ)
	}
	var h segmentHeader
	if err == nil {
		h, err = decodeSegmentHeader(payload)
	}
	if err != nil {
		return 0, corrupt(seg.name, 0, "segment header: %v", err)
	}
	if h.seq != seg.seq || h.prevIndex+1 != first {
		return 0, corrupt(seg.name, 0, "segment header says segment %d starting at %d, the name says %d at %d",
			h.seq, h.prevIndex+1, seg.seq, first)
	}
	if isFirst {
		w.first, w.prevTerm = h.prevIndex+1, h.prevTerm
	} else if t, terr := w.term(h.prevIndex); h.prevIndex != w.lastIndex() || terr != nil || t != h.prevTerm {
		return 0, corrupt(seg.name, 0, "segment follows entry %d of term %d, but the log before it ends at %d (term %d)",
			h.prevIndex, h.prevTerm, w.lastIndex(), t)
	}
	seg.prevIndex, seg.prevTerm = h.prevIndex, h.prevTerm
	w.hs = h.hs
	off := int64(n)
	for off < int64(len(data)) {
		typ, payload, n, err := decodeRecord(data[off:])
		if err != nil {
			if errors.Is(err, errEnd) && allZero(data[off:]) {
				return off, nil
			}
			if !isLast {
				return 0, corrupt(seg.name, off, "%v (in a segment that is not the newest)", err)
			}
			if !isTorn(data[off:], n, err) {
				return 0, corrupt(seg.name, off, "%v before the end of the log", err)
			}
			w.recovery = Recovery{TornTail: true, File: seg.name, Offset: off,
				Discarded: nonZeroExtent(data[off:]), Reason: err.Error()}
			return off, nil
		}
		if err := w.replayRecord(seg, typ, payload, off, int64(n)); err != nil {
			return 0, corrupt(seg.name, off, "%v", err)
		}
		off += int64(n)
	}
	return off, nil
}

// isTorn decides whether a record that failed to decode at the end of the
// newest segment is a write cut short by a crash. A cut write leaves a
// prefix of the record followed by the zeros of the preallocated file, so
// the record is torn only if its last byte (the end marker, never zero when
// written) is missing and nothing but zeros follows it; a complete record
// with a bad checksum, or garbage followed by more data, is corruption.
func isTorn(rest []byte, n int, err error) bool {
	switch {
	case errors.Is(err, errEnd):
		// A zero header with data after it: writeback of an unsynced write
		// reached later pages before earlier ones. The synced log ends here.
		return true
	case errors.Is(err, errShort):
		return true // the file ends inside the record
	case errors.Is(err, errBadHeader):
		return len(rest) <= headerSize || allZero(rest[headerSize:])
	case errors.Is(err, errBadCRC):
		return rest[n-1] == 0 && allZero(rest[n:])
	}
	return false
}

// nonZeroExtent returns how far non-zero bytes reach into b.
func nonZeroExtent(b []byte) int64 {
	i := len(b)
	for i >= len(zeroBlock) && bytes.Equal(b[i-len(zeroBlock):i], zeroBlock[:]) {
		i -= len(zeroBlock)
	}
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return int64(i)
}

// replayRecord applies one valid record during recovery.
func (w *WAL) replayRecord(seg *segment, typ byte, payload []byte, off, size int64) error {
	switch typ {
	case typeState:
		hs, err := decodeState(payload)
		if err != nil {
			return err
		}
		w.hs = hs
	case typeEntry:
		e, err := decodeEntry(payload)
		if err != nil {
			return err
		}
		if last := w.lastIndex(); e.Index > last+1 {
			return fmt.Errorf("gap in the log: entry %d follows entry %d", e.Index, last)
		}
		if e.Index < w.first {
			return fmt.Errorf("entry %d is before the first index %d", e.Index, w.first)
		}
		if w.cache.limit >= 0 {
			e.Data = bytes.Clone(e.Data) // do not pin the segment buffer
		}
		w.appendPos(seg, e, off, size)
	default:
		return fmt.Errorf("unexpected record type %#x", typ)
	}
	return nil
}

// repairTail zeroes a torn tail found by recovery and syncs it, so later
// appends can never be followed by stale bytes that decode as records.
func (w *WAL) repairTail() error {
	r := w.recovery
	if !r.TornTail {
		return nil
	}
	w.log.Warn("wal: discarding torn write at the end of the log",
		"file", r.File, "offset", r.Offset, "bytes", r.Discarded, "reason", r.Reason)
	if r.Discarded == 0 {
		return nil
	}
	if _, err := w.active.f.WriteAt(make([]byte, r.Discarded), r.Offset); err != nil {
		return fmt.Errorf("wal: clearing torn tail of %s: %w", r.File, err)
	}
	if err := w.active.f.Sync(); err != nil {
		return fmt.Errorf("wal: syncing %s: %w", r.File, err)
	}
	return nil
}
