package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/raftline/raft"
)

// This file is the single-process mode: a whole cluster in one process, on
// the library's in-memory network.

// localCluster is the single-process mode: every node of a cluster in this
// process, talking over the in-memory raft.Network.
type localCluster struct {
	network *raft.Network
	nodes   []*kvNode
}

// startLocalCluster starts size nodes with IDs 1..size. Node i serves HTTP
// on host:basePort+i-1, or on a free port each when basePort is 0.
func startLocalCluster(size int, host string, basePort int, tune func(*nodeConfig)) (*localCluster, error) {
	c := &localCluster{network: raft.NewNetwork(1)}
	var conf raft.Configuration
	for i := 1; i <= size; i++ {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(i)})
	}
	for i := 1; i <= size; i++ {
		port := 0
		if basePort != 0 {
			port = basePort + i - 1
		}
		cfg := nodeConfig{
			ID: raft.NodeID(i), HTTPAddr: net.JoinHostPort(host, fmt.Sprint(port)),
			Peers: conf, Network: c.network,
			ElectionTimeout: localElectionTimeout, RequestTimeout: 5 * time.Second,
			Logger: slog.Default(),
		}
		if tune != nil {
			tune(&cfg)
		}
		n, err := startNode(cfg)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

// localElectionTimeout is shorter than the library's 1 s default because
// the in-memory network has no latency: the demo elects a leader in well
// under a second, and a failover is quick enough to watch.
const localElectionTimeout = 300 * time.Millisecond

// waitForLeader waits until some node leads and every node knows its HTTP
// address, so that whichever node a client asks can redirect it.
func (c *localCluster) waitForLeader(ctx context.Context) (*kvNode, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if leader := c.leaderKnownToAll(); leader != nil {
			return leader, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader elected: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// leaderKnownToAll returns the leader if every node follows it and has
// applied its HTTP address, else nil.
func (c *localCluster) leaderKnownToAll() *kvNode {
	var leader *kvNode
	for _, n := range c.nodes {
		st := n.raft.Status()
		if st.Leader == raft.None || int(st.Leader) > len(c.nodes) {
			return nil // IDs are 1..len(c.nodes)
		}
		if leader == nil {
			leader = c.nodes[st.Leader-1]
		}
		if st.Leader != leader.id {
			return nil
		}
		if addr, ok := n.sm.HTTPAddr(leader.id); !ok || addr != leader.httpAddr {
			return nil
		}
	}
	if leader == nil || leader.raft.Status().Role != raft.Leader {
		return nil
	}
	return leader
}

// Close stops every node.
func (c *localCluster) Close() error {
	var errs []error
	for _, n := range c.nodes {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}
