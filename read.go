package raft

import "slices"

// This file holds linearizable reads, none of which needs a log entry:
//
//   - ReadIndex (Raft thesis §6.4): the leader notes its commit index, runs
//     a heartbeat round, and once a quorum answered that round the read
//     may be served as soon as the state machine has applied up to the
//     noted index. Reads arriving meanwhile share the next round.
//   - Follower reads (§6.4.1): a follower asks the leader for a read index
//     (MsgReadIndex, one message each way for all the reads queued since
//     the last one), then serves the read once it has applied that index.
//   - Lease reads (§6.4.1, lease.go): a leader whose heartbeat round a
//     quorum answered less than a lease ago serves at once.

// readRequest is a read waiting for a quorum to confirm heartbeat round seq.
// A read forwarded by a follower names it (from) and its id there.
type readRequest struct {
	id    uint64
	from  NodeID
	seq   uint64
	index uint64
}

// readDone tells the owner a read's fate: serve once applied ≥ index, or
// lost (this node is not, or is no longer, the leader's).
type readDone struct {
	id    uint64
	index uint64
	lost  bool
}

type readQueue struct {
	// unstarted reads wait for the next round (or for the leader's first
	// commit in its term, before which its commit index may be stale).
	unstarted []readRequest
	pending   []readRequest

	// A follower's reads: forwarded ones wait for the leader's answer to
	// MsgReadIndex number fwdSeq (0: none outstanding), queued ones for
	// the next; fwdAge counts heartbeats since it was sent.
	forwarded, queued []uint64
	fwdSeq            uint64
	fwdAge            int
}

// readIndex asks for a read barrier; the answer comes back in ready.reads.
func (c *core) readIndex(id uint64) {
	switch {
	case c.failed != nil:
		c.out.reads = append(c.out.reads, readDone{id: id, lost: true})
	case c.role == Leader:
		c.reads.unstarted = append(c.reads.unstarted, readRequest{id: id})
	case c.role == Follower && c.leader != None:
		c.forwardRead(id)
	default:
		c.out.reads = append(c.out.reads, readDone{id: id, lost: true})
	}
}

// forwardRead queues a follower's read for the leader's read index: it
// goes with the next MsgReadIndex, all queued reads together.
func (c *core) forwardRead(id uint64) {
	c.reads.queued = append(c.reads.queued, id)
	c.sendForwardedReads()
}

// sendForwardedReads asks the leader for a read index for every queued
// read, unless a request is outstanding (its answer sends the next).
func (c *core) sendForwardedReads() {
	q := &c.reads
	if q.fwdSeq != 0 || len(q.queued) == 0 {
		return
	}
	c.readSeq++
	q.fwdSeq, q.fwdAge = c.readSeq, 0
	q.forwarded, q.queued = append(q.forwarded[:0], q.queued...), q.queued[:0]
	c.send(Message{Type: MsgReadIndex, To: c.leader, ReadSeq: q.fwdSeq})
}

// handleReadIndexResp is a follower receiving the leader's read index.
func (c *core) handleReadIndexResp(m Message) {
	q := &c.reads
	if m.ReadSeq == 0 || m.ReadSeq != q.fwdSeq {
		return // answers a request given up on
	}
	index := m.Index
	if bugFollowerReadsOwnCommit {
		bugHit("follower-read-before-applied")
		index = min(index, c.log.applied) // planted bug: its own progress, not the leader's
	}
	for _, id := range q.forwarded {
		c.out.reads = append(c.out.reads, readDone{id: id, index: index, lost: m.Reject})
	}
	q.forwarded, q.fwdSeq = q.forwarded[:0], 0
	c.sendForwardedReads()
}

// resendForwardedRead repeats a follower's MsgReadIndex that went
// unanswered for readResendHeartbeats heartbeats (one was lost).
func (c *core) resendForwardedRead() {
	q := &c.reads
	if q.fwdSeq == 0 || c.leader == None {
		return
	}
	if q.fwdAge++; q.fwdAge >= readResendHeartbeats {
		q.fwdAge = 0
		c.send(Message{Type: MsgReadIndex, To: c.leader, ReadSeq: q.fwdSeq})
	}
}

// readResendHeartbeats: the leader's answer to a MsgReadIndex normally
// comes after two heartbeats at most, the read round's own and a periodic
// one that fell in between; only a third means a message was lost.
const readResendHeartbeats = 3

// handleReadIndex is the leader taking a follower's forwarded reads.
func (c *core) handleReadIndex(p *progress, m Message) {
	c.reads.unstarted = append(c.reads.unstarted, readRequest{id: m.ReadSeq, from: p.id})
}

// finishRead answers a confirmed or lost read: locally, or to the
// follower that forwarded it.
func (c *core) finishRead(r readRequest, index uint64, lost bool) {
	if lost {
		c.metrics.readsFailed++
	}
	if r.from == None {
		c.out.reads = append(c.out.reads, readDone{id: r.id, index: index, lost: lost})
		return
	}
	c.send(Message{Type: MsgReadIndexResp, To: r.from, Index: index, ReadSeq: r.id, Reject: lost})
}

// startReads opens one heartbeat round for every read queued since the last
// one. Only one round is in flight at a time: reads arriving meanwhile wait
// and share the next, so a burst of reads costs two rounds, not one each. A
// lost round is repeated by the next heartbeat tick, which carries the
// current sequence.
func (c *core) startReads() {
	q := &c.reads
	if len(q.unstarted) == 0 || c.role != Leader || len(q.pending) > 0 {
		return
	}
	if t, err := c.log.term(c.log.committed); err != nil || t != c.term {
		return // wait for our no-op to commit
	}
	index := c.log.committed
	if (c.quorum() == 1 && c.voter) || bugReadWithoutQuorum {
		if bugReadWithoutQuorum && c.quorum() > 1 {
			bugHit("read-without-quorum") // planted bug: on its own authority
		}
		for _, r := range q.unstarted {
			c.finishRead(r, index, false)
		}
		q.unstarted = q.unstarted[:0]
		return
	}
	seq := c.newRound()
	c.metrics.readRounds++
	for _, r := range q.unstarted {
		r.seq, r.index = seq, index
		q.pending = append(q.pending, r)
	}
	q.unstarted = q.unstarted[:0]
	c.broadcastHeartbeat()
}

// commitAdvanced lets reads that waited for the leader's first commit go.
func (q *readQueue) commitAdvanced(c *core) { c.startReads() }

// acked releases every read whose round a quorum of voters has answered,
// and extends the lease from that round.
func (q *readQueue) acked(c *core) {
	confirmed, ok := c.confirmedRound()
	if !ok {
		return
	}
	c.roundConfirmed(confirmed)
	n := 0
	for n < len(q.pending) && q.pending[n].seq <= confirmed {
		r := q.pending[n]
		c.finishRead(r, r.index, false)
		n++
	}
	q.pending = append(q.pending[:0], q.pending[n:]...)
	c.startReads()
}

// confirmedRound returns the newest heartbeat round a quorum of voters
// (this leader included, when it votes) has answered.
func (c *core) confirmedRound() (uint64, bool) {
	acks := c.scratch[:0]
	for _, p := range c.peers {
		if !p.learner {
			acks = append(acks, p.readAck)
		}
	}
	need := c.quorum()
	if c.voter {
		need-- // the leader confirms itself
	}
	c.scratch = acks
	if need <= 0 || len(acks) < need {
		return 0, false
	}
	slices.Sort(acks)
	return acks[len(acks)-need], true
}

// failAll drops every read: leadership (or the term) changed. Followers
// that forwarded reads are told, so they do not wait for an answer.
func (q *readQueue) failAll(c *core) {
	for _, r := range q.unstarted {
		c.finishRead(r, 0, true)
	}
	for _, r := range q.pending {
		c.finishRead(r, 0, true)
	}
	for _, id := range append(q.forwarded, q.queued...) {
		c.out.reads = append(c.out.reads, readDone{id: id, lost: true})
	}
	q.unstarted, q.pending = q.unstarted[:0], q.pending[:0]
	q.forwarded, q.queued, q.fwdSeq = q.forwarded[:0], q.queued[:0], 0
}
