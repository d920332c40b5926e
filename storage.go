package raft

import (
	"errors"
	"sync"
)

// Storage errors a Storage implementation returns so the core can tell
// "not there" from "broken".
var (
	// ErrCompacted: the requested index is before the first index kept.
	ErrCompacted = errors.New("raft: requested index is compacted")
	// ErrUnavailable: the requested index is after the last index stored.
	ErrUnavailable = errors.New("raft: requested index is unavailable")
	// ErrLogGap: Save was given entries that would leave a hole in the log.
	ErrLogGap = errors.New("raft: entries would leave a gap in the log")
)

// Storage holds a node's log and hard state. The durable WAL (package wal)
// and MemoryStorage implement it.
//
// The node reads the log on one goroutine while Save runs on another, so
// an implementation must be safe for concurrent use. Save, Compact and
// InstallSnapshot are only ever called from one goroutine at a time.
//
// Entries returned by Entries are shared, never copied, by the library: an
// implementation must not modify a slice it has returned (append into a
// fresh array when truncating).
type Storage interface {
	// InitialState returns the saved hard state (zero for a new node).
	InitialState() (HardState, error)
	// FirstIndex is the index of the first entry still stored; 1 for a log
	// that was never compacted, even an empty one.
	FirstIndex() (uint64, error)
	// LastIndex is the index of the last entry stored, FirstIndex-1 if none.
	LastIndex() (uint64, error)
	// Term returns the term of the entry at index, which may be
	// FirstIndex-1 (the term of the last compacted entry, 0 for none).
	// Out of range it returns ErrCompacted or ErrUnavailable.
	Term(index uint64) (uint64, error)
	// Entries returns the entries in [lo, hi), stopping early once their
	// total size passes maxBytes but always returning at least one entry.
	Entries(lo, hi, maxBytes uint64) ([]Entry, error)
	// Save durably stores hs (unless it is zero) and entries, then returns.
	// When entries[0].Index is at or before LastIndex, the stored suffix
	// from that index is replaced first (a follower overwriting a
	// conflicting tail). A nil error means everything is on stable storage;
	// after an error nothing of the call may be assumed durable. Save must
	// not keep the entries slice itself (copy or encode the entries).
	Save(hs HardState, entries []Entry) error
	// Compact discards the entries up to and including index, keeping
	// index's term for Term(index). The node calls it once a snapshot
	// holding the state up to index (and a little beyond) is durable.
	Compact(index uint64) error
	// InstallSnapshot makes the log start after a snapshot's last entry
	// (index, term), once the snapshot is durable in the snapshot store:
	// when the log holds that entry, the entries up to it are dropped as
	// by Compact and the later ones kept; otherwise every entry is dropped
	// and Term(index) returns term, FirstIndex index+1 and LastIndex
	// index. It is durable on return. It is called in order with Save and
	// Compact (on the same goroutine).
	InstallSnapshot(index, term uint64) error
}

// CacheReleaser is implemented by Storage that keeps recent entries in
// memory for reading back (wal.WAL). The node calls ReleaseCached from its
// owner goroutine with the index before which entries are no longer
// likely to be read soon: applied here and, on a leader, held by every
// peer. The storage may then drop them from memory (reading them later
// from disk), so that its cache holds what replication and applying still
// need rather than filling to its limit between compactions.
type CacheReleaser interface {
	ReleaseCached(index uint64)
}

// MemoryStorage is a Storage kept in memory: for tests, simulations and
// nodes whose durability comes from elsewhere. It is safe for concurrent use.
type MemoryStorage struct {
	// Entries live in fixed-size chunks rather than one growing array:
	// growing a single array copies every entry held so far (and, past a
	// few thousand entries, does so every 25% of growth), which made Save
	// the most expensive step of a busy in-memory cluster. A chunk is never
	// modified once an entry in it has been handed out; truncation copies
	// the surviving prefix of its chunk into a new one.

	mu sync.RWMutex
	hs HardState
	// snapIndex and snapTerm name the last compacted entry (0, 0 when
	// nothing was compacted); entry snapIndex+1 is the first held.
	snapIndex uint64
	snapTerm  uint64
	// chunks hold the entries in order. Position p (entry snapIndex+1+p)
	// is at chunks[(head+p)/memChunk][(head+p)%memChunk]; every chunk but
	// the last holds memChunk entries.
	chunks [][]Entry
	head   int // positions of chunks[0] already compacted away
	count  int // entries held
}

// memChunk is how many entries one MemoryStorage chunk holds.
const memChunk = 4096

// NewMemoryStorage returns an empty MemoryStorage.
func NewMemoryStorage() *MemoryStorage { return &MemoryStorage{} }

// InitialState implements Storage.
func (s *MemoryStorage) InitialState() (HardState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hs, nil
}

func (s *MemoryStorage) firstIndex() uint64 { return s.snapIndex + 1 }
func (s *MemoryStorage) lastIndex() uint64  { return s.snapIndex + uint64(s.count) }

// at returns the entry at position p (0 ≤ p < count).
func (s *MemoryStorage) at(p int) *Entry {
	q := s.head + p
	return &s.chunks[q/memChunk][q%memChunk]
}

// FirstIndex implements Storage.
func (s *MemoryStorage) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.firstIndex(), nil
}

// LastIndex implements Storage.
func (s *MemoryStorage) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastIndex(), nil
}

// Term implements Storage.
func (s *MemoryStorage) Term(index uint64) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case index < s.snapIndex:
		return 0, ErrCompacted
	case index == s.snapIndex:
		return s.snapTerm, nil
	case index > s.lastIndex():
		return 0, ErrUnavailable
	}
	return s.at(int(index - s.snapIndex - 1)).Term, nil
}

// Entries implements Storage. A range within one chunk is returned without
// copying; one spanning chunks is joined into a new slice.
func (s *MemoryStorage) Entries(lo, hi, maxBytes uint64) ([]Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if lo <= s.snapIndex {
		return nil, ErrCompacted
	}
	if hi > s.lastIndex()+1 {
		return nil, ErrUnavailable
	}
	if lo >= hi {
		return nil, nil
	}
	p, n := int(lo-s.snapIndex-1), int(hi-lo)
	q := s.head + p
	c, off := q/memChunk, q%memChunk
	if off+n <= memChunk {
		return limitSize(s.chunks[c][off:off+n:off+n], maxBytes), nil
	}
	// Spanning chunks: count what fits first, so the copy is no larger.
	size, k := uint64(0), 0
	for ; k < n; k++ {
		size += s.at(p + k).size()
		if size > maxBytes && k > 0 {
			break
		}
	}
	out := make([]Entry, 0, k)
	for k > 0 {
		chunk := s.chunks[c][off:min(off+k, memChunk)]
		out = append(out, chunk...)
		k -= len(chunk)
		c, off = c+1, 0
	}
	return out, nil
}

// Save implements Storage.
func (s *MemoryStorage) Save(hs HardState, entries []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !hs.IsZero() {
		s.hs = hs
	}
	if len(entries) == 0 {
		return nil
	}
	first := entries[0].Index
	if first > s.lastIndex()+1 {
		return ErrLogGap
	}
	if first <= s.snapIndex {
		// Entries already compacted are committed and cannot conflict:
		// keep only the part after the compaction point.
		skip := s.snapIndex + 1 - first
		if skip >= uint64(len(entries)) {
			return nil
		}
		entries = entries[skip:]
		first = entries[0].Index
	}
	if p := int(first - s.snapIndex - 1); p < s.count {
		s.truncate(p)
	}
	for len(entries) > 0 {
		last := len(s.chunks) - 1
		if last < 0 || len(s.chunks[last]) == memChunk {
			s.chunks = append(s.chunks, nil)
			last++
		}
		ch := s.chunks[last]
		room := memChunk - len(ch)
		k := min(room, len(entries))
		if len(ch)+k > cap(ch) {
			// Grow the (last, partly filled) chunk into a new array, so
			// slices handed out earlier never see their contents change.
			grown := make([]Entry, len(ch), min(memChunk, max(2*cap(ch), len(ch)+k, 64)))
			copy(grown, ch)
			ch = grown
		}
		s.chunks[last] = append(ch, entries[:k]...)
		s.count += k
		entries = entries[k:]
	}
	return nil
}

// truncate drops the entries from position p on. The chunk holding p is
// replaced by a copy of its surviving prefix, so slices handed out earlier
// never see their contents change.
func (s *MemoryStorage) truncate(p int) {
	q := s.head + p
	c, off := q/memChunk, q%memChunk
	kept := make([]Entry, off, max(off, 64))
	copy(kept, s.chunks[c][:off])
	clear(s.chunks[c+1:])
	s.chunks = s.chunks[:c+1]
	s.chunks[c] = kept
	s.count = p
}

// Compact implements Storage.
func (s *MemoryStorage) Compact(index uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.snapIndex {
		return ErrCompacted
	}
	if index > s.lastIndex() {
		return ErrUnavailable
	}
	s.compact(index)
	return nil
}

// compact drops the entries up to index, which the log holds.
func (s *MemoryStorage) compact(index uint64) {
	k := int(index - s.snapIndex)
	s.snapTerm = s.at(k - 1).Term
	s.snapIndex = index
	s.head += k
	s.count -= k
	// Whole chunks before head are released; the first kept chunk still
	// pins its compacted prefix until it goes too.
	drop := s.head / memChunk
	if drop > 0 {
		clear(s.chunks[:drop])
		s.chunks = s.chunks[drop:]
		s.head -= drop * memChunk
	}
	if s.count == 0 {
		s.chunks, s.head = nil, 0
	}
}

// InstallSnapshot implements Storage.
func (s *MemoryStorage) InstallSnapshot(index, term uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case index < s.snapIndex:
		return ErrCompacted // the log already starts after a later snapshot
	case index == s.snapIndex && term == s.snapTerm:
		return nil
	case index > s.snapIndex && index <= s.lastIndex() && s.at(int(index-s.snapIndex-1)).Term == term:
		s.compact(index)
		return nil
	}
	s.chunks, s.head, s.count = nil, 0, 0
	s.snapIndex, s.snapTerm = index, term
	return nil
}

// limitSize returns the longest prefix of ents whose total size stays within
// maxBytes, and never fewer than one entry so progress is always possible.
func limitSize(ents []Entry, maxBytes uint64) []Entry {
	if len(ents) == 0 {
		return ents
	}
	size := ents[0].size()
	n := 1
	for ; n < len(ents); n++ {
		size += ents[n].size()
		if size > maxBytes {
			break
		}
	}
	return ents[:n:n]
}
