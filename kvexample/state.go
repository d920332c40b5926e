package main

import (
	"encoding/binary"

	"github.com/raftline/raft"
)

// This file holds the replicated state itself and the one function that
// changes it, apply. Every piece is a copy-on-write tree (cowtree.go), so
// that a snapshot is a frozen copy of this struct taken in O(1).

// kvState is everything the replicated log determines: what a snapshot
// holds, and what must be identical on every node at the same index.
type kvState struct {
	applied uint64 // index of the last applied entry
	// now is the log's clock: the largest time any applied entry carried,
	// in Unix milliseconds (logclock.go).
	now  uint64
	data cowTree[item]
	// locks holds the held locks; a free lock has no entry.
	locks cowTree[lockState]
	// expiry orders every TTL key and lease by when it ends (expiry.go). It
	// is derived from data and locks, so snapshots leave it out.
	expiry cowTree[struct{}]
	// addrs maps node id (addrKey) to HTTP address, recorded by opRegister
	// commands, so any node can redirect a client to the leader.
	addrs cowTree[string]
	// retired holds (by addrKey) the IDs of servers removed from the
	// cluster: the library forgets a server once it is out of the
	// configuration, so this is what keeps its ID from being reused.
	retired  cowTree[struct{}]
	sessions sessionTable

	// changes receives every change to a key, for watches; it is not part
	// of the state (history.go).
	changes *history
	// freedLocks lists the locks the entry being applied released or
	// expired, for the HTTP handlers waiting to acquire them.
	freedLocks []string
}

// item is one stored key.
type item struct {
	value []byte
	// expires is the log time the key ends at (its TTL), 0 for never.
	expires uint64
}

func newKVState(sessionTTL uint64) kvState {
	return kvState{sessions: newSessionTable(sessionTTL)}
}

// addrKey orders node ids numerically in the addrs tree.
func addrKey(id uint64) string { return string(binary.BigEndian.AppendUint64(nil, id)) }

// apply executes one committed entry.
func (s *kvState) apply(e raft.Entry) result {
	s.applied = e.Index
	// Expire first, with the entry's own index, so the decision depends only
	// on the log: every node drops the same sessions at the same entry.
	s.sessions.expire(e.Index)
	cmd, err := decodeCommand(e.Data)
	if err != nil {
		// Every node fails the same way on the same bytes, so answering
		// with an error (instead of panicking) keeps the nodes identical.
		return result{Code: resultMalformed, Now: s.now}
	}
	// The clock moves (and what is due expires) whether or not the command
	// itself runs: a retry still carries the leader's time.
	s.advance(cmd.Time)
	var fp fingerprint
	if cmd.Client != "" {
		fp = fingerprintOf(cmd)
		if res, done := s.sessions.seen(cmd.Client, cmd.Seq, fp, e.Index); done {
			return res
		}
	}
	res := s.execute(cmd)
	res.Now = s.now
	// A refused acquire changed nothing, so it is not remembered: the
	// handler retries it under the same sequence number while it waits for
	// the lock (wait_ms), and a retry must be able to succeed.
	if cmd.Client != "" && res.Code != resultLockHeld {
		s.sessions.record(cmd.Client, cmd.Seq, fp, e.Index, res)
	}
	return res
}

// execute applies one command to the state.
func (s *kvState) execute(c command) result {
	if c.Op.writesKey() && c.FenceLock != "" {
		if l, held := s.locks.Get(c.FenceLock); !held || l.Token != c.FenceToken {
			return result{Code: resultFenced, Lock: l}
		}
	}
	switch c.Op {
	case opPut:
		it := item{value: cloneValue(c.Value)}
		if c.TTL != 0 {
			it.expires = s.now + c.TTL
		}
		s.putItem(c.Key, it)
	case opDelete:
		s.removeItem(c.Key)
	case opAppend:
		return s.appendValue(c)
	case opCAS:
		return s.compareAndSwap(c)
	case opIncr:
		return s.increment(c)
	case opRegister:
		s.addrs.Set(addrKey(c.NodeID), c.HTTPAddr)
	case opRetire:
		s.retired.Set(addrKey(c.NodeID), struct{}{})
	case opAcquire:
		return s.acquire(c)
	case opRenew:
		return s.renew(c)
	case opRelease:
		return s.release(c)
	case opTick:
		// Its only effect, moving the clock, happened before execute.
	}
	return result{}
}

// cloneValue copies v out of the log entry it aliases. An empty value is
// present, not absent, so it is never nil.
func cloneValue(v []byte) []byte {
	return append(make([]byte, 0, len(v)), v...)
}
