package main

import (
	"encoding/binary"
	"sync"

	"github.com/raftline/raft"
)

// This file is the replicated state machine: the key-value map (and the
// locks, leases and sessions beside it) that every node builds by applying
// the same committed commands in the same order.
//
// Raft guarantees the order; the state machine's job is to be
// deterministic, so that the same order produces the same state on every
// node. Concretely, Apply must not read the clock, random numbers, the
// environment or anything else outside the entry and the current state,
// and must not iterate a Go map where the order could change the outcome.
// Time is no exception: leases and TTLs expire on the time the leader wrote
// into the log (logclock.go), never on this node's clock.

// maxValueSize is the largest value the service stores (1 MiB, the API
// contract). The HTTP layer rejects larger requests; Apply enforces it too,
// because an append can grow a value past it.
const maxValueSize = 1 << 20

// defaultSessionTTL is how many log entries a client session survives
// without being used. It is a constant rather than a flag on purpose: it is
// part of the deterministic apply, so every node must use the same value.
const defaultSessionTTL = 100_000

// resultCode tells the HTTP layer how a command went.
type resultCode uint8

const (
	resultOK resultCode = iota
	// resultStaleSeq: an exactly-once request older than the client's
	// latest; it was not executed.
	resultStaleSeq
	// resultTooLarge: the value would exceed maxValueSize; nothing changed.
	resultTooLarge
	// resultMalformed: the entry could not be decoded; nothing changed.
	resultMalformed
	// resultSeqReused: the client's latest sequence number again, but with
	// a different request; it was not executed.
	resultSeqReused
	// resultNotInteger: incr on a value that is not a decimal integer.
	resultNotInteger
	// resultOverflow: incr past the range of a signed 64-bit integer.
	resultOverflow
	// resultLockHeld: acquire of a lock another holder has; Lock says who.
	resultLockHeld
	// resultNotHolder: renew or release by someone who does not hold the
	// lock (or no longer does: its lease expired); Lock is the current
	// state, zero if the lock is free.
	resultNotHolder
	// resultFenced: a write whose X-Fence token is not the lock's current
	// one; nothing changed.
	resultFenced

	resultLimit // keep last: bounds checks when restoring sessions
)

// result is what Apply returns for a command, and so what raft.Node.Propose
// hands back to the HTTP handler. Sessions remember it to answer retries.
type result struct {
	Code resultCode
	// Value is the value after the operation (append, cas, incr); Found
	// says whether there is one (a CAS that expected absence may leave
	// none).
	Value []byte
	Found bool
	// Swapped is the outcome of a CAS.
	Swapped bool
	// Lock is the lock after a lock operation, or the lock that refused it.
	Lock lockState
	// Now is the log's clock after the entry (Unix milliseconds).
	Now uint64
}

// kvStateMachine implements raft.StateMachine. Apply runs on the node's
// applier goroutine while HTTP handlers read concurrently, hence the lock.
//
// Stored values are never modified in place (a put or append stores a new
// slice), so a reader may keep using a value after releasing the lock.
type kvStateMachine struct {
	mu sync.RWMutex
	st kvState
	// changes and watchers serve watches: they are this node's, not
	// replicated, and not in snapshots (see history.go).
	changes  history
	watchers watchHub
}

func newKVStateMachine(sessionTTL uint64) *kvStateMachine {
	s := &kvStateMachine{st: newKVState(sessionTTL)}
	s.changes.init(maxHistoryEvents, maxHistoryBytes)
	s.st.changes = &s.changes
	return s
}

// Apply implements raft.StateMachine: it executes one committed command.
func (s *kvStateMachine) Apply(e raft.Entry) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	mark := s.changes.end()
	res := s.st.apply(e)
	// One atomic load when nobody watches: the apply path pays nothing
	// more for watches than recording the change (history.go).
	if s.watchers.active() {
		s.watchers.notify(func(fn func(*change)) { s.changes.since(mark, fn) }, s.st.freedLocks)
	}
	s.st.freedLocks = s.st.freedLocks[:0]
	return res
}

// Get returns the value stored under key, as of the last applied entry,
// and that entry's index.
func (s *kvStateMachine) Get(key string) (value []byte, found bool, index uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	it, ok := s.st.data.Get(key)
	return it.value, ok, s.st.applied
}

// HTTPAddr returns the HTTP address node id registered, if any.
func (s *kvStateMachine) HTTPAddr(id raft.NodeID) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.addrs.Get(addrKey(uint64(id)))
}

// HTTPAddrs returns every HTTP address registered, by node.
func (s *kvStateMachine) HTTPAddrs() map[raft.NodeID]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	addrs := make(map[raft.NodeID]string, s.st.addrs.Len())
	for k, addr := range s.st.addrs.Ascend("") {
		addrs[raft.NodeID(binary.BigEndian.Uint64([]byte(k)))] = addr
	}
	return addrs
}

// Retired reports whether server id was removed from the cluster (or is
// being removed), which makes its ID unusable for good.
func (s *kvStateMachine) Retired(id raft.NodeID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.st.retired.Get(addrKey(uint64(id)))
	return ok
}

// RetiredIDs returns the IDs Retired reports, in ascending order.
func (s *kvStateMachine) RetiredIDs() []raft.NodeID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := make([]raft.NodeID, 0, s.st.retired.Len())
	for k := range s.st.retired.Ascend("") {
		ids = append(ids, raft.NodeID(binary.BigEndian.Uint64([]byte(k))))
	}
	return ids
}

// Applied returns the index of the last applied entry.
func (s *kvStateMachine) Applied() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.applied
}

// LogTime returns the log's clock (Unix milliseconds) and whether anything
// is waiting for it to move: a lease or a key with a TTL.
func (s *kvStateMachine) LogTime() (now uint64, timers bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.now, s.st.expiry.Len() > 0
}

// Sessions returns the number of live client sessions.
func (s *kvStateMachine) Sessions() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.sessions.len()
}

// Lock returns the state of lock name, as of the last applied entry, and
// that entry's index; found is false when the lock is free.
func (s *kvStateMachine) Lock(name string) (l lockState, found bool, index uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, found = s.st.locks.Get(name)
	return l, found, s.st.applied
}

// listItem is one key of a listing.
type listItem struct {
	Key   string
	Value []byte
}

// List returns up to limit keys under prefix from start on, in order,
// stopping early once the values add up to maxBytes (but always returning at
// least one key if there is one); next is the key to start the next page
// at, "" when there is none. index is the last applied entry's.
func (s *kvStateMachine) List(prefix, start string, limit, maxBytes int) (items []listItem, next string, index uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	size := 0
	for k, it := range s.st.data.Ascend(max(prefix, start)) {
		if len(k) < len(prefix) || k[:len(prefix)] != prefix {
			break
		}
		if len(items) == limit || (len(items) > 0 && size+len(it.value) > maxBytes) {
			return items, k, s.st.applied
		}
		items = append(items, listItem{Key: k, Value: it.value})
		size += len(it.value)
	}
	return items, "", s.st.applied
}
