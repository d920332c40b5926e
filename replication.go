package raft

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// This file holds log replication: the leader's appends and commit rule,
// the follower's consistency check with fast backtracking, and the per-peer
// sender actors that put messages on the transport.

// appendEntries stamps ents with the next indexes and the current term,
// appends them to the leader's log and streams them to the followers.
func (c *core) appendEntries(ents []Entry) (first uint64) {
	first = c.log.lastIndex() + 1
	for i := range ents {
		ents[i].Index = first + uint64(i)
		ents[i].Term = c.term
	}
	c.log.appendLeader(ents)
	for _, p := range c.peers {
		c.sendAppends(p)
	}
	for _, p := range c.leaving {
		c.sendAppends(p)
	}
	// A single voter commits on its own once the entries are durable;
	// persisted() handles that.
	return first
}

// sendAppends fills the peer's window with appends of new entries.
func (c *core) sendAppends(p *progress) {
	for !p.paused() {
		if !c.sendAppend(p, false) {
			return
		}
	}
}

// sendAppend sends one MsgApp to p from p.next. An empty append is only sent
// when probing or when force is set; it reports whether anything was sent.
func (c *core) sendAppend(p *progress, force bool) bool {
	last := c.log.lastIndex()
	if p.next > last && !force && p.state == replicating {
		return false
	}
	prev := p.next - 1
	prevTerm, err := c.log.term(prev)
	if isCompacted(err) {
		// The peer needs entries the log no longer holds: a snapshot.
		c.startSnapshot(p)
		return false
	}
	if err != nil {
		c.cfg.logger.Warn("raft: cannot replicate to peer", "peer", p.id, "next", p.next, "err", err)
		p.probeSent = true
		return false
	}
	ents, err := c.log.entries(p.next, last+1, c.cfg.maxMsgBytes)
	if isCompacted(err) {
		c.startSnapshot(p) // compacted since the term was read
		return false
	}
	if err != nil {
		c.fail(fmt.Errorf("raft: reading entries for peer %d: %w", p.id, err))
		return false
	}
	if len(ents) > c.cfg.maxMsgEntries {
		ents = ents[:c.cfg.maxMsgEntries:c.cfg.maxMsgEntries]
	}
	commit := min(c.log.committed, prev+uint64(len(ents)))
	c.send(Message{
		Type: MsgApp, To: p.id, Index: prev, LogTerm: prevTerm,
		Entries: ents, Commit: commit,
	})
	if len(c.leaving) > 0 && c.leavingPeer(p.id) == p {
		c.tellRemoved(p, commit)
	}
	p.sentAppend(prev+uint64(len(ents)), len(ents))
	return len(ents) > 0 || p.state == probing
}

// handleAppend is the follower side of AppendEntries (Raft §5.3).
func (c *core) handleAppend(m Message) {
	if m.Index < c.log.committed {
		// Everything up to our commit index matches the leader already.
		c.sendAfterPersist(Message{Type: MsgAppResp, To: m.From, Index: c.log.committed})
		return
	}
	if !c.log.matchTerm(m.Index, m.LogTerm) && !(bugNoPrevLogCheck && m.Index <= c.log.lastIndex()) {
		c.rejectAppend(m)
		return
	}
	from, lastNew, err := c.log.maybeAppend(m.Index, m.Entries)
	if from != 0 {
		c.logReplaced(from, m.Entries)
	}
	if err != nil {
		// The append contradicts committed entries. A well-formed append
		// (Message.check) starts past our commit index, so no peer's
		// message gets here; should one, maybeAppend changed nothing and
		// refusing it keeps this node running with its log intact.
		c.reject(m, err)
		return
	}
	c.commitTo(min(m.Commit, lastNew))
	// The acknowledgement promises the entries are durable: it waits for
	// the appender.
	c.sendAfterPersist(Message{Type: MsgAppResp, To: m.From, Index: lastNew})
}

// rejectAppend refuses an append whose preceding entry does not match, with a
// hint that lets the leader skip a whole conflicting term per round trip.
func (c *core) rejectAppend(m Message) {
	resp := Message{Type: MsgAppResp, To: m.From, Index: m.Index, Reject: true}
	if last := c.log.lastIndex(); m.Index > last {
		resp.ConflictIndex = last + 1
	} else {
		resp.ConflictIndex, resp.ConflictTerm = c.log.firstIndexOfTerm(m.Index, c.log.committed)
	}
	c.send(resp)
}

func (c *core) stepLeader(m Message) {
	p := c.peer(m.From)
	if p == nil {
		if p = c.leavingPeer(m.From); p != nil {
			c.stepLeaving(p, m)
		}
		return // not a member: nothing more to track
	}
	p.recentActive = true
	p.lastContact = c.now
	if p.unreachable {
		p.unreachable = false
		c.out.peerEvents = append(c.out.peerEvents, Event{Type: EventPeerReachable, Peer: p.id, Term: c.term})
	}
	switch m.Type {
	case MsgAppResp:
		c.handleAppendResp(p, m)
	case MsgHeartbeatResp:
		c.handleHeartbeatResp(p, m)
	case MsgSnapResp:
		c.handleSnapshotResp(p, m)
	case MsgReadIndex:
		c.handleReadIndex(p, m)
	}
}

// handleAppendResp is the leader side of an AppendEntries answer.
func (c *core) handleAppendResp(p *progress, m Message) {
	if last := c.log.lastIndex(); m.Index > last {
		// This term's appends all came from our log, which we never
		// truncate while leading: the peer answers something never sent.
		c.reject(m, fmt.Errorf("%w: answers index %d beyond the leader's last %d", errMalformedMessage, m.Index, last))
		return
	}
	if p.state == snapshotting {
		// An install finished (or the follower had the entries): go on
		// from its match. Refusals answer appends sent before the transfer.
		if !m.Reject && p.acked(m.Index) {
			c.maybeCommit()
		}
		if !m.Reject && c.snapshotSent(p) {
			c.sendAppends(p)
		}
		return
	}
	if m.Reject {
		if m.Index <= p.match || (p.state == probing && m.Index+1 != p.next) {
			return // answers an append already superseded
		}
		p.next = c.nextAfterReject(p, m)
		p.becomeProbe()
		c.sendAppend(p, true)
		return
	}
	advanced := p.acked(m.Index)
	if p.state == probing && m.Index+1 >= p.next {
		// The answer to our probe: logs match up to m.Index, so stream.
		p.becomeReplicate()
	}
	if advanced {
		c.maybeCommit()
	}
	c.sendAppends(p)
	c.advanceTransfer(p)
}

// nextAfterReject picks where to probe next from the follower's hint: past
// our last entry of the conflicting term if we have that term, otherwise at
// the first index the follower holds of it (or its log's end).
func (c *core) nextAfterReject(p *progress, m Message) uint64 {
	next := m.ConflictIndex
	if m.ConflictTerm != 0 {
		if i := c.log.lastIndexOfTerm(m.ConflictTerm); i != 0 {
			next = i + 1
		}
	}
	// Never move backwards past what the peer acknowledged, never forward
	// past the index it just rejected.
	next = min(next, m.Index)
	return max(next, p.match+1, 1)
}

// maybeCommit advances the commit index to the highest entry of the current
// term held by a quorum of voters (Raft §5.4.2: earlier terms' entries
// commit only indirectly).
func (c *core) maybeCommit() {
	matches := c.scratch[:0]
	if c.voter {
		matches = append(matches, c.self.match)
	}
	for _, p := range c.peers {
		if !p.learner {
			matches = append(matches, p.match)
		}
	}
	c.scratch = matches
	if len(matches) == 0 {
		return
	}
	slices.Sort(matches)
	quorumMatch := matches[len(matches)-c.quorum()]
	if quorumMatch <= c.log.committed {
		return
	}
	if t, err := c.log.term(quorumMatch); err != nil || (t != c.term && !bugCommitOldTerm) {
		return
	}
	if bugCommitOldTerm {
		if t, _ := c.log.term(quorumMatch); t != c.term {
			bugHit("commit-previous-term")
		}
	}
	c.commitTo(quorumMatch)
	c.reads.commitAdvanced(c)
}

// peerSender is the actor that delivers one peer's messages. It keeps two
// lanes so heartbeats, votes and responses never wait behind a large batch
// of entries; a full lane drops the message (Raft retries) instead of
// stalling the owner.
type peerSender struct {
	id     NodeID
	urgent chan Message
	bulk   chan Message
	// done stops the lanes of a peer that left the configuration.
	done chan struct{}
}

func newPeerSender(id NodeID, window int) *peerSender {
	return &peerSender{id: id, urgent: make(chan Message, 64), bulk: make(chan Message, window), done: make(chan struct{})}
}

// stop ends the sender's lanes; what they hold is dropped.
func (s *peerSender) stop() { close(s.done) }

// enqueue hands m to the right lane without blocking; it reports false if
// the lane was full and m was dropped.
func (s *peerSender) enqueue(m Message) bool {
	lane := s.urgent
	if m.Type == MsgApp || m.Type == MsgSnap {
		lane = s.bulk
	}
	select {
	case lane <- m:
		return true
	default:
		return false
	}
}

// start runs one goroutine per lane, so a transport that blocks on a full
// bulk queue (a stalled peer) never holds up that peer's heartbeats and
// votes. Both stop when ctx is cancelled.
func (s *peerSender) start(ctx context.Context, t Transport, wg *sync.WaitGroup, onErr func(NodeID, error)) {
	wg.Add(2)
	go s.runLane(ctx, s.urgent, t, wg, onErr)
	go s.runLane(ctx, s.bulk, t, wg, onErr)
}

func (s *peerSender) runLane(ctx context.Context, lane <-chan Message, t Transport, wg *sync.WaitGroup, onErr func(NodeID, error)) {
	defer wg.Done()
	for {
		select {
		case m := <-lane:
			if err := t.Send(ctx, m); err != nil && ctx.Err() == nil {
				onErr(s.id, err)
			}
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}
