package simtest

import (
	"time"

	"github.com/raftline/raft"
)

// Clients run one operation at a time in a closed loop: pick an operation,
// send it to the node they believe leads, follow "not leader" answers, and
// give up after clientTimeout, recording a write whose answer never came
// as of unknown outcome.

type simClient struct {
	id      int
	target  int // node index the client talks to
	busy    bool
	attempt int
	op      Op
	// A sticky reader only reads, from stickyNode, until stickyUntil: the
	// client that keeps reading from a node that still believes it leads
	// after the cluster moved on, where read-path bugs show.
	stickyNode  int
	stickyUntil int64
}

// reply is a node's answer to a client.
type reply struct {
	ok    bool
	retry bool // definitely not executed: try again (at hint if known)
	hint  raft.NodeID
	out   Output
}

const clientLink = 500 * time.Microsecond

func (s *sim) randomInput() Input { return randomInput(s.rng, s.opts.Keys) }

func (s *sim) clientIssue(e *event) {
	c := s.clients[e.client]
	if c.busy {
		return
	}
	c.busy = true
	c.attempt++
	c.op = Op{Client: c.id, Input: s.randomInput(), Call: s.now}
	target, timeout := c.target, clientTimeout
	switch {
	case s.now < c.stickyUntil:
		// A sticky reader gives up soon and asks again, so reads keep
		// arriving while the node it sticks to is cut off or paused.
		c.op.Input = Input{Kind: OpGet, Key: c.op.Input.Key}
		target, timeout = c.stickyNode, stickyReadTimeout
	case c.op.Input.Kind == OpGet && s.rng.IntN(2) == 0:
		target = s.rng.IntN(s.slots) // a follower read, as often as not
	}
	if c.op.Input.Kind == OpGet && s.tuning.Lease {
		// Sticky readers read on the lease: they test it where it ends.
		c.op.Input.Lease = s.now < c.stickyUntil || s.rng.IntN(2) == 0
	}
	s.schedule(timeout, event{kind: evClientTimeout, client: c.id, attempt: c.attempt})
	s.schedule(clientLink, event{kind: evClientRequest, client: c.id, attempt: c.attempt, node: target})
}

// stickyReadTimeout is how long a sticky reader waits for an answer.
const stickyReadTimeout = 150 * time.Millisecond

// stickyReaders makes some clients read only from node i for a while,
// leaving one to write: i was just cut off, paused, or handed leadership
// over, and a bug that lets it answer reads on its own shows then.
func (s *sim) stickyReaders(i int) {
	for k, c := range s.clients {
		if k > 0 && s.rng.IntN(2) == 0 {
			c.stickyNode, c.stickyUntil = i, s.now+int64(s.between(500*time.Millisecond, 3*time.Second))
		} else if c.target == i {
			// The writers move on, and find the new leader by hints: the
			// writes the readers must not miss happen elsewhere.
			c.target = (i + 1) % s.slots
		}
	}
}

// clientRequest is a request arriving at a node.
func (s *sim) clientRequest(e *event) {
	c := s.clients[e.client]
	n := s.nodes[e.node]
	if !c.busy || c.attempt != e.attempt {
		return
	}
	ref := clientRef{client: c.id, attempt: e.attempt}
	if !n.up {
		// Connection refused: the client tries the next node at once.
		s.replyToClient(e.node, ref, reply{retry: true})
		return
	}
	if c.op.Input.Kind == OpGet {
		n.nextRead++
		n.reads[n.nextRead] = ref
		if c.op.Input.Lease {
			n.leaseRead = n.nextRead
			n.core.LeaseRead(n.nextRead)
		} else {
			n.core.ReadIndex(n.nextRead)
		}
		s.flush(e.node)
		n.leaseRead = 0
		return
	}
	index, term, err := n.core.Propose(encodeInput(c.op.Input))
	if err != nil {
		s.replyToClient(e.node, ref, reply{retry: true, hint: n.core.Status().Leader})
		return
	}
	ref.term = term
	n.proposals[index] = ref
	s.flush(e.node)
}

func (s *sim) replyToClient(node int, ref clientRef, r reply) {
	s.schedule(clientLink, event{kind: evClientReply, client: ref.client, attempt: ref.attempt, node: node, reply: r})
}

func (s *sim) clientReply(e *event) {
	c := s.clients[e.client]
	if !c.busy || c.attempt != e.attempt {
		return
	}
	r := e.reply
	if r.retry {
		// Nothing happened: ask the hinted leader, or the next node.
		if r.hint != raft.None && int(r.hint) <= len(s.nodes) {
			c.target = int(r.hint) - 1
		} else {
			c.target = (c.target + 1) % len(s.nodes)
		}
		s.schedule(clientLink+s.between(0, 20*time.Millisecond),
			event{kind: evClientRequest, client: c.id, attempt: c.attempt, node: c.target})
		return
	}
	c.op.Output, c.op.Return = r.out, s.now
	c.target = e.node
	s.history = append(s.history, c.op)
	s.check.progress(c.op)
	c.busy = false
	s.schedule(s.between(0, 30*time.Millisecond), event{kind: evClientIssue, client: c.id})
}

func (s *sim) clientTimeout(e *event) {
	c := s.clients[e.client]
	if !c.busy || c.attempt != e.attempt {
		return
	}
	if c.op.Input.Kind != OpGet {
		// A write may have happened: record it as of unknown outcome. A
		// read that never answered changed nothing and is dropped.
		c.op.Unknown = true
		s.history = append(s.history, c.op)
	}
	c.busy = false
	c.attempt++
	c.target = s.rng.IntN(len(s.nodes))
	s.schedule(s.between(0, 30*time.Millisecond), event{kind: evClientIssue, client: c.id})
}
