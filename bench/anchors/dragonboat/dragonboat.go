package main

// Adapter "dragonboat": github.com/lni/dragonboat/v3 v3.3.8, the last tagged
// release (upstream calls master/v4 unstable and recommends the latest
// release for production). Built in its own module:
//   CGO_ENABLED=0 go run . -transport tcp -durable -clients 16
// ../dragonboat4 is the same adapter for v4 (master, optional).
// (CGO_ENABLED=0 makes pebble allocate its memtables and block cache on the
// Go heap, so heap_peak_mb counts them like every other adapter's log; with
// cgo they would be C memory, invisible to the harness.)
//
// Used the way dragonboat's docs and dragonboat-example's helloworld use it:
//   - one NodeHost per voter, all in this process, each with its own
//     NodeHostDir under opts.Dir; NodeHostConfig{RTTMillisecond
//     -dragonboat-rtt-ms (default 5), DeploymentID 1}; everything else
//     default: the built-in sharded pebble LogDB (16 shards,
//     GetDefaultLogDBConfig, Sync: true on every write batch), the default
//     execution engine, NotifyCommit false (a proposal completes when the
//     entry is applied to the state machine of the node it was proposed on).
//   - raft config.Config{ElectionRTT 10, HeartbeatRTT 1, CheckQuorum true,
//     SnapshotEntries 0 (no snapshots or compaction during the run),
//     Quiesce false; v3.3 has no PreVote}; one raft cluster (ClusterID 1)
//     with a replica on every NodeHost, started with
//     StartCluster(initialMembers, join=false, ...) once all NodeHosts exist.
//   - the state machine is a regular statemachine.IStateMachine (Update is
//     called once per entry by the node's apply worker) wrapping the shared
//     StateMachine.
//   - tcp: dragonboat's default TCP transport, RaftAddress 127.0.0.1:<free
//     port> per NodeHost.
//   - inmem: dragonboat's own channel transport (plugin/chan, the transport
//     its memfs test build uses). It still marshals every MessageBatch to
//     bytes and unmarshals it on the receiving side.
//   - durable=false: the same pebble LogDB on dragonboat's in-memory file
//     system (goutils/vfs MemFS via NodeHostConfig.Expert.FS, what its memfs
//     tests use): no disk I/O, fsync is a no-op, everything else unchanged.
//   - proposals: NodeHost.SyncPropose(ctx, NoOPSession, cmd) on the NodeHost
//     whose replica is the leader (tracked through a RaftEventListener and
//     GetLeaderID); a proposal on a follower would be forwarded and complete
//     when applied on that follower, which is not the workload.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v3"
	"github.com/lni/dragonboat/v3/client"
	"github.com/lni/dragonboat/v3/config"
	"github.com/lni/dragonboat/v3/logger"
	chantransport "github.com/lni/dragonboat/v3/plugin/chan"
	"github.com/lni/dragonboat/v3/raftio"
	sm "github.com/lni/dragonboat/v3/statemachine"
	gvfs "github.com/lni/goutils/vfs"

	"github.com/raftline/raft/bench/anchors/driver"
)

var dbRTTms = flag.Uint64("dragonboat-rtt-ms", 5, "dragonboat adapter: NodeHostConfig.RTTMillisecond (election timeout = 10 RTT, heartbeat = 1 RTT)")

const dbClusterID = 1

type dbNode struct {
	id   uint64
	nh   *dragonboat.NodeHost
	sess *client.Session // NO-OP session, safe for concurrent use
	sm   *driver.StateMachine
}

type dragonboatCluster struct {
	nodes  []*dbNode
	byID   map[uint64]*dbNode
	leader atomic.Pointer[dbNode]
	term   atomic.Uint64 // term of the last leader seen by the event listener
}

// dbEvents is the RaftEventListener of every NodeHost: it keeps the cluster's
// leader pointer current so that proposals always go to the leader.
type dbEvents struct{ c *dragonboatCluster }

func (e dbEvents) LeaderUpdated(info raftio.LeaderInfo) {
	if info.ClusterID != dbClusterID || info.LeaderID == raftio.NoLeader {
		return
	}
	if info.LeaderID == info.NodeID { // reported by the leader itself
		if n := e.c.byID[info.NodeID]; n != nil {
			e.c.term.Store(info.Term)
			e.c.leader.Store(n)
		}
	}
}

// dbSM adapts the shared StateMachine to dragonboat's IStateMachine.
type dbSM struct{ sm *driver.StateMachine }

func (s *dbSM) Update(data []byte) (sm.Result, error) {
	s.sm.Apply(data)
	return sm.Result{Value: uint64(len(data))}, nil
}

func (s *dbSM) Lookup(any) (any, error) { return s.sm.Count(), nil }

func (s *dbSM) SaveSnapshot(w io.Writer, _ sm.ISnapshotFileCollection, _ <-chan struct{}) error {
	_, err := w.Write(s.sm.Snapshot())
	return err
}

func (s *dbSM) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, _ <-chan struct{}) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return s.sm.Restore(b)
}

func (s *dbSM) Close() error { return nil }

// dbChanTransport is dragonboat's channel transport (plugin/chan). Its own
// factory's Validate panics (the memfs test build never validates
// addresses), so this wrapper accepts any address.
type dbChanTransport struct {
	chantransport.ChanTransportFactory
}

func (*dbChanTransport) Validate(string) bool { return true }

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

var dbQuietOnce sync.Once

func newDragonboat(opts driver.Options) (driver.Cluster, error) {
	dbQuietOnce.Do(func() {
		for _, p := range []string{"config", "dragonboat", "gossip", "grpc", "logdb", "LogDB", "pebblekv",
			"raft", "raft-mt", "raftpb", "rsm", "server", "settings", "transport"} {
			logger.GetLogger(p).SetLevel(logger.WARNING)
		}
	})
	if *dbRTTms == 0 {
		return nil, errors.New("-dragonboat-rtt-ms must be > 0")
	}

	c := &dragonboatCluster{byID: map[uint64]*dbNode{}}
	addrs := make([]string, opts.Nodes)
	switch opts.Transport {
	case "tcp":
		ports, err := freePorts(opts.Nodes)
		if err != nil {
			return nil, err
		}
		for i, p := range ports {
			addrs[i] = fmt.Sprintf("127.0.0.1:%d", p)
		}
	case "inmem":
		for i := range addrs { // keys of the channel transport's in-process registry
			addrs[i] = fmt.Sprintf("dragonboat-inmem-%d:%d", i+1, 26000+i+1)
		}
	default:
		return nil, fmt.Errorf("dragonboat: unsupported transport %q", opts.Transport)
	}
	members := map[uint64]string{}
	for i, a := range addrs {
		members[uint64(i+1)] = a
	}
	for i := range addrs {
		n := &dbNode{id: uint64(i + 1), sm: &driver.StateMachine{}}
		c.nodes = append(c.nodes, n)
		c.byID[n.id] = n
	}

	// 1. all NodeHosts (and so all transports) first, so that no node starts
	// campaigning towards a peer that is not listening yet (dragonboat's
	// transport would then trip its circuit breaker for that peer).
	for i, n := range c.nodes {
		nhc := config.NodeHostConfig{
			DeploymentID:      1,
			NodeHostDir:       filepath.Join(opts.Dir, fmt.Sprintf("nh%d", n.id)),
			RTTMillisecond:    *dbRTTms,
			RaftAddress:       addrs[i],
			RaftEventListener: dbEvents{c},
			Expert:            config.GetDefaultExpertConfig(),
		}
		if opts.Transport == "inmem" {
			nhc.Expert.TransportFactory = &dbChanTransport{}
		}
		if !opts.Durable {
			nhc.Expert.FS = gvfs.NewMem()
		}
		nh, err := dragonboat.NewNodeHost(nhc)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("NewNodeHost %d: %w", n.id, err)
		}
		n.nh = nh
		n.sess = nh.GetNoOPSession(dbClusterID)
	}
	// 2. one replica of cluster 1 on every NodeHost.
	for _, n := range c.nodes {
		rc := config.Config{
			NodeID:          n.id,
			ClusterID:       dbClusterID,
			ElectionRTT:     10,
			HeartbeatRTT:    1,
			CheckQuorum:     true,
			SnapshotEntries: 0,
		}
		nsm := n.sm
		create := func(uint64, uint64) sm.IStateMachine { return &dbSM{sm: nsm} }
		if err := n.nh.StartCluster(members, false, create, rc); err != nil {
			c.Close()
			return nil, fmt.Errorf("StartCluster %d: %w", n.id, err)
		}
	}

	// 3. steady state: every node reports the same leader, a linearizable
	// read through it succeeds (ReadIndex needs an entry of the leader's term
	// committed), and that stays so for 20 RTTs (2 election timeouts).
	stableFor := 20 * time.Duration(*dbRTTms) * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	var stable *dbNode
	var since time.Time
	for {
		if time.Now().After(deadline) {
			c.Close()
			return nil, errors.New("dragonboat: no stable leader within 30s")
		}
		l := c.agreedLeader()
		if l != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := l.nh.SyncRead(ctx, dbClusterID, nil)
			cancel()
			if err != nil {
				l = nil
			}
		}
		switch {
		case l == nil:
			stable = nil
		case l != stable:
			stable, since = l, time.Now()
		case time.Since(since) >= stableFor:
			c.leader.Store(l)
			return c, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// agreedLeader returns the leader if every node reports the same one, else nil.
func (c *dragonboatCluster) agreedLeader() *dbNode {
	var lid uint64
	for _, n := range c.nodes {
		id, ok, err := n.nh.GetLeaderID(dbClusterID)
		if err != nil || !ok || id == raftio.NoLeader || (lid != 0 && id != lid) {
			return nil
		}
		lid = id
	}
	return c.byID[lid]
}

// findLeader asks every NodeHost who leads and returns the node that
// reports itself as leader.
func (c *dragonboatCluster) findLeader() *dbNode {
	for _, n := range c.nodes {
		if n.nh == nil {
			continue
		}
		if id, ok, err := n.nh.GetLeaderID(dbClusterID); err == nil && ok && id == n.id {
			c.leader.Store(n)
			return n
		}
	}
	return nil
}

func (c *dragonboatCluster) Propose(ctx context.Context, cmd []byte) error {
	n := c.leader.Load()
	if n == nil {
		if n = c.findLeader(); n == nil {
			return driver.ErrNoLeader
		}
	}
	_, err := n.nh.SyncPropose(ctx, n.sess, cmd)
	if err != nil {
		c.leader.CompareAndSwap(n, nil) // re-resolve on the next call
	}
	return err
}

func (c *dragonboatCluster) LeaderTerm() uint64 { return c.term.Load() }

func (c *dragonboatCluster) Close() error {
	for _, n := range c.nodes {
		if n.nh != nil {
			n.nh.Stop()
		}
	}
	var counts []uint64
	for _, n := range c.nodes {
		counts = append(counts, n.sm.Count())
	}
	driver.Logf("dragonboat: entries applied per node at close: %v", counts)
	return nil
}
