package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/raftline/raft"
	"github.com/raftline/raft/wal"
)

// This file wires one key-value node together — storage, transport, raft
// node, state machine, HTTP server — and, for the single-process mode, a
// whole cluster of them on the in-memory network.

// nodeConfig is what startNode needs to know about one node.
type nodeConfig struct {
	ID raft.NodeID
	// HTTPAddr is where the HTTP API listens. Port 0 picks a free port (the
	// tests use it); the address actually bound is what other nodes
	// redirect clients to.
	HTTPAddr string
	// RaftAddr is the node's transport address (multi-process mode only).
	RaftAddr string
	// RaftListener and HTTPListener, if set, are sockets already listening
	// (inherited, see --raft-listen-fd) to serve on instead of binding
	// RaftAddr and HTTPAddr; HTTPAddr is then published as given.
	// startNode owns them: they are closed when the node stops or fails
	// to start.
	RaftListener, HTTPListener net.Listener
	// ClusterID is checked in every TCP handshake (multi-process mode
	// only), so that nodes of two clusters sharing a network never talk.
	ClusterID uint64
	// Peers is the initial configuration, written to fresh storage.
	Peers raft.Configuration
	// DataDir holds the node's WAL. Empty means memory, which only the
	// single-process mode allows.
	DataDir string
	// Network is the in-memory network of the single-process mode; nil in
	// multi-process mode.
	Network *raft.Network

	ElectionTimeout time.Duration
	// RequestTimeout bounds how long an HTTP request waits for raft.
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// errNeedData is why a node on a real network cannot keep its log in
// memory. parseOptions already insists on --data; this guards startNode.
var errNeedData = errors.New("multi-process mode needs a data directory (--data): " +
	"a node that forgets its vote or its log on restart can break safety")

// newTransport chooses how the node talks to its peers: the in-memory
// network in single-process mode, TCP otherwise. The second result closes
// it.
func newTransport(cfg nodeConfig) (raft.Transport, func() error, error) {
	if cfg.Network != nil {
		// The in-memory network needs no closing: a node that stops simply
		// stops reading its inbox.
		return cfg.Network.Join(cfg.ID), func() error { return nil }, nil
	}
	peers := make(map[raft.NodeID]string)
	for _, s := range cfg.Peers.Servers {
		if s.ID != cfg.ID {
			peers[s.ID] = s.Address
		}
	}
	t, err := raft.NewTCPTransport(raft.TCPConfig{
		ID: cfg.ID, ClusterID: cfg.ClusterID, ListenAddr: cfg.RaftAddr, Listener: cfg.RaftListener,
		Peers: peers, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("node %d: %w", cfg.ID, err)
	}
	return t, t.Close, nil
}

// newStorage chooses where the node keeps its log and hard state: the WAL
// in cfg.DataDir, or memory when there is none (single-process mode
// without --data, whose state then does not survive a restart). The second
// result closes it.
func newStorage(cfg nodeConfig) (raft.Storage, func() error, error) {
	if cfg.DataDir == "" {
		if cfg.Network == nil {
			return nil, nil, errNeedData
		}
		return raft.NewMemoryStorage(), func() error { return nil }, nil
	}
	// The WAL locks the directory, so a second process started by mistake
	// on the same --data fails here instead of corrupting the log.
	w, err := wal.Open(cfg.DataDir, wal.Options{SegmentSize: walSegmentSize, Logger: cfg.Logger})
	if err != nil {
		return nil, nil, fmt.Errorf("node %d: opening the WAL in %s: %w", cfg.ID, cfg.DataDir, err)
	}
	if err := checkIdentity(cfg.DataDir, cfg.ID, cfg.ClusterID); err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("node %d: %w", cfg.ID, err)
	}
	return w, w.Close, nil
}

// walSegmentSize is smaller than the WAL's 64 MiB default: each segment is
// preallocated in full and read in full on recovery, and this example's
// logs are small, so the default would cost a tutorial reader 64 MiB of
// disk per node and a slower restart for nothing.
const walSegmentSize = 4 << 20

// kvNode is one running member of the key-value service.
type kvNode struct {
	id       raft.NodeID
	raft     *raft.Node
	sm       *kvStateMachine
	httpAddr string // the address the HTTP API is bound to
	srv      *http.Server
	logger   *slog.Logger
	// recovered is true when the node started from existing storage
	// rather than bootstrapping.
	recovered bool

	closeTransport func() error
	closeStorage   func() error
	stopWatch      func()
	stopClock      func()
	served         chan struct{} // closed when srv.Serve returned
}

// startNode starts one node and its HTTP API. On error nothing is left
// running.
func startNode(cfg nodeConfig) (_ *kvNode, err error) {
	var cleanup []func() error
	for _, ln := range []net.Listener{cfg.RaftListener, cfg.HTTPListener} {
		if ln != nil {
			cleanup = append(cleanup, ln.Close)
		}
	}
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				_ = cleanup[i]()
			}
		}
	}()
	// Storage first: the WAL's directory lock is the cheapest way to find
	// out that this --data is already in use, before taking any port.
	storage, closeStorage, err := newStorage(cfg)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, closeStorage)
	transport, closeTransport, err := newTransport(cfg)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, closeTransport)
	// Every initial voter writes the same configuration into fresh storage.
	// Storage that already holds state keeps it: the node is recovering,
	// and the log's configuration wins over --peers, as the spec says.
	recovered := false
	if err := raft.Bootstrap(storage, cfg.Peers); errors.Is(err, raft.ErrAlreadyBootstrapped) {
		recovered = true
	} else if err != nil {
		return nil, fmt.Errorf("bootstrapping node %d: %w", cfg.ID, err)
	}
	// Listen before starting raft, so the real address (port 0 in tests) is
	// known when this node, as leader, records it in the log. An inherited
	// socket may be bound to a wildcard or be reached through a forwarded
	// port, so its own address is not necessarily what clients dial.
	ln, httpAddr := cfg.HTTPListener, cfg.HTTPAddr
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("node %d: %w", cfg.ID, err)
		}
		cleanup = append(cleanup, ln.Close)
		httpAddr = ln.Addr().String()
	}

	sm := newKVStateMachine(defaultSessionTTL)
	rn, err := raft.NewNode(raft.Config{
		ID: cfg.ID, Storage: storage, StateMachine: sm, Transport: transport,
		Snapshots: raft.NewMemorySnapshotStore(), SnapshotEntries: -1,
		ElectionTimeout: cfg.ElectionTimeout, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	n := &kvNode{
		id: cfg.ID, raft: rn, sm: sm, httpAddr: httpAddr, logger: cfg.Logger, recovered: recovered,
		closeTransport: closeTransport, closeStorage: closeStorage,
		served: make(chan struct{}),
	}
	if t, ok := transport.(*raft.TCPTransport); ok {
		syncPeers(t, cfg, rn.Status().Config)
	}
	// The clock this node stamps the commands it proposes with, as leader:
	// the only clock the log's time ever comes from (logclock.go).
	clock := time.Now
	stopping, stop := context.WithCancel(context.Background())
	api := &server{id: cfg.ID, raft: rn, sm: sm, network: cfg.Network, timeout: cfg.RequestTimeout, clock: clock, stopping: stopping}
	n.srv = &http.Server{
		Handler:           api.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	n.srv.RegisterOnShutdown(stop)
	n.stopWatch = n.watchLeadership(clock)
	n.stopClock = goUntilStopped(func(ctx context.Context) { runLogClock(ctx, rn, sm, clock) })
	go func() {
		defer close(n.served)
		if err := n.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("kvexample: HTTP server stopped", "id", n.id, "err", err)
		}
	}()
	return n, nil
}

// syncPeers points the TCP transport at the members of conf, the
// configuration the node recovered from its log, which wins over --peers
// (the transport was built from those): a member missing from --peers gets
// its address, and a --peers entry that is not a member is forgotten.
func syncPeers(t *raft.TCPTransport, cfg nodeConfig, conf raft.Configuration) {
	for _, s := range cfg.Peers.Servers {
		if _, ok := conf.Server(s.ID); !ok && s.ID != cfg.ID {
			t.RemovePeer(s.ID)
		}
	}
	for _, s := range conf.Servers {
		if s.ID == cfg.ID {
			if s.Address != cfg.RaftAddr {
				// The others dial what the log says, not what we listen on.
				cfg.Logger.Warn("kvexample: --raft-addr differs from this node's address in the log; peers will dial the log's",
					"id", cfg.ID, "raft_addr", cfg.RaftAddr, "log_addr", s.Address)
			}
			continue
		}
		if err := t.SetPeer(s.ID, s.Address); err != nil {
			cfg.Logger.Warn("kvexample: cannot add peer to the transport", "id", cfg.ID, "peer", s.ID, "err", err)
		}
	}
	if _, ok := conf.Server(cfg.ID); !ok {
		cfg.Logger.Warn("kvexample: this node is not in the configuration in its log; is --data another node's?",
			"id", cfg.ID, "voters", conf.Voters())
	}
}

// URL is the base URL of the node's HTTP API.
func (n *kvNode) URL() string { return "http://" + n.httpAddr }

// watchLeadership records this node's HTTP address in the replicated state
// each time it becomes leader, so that followers know where to redirect
// clients. It returns a function that stops the watcher.
func (n *kvNode) watchLeadership(clock func() time.Time) (stop func()) {
	events := make(chan raft.Event, 64)
	unsubscribe := n.raft.Subscribe(events)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The node may have won an election before Subscribe: look once.
		if st := n.raft.Status(); st.Role == raft.Leader {
			n.registerHTTPAddr(ctx, clock)
		}
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-events:
				if ev.Type == raft.EventRoleChanged && ev.Role == raft.Leader {
					n.registerHTTPAddr(ctx, clock)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
		unsubscribe()
	}
}

// registerHTTPAddr proposes an opRegister command naming this node's HTTP
// address, retrying briefly while this node still leads.
func (n *kvNode) registerHTTPAddr(ctx context.Context, clock func() time.Time) {
	// An address in our applied state is committed, so every node has it
	// or will: no need to log it again.
	if addr, ok := n.sm.HTTPAddr(n.id); ok && addr == n.httpAddr {
		return
	}
	cmd := command{Op: opRegister, NodeID: uint64(n.id), HTTPAddr: n.httpAddr}
	for attempt := 0; attempt < 5; attempt++ {
		// A new leader's first entry moves the log's clock to its own.
		cmd.Time = stamp(clock)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.raft.Propose(pctx, cmd.encode())
		cancel()
		if err == nil || ctx.Err() != nil || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrClosed) {
			return
		}
		n.logger.Warn("kvexample: recording HTTP address failed, retrying", "id", n.id, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// goUntilStopped runs f on its own goroutine and returns a function that
// cancels f's context and waits for f to return.
func goUntilStopped(f func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// Close stops the node: first the HTTP API (waiting briefly for requests in
// flight), then raft, then the transport and storage raft was using.
func (n *kvNode) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		n.srv.Close()
	}
	<-n.served
	n.stopWatch()
	n.stopClock()
	err := n.raft.Close()
	return errors.Join(err, n.closeTransport(), n.closeStorage())
}

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
