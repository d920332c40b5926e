package raft

import "slices"

// This file holds ReadIndex (Raft thesis §6.4): a linearizable read needs
// no log entry, only proof that this node is still the leader. The leader
// notes its commit index, runs a heartbeat round, and once a quorum
// answered that round the read may be served as soon as the state machine
// has applied up to the noted index.

// readRequest is a read waiting for a quorum to confirm heartbeat round seq.
type readRequest struct {
	id    uint64
	seq   uint64
	index uint64
}

// readDone tells the owner a read's fate: serve once applied ≥ index, or
// lost (this node is not, or is no longer, the leader).
type readDone struct {
	id    uint64
	index uint64
	lost  bool
}

type readQueue struct {
	// unstarted reads wait for the next round (or for the leader's first
	// commit in its term, before which its commit index may be stale).
	unstarted []uint64
	pending   []readRequest
}

// readIndex asks for a read barrier; the answer comes back in ready.reads.
func (c *core) readIndex(id uint64) {
	if c.role != Leader || c.failed != nil {
		c.out.reads = append(c.out.reads, readDone{id: id, lost: true})
		return
	}
	c.reads.unstarted = append(c.reads.unstarted, id)
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
	if c.quorum() == 1 && c.voter {
		for _, id := range q.unstarted {
			c.out.reads = append(c.out.reads, readDone{id: id, index: index})
		}
		q.unstarted = q.unstarted[:0]
		return
	}
	c.readSeq++
	for _, id := range q.unstarted {
		q.pending = append(q.pending, readRequest{id: id, seq: c.readSeq, index: index})
	}
	q.unstarted = q.unstarted[:0]
	c.broadcastHeartbeat()
}

// commitAdvanced lets reads that waited for the leader's first commit go.
func (q *readQueue) commitAdvanced(c *core) { c.startReads() }

// acked releases every read whose round a quorum of voters has answered.
func (q *readQueue) acked(c *core) {
	if len(q.pending) == 0 {
		return
	}
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
		return
	}
	slices.Sort(acks)
	confirmed := acks[len(acks)-need]
	n := 0
	for n < len(q.pending) && q.pending[n].seq <= confirmed {
		r := q.pending[n]
		c.out.reads = append(c.out.reads, readDone{id: r.id, index: r.index})
		n++
	}
	q.pending = append(q.pending[:0], q.pending[n:]...)
	c.startReads()
}

// failAll drops every read: leadership (or the term) changed.
func (q *readQueue) failAll(out *ready) {
	for _, id := range q.unstarted {
		out.reads = append(out.reads, readDone{id: id, lost: true})
	}
	for _, r := range q.pending {
		out.reads = append(out.reads, readDone{id: r.id, lost: true})
	}
	q.unstarted = q.unstarted[:0]
	q.pending = q.pending[:0]
}
