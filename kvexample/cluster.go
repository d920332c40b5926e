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

// This file wires one key-value node together — storage, transport, raft
// node, state machine, HTTP server — and stops it again.

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
	// Peers is the initial configuration, written to empty storage. A node
	// whose storage holds state ignores it (but says how it differs).
	Peers raft.Configuration
	// JoinVia is the HTTP address of a member of a running cluster: a node
	// whose storage is empty joins that cluster instead of bootstrapping.
	JoinVia string
	// DataDir holds the node's WAL and snapshots. Empty means memory,
	// which only the single-process mode allows.
	DataDir string
	// Network is the in-memory network of the single-process mode; nil in
	// multi-process mode.
	Network *raft.Network
	// LinkDelay, in single-process mode, holds back each message from
	// another node for this long (the lab's slow links); nil: none.
	LinkDelay func(from raft.NodeID) time.Duration
	// Lab is the single-process mode's fault injector, which also feeds
	// the /ui page there; nil in multi-process mode.
	Lab *lab
	// Storage, if set, is the node's storage, kept by the caller across
	// restarts (the single-process mode's crash and restart, in memory).
	Storage *nodeStorage

	ElectionTimeout time.Duration
	// RequestTimeout bounds how long an HTTP request waits for raft.
	RequestTimeout time.Duration
	// SnapshotEntries and SnapshotTrailing are raft.Config's (0: the
	// library's defaults, negative: none).
	SnapshotEntries, SnapshotTrailing int
	// SnapshotInterval is raft.Config's (0: the library's default).
	SnapshotInterval time.Duration
	// MaxClockDrift is the drift rate lease reads assume (0: the default).
	MaxClockDrift float64
	// TransferTimeout, when positive, makes a leader that is being stopped
	// hand leadership over first, waiting at most this long.
	TransferTimeout time.Duration
	Logger          *slog.Logger
}

// kvNode is one running member of the key-value service.
type kvNode struct {
	id       raft.NodeID
	raft     *raft.Node
	sm       *kvStateMachine
	api      *server
	httpAddr string // the address the HTTP API is bound to
	srv      *http.Server
	logger   *slog.Logger
	// recovered is true when the node started from existing storage, and
	// joining when it started empty and waits to be added to a cluster.
	recovered, joining bool
	// recoveredState is what a recovered node read back from its storage
	// before it could hear from any peer: its last index and term, and
	// its configuration.
	recoveredState raft.Status
	// transferTimeout is nodeConfig.TransferTimeout.
	transferTimeout time.Duration

	// removed is closed once the node knows it was removed from the
	// cluster (removal.go).
	removed     chan struct{}
	removedOnce sync.Once

	closeTransport func() error
	closeStorage   func() error
	stoppers       []func() // background goroutines, stopped in reverse
	served         chan struct{}
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
	storage, err := newStorage(cfg)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, storage.close)
	start, err := prepareStorage(cfg, storage)
	if err != nil {
		return nil, err
	}
	// What a recovered node read back, taken before its transport can
	// deliver anything: a leader catching it up would change it at once.
	var recovered raft.Status
	if start.recovered {
		if recovered, err = storedState(storage.log); err != nil {
			return nil, fmt.Errorf("node %d: reading its storage: %w", cfg.ID, err)
		}
	}
	contact := &contactTracker{}
	transport, closeTransport, err := newTransport(cfg, start.peers, contact)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, closeTransport)
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
	rn, err := raft.NewNode(raftConfig(cfg, storage, transport, sm, start.join))
	if err != nil {
		return nil, err
	}
	n := &kvNode{
		id: cfg.ID, raft: rn, sm: sm, httpAddr: httpAddr, logger: cfg.Logger,
		recovered: start.recovered, joining: start.join, transferTimeout: cfg.TransferTimeout,
		removed: make(chan struct{}), closeTransport: closeTransport, closeStorage: storage.close,
		served: make(chan struct{}),
	}
	if start.recovered {
		// The configuration is the log's and the snapshot's, as the node
		// read them; only a change made while it was down and received in
		// this instant could differ.
		recovered.Config = rn.Status().Config
		n.recoveredState = recovered
		warnPeersDiffer(cfg, recovered.Config)
	}
	n.serve(cfg, ln, contact, storage.log)
	return n, nil
}

// storedState returns the last index and the term in st.
func storedState(st raft.Storage) (raft.Status, error) {
	last, err := st.LastIndex()
	if err != nil {
		return raft.Status{}, err
	}
	hs, err := st.InitialState()
	if err != nil {
		return raft.Status{}, err
	}
	return raft.Status{LastIndex: last, Term: hs.Term}, nil
}

// raftConfig is the library's configuration for the node.
func raftConfig(cfg nodeConfig, st nodeStorage, tr raft.Transport, sm raft.StateMachine, join bool) raft.Config {
	drift := cfg.MaxClockDrift
	if drift == 0 {
		drift = defaultMaxClockDrift
	}
	return raft.Config{
		ID: cfg.ID, Storage: st.log, StateMachine: sm, Transport: tr, Snapshots: st.snaps,
		SnapshotEntries: cfg.SnapshotEntries, SnapshotTrailing: cfg.SnapshotTrailing,
		SnapshotInterval: cfg.SnapshotInterval,
		ElectionTimeout:  cfg.ElectionTimeout, Join: join,
		// Lease reads need every node to keep the lease's promise (no vote
		// for an election timeout after hearing from the leader), so they
		// are on, with the same drift bound, on every node.
		LeaseReads: true, MaxClockDrift: drift,
		CloseTransferTimeout: max(cfg.TransferTimeout, 0),
		Logger:               cfg.Logger,
	}
}

// serve starts the node's HTTP API and its background work.
func (n *kvNode) serve(cfg nodeConfig, ln net.Listener, contact *contactTracker, log raft.Storage) {
	// The clock this node stamps the commands it proposes with, as leader:
	// the only clock the log's time ever comes from (logclock.go).
	clock := time.Now
	stopping, stop := context.WithCancel(context.Background())
	heartbeat := cfg.ElectionTimeout / 10 // the library's default
	n.api = &server{
		id: cfg.ID, raft: n.raft, sm: n.sm, network: cfg.Network, timeout: cfg.RequestTimeout,
		changeTimeout: max(cfg.RequestTimeout, membershipTimeout),
		clock:         clock, stopping: stopping, contact: contact, silentAfter: silentHeartbeats * heartbeat,
		removed: n.removed, log: log, lab: cfg.Lab,
	}
	n.api.metrics = newNodeMetrics(n.api)
	if cfg.Lab != nil {
		n.api.ui = cfg.Lab.ui
	} else {
		url := n.URL()
		n.api.ui = &uiHandler{
			src:   remoteSource{s: n.api, url: url},
			write: func(ctx context.Context, key, value string) writeResult { return putVia(ctx, url, key, value) },
		}
	}
	n.srv = &http.Server{
		Handler:           n.api.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	n.srv.RegisterOnShutdown(stop)
	n.stoppers = append(n.stoppers,
		n.watchEvents(clock),
		goUntilStopped(func(ctx context.Context) { runLogClock(ctx, n.raft, n.sm, clock) }),
		goUntilStopped(func(ctx context.Context) { n.watchMembership(ctx, cfg.ElectionTimeout) }),
	)
	go func() {
		defer close(n.served)
		if err := n.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("kvexample: HTTP server stopped", "id", n.id, "err", err)
		}
	}()
}

// silentHeartbeats is how many heartbeat intervals without a message from
// the leader make a follower stop redirecting clients to it: a few lost
// heartbeats are normal, half an election timeout of silence is not.
const silentHeartbeats = 5

// membershipTimeout bounds a membership change, which may have to catch a
// new server up first (raft.Node.AddVoter).
const membershipTimeout = 30 * time.Second

// URL is the base URL of the node's HTTP API.
func (n *kvNode) URL() string { return "http://" + n.httpAddr }

// Removed is closed once the node knows it was removed from the cluster.
func (n *kvNode) Removed() <-chan struct{} { return n.removed }

// markRemoved records that the node was removed, and why we know.
func (n *kvNode) markRemoved(how string) {
	n.removedOnce.Do(func() {
		n.logger.Warn("kvexample: this node was removed from the cluster", "id", n.id, "learned", how)
		close(n.removed)
	})
}

// watchEvents acts on the node's events: it records this node's HTTP
// address in the replicated state each time it becomes leader, so that
// followers know where to redirect clients, and notices a removal. It
// returns a function that stops the watcher.
func (n *kvNode) watchEvents(clock func() time.Time) (stop func()) {
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
				switch {
				case ev.Type == raft.EventRoleChanged && ev.Role == raft.Leader:
					n.registerHTTPAddr(ctx, clock)
				case ev.Type == raft.EventRemoved:
					n.markRemoved("a committed configuration leaves it out")
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

// Close stops the node. A leader first hands leadership over (when
// configured to), while its HTTP API still answers: requests meanwhile are
// told to retry, then redirected to the new leader. Then the HTTP API
// stops (waiting briefly for requests in flight), then raft, then the
// transport and storage raft was using.
func (n *kvNode) Close() error {
	n.handOver()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		n.srv.Close()
	}
	<-n.served
	for i := len(n.stoppers) - 1; i >= 0; i-- {
		n.stoppers[i]()
	}
	// raft.Node.Close hands over too (CloseTransferTimeout), should this
	// node have been elected again meanwhile.
	err := n.raft.Close()
	return errors.Join(err, n.closeTransport(), n.closeStorage())
}

// handOver transfers leadership away from this node if it leads and
// graceful transfer is on.
func (n *kvNode) handOver() {
	if n.transferTimeout <= 0 || n.raft.Status().Role != raft.Leader {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.transferTimeout)
	defer cancel()
	to, err := n.raft.TransferLeadership(ctx, raft.None)
	if err != nil {
		n.logger.Warn("kvexample: could not hand leadership over before stopping", "id", n.id, "err", err)
		return
	}
	n.logger.Info("kvexample: handed leadership over before stopping", "id", n.id, "to", to)
}
