package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/raftline/raft"
)

// This file is the single-process mode: a whole cluster in one process, on
// the library's in-memory network. Its lab (lab.go) can crash and restart
// nodes, so each node's HTTP port is held by the cluster (hold.go) and
// its configuration kept for the restart.

// localCluster is the single-process mode: every node of a cluster in this
// process, talking over the in-memory raft.Network.
type localCluster struct {
	network *raft.Network
	// nodes are the running nodes, by ID - 1. A node the lab crashed stays
	// here, closed, until it is restarted; mu guards the slice and slots
	// once the cluster runs.
	nodes []*kvNode
	mu    sync.Mutex
	slots []*slot
	// settled is signalled (with mu) when a crash or restart finishes.
	settled *sync.Cond
	links   slowLinks
	lab     *lab
	// ops counts the lab's crashes and restarts still under way.
	ops sync.WaitGroup
}

// slot is what the cluster keeps of a node across crashes: its settings,
// its port, the stand-in that answers while it is down, and its state.
type slot struct {
	cfg     nodeConfig
	holder  *portHolder
	standIn *http.Server
	served  chan struct{}
	// down: crashed, or being crashed or restarted; busy: a crash or
	// restart is under way.
	down, busy bool
}

// startLocalCluster starts size nodes with IDs 1..size. Node i serves HTTP
// on host:basePort+i-1, or on a free port each when basePort is 0.
func startLocalCluster(size int, host string, basePort int, tune func(*nodeConfig)) (*localCluster, error) {
	c := &localCluster{network: raft.NewNetwork(1)}
	c.lab = newLab(c)
	var conf raft.Configuration
	for i := 1; i <= size; i++ {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(i)})
	}
	for i := 1; i <= size; i++ {
		port := 0
		if basePort != 0 {
			port = basePort + i - 1
		}
		if err := c.startSlot(raft.NodeID(i), net.JoinHostPort(host, fmt.Sprint(port)), conf, tune); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// startSlot binds node id's port and starts the node.
func (c *localCluster) startSlot(id raft.NodeID, addr string, conf raft.Configuration, tune func(*nodeConfig)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("node %d: %w", id, err)
	}
	sl := &slot{holder: newPortHolder(ln), served: make(chan struct{})}
	sl.cfg = nodeConfig{
		ID: id, HTTPAddr: ln.Addr().String(), Peers: conf, Network: c.network,
		ElectionTimeout: localElectionTimeout, RequestTimeout: 5 * time.Second,
		Logger: slog.Default(), Lab: c.lab,
		LinkDelay: func(from raft.NodeID) time.Duration { return c.links.get(from, id) },
	}
	if tune != nil {
		tune(&sl.cfg)
	}
	if sl.cfg.DataDir == "" {
		// Memory that outlives the node, as a disk would: a crash loses
		// nothing the node saved.
		sl.cfg.Storage = &nodeStorage{
			log: raft.NewMemoryStorage(), snaps: raft.NewMemorySnapshotStore(), close: func() error { return nil },
		}
	}
	sl.standIn = c.lab.standIn(id, sl.cfg.Logger)
	go func() {
		defer close(sl.served)
		_ = sl.standIn.Serve(sl.holder.standIn())
	}()
	c.slots = append(c.slots, sl)
	cfg := sl.cfg
	cfg.HTTPListener = sl.holder.attach()
	n, err := startNode(cfg)
	if err != nil {
		return err
	}
	c.nodes = append(c.nodes, n)
	return nil
}

// localElectionTimeout is shorter than the library's 1 s default because
// the in-memory network has no latency: the demo elects a leader in well
// under a second, and a failover is quick enough to watch.
const localElectionTimeout = 300 * time.Millisecond

// node returns the node with the given ID and whether it is running.
func (c *localCluster) node(id raft.NodeID) (*kvNode, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id < 1 || int(id) > len(c.nodes) {
		return nil, false
	}
	return c.nodes[id-1], !c.slots[id-1].down
}

// running returns the nodes that are up.
func (c *localCluster) running() []*kvNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*kvNode
	for i, n := range c.nodes {
		if !c.slots[i].down {
			out = append(out, n)
		}
	}
	return out
}

// crash stops node id as a crash would (no hand-over: its term, vote and
// log stay in its storage), keeping its port; false if it is not up.
func (c *localCluster) crash(id raft.NodeID) bool {
	c.mu.Lock()
	if id < 1 || int(id) > len(c.slots) || c.slots[id-1].down || c.slots[id-1].busy {
		c.mu.Unlock()
		return false
	}
	n, sl := c.nodes[id-1], c.slots[id-1]
	sl.down, sl.busy = true, true
	c.mu.Unlock()
	if err := n.Close(); err != nil {
		n.logger.Warn("kvexample: crashing node", "id", id, "err", err)
	}
	c.mu.Lock()
	sl.busy = false
	c.settledCond().Broadcast()
	c.mu.Unlock()
	return true
}

// settledCond returns the condition a crash or restart signals. Callers
// hold mu.
func (c *localCluster) settledCond() *sync.Cond {
	if c.settled == nil {
		c.settled = sync.NewCond(&c.mu)
	}
	return c.settled
}

// restart starts node id again from its storage, on its port.
func (c *localCluster) restart(id raft.NodeID) error {
	c.mu.Lock()
	// A crash still closing the node (its port already answers "crashed")
	// finishes first: the restart follows it rather than failing.
	for id >= 1 && int(id) <= len(c.slots) && c.slots[id-1].down && c.slots[id-1].busy {
		c.settledCond().Wait()
	}
	if id < 1 || int(id) > len(c.slots) || !c.slots[id-1].down || c.slots[id-1].busy {
		c.mu.Unlock()
		return fmt.Errorf("node %d is not crashed", id)
	}
	sl := c.slots[id-1]
	sl.busy = true
	cfg := sl.cfg
	c.mu.Unlock()
	cfg.HTTPListener = sl.holder.attach()
	n, err := startNode(cfg)
	c.mu.Lock()
	defer c.mu.Unlock()
	sl.busy = false
	c.settledCond().Broadcast()
	if err != nil {
		return err
	}
	c.nodes[id-1], sl.down = n, false
	return nil
}

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

// leaderKnownToAll returns the leader if every running node follows it and
// has applied its HTTP address, else nil.
func (c *localCluster) leaderKnownToAll() *kvNode {
	var leader *kvNode
	for _, n := range c.running() {
		st := n.raft.Status()
		l, up := c.node(st.Leader)
		if !up {
			return nil
		}
		if leader == nil {
			leader = l
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

// Close stops every node, and the stand-ins and ports the cluster held.
func (c *localCluster) Close() error {
	c.lab.stop()
	c.ops.Wait()
	var errs []error
	c.mu.Lock()
	nodes, slots := c.nodes, c.slots
	c.mu.Unlock()
	for i, n := range nodes {
		if n != nil && !slots[i].down {
			errs = append(errs, n.Close())
		}
	}
	for _, sl := range slots {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if sl.standIn.Shutdown(ctx) != nil {
			sl.standIn.Close()
		}
		cancel()
		errs = append(errs, sl.holder.Close())
		<-sl.served
	}
	return errors.Join(errs...)
}
