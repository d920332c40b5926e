package raft

import (
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/raftline/raft/internal/testutil"
)

// This file is the harness for TCP transport tests: a cluster of real
// Nodes in real time over loopback TCP (or, for comparison, the in-memory
// Network), with a fault-injecting net.Conn and net.Listener between them.

// tcpElection is the election timeout of real-time cluster tests.
const tcpElection = 300 * time.Millisecond

// liveCluster is n real nodes in real time.
type liveCluster struct {
	t      testing.TB
	ids    []NodeID
	nodes  map[NodeID]*Node
	trans  map[NodeID]*TCPTransport // nil entries on the in-memory network
	mem    *Network                 // set for an in-memory cluster
	stores map[NodeID]*MemoryStorage
	snaps  map[NodeID]*MemorySnapshotStore
	sms    map[NodeID]*recordingSM
	addrs  map[NodeID]string
	ports  map[NodeID]*heldPort // TCP only: each node's socket, held for the whole test
	faults *faultNet
	tweak  func(*TCPConfig)
	logs   *syncBuffer // every transport's log, for asserting reasons
}

// newTCPCluster starts n bootstrapped nodes on loopback TCP. tweak may
// adjust each transport's config.
func newTCPCluster(t testing.TB, n int, tweak func(*TCPConfig)) *liveCluster {
	t.Helper()
	c := newLiveCluster(t, n)
	c.tweak = tweak
	c.faults = newFaultNet()
	c.ports = map[NodeID]*heldPort{}
	for _, id := range c.ids {
		p, err := holdPort()
		if err != nil {
			t.Fatal(err)
		}
		c.ports[id] = p
		c.addrs[id] = p.ln.Addr().String()
		c.faults.addrs[c.addrs[id]] = id
	}
	for _, id := range c.ids {
		c.start(id)
	}
	return c
}

// newMemCluster starts n bootstrapped nodes on the in-memory Network.
func newMemCluster(t testing.TB, n int) *liveCluster {
	c := newLiveCluster(t, n)
	c.mem = NewNetwork(1)
	for _, id := range c.ids {
		c.start(id)
	}
	return c
}

func newLiveCluster(t testing.TB, n int) *liveCluster {
	c := &liveCluster{
		t: t, nodes: map[NodeID]*Node{}, trans: map[NodeID]*TCPTransport{},
		stores: map[NodeID]*MemoryStorage{}, sms: map[NodeID]*recordingSM{},
		snaps: map[NodeID]*MemorySnapshotStore{},
		addrs: map[NodeID]string{}, logs: &syncBuffer{},
	}
	var conf Configuration
	for i := 1; i <= n; i++ {
		c.ids = append(c.ids, NodeID(i))
		conf.Servers = append(conf.Servers, Server{ID: NodeID(i)})
	}
	for _, id := range c.ids {
		c.stores[id] = NewMemoryStorage()
		c.snaps[id] = NewMemorySnapshotStore()
		if err := Bootstrap(c.stores[id], conf); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.closeAll)
	return c
}

// tcpConfig is the transport config of node id: short timeouts so that
// hostile-input tests finish quickly.
func (c *liveCluster) tcpConfig(id NodeID) TCPConfig {
	peers := map[NodeID]string{}
	for _, p := range c.ids {
		if p != id {
			peers[p] = c.addrs[p]
		}
	}
	cfg := TCPConfig{
		ID: id, ClusterID: 42, Peers: peers,
		HandshakeTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		DialTimeout: time.Second, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Dial:   c.faults.dialer(id),
		Logger: slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

// start (re)starts node id from its storage, with a fresh transport.
func (c *liveCluster) start(id NodeID) {
	c.t.Helper()
	var tr Transport
	if c.mem != nil {
		tr = c.mem.Join(id)
	} else {
		cfg := c.tcpConfig(id)
		cfg.Listener = c.faults.listener(c.ports[id].lease(), id)
		tt, err := NewTCPTransport(cfg)
		if err != nil {
			c.t.Fatal(err)
		}
		c.trans[id], tr = tt, tt
	}
	sm := &recordingSM{}
	n, err := NewNode(Config{
		ID: id, Storage: c.stores[id], Snapshots: c.snaps[id], StateMachine: sm, Transport: tr,
		ElectionTimeout: tcpElection, Logger: discardLogger(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[id], c.sms[id] = n, sm
}

// crash stops node id and its transport; its storage survives.
func (c *liveCluster) crash(id NodeID) {
	if n := c.nodes[id]; n != nil {
		n.Close()
		c.nodes[id] = nil
	}
	if tr := c.trans[id]; tr != nil {
		tr.Close()
		c.trans[id] = nil
	}
}

func (c *liveCluster) closeAll() {
	for _, id := range c.ids {
		c.crash(id)
	}
	for _, p := range c.ports {
		p.close()
	}
}

// heldPort is a node's listening socket, open from the cluster's start to
// the test's end. Closing it at a crash and listening again at the restart
// would let any listener on the machine asking for port 0 (other tests,
// other packages' tests running in parallel) be given the port in between.
// Each transport of the node gets a lease on the socket: closing the lease
// ends that transport's accepting but keeps the socket. While the node is
// down, connections are accepted and closed at once, so peers see a quick
// failure as from a closed port, not a dial hanging until its timeout.
type heldPort struct {
	ln   net.Listener
	done chan struct{} // closed when the accept loop has ended

	mu  sync.Mutex
	cur *portLease // nil while the node is down
}

func holdPort() (*heldPort, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &heldPort{ln: ln, done: make(chan struct{})}
	go p.acceptLoop()
	return p, nil
}

// acceptLoop is the only caller of the socket's Accept, so that a lease's
// Close can stop its transport's Accept without closing the socket.
func (p *heldPort) acceptLoop() {
	defer close(p.done)
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		l := p.cur
		p.mu.Unlock()
		if l == nil {
			conn.Close()
			continue
		}
		select {
		case l.conns <- conn:
		case <-l.closed:
			conn.Close()
		}
	}
}

// lease returns a listener for the node's next transport.
func (p *heldPort) lease() net.Listener {
	l := &portLease{port: p, conns: make(chan net.Conn), closed: make(chan struct{})}
	p.mu.Lock()
	p.cur = l
	p.mu.Unlock()
	return l
}

// close releases the port at the end of the test.
func (p *heldPort) close() {
	p.ln.Close()
	<-p.done
}

// portLease is the net.Listener a transport gets from a heldPort.
type portLease struct {
	port   *heldPort
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *portLease) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
	case <-l.port.done:
	}
	return nil, net.ErrClosed
}

// Close ends this lease; the socket stays open for the node's restart.
func (l *portLease) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.port.mu.Lock()
		if l.port.cur == l {
			l.port.cur = nil
		}
		l.port.mu.Unlock()
	})
	return nil
}

func (l *portLease) Addr() net.Addr { return l.port.ln.Addr() }

// waitLeader waits up to 10 s for exactly one leader among the given
// running nodes in the newest term and fails on two leaders in one term.
func (c *liveCluster) waitLeader(among ...NodeID) NodeID {
	c.t.Helper()
	if len(among) == 0 {
		among = c.ids
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		leaders := map[uint64][]NodeID{}
		var newest uint64
		for _, id := range among {
			if n := c.nodes[id]; n != nil {
				if st := n.Status(); st.Role == Leader {
					leaders[st.Term] = append(leaders[st.Term], id)
					newest = max(newest, st.Term)
				}
			}
		}
		for term, ls := range leaders {
			if len(ls) > 1 {
				c.t.Fatalf("term %d has leaders %v", term, ls)
			}
		}
		if ls := leaders[newest]; len(ls) == 1 {
			return ls[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no leader among %v within 10s", among)
	return None
}

// propose submits cmd through whichever node leads, retrying for up to
// 10 s, and waits until want nodes applied it. It returns the index.
func (c *liveCluster) propose(cmd string, want int) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	index, ok := proposeToLeader(c.ids, c.nodes, cmd, deadline, func(index uint64) bool {
		return c.waitApplied(index, cmd, want, deadline)
	})
	if !ok {
		c.t.Fatalf("proposal %q not applied on %d nodes within 10s", cmd, want)
	}
	return index
}

// waitApplied waits until want nodes applied cmd at index, checking that no
// node applied anything else there.
func (c *liveCluster) waitApplied(index uint64, cmd string, want int, deadline time.Time) bool {
	c.t.Helper()
	for time.Now().Before(deadline) {
		count := 0
		for _, id := range c.ids {
			if got, ok := c.sms[id].at(index); ok {
				if got != cmd {
					c.t.Fatalf("node %d applied %q at %d, want %q", id, got, index, cmd)
				}
				count++
			}
		}
		if count >= want {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// totalStats sums the running transports' counters.
func (c *liveCluster) totalStats() TCPStats {
	var s TCPStats
	for _, tr := range c.trans {
		if tr == nil {
			continue
		}
		x := tr.Stats()
		s.FramesIn += x.FramesIn
		s.FramesOut += x.FramesOut
		s.DecodeErrors += x.DecodeErrors
		s.WriteErrors += x.WriteErrors
		s.DialErrors += x.DialErrors
		s.HandshakesRejected += x.HandshakesRejected
	}
	return s
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = testutil.SyncBuffer

// eventually polls cond until it holds or d passes.
var eventually = testutil.Eventually
