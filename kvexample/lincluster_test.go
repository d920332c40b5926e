package main

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/raftline/raft"
)

// This file is an in-process cluster of kvexample state machines on the
// library's in-memory network, for tests that run inside a testing/synctest
// bubble: no HTTP (sockets would keep the bubble's clock from moving), but
// the same commands, the same leader clocks (skewed per node) and the same
// tick loop as a real node.

// simNode is one member: a raft node, its state machine, its clock.
type simNode struct {
	id        raft.NodeID
	rn        *raft.Node
	sm        *kvStateMachine
	clock     func() time.Time
	stopClock func()
}

// simCluster is the cluster and its network.
type simCluster struct {
	net   *raft.Network
	nodes []*simNode
	// failed counts the write attempts that were not answered (no leader,
	// lost leadership, timed out): the retries faults caused.
	failed atomic.Int64
}

// maxSkew bounds how far a node's clock is from the bubble's: leaders
// disagree on the time by up to twice this.
const maxSkew = 300 * time.Millisecond

// newSimCluster starts size nodes whose clocks are skewed by amounts drawn
// from rng. The caller closes it before the bubble ends.
func newSimCluster(seed uint64, size int, rng *rand.Rand) (*simCluster, error) {
	c := &simCluster{net: raft.NewNetwork(seed)}
	var conf raft.Configuration
	for i := 1; i <= size; i++ {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(i)})
	}
	for i := 1; i <= size; i++ {
		id := raft.NodeID(i)
		store := raft.NewMemoryStorage()
		if err := raft.Bootstrap(store, conf); err != nil {
			c.Close()
			return nil, err
		}
		skew := time.Duration(rng.Int64N(int64(2*maxSkew))) - maxSkew
		n := &simNode{id: id, sm: newKVStateMachine(defaultSessionTTL), clock: func() time.Time { return time.Now().Add(skew) }}
		rn, err := raft.NewNode(raft.Config{
			ID: id, Storage: store, StateMachine: n.sm, Transport: c.net.Join(id),
			ElectionTimeout: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
			Rand: rand.NewPCG(seed, uint64(i)),
			// Snapshots often, and little log kept behind them: a node cut
			// off for a while catches up by InstallSnapshot, so the run
			// restores this state machine from its own snapshots.
			SnapshotEntries: 32, SnapshotTrailing: 2, SnapshotInterval: -1,
		})
		if err != nil {
			c.Close()
			return nil, err
		}
		n.rn = rn
		n.stopClock = goUntilStopped(func(ctx context.Context) { runLogClock(ctx, rn, n.sm, n.clock) })
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

// Close stops every node.
func (c *simCluster) Close() {
	for _, n := range c.nodes {
		n.stopClock()
		n.rn.Close()
	}
}

// stats returns the highest term any node reached (how many elections the
// faults caused), and how many snapshots the nodes took and received.
func (c *simCluster) stats() (term, taken, received uint64) {
	for _, n := range c.nodes {
		st := n.rn.Status()
		term = max(term, st.Term)
		taken += st.Metrics.SnapshotsTaken
		received += st.Metrics.SnapshotsReceived
	}
	return term, taken, received
}

// converged waits until every node has applied the same index and nothing
// is left to expire (so no tick is coming), and reports whether that
// happened before deadline.
func (c *simCluster) converged(deadline time.Time) bool {
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		first := c.nodes[0].sm.Applied()
		same := true
		for _, n := range c.nodes {
			_, timers := n.sm.LogTime()
			same = same && !timers && n.sm.Applied() == first
		}
		if same {
			return true
		}
	}
	return false
}

// node returns the member with id, or a random one when id is unknown.
func (c *simCluster) node(id raft.NodeID, rng *rand.Rand) *simNode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return c.nodes[rng.IntN(len(c.nodes))]
}

// retryPause is how long a client waits before trying another node.
const retryPause = 20 * time.Millisecond

// write proposes cmd, stamped by the clock of the node it reaches, until
// one attempt is answered or ctx ends. Retries keep the command's session,
// so a write is applied at most once however many attempts reach the log.
func (c *simCluster) write(ctx context.Context, cmd command, rng *rand.Rand) (result, bool) {
	leader := raft.None
	for ctx.Err() == nil {
		n := c.node(leader, rng)
		cmd.Time = stamp(n.clock)
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		res, err := n.rn.Propose(pctx, cmd.encode())
		cancel()
		if err == nil {
			return res.Value.(result), true
		}
		c.failed.Add(1)
		leader = leaderHint(err)
		time.Sleep(retryPause)
	}
	return result{}, false
}

// read runs a linearizable read barrier, then f on the state machine of
// the node that passed it, until one attempt succeeds or ctx ends.
func read[T any](ctx context.Context, c *simCluster, rng *rand.Rand, f func(st *kvState) T) (T, bool) {
	leader := raft.None
	for ctx.Err() == nil {
		n := c.node(leader, rng)
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := n.rn.ReadIndex(rctx)
		cancel()
		if err == nil {
			n.sm.mu.RLock()
			defer n.sm.mu.RUnlock()
			return f(&n.sm.st), true
		}
		leader = leaderHint(err)
		time.Sleep(retryPause)
	}
	var zero T
	return zero, false
}

// leaderHint returns the leader a NotLeaderError names, else raft.None.
func leaderHint(err error) raft.NodeID {
	var nle *raft.NotLeaderError
	if errors.As(err, &nle) {
		return nle.Leader
	}
	return raft.None
}

// injectFaults partitions, isolates, heals and drops messages at random
// until ctx ends, then heals everything.
func (c *simCluster) injectFaults(ctx context.Context, rng *rand.Rand) {
	defer func() {
		c.net.SetDropRate(0)
		c.net.Heal()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(100+rng.IntN(700)) * time.Millisecond):
		}
		victim := c.nodes[rng.IntN(len(c.nodes))].id
		switch r := rng.IntN(10); {
		case r < 3:
			c.net.Isolate(victim)
		case r < 5:
			other := c.nodes[(int(victim))%len(c.nodes)].id
			c.net.Partition([]raft.NodeID{victim, other})
		case r < 8:
			c.net.Heal()
		default:
			c.net.SetDropRate(rng.Float64() * 0.2)
		}
	}
}
