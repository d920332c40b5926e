package raft

import (
	"context"
	"fmt"
)

// This file is the node's side of leadership transfer and of lease and
// follower reads (transfer.go, lease.go and read.go hold the core's).

// transferRequest is one TransferLeadership call travelling to the owner.
type transferRequest struct {
	to     NodeID
	abort  bool // the caller gave up: abort the transfer to `to`
	target NodeID
	err    error
	done   chan struct{}
}

func (r *transferRequest) finish(target NodeID, err error) {
	r.target, r.err = target, err
	close(r.done)
}

// TransferLeadership hands leadership to the voter to, or to the most
// caught-up voter when to is None, and returns once the outcome is known:
// the new leader's ID, or an error. Meanwhile the leader refuses proposals
// with ErrTransferInProgress. The transfer is aborted, with
// ErrTransferAborted and this node leading on, if the target has not taken
// over within an election timeout or ctx ends first. Errors: a
// *NotLeaderError, ErrInvalidTransfer (to itself, a learner, no voter),
// ErrUnknownServer, ErrTransferInProgress (to another target).
func (n *Node) TransferLeadership(ctx context.Context, to NodeID) (NodeID, error) {
	req := &transferRequest{to: to, done: make(chan struct{})}
	select {
	case n.ctrlc <- func() { n.startTransfer(req) }:
	case <-ctx.Done():
		return None, ctx.Err()
	case <-n.ctx.Done():
		return None, ErrClosed
	}
	select {
	case <-req.done:
		return req.target, req.err
	case <-ctx.Done():
		select { // best effort: the transfer also ends by itself
		case n.ctrlc <- func() {
			n.startTransfer(&transferRequest{to: req.target, abort: true, done: make(chan struct{})})
		}:
		case <-n.ctx.Done():
		}
		return None, fmt.Errorf("%w: %w", ErrTransferAborted, ctx.Err())
	case <-n.ctx.Done():
		return None, ErrClosed
	}
}

// startTransfer runs on the owner.
func (n *Node) startTransfer(r *transferRequest) {
	if r.abort {
		if t := n.core.transfer; t != nil && t.target == r.to {
			n.core.abortTransfer()
		}
		close(r.done)
		return
	}
	target, err := n.core.transferLeadership(r.to)
	switch {
	case err == ErrCoreNotLeader:
		r.finish(None, n.notLeader())
	case err != nil:
		r.finish(None, err)
	default:
		r.target = target
		n.transfers = append(n.transfers, r)
	}
}

// settleTransfers answers the TransferLeadership calls whose outcome the
// last ready decided: the target (or another node) leads, or the transfer
// was aborted.
func (n *Node) settleTransfers(rd *ready) {
	c := n.core
	kept := n.transfers[:0]
	for _, r := range n.transfers {
		switch {
		case c.role == Leader && c.transfer == nil:
			r.finish(None, fmt.Errorf("%w: node %d did not take over within an election timeout", ErrTransferAborted, r.target))
		case c.role == Leader:
			kept = append(kept, r)
		case c.leader == r.target:
			r.finish(r.target, nil)
		case c.leader != None:
			r.finish(c.leader, fmt.Errorf("%w: node %d leads instead of %d", ErrTransferAborted, c.leader, r.target))
		default:
			kept = append(kept, r) // the target's election is under way
		}
	}
	clear(n.transfers[len(kept):])
	n.transfers = kept
}

// LeaseRead is a linearizable read barrier like ReadIndex that, on a leader
// holding a lease (Config.LeaseReads), returns at once without a heartbeat
// round. Without a lease, and on a follower, it is ReadIndex.
func (n *Node) LeaseRead(ctx context.Context) (uint64, error) {
	return n.readBarrier(ctx, true)
}
