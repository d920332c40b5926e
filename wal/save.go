package wal

import (
	"fmt"
	"path/filepath"

	"github.com/raftline/raft"
)

// writeChunk is how much of a Save is encoded before it is written.
const writeChunk = 256 << 10

// maxKeptBuffer bounds the encoding buffer kept between Saves, so one huge
// entry does not pin its memory for ever.
const maxKeptBuffer = 2 * writeChunk

// segHeaderLen is the framed size of a segment header record.
const segHeaderLen = recordOverhead + segHeaderFixed + stateSize

// Save implements raft.Storage: it writes hs (unless zero) and entries,
// in pieces of writeChunk, with one fsync, and returns once they are
// durable. Entries at or before LastIndex replace the stored suffix from
// their first index.
//
// Readers are not blocked during the write and fsync; they see the new
// state once Save has made it durable.
func (w *WAL) Save(hs raft.HardState, entries []raft.Entry) error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	if err := w.writable(); err != nil {
		return err
	}
	entries, err := w.checkEntries(entries)
	if err != nil {
		return err
	}
	if hs.IsZero() && len(entries) == 0 {
		return nil
	}
	size := int64(0)
	if !hs.IsZero() {
		size += recordOverhead + stateSize
	}
	for i := range entries {
		size += entryRecordSize(&entries[i])
	}
	if err := w.makeRoom(size, false); err != nil {
		return w.fail(err)
	}
	start := w.tailOff
	buf := w.buf[:0]
	if !hs.IsZero() {
		buf = appendState(buf, hs)
	}
	entriesAt := start + int64(len(buf))
	// A large batch goes out in writeChunk pieces, all synced together,
	// so the encoding buffer stays small (kept whole, it pinned up to
	// 4 MiB per node between Saves of 4 KiB commands).
	off := start
	for i := range entries {
		buf = appendEntry(buf, &entries[i])
		if len(buf) >= writeChunk {
			if err := w.writeAt(buf, off); err != nil {
				return err
			}
			off += int64(len(buf))
			buf = buf[:0]
		}
	}
	if end := off + int64(len(buf)); end != start+size {
		return w.fail(fmt.Errorf("wal: encoded %d bytes where %d were reserved", end-start, size))
	}
	if err := w.writeAt(buf, off); err != nil {
		return err
	}
	if err := w.active.f.Sync(); err != nil {
		return w.fail(fmt.Errorf("wal: syncing %s: %w", w.active.name, err))
	}
	w.tailOff = start + size
	w.publish(hs, entries, entriesAt)
	w.keepBuffer(buf)
	return nil
}

// writeAt writes buf at off in the active segment (nothing when empty).
func (w *WAL) writeAt(buf []byte, off int64) error {
	if len(buf) == 0 {
		return nil
	}
	if _, err := w.active.f.WriteAt(buf, off); err != nil {
		return w.fail(fmt.Errorf("wal: writing %s at offset %d: %w", w.active.name, off, err))
	}
	return nil
}

// entryRecordSize is the framed size of e's record, as appendEntry
// writes it.
func entryRecordSize(e *raft.Entry) int64 {
	return int64(recordOverhead + entryFixed + len(e.Data))
}

// keepBuffer keeps buf for the next write unless it grew too large.
func (w *WAL) keepBuffer(buf []byte) {
	if cap(buf) <= maxKeptBuffer {
		w.buf = buf
	} else {
		w.buf = nil
	}
}

// writable reports why the WAL cannot write, if it cannot.
func (w *WAL) writable() error {
	if w.closed {
		return ErrClosed
	}
	if w.failed == nil {
		if err := w.rm.failure(); err != nil {
			w.failed = err
		}
	}
	if w.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, w.failed)
	}
	return nil
}

// fail makes err sticky: after a failed write or fsync nothing the WAL
// writes later can be trusted to sit on a durable prefix.
func (w *WAL) fail(err error) error {
	w.failed = err
	return err
}

// checkEntries validates a Save's entries against the log and drops those
// already compacted (committed, so they cannot conflict).
func (w *WAL) checkEntries(entries []raft.Entry) ([]raft.Entry, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	first := entries[0].Index
	if first == 0 {
		return nil, fmt.Errorf("wal: entry index 0 is invalid")
	}
	for i := range entries {
		if entries[i].Index != first+uint64(i) {
			return nil, fmt.Errorf("wal: entries not contiguous: index %d at position %d after %d", entries[i].Index, i, first)
		}
		if len(entries[i].Data) > maxPayload-entryFixed {
			return nil, fmt.Errorf("wal: entry %d of %d bytes is too large", entries[i].Index, len(entries[i].Data))
		}
	}
	if first > w.lastIndex()+1 {
		return nil, raft.ErrLogGap
	}
	if first < w.first {
		skip := w.first - first
		if skip >= uint64(len(entries)) {
			return nil, nil
		}
		entries = entries[skip:]
	}
	return entries, nil
}

// publish makes a durable Save visible to readers. entriesAt is the offset
// of the first entry record in the active segment.
func (w *WAL) publish(hs raft.HardState, entries []raft.Entry, entriesAt int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !hs.IsZero() {
		w.hs = hs
	}
	off := entriesAt
	for i := range entries {
		e := &entries[i]
		size := entryRecordSize(e)
		if e.Index <= w.lastIndex() {
			w.cache.truncateFrom(e.Index)
		}
		w.appendPos(w.active, e.Index, e.Term, off, size)
		w.cache.add(*e)
		off += size
	}
}

// appendPos records entry (index, term) at (seg, off), truncating the log
// first when it replaces a stored suffix. Callers hold mu (or own the WAL,
// in recovery) and keep the cache in step.
func (w *WAL) appendPos(seg *segment, index, term uint64, off, size int64) {
	if index <= w.lastIndex() {
		w.ents.truncate(int(index - w.first))
	}
	w.ents.append(entryPos{term: term, seq: seg.seq, off: off, size: size})
	if !seg.hasReset && (seg.minIndex == 0 || index < seg.minIndex) {
		seg.minIndex = index
	}
}

// makeRoom readies the active segment for a write of n bytes: it rolls to
// a new segment when the write would take the active one past the segment
// size (or when forced), and grows the preallocation to cover it.
func (w *WAL) makeRoom(n int64, forceRoll bool) error {
	if forceRoll || (w.tailOff+n > w.opts.SegmentSize && w.tailOff > segHeaderLen) {
		if err := w.roll(); err != nil {
			return err
		}
	}
	need := w.tailOff + n
	if need <= w.allocated {
		return nil
	}
	size := w.allocTarget(need)
	if err := w.active.f.Preallocate(size); err != nil {
		return fmt.Errorf("wal: preallocating %s: %w", w.active.name, err)
	}
	w.allocated = size
	return nil
}

// allocTarget is the preallocated size that covers n bytes: whole steps.
func (w *WAL) allocTarget(n int64) int64 {
	step := w.opts.preallocStep
	return max(1, (n+step-1)/step) * step
}

// roll starts a new segment after the active one, first cutting the active
// one at the end of its data, durably: its preallocated rest would hold
// disk for nothing, and recovery then reads a rolled segment to its end.
func (w *WAL) roll() error {
	if err := w.active.f.Truncate(w.tailOff); err != nil {
		return fmt.Errorf("wal: cutting %s at offset %d: %w", w.active.name, w.tailOff, err)
	}
	if err := w.active.f.Sync(); err != nil {
		return fmt.Errorf("wal: syncing %s: %w", w.active.name, err)
	}
	last := w.lastIndex()
	lastTerm, err := w.term(last)
	if err != nil {
		return fmt.Errorf("wal: term of last entry %d: %w", last, err)
	}
	seg, err := w.createSegment(w.active.seq+1, last, lastTerm)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.segs = append(w.segs, seg)
	w.mu.Unlock()
	w.active, w.tailOff, w.allocated = seg, segHeaderLen, w.allocTarget(segHeaderLen)
	return nil
}

// createSegment creates segment seq holding only its header, durably: it
// is written and synced under a temporary name, renamed, and the directory
// synced, so a segment under its final name always has a valid header.
func (w *WAL) createSegment(seq, prevIndex, prevTerm uint64) (*segment, error) {
	name := filepath.Join(w.dir, segmentName(seq, prevIndex+1))
	tmp := name + tmpSuffix
	f, err := w.fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("wal: creating segment: %w", err)
	}
	hdr := appendSegmentHeader(nil, segmentHeader{seq: seq, prevIndex: prevIndex, prevTerm: prevTerm, hs: w.hs})
	err = f.Preallocate(w.allocTarget(segHeaderLen))
	if err == nil {
		_, err = f.WriteAt(hdr, 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = w.fs.Rename(tmp, name)
	}
	if err == nil {
		err = w.fs.SyncDir(w.dir)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: creating segment %s: %w", name, err)
	}
	return &segment{seq: seq, name: name, f: f, prevIndex: prevIndex, prevTerm: prevTerm}, nil
}
