package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/raftline/raft"
)

// This file is the replicated state machine: the key-value map that every
// node builds by applying the same committed commands in the same order.
//
// Raft guarantees the order; the state machine's job is to be
// deterministic, so that the same order produces the same state on every
// node. Concretely, Apply must not read the clock, random numbers, the
// environment or anything else outside the entry and the current state,
// and must not iterate a Go map where the order could change the outcome.

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
)

// result is what Apply returns for a command, and so what raft.Node.Propose
// hands back to the HTTP handler. Sessions remember it to answer retries.
type result struct {
	Code resultCode
	// Value is the value after the operation (append, cas); Found says
	// whether there is one (a CAS that expected absence may leave none).
	Value []byte
	Found bool
	// Swapped is the outcome of a CAS.
	Swapped bool
}

// kvStateMachine implements raft.StateMachine. Apply runs on the node's
// applier goroutine while HTTP handlers read concurrently, hence the lock.
//
// Stored values are never modified in place (a put or append stores a new
// slice), so a reader may keep using a value after releasing the lock.
type kvStateMachine struct {
	mu   sync.RWMutex
	data map[string][]byte
	// httpAddrs maps node id to HTTP address, recorded by opRegister
	// commands, so any node can redirect a client to the leader.
	httpAddrs map[uint64]string
	sessions  *sessionTable
	applied   uint64 // index of the last entry applied
}

func newKVStateMachine(sessionTTL uint64) *kvStateMachine {
	return &kvStateMachine{
		data:      make(map[string][]byte),
		httpAddrs: make(map[uint64]string),
		sessions:  newSessionTable(sessionTTL),
	}
}

// Apply implements raft.StateMachine: it executes one committed command.
func (s *kvStateMachine) Apply(e raft.Entry) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = e.Index
	// Expire first, with the entry's own index, so the decision depends only
	// on the log: every node drops the same sessions at the same entry.
	s.sessions.expire(e.Index)
	cmd, err := decodeCommand(e.Data)
	if err != nil {
		// Every node fails the same way on the same bytes, so answering
		// with an error (instead of panicking) keeps the nodes identical.
		return result{Code: resultMalformed}
	}
	if cmd.Client != "" {
		if res, done := s.sessions.seen(cmd.Client, cmd.Seq, e.Index); done {
			return res
		}
	}
	res := s.execute(cmd)
	if cmd.Client != "" {
		s.sessions.record(cmd.Client, cmd.Seq, e.Index, res)
	}
	return res
}

// execute applies one command to the map. The caller holds mu.
func (s *kvStateMachine) execute(c command) result {
	switch c.Op {
	case opPut:
		s.data[c.Key] = bytes.Clone(c.Value)
	case opDelete:
		delete(s.data, c.Key)
	case opAppend:
		old := s.data[c.Key]
		if len(old)+len(c.Value) > maxValueSize {
			return result{Code: resultTooLarge}
		}
		// A new slice, never append(old, ...): readers may hold old.
		v := make([]byte, 0, len(old)+len(c.Value))
		v = append(append(v, old...), c.Value...)
		s.data[c.Key] = v
		return result{Value: v, Found: true}
	case opCAS:
		return s.compareAndSwap(c)
	case opRegister:
		s.httpAddrs[c.NodeID] = c.HTTPAddr
	}
	return result{}
}

func (s *kvStateMachine) compareAndSwap(c command) result {
	cur, found := s.data[c.Key]
	matches := found == c.HasOld && (!found || bytes.Equal(cur, c.Old))
	if !matches {
		return result{Value: cur, Found: found}
	}
	v := bytes.Clone(c.Value)
	if v == nil {
		v = []byte{} // an empty value is present, not absent
	}
	s.data[c.Key] = v
	return result{Swapped: true, Value: v, Found: true}
}

// Get returns the value stored under key, as of the last applied entry.
func (s *kvStateMachine) Get(key string) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.data[key]
	return v, ok
}

// HTTPAddr returns the HTTP address node id registered, if any.
func (s *kvStateMachine) HTTPAddr(id raft.NodeID) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.httpAddrs[uint64(id)]
	return a, ok
}

// Applied returns the index of the last applied entry.
func (s *kvStateMachine) Applied() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// Sessions returns the number of live client sessions.
func (s *kvStateMachine) Sessions() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions.len()
}

// snapshotVersion is the first byte of an encoded snapshot.
const snapshotVersion = 1

// kvSnapshot is a frozen copy of the state. The maps are shallow copies:
// stored values are immutable, so sharing them with the live map is safe.
type kvSnapshot struct {
	applied   uint64
	data      map[string][]byte
	httpAddrs map[uint64]string
	sessions  []session
}

// Snapshot implements raft.StateMachine. Copying the maps is O(n) under the
// lock; a production store would use a persistent (copy-on-write) tree, but
// a copy is easier to read and fine at example sizes.
func (s *kvStateMachine) Snapshot() (raft.StateSnapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &kvSnapshot{
		applied:   s.applied,
		data:      maps.Clone(s.data),
		httpAddrs: maps.Clone(s.httpAddrs),
		sessions:  s.sessions.all(),
	}, nil
}

// WriteTo implements raft.StateSnapshot. Keys are written in sorted order so
// that nodes with the same state write byte-identical snapshots.
func (k *kvSnapshot) WriteTo(w io.Writer) (int64, error) {
	b := []byte{snapshotVersion}
	b = binary.AppendUvarint(b, k.applied)
	b = binary.AppendUvarint(b, uint64(len(k.data)))
	for _, key := range slices.Sorted(maps.Keys(k.data)) {
		b = appendBytes(b, []byte(key))
		b = appendBytes(b, k.data[key])
	}
	b = binary.AppendUvarint(b, uint64(len(k.httpAddrs)))
	for _, id := range slices.Sorted(maps.Keys(k.httpAddrs)) {
		b = binary.AppendUvarint(b, id)
		b = appendBytes(b, []byte(k.httpAddrs[id]))
	}
	b = binary.AppendUvarint(b, uint64(len(k.sessions)))
	for _, ss := range k.sessions {
		b = appendBytes(b, []byte(ss.client))
		b = binary.AppendUvarint(b, ss.seq)
		b = binary.AppendUvarint(b, ss.lastIndex)
		b = append(b, byte(ss.res.Code), boolByte(ss.res.Found), boolByte(ss.res.Swapped))
		b = appendBytes(b, ss.res.Value)
	}
	n, err := w.Write(b)
	return int64(n), err
}

// Release implements raft.StateSnapshot; a copy needs no release.
func (k *kvSnapshot) Release() {}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// Restore implements raft.StateMachine: it replaces the state with a
// snapshot written by WriteTo. The snapshot is decoded completely before
// the state is swapped, so a corrupt one leaves the state untouched.
func (s *kvStateMachine) Restore(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	d := decoder{buf: raw}
	if v := d.byte(); d.err == nil && v != snapshotVersion {
		return fmt.Errorf("%w: unknown snapshot version %d", errMalformed, v)
	}
	next := newKVStateMachine(s.sessions.ttl)
	next.applied = d.uvarint()
	// Each count is checked against the bytes left (every item takes at
	// least one byte), so a corrupt count cannot drive a huge loop.
	for n := d.count(); n > 0 && d.err == nil; n-- {
		key := string(d.bytes())
		next.data[key] = bytes.Clone(d.bytes())
	}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		id := d.uvarint()
		next.httpAddrs[id] = string(d.bytes())
	}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		client, seq, last := string(d.bytes()), d.uvarint(), d.uvarint()
		res := result{Code: resultCode(d.byte()), Found: d.byte() == 1, Swapped: d.byte() == 1}
		res.Value = bytes.Clone(d.bytes())
		next.sessions.record(client, seq, last, res)
	}
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes in snapshot", errMalformed, len(d.buf))
	}
	if d.err != nil {
		return d.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied, s.data, s.httpAddrs, s.sessions = next.applied, next.data, next.httpAddrs, next.sessions
	return nil
}
