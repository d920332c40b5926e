package wal

import (
	"errors"
	"fmt"
)

// replaySegment applies one segment's records to the state and returns
// where its valid data ends.
func (w *WAL) replaySegment(seg *segment, first uint64, rr *recordReader, isFirst, isLast bool) (int64, error) {
	typ, payload, n, err := rr.record(0)
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
	for off < rr.size {
		typ, payload, n, err := rr.record(off)
		if err != nil {
			return w.endOfRecords(seg, rr, off, n, err, isLast)
		}
		if err := w.replayRecord(seg, typ, payload, off, int64(n)); err != nil {
			return 0, corrupt(seg.name, off, "%v", err)
		}
		off += int64(n)
	}
	return off, nil
}

// endOfRecords decides what a record at off that failed to decode with
// err means: the clean end of the data, a write cut short by a crash at
// the end of the newest segment (dropped and reported in w.recovery), or
// corruption. It returns where the segment's valid data ends.
//
// A crash cuts the last write short: on disk is a prefix of it followed by
// what was there before, the zeros of preallocated space (or the end of
// the file). A record damaged inside the synced log, on the other hand, is
// followed at once by the next record, whose header is never zero. So it
// is sound to look only tailWindow bytes past the damaged record: non-zero
// bytes within it mean corruption, and a torn tail shows as zeros there.
// What lies beyond the window is never read, and never trusted either:
// repairTail cuts the newest segment at the end of its log.
func (w *WAL) endOfRecords(seg *segment, rr *recordReader, off int64, n int, err error, isLast bool) (int64, error) {
	if err != nil && !errors.Is(err, errEnd) && !errors.Is(err, errShort) &&
		!errors.Is(err, errBadHeader) && !errors.Is(err, errBadCRC) {
		return 0, fmt.Errorf("wal: reading %s: %w", seg.name, err) // an I/O error
	}
	end, ioErr := rr.nonZeroEnd(off, off+int64(max(n, headerSize))+tailWindow)
	if ioErr != nil {
		return 0, fmt.Errorf("wal: reading %s: %w", seg.name, ioErr)
	}
	if errors.Is(err, errEnd) && end == off {
		return off, nil // zeros: the end of the data
	}
	if !isLast {
		return 0, corrupt(seg.name, off, "%v (in a segment that is not the newest)", err)
	}
	torn, terr := isTorn(rr, off, n, err)
	if terr != nil {
		return 0, fmt.Errorf("wal: reading %s: %w", seg.name, terr)
	}
	if !torn {
		return 0, corrupt(seg.name, off, "%v before the end of the log", err)
	}
	w.recovery = Recovery{TornTail: true, File: seg.name, Offset: off, Discarded: end - off, Reason: err.Error()}
	return off, nil
}

// isTorn decides whether a record that failed to decode at the end of the
// newest segment is a write cut short by a crash: the record is torn only
// if its last byte (the end marker, never zero when written) is missing
// and nothing but zeros follows it within the window; a complete record
// with a bad checksum, or garbage followed by more data, is corruption.
func isTorn(rr *recordReader, off int64, n int, err error) (bool, error) {
	zeroFrom := func(from int64) (bool, error) {
		end, err := rr.nonZeroEnd(from, from+tailWindow)
		return end == from, err
	}
	switch {
	case errors.Is(err, errEnd):
		// A zero header with data after it: writeback of an unsynced write
		// reached later pages before earlier ones. The synced log ends here.
		return true, nil
	case errors.Is(err, errShort):
		return true, nil // the file ends inside the record
	case errors.Is(err, errBadHeader):
		return zeroFrom(off + headerSize)
	case errors.Is(err, errBadCRC):
		last, rerr := rr.bytes(off+int64(n)-1, 1)
		if rerr != nil || len(last) != 1 || last[0] != 0 {
			return false, rerr
		}
		return zeroFrom(off + int64(n))
	}
	return false, nil
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
		// The cache is filled once replay is done (warmCache): copying every
		// entry's data on the way would cost as much as the log holds.
		w.appendPos(seg, e.Index, e.Term, off, size)
	case typeReset:
		index, term, err := decodeReset(payload)
		if err != nil {
			return err
		}
		w.resetTo(seg, index, term)
	default:
		return fmt.Errorf("unexpected record type %#x", typ)
	}
	return nil
}
