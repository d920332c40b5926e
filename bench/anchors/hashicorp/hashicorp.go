package main

// Adapter for github.com/hashicorp/raft v1.8.0, used the way its docs and
// its big users (Consul, Nomad, Vault) use it:
//   - config: raft.DefaultConfig(), LocalID set, Logger = hclog null logger.
//     Nothing else is changed.
//   - inmem:   raft.NewInmemTransport + raft.NewInmemStore (log and stable
//     store) + raft.NewInmemSnapshotStore.
//   - tcp:     raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, maxPool 3,
//     timeout 10s, null logger) - the values Consul and Nomad use.
//   - durable: github.com/hashicorp/raft-wal (wal.Open(dir), defaults: 64 MiB
//     segments, fsync on every StoreLogs) as LogStore and StableStore, plus
//     raft.NewFileSnapshotStoreWithLogger(dir, retain 2).
//   - every node is bootstrapped with the same configuration listing all
//     voters; proposals go to the leader with raft.Apply(cmd, timeout).Error(),
//     which returns after the FSM applied the entry on the leader.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"

	"github.com/raftline/raft/bench/anchors/driver"
)

type hcNode struct {
	r      *raft.Raft
	fsm    *hcFSM
	trans  raft.Transport
	closer []io.Closer
}

type hashicorpCluster struct {
	nodes  []*hcNode
	leader atomic.Pointer[hcNode]
}

// hcFSM adapts the shared StateMachine to raft.FSM.
type hcFSM struct{ sm driver.StateMachine }

func (f *hcFSM) Apply(l *raft.Log) any {
	f.sm.Apply(l.Data)
	return nil
}

func (f *hcFSM) Snapshot() (raft.FSMSnapshot, error) {
	return hcSnapshot(f.sm.Snapshot()), nil
}

func (f *hcFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	return f.sm.Restore(b)
}

type hcSnapshot []byte

func (s hcSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (hcSnapshot) Release() {}

func newHashicorp(opts driver.Options) (driver.Cluster, error) {
	c := &hashicorpCluster{}
	logger := hclog.NewNullLogger()

	type made struct {
		id    raft.ServerID
		addr  raft.ServerAddress
		trans raft.Transport
	}
	ms := make([]made, opts.Nodes)

	// 1. transports
	for i := range ms {
		id := raft.ServerID(fmt.Sprintf("node%d", i+1))
		switch opts.Transport {
		case "inmem":
			addr, t := raft.NewInmemTransport(raft.ServerAddress(id))
			ms[i] = made{id, addr, t}
		case "tcp":
			t, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 10*time.Second, logger)
			if err != nil {
				return nil, err
			}
			ms[i] = made{id, t.LocalAddr(), t}
		}
	}
	if opts.Transport == "inmem" {
		for i := range ms {
			for j := range ms {
				if i != j {
					ms[i].trans.(*raft.InmemTransport).Connect(ms[j].addr, ms[j].trans)
				}
			}
		}
	}
	var servers []raft.Server
	for _, m := range ms {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: m.id, Address: m.addr})
	}

	// 2. stores + raft instances
	for _, m := range ms {
		conf := raft.DefaultConfig()
		conf.LocalID = m.id
		conf.Logger = logger

		n := &hcNode{fsm: &hcFSM{}, trans: m.trans}
		var (
			logs   raft.LogStore
			stable raft.StableStore
			snaps  raft.SnapshotStore
		)
		if opts.Durable {
			dir := filepath.Join(opts.Dir, string(m.id))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			w, err := wal.Open(dir, wal.WithLogger(logger))
			if err != nil {
				return nil, fmt.Errorf("raft-wal: %w", err)
			}
			n.closer = append(n.closer, w)
			logs, stable = w, w
			fss, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logger)
			if err != nil {
				return nil, err
			}
			snaps = fss
		} else {
			s := raft.NewInmemStore()
			logs, stable = s, s
			snaps = raft.NewInmemSnapshotStore()
		}
		if err := raft.BootstrapCluster(conf, logs, stable, snaps, m.trans, raft.Configuration{Servers: servers}); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		r, err := raft.NewRaft(conf, n.fsm, logs, stable, snaps, m.trans)
		if err != nil {
			return nil, err
		}
		n.r = r
		c.nodes = append(c.nodes, n)
	}

	// 3. wait for a leader and for its first (no-op) entry to be committed.
	deadline := time.Now().Add(30 * time.Second)
	for c.findLeader() == nil {
		if time.Now().After(deadline) {
			c.Close()
			return nil, errors.New("no leader elected within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.leader.Load().r.Barrier(10 * time.Second).Error(); err != nil {
		c.Close()
		return nil, fmt.Errorf("barrier: %w", err)
	}
	return c, nil
}

func (c *hashicorpCluster) findLeader() *hcNode {
	for _, n := range c.nodes {
		if n.r.State() == raft.Leader {
			c.leader.Store(n)
			return n
		}
	}
	return nil
}

func (c *hashicorpCluster) Propose(ctx context.Context, cmd []byte) error {
	n := c.leader.Load()
	if n == nil {
		if n = c.findLeader(); n == nil {
			return driver.ErrNoLeader
		}
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	err := n.r.Apply(cmd, timeout).Error()
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		c.leader.Store(nil) // re-resolve on the next call
	}
	return err
}

func (c *hashicorpCluster) LeaderTerm() uint64 {
	n := c.leader.Load()
	if n == nil {
		return 0
	}
	return n.r.CurrentTerm()
}

func (c *hashicorpCluster) Close() error {
	var first error
	for _, n := range c.nodes {
		if err := n.r.Shutdown().Error(); err != nil && first == nil {
			first = err
		}
		if cl, ok := n.trans.(io.Closer); ok {
			cl.Close()
		}
		for _, cl := range n.closer {
			cl.Close()
		}
	}
	return first
}
