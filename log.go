package raft

import (
	"errors"
	"fmt"
)

// raftLog is the core's view of the replicated log: entries already in
// Storage followed by an unstable tail of entries that are not yet known to
// be durable. Only the state-owner goroutine touches it.
//
// The tail is handed to the log appender once (up to inProgress) and dropped
// from memory when the appender reports it persisted (stableTo).
type raftLog struct {
	storage Storage

	// unstable holds entries from index offset on that storage may not have
	// yet. Entries are never modified in place: truncation copies, so slices
	// handed to the appender or to peers stay valid.
	unstable []Entry
	offset   uint64
	// inProgress is the last unstable index already handed to the appender.
	inProgress uint64

	// committed is the highest index known committed; applying the highest
	// handed to the applier; applied the highest the applier confirmed.
	committed uint64
	applying  uint64
	applied   uint64

	// floor is the last entry of the newest snapshot installed from a
	// leader. Until storage has caught up with the install, it may still
	// hold entries the snapshot replaced, so nothing at or below the floor
	// is read from it: the floor's term comes from here and older entries
	// are compacted.
	floorIndex, floorTerm uint64
}

// errLogCorrupt reports a violation of Raft's log invariants (for example a
// leader asking to overwrite a committed entry). The node stops rather than
// diverge.
var errLogCorrupt = errors.New("raft: log invariant violated")

// newRaftLog opens the log storage holds, whose state machine was restored
// from a snapshot ending at applied (0 for none).
func newRaftLog(s Storage, committed, applied uint64) (*raftLog, error) {
	first, err := s.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := s.LastIndex()
	if err != nil {
		return nil, err
	}
	// Entries up to the compaction point are in a snapshot, so applied.
	applied = max(applied, first-1)
	if applied > last {
		return nil, fmt.Errorf("%w: the state machine is at %d but the log ends at %d", errLogCorrupt, applied, last)
	}
	committed = max(min(committed, last), applied)
	l := &raftLog{storage: s, offset: last + 1, inProgress: last, committed: committed}
	l.applying, l.applied = applied, applied
	return l, nil
}

func (l *raftLog) firstIndex() uint64 {
	i, err := l.storage.FirstIndex()
	if err != nil {
		i = l.offset
	}
	return max(i, l.floorIndex+1)
}

func (l *raftLog) lastIndex() uint64 {
	if n := len(l.unstable); n > 0 {
		return l.unstable[n-1].Index
	}
	return l.offset - 1
}

func (l *raftLog) lastTerm() uint64 {
	t, err := l.term(l.lastIndex())
	if err != nil {
		return 0
	}
	return t
}

// term returns the term of the entry at i; storage errors pass through.
func (l *raftLog) term(i uint64) (uint64, error) {
	if i <= l.floorIndex {
		if i == l.floorIndex {
			return l.floorTerm, nil
		}
		return 0, ErrCompacted
	}
	if i >= l.offset {
		if i-l.offset < uint64(len(l.unstable)) {
			return l.unstable[i-l.offset].Term, nil
		}
		if i == l.offset-1 && len(l.unstable) == 0 {
			return l.storage.Term(i)
		}
		return 0, ErrUnavailable
	}
	return l.storage.Term(i)
}

// matchTerm reports whether the entry at i has term t.
func (l *raftLog) matchTerm(i, t uint64) bool {
	lt, err := l.term(i)
	return err == nil && lt == t
}

// isUpToDate reports whether a log ending at (index, term) is at least as
// up to date as ours (Raft §5.4.1).
func (l *raftLog) isUpToDate(index, term uint64) bool {
	lt := l.lastTerm()
	return term > lt || (term == lt && index >= l.lastIndex())
}

// entries returns the entries in [lo, hi), at most maxBytes of them (but at
// least one).
func (l *raftLog) entries(lo, hi, maxBytes uint64) ([]Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	if lo <= l.floorIndex {
		return nil, ErrCompacted
	}
	if lo >= l.offset {
		return limitSize(l.unstable[lo-l.offset:hi-l.offset:hi-l.offset], maxBytes), nil
	}
	storedHi := min(hi, l.offset)
	ents, err := l.storage.Entries(lo, storedHi, maxBytes)
	if err != nil || hi <= l.offset || uint64(len(ents)) < storedHi-lo {
		return ents, err
	}
	// The range spans storage and the unstable tail: join them in a new
	// array so the stored slice is never appended into.
	size := uint64(0)
	for i := range ents {
		size += ents[i].size()
	}
	tail := l.unstable[:hi-l.offset]
	joined := make([]Entry, len(ents), len(ents)+len(tail))
	copy(joined, ents)
	for i := range tail {
		size += tail[i].size()
		if size > maxBytes {
			break
		}
		joined = append(joined, tail[i])
	}
	return joined, nil
}

// appendLeader appends entries the leader created; they follow the last index.
func (l *raftLog) appendLeader(ents []Entry) {
	l.unstable = append(l.unstable, ents...)
}

// maybeAppend applies an AppendEntries whose preceding entry (index, term)
// matched: it skips entries already present, truncates at the first conflict
// and appends the rest. It returns the index of the last entry the leader
// sent, which is now known to match, and the index from which the log was
// (re)written: 0 when every entry was there already.
func (l *raftLog) maybeAppend(index uint64, ents []Entry) (from, lastNew uint64, err error) {
	lastNew = index + uint64(len(ents))
	for i := range ents {
		e := &ents[i]
		if l.matchTerm(e.Index, e.Term) {
			continue
		}
		if e.Index <= l.committed {
			return 0, 0, fmt.Errorf("%w: entry %d (term %d) conflicts with committed index %d",
				errLogCorrupt, e.Index, e.Term, l.committed)
		}
		l.truncateAndAppend(ents[i:])
		from = e.Index
		break
	}
	if bugTruncateOnStale && lastNew < l.lastIndex() && lastNew > l.committed {
		// Planted bug: drop everything after a (possibly stale) append.
		if last, err := l.entries(lastNew, lastNew+1, ^uint64(0)); err == nil && len(last) == 1 {
			l.truncateAndAppend(last)
			if from == 0 || lastNew+1 < from {
				from = lastNew + 1
			}
		}
	}
	return from, lastNew, nil
}

// truncateAndAppend replaces the log from ents[0].Index on with ents.
func (l *raftLog) truncateAndAppend(ents []Entry) {
	first := ents[0].Index
	switch {
	case first == l.offset+uint64(len(l.unstable)):
		l.unstable = append(l.unstable, ents...)
	case first <= l.offset:
		// Replaces part of what storage holds: the appender's Save will
		// truncate storage; until then reads of [first, ...) come from here.
		l.offset = first
		l.unstable = append([]Entry(nil), ents...)
	default:
		keep := first - l.offset
		l.unstable = append(l.unstable[:keep:keep], ents...)
	}
	if l.inProgress >= first {
		l.inProgress = first - 1
	}
}

// restore makes the log start after a snapshot received from the leader,
// whose index is past the commit index. A log that holds the snapshot's
// last entry keeps the entries after it (they match the leader's: no
// reason to fetch them again, and dropping them could loop, as a leader
// sends a snapshot only to a follower that lacks entries); any other log is
// replaced by the snapshot. The owner then makes storage agree
// (Storage.InstallSnapshot) and restores the state machine.
func (l *raftLog) restore(meta SnapshotMeta) {
	if meta.Index < l.lastIndex() && l.matchTerm(meta.Index, meta.Term) {
		if meta.Index >= l.offset {
			// Entries up to the snapshot need no saving any more.
			n := meta.Index + 1 - l.offset
			l.unstable = l.unstable[n:]
			l.offset = meta.Index + 1
			l.inProgress = max(l.inProgress, meta.Index)
		}
	} else {
		l.unstable = nil
		l.offset = meta.Index + 1
		l.inProgress = meta.Index
	}
	l.floorIndex, l.floorTerm = meta.Index, meta.Term
	if bugInstallOldSnapshot {
		l.committed = meta.Index // planted bug: may go back
	} else {
		l.committed = max(l.committed, meta.Index)
	}
	l.applying = meta.Index
}

// toPersist returns the unstable entries not yet handed to the appender and
// marks them handed over.
func (l *raftLog) toPersist() []Entry {
	last := l.lastIndex()
	if l.inProgress >= last {
		return nil
	}
	from := max(l.inProgress+1, l.offset)
	ents := l.unstable[from-l.offset:]
	l.inProgress = last
	return ents[:len(ents):len(ents)]
}

// stableTo records that storage durably holds the log up to (index, term).
// A report for entries since overwritten is ignored: the term no longer
// matches.
func (l *raftLog) stableTo(index, term uint64) bool {
	if index < l.offset || !l.matchTerm(index, term) {
		return false
	}
	n := index + 1 - l.offset
	l.unstable = l.unstable[n:]
	l.offset = index + 1
	if len(l.unstable) == 0 {
		l.unstable = nil // let the array be collected
	}
	return true
}

// stableIndex is the last index known durable.
func (l *raftLog) stableIndex() uint64 { return l.offset - 1 }

func (l *raftLog) commitTo(i uint64) bool {
	if i <= l.committed {
		return false
	}
	l.committed = min(i, l.lastIndex())
	return true
}

// nextToApply returns committed entries not yet handed to the applier, up to
// maxBytes, and marks them handed over. Only entries this node's storage
// holds durably are applied: a majority may commit an entry before the
// leader's own write finishes, and if that write then fails, the node must
// not have applied, or acknowledged, what it could not persist.
func (l *raftLog) nextToApply(maxBytes uint64) ([]Entry, error) {
	hi := min(l.committed, l.stableIndex())
	if bugApplyPastCommit {
		hi = l.lastIndex() // planted bug: apply what is not yet committed
	}
	if l.applying >= hi {
		return nil, nil
	}
	ents, err := l.entries(l.applying+1, hi+1, maxBytes)
	if err != nil {
		return nil, err
	}
	if len(ents) > 0 {
		l.applying = ents[len(ents)-1].Index
	}
	return ents, nil
}

// findConflictByTerm returns the first index of the run of entries ending at
// index whose term is that of index, looking back no further than floor.
// Followers use it to build the fast-backtracking hint.
func (l *raftLog) firstIndexOfTerm(index, floor uint64) (uint64, uint64) {
	t, err := l.term(index)
	if err != nil {
		return index, 0
	}
	first := l.firstIndex()
	for index > first && index > floor+1 {
		pt, err := l.term(index - 1)
		if err != nil || pt != t {
			break
		}
		index--
	}
	return index, t
}

// lastIndexOfTerm returns the last index holding an entry of term t, or 0
// when the log has none; the leader uses it to act on a follower's hint.
func (l *raftLog) lastIndexOfTerm(t uint64) uint64 {
	first := l.firstIndex()
	for i := l.lastIndex(); i >= first && i > 0; i-- {
		lt, err := l.term(i)
		if err != nil || lt < t {
			return 0
		}
		if lt == t {
			return i
		}
	}
	return 0
}
