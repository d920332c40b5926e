package raft

import "time"

// This file holds the leader's heartbeats: the heartbeat timer actor, the
// heartbeat round that asserts leadership and confirms reads, the
// follower's answer, and CheckQuorum with peer reachability events.

// tickHeartbeat is called every HeartbeatInterval; only a leader acts on it.
func (c *core) tickHeartbeat() {
	if c.failed != nil || c.role != Leader {
		return
	}
	// Every round is numbered: it renews the lease, confirms reads waiting
	// for a round, and times each peer's round trip.
	c.newRound()
	c.broadcastHeartbeat()
	if c.transfer != nil {
		if p := c.peer(c.transfer.target); p != nil {
			c.advanceTransfer(p) // resends MsgTimeoutNow in case it was lost
		}
	}
}

// broadcastHeartbeat sends every peer a heartbeat carrying the commit index
// it can safely take (no further than it is known to match) and the current
// read sequence.
func (c *core) broadcastHeartbeat() {
	for _, p := range c.peers {
		c.send(Message{Type: MsgHeartbeat, To: p.id, Commit: min(p.match, c.log.committed), ReadSeq: c.readSeq})
	}
	for _, p := range c.leaving {
		commit := min(p.match, c.log.committed)
		c.send(Message{Type: MsgHeartbeat, To: p.id, Commit: commit})
		c.tellRemoved(p, commit)
	}
}

// handleHeartbeat is the follower side.
func (c *core) handleHeartbeat(m Message) {
	c.commitTo(m.Commit)
	c.send(Message{Type: MsgHeartbeatResp, To: m.From, ReadSeq: m.ReadSeq})
}

// handleHeartbeatResp confirms leadership for reads and restarts replication
// to a peer that is behind: a paused probe is retried and a stream that
// made no progress over a whole heartbeat interval (a lost append) is
// restarted from the peer's match index. An append counts as lost only if
// it was already sent at the previous heartbeat answer: an answer that
// merely overtakes an append's (which waits for the follower's disk) is no
// sign of loss.
func (c *core) handleHeartbeatResp(p *progress, m Message) {
	if r := c.rounds[m.ReadSeq%roundsKept]; r.seq == m.ReadSeq && m.ReadSeq != 0 {
		p.rpcLatency.observe(time.Duration(c.now - r.at))
	}
	if m.ReadSeq > p.readAck {
		p.readAck = m.ReadSeq
		c.reads.acked(c)
	}
	if p.state == snapshotting {
		c.snapshotStalled(p)
		return
	}
	stalled := p.match == p.lastHeartbeatMatch && p.match < p.sentAtLastHeartbeat
	p.lastHeartbeatMatch, p.sentAtLastHeartbeat = p.match, p.next-1
	if p.match >= c.log.lastIndex() {
		return
	}
	switch {
	case p.state == probing:
		p.probeSent = false
	case stalled:
		p.becomeProbe()
		p.next = p.match + 1
	}
	c.sendAppends(p)
}

// checkQuorumRound runs every election timeout on the leader: a leader that
// has not heard from a majority steps down (CheckQuorum), and peers silent
// for the whole round are reported unreachable.
func (c *core) checkQuorumRound() {
	active := 0
	if c.voter {
		active++
	}
	for _, p := range c.peers {
		if p.recentActive {
			if !p.learner {
				active++
			}
		} else if !p.unreachable {
			p.unreachable = true
			c.out.peerEvents = append(c.out.peerEvents, Event{Type: EventPeerUnreachable, Peer: p.id, Term: c.term})
		}
		p.recentActive = false
	}
	if c.cfg.checkQuorum && active < c.quorum() {
		c.cfg.logger.Warn("raft: leader lost contact with a quorum, stepping down", "id", c.id, "term", c.term)
		c.becomeFollower(c.term, None)
	}
}

// heartbeatTimer is the actor that paces heartbeats: every interval it tells
// the owner, over the heartbeats channel, that a heartbeat round is due.
// Rounds already queued make another one pointless, so a full channel drops
// the signal.
func heartbeatTimer(clock Clock, every time.Duration, heartbeats chan<- struct{}, done <-chan struct{}) {
	pace(clock, every, heartbeats, done)
}
