package wal

import (
	"fmt"
	"path/filepath"

	"github.com/raftline/raft"
)

// maxKeptBuffer bounds the encoding buffer kept between Saves, so one huge
// batch does not pin its memory for ever.
const maxKeptBuffer = 4 << 20

// segHeaderLen is the framed size of a segment header record.
const segHeaderLen = recordOverhead + segHeaderFixed + stateSize

// Save implements raft.Storage: it writes hs (unless zero) and entries with
// one write and one fsync, and returns once they are durable. Entries at or
// before LastIndex replace the stored suffix from their first index.
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
	buf := w.buf[:0]
	if !hs.IsZero() {
		buf = appendState(buf, hs)
	}
	entriesAt := len(buf)
	for i := range entries {
		buf = appendEntry(buf, &entries[i])
	}
	if w.tailOff+int64(len(buf)) > w.opts.SegmentSize && w.tailOff > segHeaderLen {
		if err := w.roll(); err != nil {
			return w.fail(err)
		}
	}
	off := w.tailOff
	if _, err := w.active.f.WriteAt(buf, off); err != nil {
		return w.fail(fmt.Errorf("wal: writing %s at offset %d: %w", w.active.name, off, err))
	}
	if err := w.active.f.Sync(); err != nil {
		return w.fail(fmt.Errorf("wal: syncing %s: %w", w.active.name, err))
	}
	w.tailOff += int64(len(buf))
	w.publish(hs, entries, off+int64(entriesAt))
	if cap(buf) <= maxKeptBuffer {
		w.buf = buf
	} else {
		w.buf = nil
	}
	return nil
}

// writable reports why the WAL cannot write, if it cannot.
func (w *WAL) writable() error {
	if w.closed {
		return ErrClosed
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
		size := int64(recordOverhead + entryFixed + len(entries[i].Data))
		w.appendPos(w.active, entries[i], off, size)
		off += size
	}
}

// appendPos records entry e at (seg, off), truncating the log first when e
// replaces a stored suffix. Callers hold mu (or own the WAL, in recovery).
func (w *WAL) appendPos(seg *segment, e raft.Entry, off, size int64) {
	if e.Index <= w.lastIndex() {
		w.ents = w.ents[:e.Index-w.first]
		w.cache.truncateFrom(e.Index)
	}
	w.ents = append(w.ents, entryPos{term: e.Term, seq: seg.seq, off: off, size: size})
	w.cache.add(e)
	if seg.minIndex == 0 || e.Index < seg.minIndex {
		seg.minIndex = e.Index
	}
}

// roll starts a new segment after the active one.
func (w *WAL) roll() error {
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
	w.active, w.tailOff = seg, segHeaderLen
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
	err = f.Preallocate(w.opts.SegmentSize)
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

// Compact implements raft.Storage. It forgets the entries up to index and
// deletes the segments that hold nothing newer, whole; files are never
// rewritten. After a reopen FirstIndex may therefore be lower than index+1
// (the kept segment's older entries are still there), which is harmless:
// those entries are committed.
func (w *WAL) Compact(index uint64) error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	if err := w.writable(); err != nil {
		return err
	}
	if index < w.first {
		return raft.ErrCompacted
	}
	if index > w.lastIndex() {
		return raft.ErrUnavailable
	}
	w.mu.Lock()
	k := index - w.first
	w.prevTerm = w.ents[k].term
	w.ents = trimFront(w.ents, int(k+1))
	w.first = index + 1
	w.cache.dropBefore(index + 1)
	n := w.removable(index)
	removed := append([]*segment(nil), w.segs[:n]...)
	w.segs = append([]*segment(nil), w.segs[n:]...)
	w.mu.Unlock()
	// Remove oldest first, syncing the directory after each, so a crash
	// leaves a contiguous run of segments, never one with a hole.
	for _, s := range removed {
		s.f.Close()
		if err := w.fs.Remove(s.name); err != nil {
			return w.fail(fmt.Errorf("wal: removing %s: %w", s.name, err))
		}
		if err := w.fs.SyncDir(w.dir); err != nil {
			return w.fail(fmt.Errorf("wal: syncing %s: %w", w.dir, err))
		}
	}
	return nil
}

// removable returns how many leading segments compaction to index may
// delete: all before the newest segment k whose header's previous entry is
// compacted and after which no record reaches back to that entry, so
// replay can start at k.
func (w *WAL) removable(index uint64) int {
	minAfter := uint64(0) // smallest entry index in segs[k:], 0 for none
	for k := len(w.segs) - 1; k >= 1; k-- {
		s := w.segs[k]
		if s.minIndex != 0 && (minAfter == 0 || s.minIndex < minAfter) {
			minAfter = s.minIndex
		}
		if s.prevIndex <= index && (minAfter == 0 || minAfter > s.prevIndex) {
			return k
		}
	}
	return 0
}

// trimFront drops the first n positions, copying once the dropped part
// dominates so compaction returns memory.
func trimFront(ents []entryPos, n int) []entryPos {
	ents = ents[n:]
	if cap(ents) > 2*len(ents)+64 {
		ents = append([]entryPos(nil), ents...)
	}
	return ents
}
