package main

import (
	"context"
	"errors"

	"github.com/raftline/raft"
)

// read makes one linearizable read as mode says and reads the state
// machine of the node that served it (the counter: what a read of the
// bench's state costs).
//
//   - leader: ReadIndex on the leader (a heartbeat round, shared by every
//     read waiting for one).
//   - follower: ReadIndex on a follower, which asks the leader for the read
//     index and waits until it applied it; client i always reads from the
//     same follower (i modulo the followers), as a client reading from its
//     nearest replica would.
//   - lease: LeaseRead on the leader (no round while the lease holds).
func (c *cluster) read(ctx context.Context, mode string, client int) error {
	var m *member
	if mode == "follower" {
		m = c.follower(client)
	} else {
		m = c.leaderMember()
	}
	if m == nil {
		return errors.New("no node to read from")
	}
	n := m.node.Load()
	if n == nil {
		return errors.New("node stopped")
	}
	var err error
	if mode == "lease" {
		_, err = n.LeaseRead(ctx)
	} else {
		_, err = n.ReadIndex(ctx)
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			c.leader.CompareAndSwap(n, nil)
		}
		return err
	}
	_ = m.sm.count.Load()
	return nil
}

// follower returns the follower client i reads from: the i-th (modulo
// their number) member that is not the leader.
func (c *cluster) follower(i int) *member {
	l := c.leaderMember()
	if l == nil {
		return nil
	}
	var fs []*member
	for _, m := range c.members {
		if m != l && m.node.Load() != nil {
			fs = append(fs, m)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	return fs[i%len(fs)]
}
