package main

import "container/list"

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
// executed again.
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

// session is what the state machine remembers about one client.
type session struct {
	client string
	// seq is the last request executed for the client, and res its answer.
	seq uint64
	res result
	// lastIndex is the log index of the entry that last touched the session;
	// the session expires once the log has moved ttl entries past it.
	lastIndex uint64
	elem      *list.Element // the session's place in sessionTable.order
}

// sessionTable holds the sessions of all clients.
type sessionTable struct {
	ttl      uint64
	byClient map[string]*session
	// order lists the sessions from least to most recently touched. Log
	// indexes only grow, so moving a touched session to the back keeps the
	// list sorted by lastIndex, and expiry only ever looks at the front:
	// O(1) per entry instead of a scan of the whole table.
	order list.List
}

func newSessionTable(ttl uint64) *sessionTable {
	return &sessionTable{ttl: max(ttl, 1), byClient: make(map[string]*session)}
}

// seen reports whether request seq of client was already executed, and if
// so the answer to give: the remembered one for a retry of the last
// request, resultStaleSeq for an older one (its answer is no longer kept, and
// executing it again could undo newer writes). Either way the request must
// not be executed. Looking a session up touches it at index.
func (t *sessionTable) seen(client string, seq, index uint64) (result, bool) {
	s := t.byClient[client]
	if s == nil {
		return result{}, false
	}
	t.touch(s, index)
	switch {
	case seq == s.seq:
		return s.res, true
	case seq < s.seq:
		return result{Code: resultStaleSeq}, true
	}
	return result{}, false
}

// record remembers that client's request seq, executed at index, answered
// res.
func (t *sessionTable) record(client string, seq, index uint64, res result) {
	s := t.byClient[client]
	if s == nil {
		s = &session{client: client}
		s.elem = t.order.PushBack(s)
		t.byClient[client] = s
	}
	s.seq, s.res = seq, res
	t.touch(s, index)
}

func (t *sessionTable) touch(s *session, index uint64) {
	s.lastIndex = index
	t.order.MoveToBack(s.elem)
}

// expire drops every session untouched for ttl entries as of index. Every
// node calls it with the same index before applying the same entry, so all
// nodes expire the same sessions at the same point of the log.
func (t *sessionTable) expire(index uint64) {
	for e := t.order.Front(); e != nil; e = t.order.Front() {
		s := e.Value.(*session)
		if s.lastIndex+t.ttl > index {
			return
		}
		t.order.Remove(e)
		delete(t.byClient, s.client)
	}
}

// len returns the number of live sessions.
func (t *sessionTable) len() int { return len(t.byClient) }

// all returns the sessions from least to most recently touched: the order
// a snapshot stores them in, so a restored table expires them identically.
func (t *sessionTable) all() []session {
	out := make([]session, 0, t.order.Len())
	for e := t.order.Front(); e != nil; e = e.Next() {
		s := *e.Value.(*session)
		s.elem = nil
		out = append(out, s)
	}
	return out
}
