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
// Reads come from the node's state-owner goroutine while Save runs on the
// log appender goroutine, so an implementation must be safe for concurrent
// use. Save is only ever called from one goroutine at a time.
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
	// index's term for Term(index). Snapshots call it after the state
	// machine's state up to index is safe elsewhere.
	Compact(index uint64) error
}

// MemoryStorage is a Storage kept in memory: for tests, simulations and
// nodes whose durability comes from elsewhere. It is safe for concurrent use.
type MemoryStorage struct {
	mu sync.RWMutex
	hs HardState
	// ents[0] is a sentinel holding the index and term of the last
	// compacted entry (0, 0 when nothing was compacted); real entries follow.
	ents []Entry
}

// NewMemoryStorage returns an empty MemoryStorage.
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{ents: make([]Entry, 1, 64)}
}

// InitialState implements Storage.
func (s *MemoryStorage) InitialState() (HardState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hs, nil
}

func (s *MemoryStorage) firstIndex() uint64 { return s.ents[0].Index + 1 }
func (s *MemoryStorage) lastIndex() uint64  { return s.ents[0].Index + uint64(len(s.ents)) - 1 }

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
	offset := s.ents[0].Index
	if index < offset {
		return 0, ErrCompacted
	}
	if index > s.lastIndex() {
		return 0, ErrUnavailable
	}
	return s.ents[index-offset].Term, nil
}

// Entries implements Storage.
func (s *MemoryStorage) Entries(lo, hi, maxBytes uint64) ([]Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	offset := s.ents[0].Index
	if lo <= offset {
		return nil, ErrCompacted
	}
	if hi > s.lastIndex()+1 {
		return nil, ErrUnavailable
	}
	ents := s.ents[lo-offset : hi-offset : hi-offset]
	return limitSize(ents, maxBytes), nil
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
	offset := s.ents[0].Index
	if first > s.lastIndex()+1 {
		return ErrLogGap
	}
	if first <= offset {
		// Entries already compacted are committed and cannot conflict:
		// keep only the part after the compaction point.
		skip := offset + 1 - first
		if skip >= uint64(len(entries)) {
			return nil
		}
		entries = entries[skip:]
		first = entries[0].Index
	}
	keep := first - offset
	if keep < uint64(len(s.ents)) {
		// Truncating: copy into a new array so slices handed out earlier
		// never see their contents change.
		s.ents = append(s.ents[:keep:keep], entries...)
		return nil
	}
	s.ents = append(s.ents, entries...)
	return nil
}

// Compact implements Storage.
func (s *MemoryStorage) Compact(index uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	offset := s.ents[0].Index
	if index <= offset {
		return ErrCompacted
	}
	if index > s.lastIndex() {
		return ErrUnavailable
	}
	i := index - offset
	kept := make([]Entry, 1, 1+uint64(len(s.ents))-i)
	kept[0] = Entry{Index: s.ents[i].Index, Term: s.ents[i].Term}
	s.ents = append(kept, s.ents[i+1:]...)
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
