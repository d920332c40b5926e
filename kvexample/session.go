package main

import (
	"crypto/sha256"
	"encoding/binary"
)

// This file makes writes exactly-once (Raft thesis §6.3).
//
// The problem: a client sends a write, the leader commits it, and then the
// answer is lost (the leader crashed, the connection dropped, the client
// timed out). The client cannot tell "not done" from "done, answer lost",
// so it retries — and a retried append would append twice.
//
// The fix: the client names each write with a client id and a sequence
// number that grows with every new write (the X-Client-Id and X-Request-Seq
// headers). The state machine remembers, per client, the last sequence
// number it executed and the answer it gave. A retry carries the same pair,
// finds it in the table and gets the remembered answer without being
// executed again. A different request under a pair already used is a
// client bug, and is refused rather than answered with another request's
// result: the table keeps a fingerprint of each remembered request.
//
// The table must live in the replicated state machine, not in the HTTP
// server: the retry may reach a different node (a new leader) or a restarted
// one, and every node must make the same decision for the same log entry.
//
// Sessions cannot be kept forever, so they expire — but deterministically:
// a session untouched for ttl log entries is dropped, measured by the log
// index carried in each entry. Wall-clock time would differ between nodes
// (and between a first run and a replay after restart), so nodes would
// disagree on whether a retry is a duplicate.

// session is what the state machine remembers about one client. It is
// stored by value in copy-on-write trees, so a snapshot keeps its own copy.
type session struct {
	// seq is the last request executed for the client, res its answer and
	// fp its fingerprint.
	seq uint64
	res result
	fp  fingerprint
	// lastIndex is the log index of the entry that last touched the session;
	// the session expires once the log has moved ttl entries past it.
	lastIndex uint64
}

// fingerprint identifies a request's content: what it does, not when it
// was proposed nor under which session.
type fingerprint [16]byte

// fingerprintOf hashes c without its session and time, which a retry of the
// same request changes (the leader stamps each attempt anew).
func fingerprintOf(c command) fingerprint {
	c.Client, c.Seq, c.Time = "", 0, 0
	sum := sha256.Sum256(c.encode())
	return fingerprint(sum[:16])
}

// sessionTable holds the sessions of all clients.
type sessionTable struct {
	ttl      uint64
	byClient cowTree[session]
	// byAge orders the sessions by lastIndex (keys are the big-endian index
	// followed by the client id), so expiry only ever looks at the front:
	// O(log n) per entry instead of a scan of the whole table.
	byAge cowTree[struct{}]
}

func newSessionTable(ttl uint64) sessionTable {
	return sessionTable{ttl: max(ttl, 1)}
}

func ageKey(index uint64, client string) string {
	return string(binary.BigEndian.AppendUint64(nil, index)) + client
}

// seen reports whether request seq of client was already executed, and if
// so the answer to give: the remembered one for a retry of the last
// request, resultStaleSeq for an older one (its answer is no longer kept, and
// executing it again could undo newer writes), resultSeqReused for a
// different request under the last one's number. Either way the request
// must not be executed. Looking a session up touches it at index.
func (t *sessionTable) seen(client string, seq uint64, fp fingerprint, index uint64) (result, bool) {
	s, ok := t.byClient.Get(client)
	if !ok {
		return result{}, false
	}
	t.touch(client, s, index)
	switch {
	case seq == s.seq && fp != s.fp:
		return result{Code: resultSeqReused}, true
	case seq == s.seq:
		return s.res, true
	case seq < s.seq:
		return result{Code: resultStaleSeq}, true
	}
	return result{}, false
}

// record remembers that client's request seq, executed at index, answered
// res.
func (t *sessionTable) record(client string, seq uint64, fp fingerprint, index uint64, res result) {
	s, _ := t.byClient.Get(client)
	s.seq, s.res, s.fp = seq, res, fp
	t.touch(client, s, index)
}

// touch stores s as last used at index.
func (t *sessionTable) touch(client string, s session, index uint64) {
	if s.lastIndex != 0 {
		t.byAge.Delete(ageKey(s.lastIndex, client))
	}
	s.lastIndex = index
	t.byAge.Set(ageKey(index, client), struct{}{})
	t.byClient.Set(client, s)
}

// expire drops every session untouched for ttl entries as of index. Every
// node calls it with the same index before applying the same entry, so all
// nodes expire the same sessions at the same point of the log.
func (t *sessionTable) expire(index uint64) {
	for {
		k, _, ok := t.byAge.Min()
		if !ok || binary.BigEndian.Uint64([]byte(k[:8]))+t.ttl > index {
			return
		}
		t.byAge.Delete(k)
		t.byClient.Delete(k[8:])
	}
}

// len returns the number of live sessions.
func (t *sessionTable) len() int { return t.byClient.Len() }
