package wal

import (
	"errors"
	"fmt"

	"github.com/raftline/raft"
)

// Compact implements raft.Storage. It forgets the entries up to index and
// has the segments that hold nothing newer deleted, whole and in the
// background (a failed deletion fails the next write); files are never
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
	return w.compact(index)
}

// compact forgets the entries up to index (first ≤ index ≤ last) and
// deletes the segments replay no longer needs.
func (w *WAL) compact(index uint64) error {
	w.mu.Lock()
	k := index - w.first
	w.prevTerm = w.ents.at(int(k)).term
	w.ents.dropFront(int(k + 1))
	w.first = index + 1
	w.cache.dropBefore(index + 1)
	removed := w.detachRemovable(index)
	w.mu.Unlock()
	w.deleteSegments(removed)
	return nil
}

// InstallSnapshot makes the log start after a snapshot's last entry
// (index, term), once the snapshot is durable in the snapshot store: when
// the log holds that entry (or has compacted exactly to it), the entries up
// to it are dropped as by Compact and the later ones kept; otherwise every
// entry is dropped and Term(index) returns term, FirstIndex index+1 and
// LastIndex index. It is durable on return. A snapshot older than the
// log's compaction point is refused with an error wrapping
// raft.ErrCompacted: going back would drop entries the snapshot does not
// hold.
//
// Dropping every entry writes one reset record and deletes every older
// segment, whatever it held.
func (w *WAL) InstallSnapshot(index, term uint64) error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	if err := w.writable(); err != nil {
		return err
	}
	if index == 0 {
		return errors.New("wal: InstallSnapshot at index 0")
	}
	if index+1 < w.first {
		return fmt.Errorf("wal: snapshot at %d is older than the log's start %d: %w", index, w.first, raft.ErrCompacted)
	}
	if t, err := w.term(index); err == nil && t == term {
		if index+1 == w.first {
			return nil
		}
		return w.compact(index)
	}
	return w.reset(index, term)
}

// reset durably drops every entry, restarting the log after (index, term).
func (w *WAL) reset(index, term uint64) error {
	buf := appendReset(w.buf[:0], index, term)
	// Replay must be able to start at the segment holding the reset, so
	// that every older one can go; a fresh segment always can.
	if err := w.makeRoom(int64(len(buf)), !validStart(w.active)); err != nil {
		return w.fail(err)
	}
	if _, err := w.active.f.WriteAt(buf, w.tailOff); err != nil {
		return w.fail(fmt.Errorf("wal: writing %s at offset %d: %w", w.active.name, w.tailOff, err))
	}
	if err := w.active.f.Sync(); err != nil {
		return w.fail(fmt.Errorf("wal: syncing %s: %w", w.active.name, err))
	}
	w.tailOff += int64(len(buf))
	w.keepBuffer(buf)
	w.mu.Lock()
	w.resetTo(w.active, index, term)
	removed := w.detachRemovable(index)
	w.mu.Unlock()
	w.deleteSegments(removed)
	return nil
}

// resetTo drops every entry: the log restarts after (index, term), as
// recorded in seg. Callers hold mu (or own the WAL, in recovery).
func (w *WAL) resetTo(seg *segment, index, term uint64) {
	w.ents = posIndex{}
	w.cache.reset()
	w.first, w.prevTerm = index+1, term
	seg.hasReset = true
}

// validStart reports whether replay could begin at s as far as s's own
// records go: none before its first reset reaches back to or before the
// entry its header names.
func validStart(s *segment) bool { return s.minIndex == 0 || s.minIndex > s.prevIndex }

// detachRemovable takes the segments compaction to index may delete out of
// the live list and returns them. Callers hold mu.
func (w *WAL) detachRemovable(index uint64) []*segment {
	n := w.removable(index)
	removed := append([]*segment(nil), w.segs[:n]...)
	w.segs = append([]*segment(nil), w.segs[n:]...)
	return removed
}

// removable returns how many leading segments compaction to index may
// delete: all before the newest segment k from which replay can start and
// yield every live entry. Replay can start at k when no record in segs[k:]
// before the first reset among them reaches back to k's header entry (it
// would need the log before it), and it yields every live entry when that
// header entry is compacted or a reset follows (after which the log is
// whole without anything earlier).
func (w *WAL) removable(index uint64) int {
	minAfter := uint64(0) // smallest entry index in segs[k:] before any reset; 0 for none
	resetAfter := false
	for k := len(w.segs) - 1; k >= 1; k-- {
		s := w.segs[k]
		if s.hasReset {
			minAfter, resetAfter = s.minIndex, true
		} else if s.minIndex != 0 && (minAfter == 0 || s.minIndex < minAfter) {
			minAfter = s.minIndex
		}
		if (resetAfter || s.prevIndex <= index) && (minAfter == 0 || minAfter > s.prevIndex) {
			return k
		}
	}
	return 0
}

// ReleaseCached lets the entry cache forget the entries before index: the
// node will not read them back soon (raft.CacheReleaser), and a later read
// of one goes to disk. Only the cache changes, under mu; writers never read
// the cache without it.
func (w *WAL) ReleaseCached(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cache.dropBefore(min(index, w.cache.end()))
}
