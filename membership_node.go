package raft

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// This file is the node's membership API: single-server changes proposed
// through the leader's log (membership.go), the catch-up a new voter goes
// through first (Raft thesis §4.2.1), and keeping senders and the
// transport's addresses in step with every configuration the node adopts.

// PeerUpdater is implemented by transports that learn peers' addresses
// from the configuration (the TCP transport does): the node calls SetPeer
// for each server of every configuration it adopts, and RemovePeer for the
// servers it no longer lists, so a user gives addresses once, in the
// configuration.
type PeerUpdater interface {
	SetPeer(id NodeID, addr string) error
	RemovePeer(id NodeID)
}

// maxCatchUpRounds bounds AddVoter's catch-up: a server that needs more
// rounds than this to get within one election timeout of the leader is
// too slow to vote without putting the cluster's quorum at risk.
const maxCatchUpRounds = 10

// catchUpStall fails a catch-up round in which the new server made no
// progress for this many election timeouts (it is down or cut off).
const catchUpStall = 3

// confRequest is one membership change travelling to the owner.
type confRequest struct {
	cc ConfChange
	p  *proposal
}

// Configuration returns the latest committed configuration and the index
// of the entry holding it (its PrevIndex for a change).
func (n *Node) Configuration(ctx context.Context) (Configuration, uint64, error) {
	var conf Configuration
	var index uint64
	err := n.query(ctx, func(c *core) {
		cc, at := c.committedConfig()
		conf, index = Configuration{Servers: append([]Server(nil), cc.Servers...)}, at
	})
	return conf, index, err
}

// AddLearner adds a server that receives the log but does not vote, once
// prevIndex (0: any) is still the configuration in force. It returns the
// new configuration's index once committed.
func (n *Node) AddLearner(ctx context.Context, id NodeID, addr string, prevIndex uint64) (uint64, error) {
	return n.changeConfig(ctx, ConfChange{Type: ConfAddLearner, ID: id, Address: addr, PrevIndex: prevIndex})
}

// AddVoter adds a voting server safely: as a learner first, promoted once
// it has caught up with the leader (a replication round finishing within
// an election timeout), so a slow new server never costs the cluster its
// quorum. If it does not catch up it stays a learner and AddVoter fails
// with ErrNotCaughtUp. Adding a voter that is already one with the same
// address succeeds at once.
func (n *Node) AddVoter(ctx context.Context, id NodeID, addr string, prevIndex uint64) (uint64, error) {
	conf, at, err := n.Configuration(ctx)
	if err != nil {
		return 0, err
	}
	if s, ok := conf.Server(id); ok && s.Suffrage == Voter && (addr == "" || s.Address == addr) {
		return at, nil
	}
	index, err := n.AddLearner(ctx, id, addr, prevIndex)
	if err != nil {
		return 0, err
	}
	return n.Promote(ctx, id, index)
}

// Promote makes a learner a voter once it has caught up (see AddVoter).
func (n *Node) Promote(ctx context.Context, id NodeID, prevIndex uint64) (uint64, error) {
	if err := n.catchUp(ctx, id); err != nil {
		return 0, err
	}
	return n.changeConfig(ctx, ConfChange{Type: ConfAddVoter, ID: id, PrevIndex: prevIndex})
}

// Demote makes a voter a learner.
func (n *Node) Demote(ctx context.Context, id NodeID, prevIndex uint64) (uint64, error) {
	return n.changeConfig(ctx, ConfChange{Type: ConfDemote, ID: id, PrevIndex: prevIndex})
}

// RemoveServer removes a server, the leader included: a leader removing
// itself keeps leading until the change commits, then hands leadership to
// the most caught-up voter.
func (n *Node) RemoveServer(ctx context.Context, id NodeID, prevIndex uint64) (uint64, error) {
	return n.changeConfig(ctx, ConfChange{Type: ConfRemove, ID: id, PrevIndex: prevIndex})
}

// changeConfig proposes cc on the leader and waits until it is committed
// and applied here. Errors: *NotLeaderError, ErrConfigChangeInProgress,
// ErrStaleConfiguration, ErrUnknownServer, ErrRemoveLastVoter,
// ErrInvalidConfChange, and those of Propose.
func (n *Node) changeConfig(ctx context.Context, cc ConfChange) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	p := &proposal{done: make(chan struct{})}
	select {
	case n.ctrlc <- func() { n.proposeConfChange(&confRequest{cc: cc, p: p}) }:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.ctx.Done():
		return 0, ErrClosed
	}
	select {
	case <-p.done:
		return p.index, p.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	case <-n.ctx.Done():
		return 0, ErrClosed
	}
}

// proposeConfChange runs on the owner: the change is appended and its
// caller waits like a proposal's, or is answered at once.
func (n *Node) proposeConfChange(r *confRequest) {
	index, err := n.core.proposeConfChange(r.cc)
	switch {
	case errors.Is(err, ErrCoreNotLeader):
		r.p.finish(n.notLeader())
	case err != nil:
		r.p.finish(err)
	case index <= n.core.log.committed:
		r.p.index = index // nothing changed
		r.p.finish(nil)
	default:
		r.p.index, r.p.term = index, n.core.term
		n.pending = append(n.pending, r.p)
	}
}

// catchUp waits, on the leader, until learner id has caught up: a round
// replicates up to the leader's last index as the round began, and the
// learner is caught up once a round takes no longer than an election
// timeout.
func (n *Node) catchUp(ctx context.Context, id NodeID) error {
	tick := n.cfg.Clock.NewTicker(n.cfg.HeartbeatInterval)
	defer tick.Stop()
	for round := 1; round <= maxCatchUpRounds; round++ {
		st := n.Status()
		if st.Role != Leader {
			return &NotLeaderError{Leader: st.Leader}
		}
		target, start := st.LastIndex, n.cfg.Clock.Now()
		progressAt, last := start, PeerStatus{}
		for {
			p, ok := st.Peers[id]
			if !ok {
				return fmt.Errorf("%w: %d is not a member", ErrUnknownServer, id)
			}
			if p.Match >= target {
				break
			}
			now := n.cfg.Clock.Now()
			if p.Match > last.Match || p.SnapshotSent > last.SnapshotSent {
				progressAt, last = now, p
			}
			if now.Sub(progressAt) > catchUpStall*n.cfg.ElectionTimeout {
				return fmt.Errorf("%w: server %d made no progress for %v (at %d of %d)",
					ErrNotCaughtUp, id, now.Sub(progressAt).Round(time.Millisecond), p.Match, target)
			}
			select {
			case <-tick.C():
			case <-ctx.Done():
				return fmt.Errorf("%w: %w", ErrNotCaughtUp, ctx.Err())
			case <-n.ctx.Done():
				return ErrClosed
			}
			if st = n.Status(); st.Role != Leader {
				return &NotLeaderError{Leader: st.Leader}
			}
		}
		if n.cfg.Clock.Now().Sub(start) <= n.cfg.ElectionTimeout {
			return nil
		}
	}
	return fmt.Errorf("%w: server %d still needed more than an election timeout per round after %d rounds", ErrNotCaughtUp, id, maxCatchUpRounds)
}

// query runs f on the owner goroutine, with the core at rest.
func (n *Node) query(ctx context.Context, f func(c *core)) error {
	done := make(chan struct{})
	select {
	case n.ctrlc <- func() { f(n.core); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.ctx.Done():
		return ErrClosed
	}
	select {
	case <-done:
		return nil
	case <-n.ctx.Done():
		return ErrClosed
	}
}

// adoptPeers brings senders and the transport's addresses in step with
// the configuration in force, on the owner goroutine.
func (n *Node) adoptPeers() {
	conf := n.core.config
	pu, _ := n.cfg.Transport.(PeerUpdater)
	want := make(map[NodeID]string, len(conf.Servers))
	for _, s := range conf.Servers {
		if s.ID == n.cfg.ID {
			continue
		}
		want[s.ID] = s.Address
		if addr, ok := n.peerAddrs[s.ID]; !ok || addr != s.Address {
			n.ensureSender(s.ID)
			if pu != nil && s.Address != "" {
				if err := pu.SetPeer(s.ID, s.Address); err != nil {
					n.cfg.Logger.Warn("raft: transport refused a peer's address", "id", n.cfg.ID, "peer", s.ID, "addr", s.Address, "err", err)
				}
			}
		}
	}
	for _, p := range n.core.leaving {
		if addr, ok := n.peerAddrs[p.id]; ok {
			want[p.id] = addr // still told of its removal
		}
	}
	for id := range n.peerAddrs {
		if _, ok := want[id]; !ok {
			n.stopSender(id)
			if pu != nil {
				pu.RemovePeer(id)
			}
		}
	}
	n.peerAddrs = want
}
