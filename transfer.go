package raft

import (
	"errors"
	"fmt"
)

// This file holds leadership transfer (Raft thesis §3.10). The leader stops
// taking proposals, brings the target up to date, and sends it MsgTimeoutNow;
// the target campaigns at once, skipping PreVote, and voters grant it
// although they heard from the leader recently (Message.Transfer). The
// transfer ends in one election timeout either way: the target leads, or
// the leader gives up and takes proposals again. MsgTimeoutNow is resent
// with every heartbeat until then, in case one is lost.

// ErrTransferInProgress: the leader is handing over leadership (a transfer,
// or its own removal from the voters); proposals and membership changes
// are refused until it ends, in at most an election timeout, so none ends
// with an unknown outcome. Retry against the new leader.
var ErrTransferInProgress = errors.New("raft: leadership transfer in progress")

// ErrTransferAborted: the target did not take over within an election
// timeout (or the caller gave up); the old leader leads on.
var ErrTransferAborted = errors.New("raft: leadership transfer aborted")

// ErrInvalidTransfer: the transfer's target cannot lead (itself, a learner)
// or there is no voter to transfer to.
var ErrInvalidTransfer = errors.New("raft: invalid leadership transfer")

// leaderTransfer is a transfer in progress.
type leaderTransfer struct {
	target NodeID
	// elapsed counts election ticks since it began.
	elapsed int
}

// transferLeadership starts handing leadership to, or to the most
// caught-up voter when to is None, and returns the target.
func (c *core) transferLeadership(to NodeID) (NodeID, error) {
	if c.role != Leader || c.failed != nil {
		return None, ErrCoreNotLeader
	}
	if to == None {
		to = c.mostCaughtUpVoter()
		if to == None {
			return None, fmt.Errorf("%w: no other voter", ErrInvalidTransfer)
		}
	}
	if c.transfer != nil {
		if c.transfer.target == to {
			return to, nil
		}
		return None, fmt.Errorf("%w: to %d", ErrTransferInProgress, c.transfer.target)
	}
	p := c.peer(to)
	switch {
	case to == c.id:
		return None, fmt.Errorf("%w: node %d already leads", ErrInvalidTransfer, to)
	case p == nil:
		return None, fmt.Errorf("%w: %d", ErrUnknownServer, to)
	case p.learner:
		return None, fmt.Errorf("%w: node %d is a learner", ErrInvalidTransfer, to)
	}
	c.cfg.logger.Info("raft: transferring leadership", "id", c.id, "to", to, "term", c.term)
	c.transfer = &leaderTransfer{target: to}
	c.advanceTransfer(p)
	return to, nil
}

// mostCaughtUpVoter returns the voter (other than this node) with the
// highest match index, preferring one heard from lately (a voter that just
// stopped cannot take over), lowest ID first on a tie; None if there is
// none.
func (c *core) mostCaughtUpVoter() NodeID {
	var best *progress
	for _, p := range c.peers {
		if p.learner {
			continue
		}
		if best == nil || (!p.unreachable && best.unreachable) ||
			(p.unreachable == best.unreachable && p.match > best.match) {
			best = p
		}
	}
	if best == nil {
		return None
	}
	return best.id
}

// handingOver reports whether this leader refuses proposals because it is
// giving leadership up: a transfer, or its own removal from the voters.
func (c *core) handingOver() bool { return c.transfer != nil || (c.role == Leader && !c.voter) }

// advanceTransfer sends the target MsgTimeoutNow once it holds the whole
// log and the whole log is committed, and otherwise keeps replicating. The
// commit matters to clients: every proposal this leader accepted is then
// answered before it steps down, instead of ending with an unknown outcome.
func (c *core) advanceTransfer(p *progress) {
	if c.transfer == nil || p.id != c.transfer.target {
		return
	}
	if last := c.log.lastIndex(); p.match < last || c.log.committed < last {
		c.sendAppends(p)
		return
	}
	c.sendTimeoutNow(p.id)
}

// sendTimeoutNow tells to to campaign now, and notes when: a lease read
// must not be served for an election timeout after (a late MsgTimeoutNow
// can still elect the target).
func (c *core) sendTimeoutNow(to NodeID) {
	c.send(Message{Type: MsgTimeoutNow, To: to})
	c.timeoutNowAt = c.now
	c.timeoutNowSent = true
}

// transferTick runs on each election tick of a leader: a transfer that has
// not ended within an election timeout is aborted.
func (c *core) transferTick() {
	if c.transfer == nil {
		return
	}
	c.transfer.elapsed++
	if c.transfer.elapsed >= c.cfg.electionTicks {
		c.cfg.logger.Warn("raft: leadership transfer timed out; leading on", "id", c.id, "to", c.transfer.target, "term", c.term)
		c.abortTransfer()
	}
}

// abortTransfer ends a transfer without a new leader.
func (c *core) abortTransfer() {
	if c.transfer != nil {
		c.transfer = nil
		c.out.transferAborted = true
	}
}
