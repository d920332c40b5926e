package raft

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the TCP transport's public face: configuration, Send,
// Receive, peer management, Close and counters. tcp_outbound.go holds the
// per-peer lane writers (dial, handshake, backoff, batching) and
// tcp_inbound.go the listener side (admission, handshake, frame reading).
//
// Every connection carries messages one way, from the dialer to the
// acceptor, so a node dials two connections to each peer, one per lane,
// and accepts two from it. Responses travel on the responder's own urgent
// connection. One-way connections keep each side's goroutines simple (one
// writer, one reader) and make a partition of one direction a matter of one
// connection.

// TCPConfig configures a TCPTransport. ID, ClusterID and ListenAddr (or
// Listener) are required; every other field has a default suited to a LAN.
type TCPConfig struct {
	// ID is this node's ID; it is sent in every handshake.
	ID NodeID
	// ClusterID must match on both sides of a connection; it keeps nodes
	// of different clusters that share a network from talking.
	ClusterID uint64
	// ListenAddr is the address to listen on, e.g. "127.0.0.1:0".
	ListenAddr string
	// Listener, if set, is used instead of listening on ListenAddr (socket
	// activation, tests wrapping connections). The transport closes it.
	Listener net.Listener
	// Peers maps each other node to its address. A peer with an empty
	// address may connect to this node but is never dialed.
	Peers map[NodeID]string

	// TLS, if set, wraps every connection: it is used as the server config
	// for accepted connections and, cloned with ServerName defaulted to the
	// peer's host, as the client config for dialed ones. For mutual TLS set
	// Certificates, RootCAs, ClientCAs and ClientAuth =
	// tls.RequireAndVerifyClientCert.
	TLS *tls.Config
	// VerifyPeerIdentity (TLS only) also checks that the peer's certificate
	// names the node ID it claims: by default it must carry the URI SAN
	// PeerURI(ClusterID, id). Both sides check: the acceptor checks the
	// dialer's client certificate against the ID in its hello, the dialer
	// checks the server certificate against the node it meant to reach.
	VerifyPeerIdentity bool
	// VerifyPeerCert, if set, replaces the PeerURI check of
	// VerifyPeerIdentity with the caller's own convention.
	VerifyPeerCert func(id NodeID, cert *x509.Certificate) error

	// Dial, if set, replaces net.Dialer.DialContext (tests injecting
	// faults, proxies). It must honour ctx.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// MaxFrameSize bounds a frame's body, both ways: a larger frame closes
	// the connection that sent it, and a larger message is dropped before
	// it is written. Default DefaultMaxFrameSize (64 MiB).
	MaxFrameSize uint32
	// DialTimeout bounds connecting, including the TLS handshake.
	// Default 3s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the whole handshake of an accepted
	// connection (TLS and hello) and the dialer's wait for the answer.
	// Default 5s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each write; a peer that stops reading for this
	// long has its connection closed and redialled. Default 10s.
	WriteTimeout time.Duration
	// ReadTimeout bounds reading one frame once its first byte arrived, so
	// a peer trickling bytes cannot hold a connection. Default 30s.
	ReadTimeout time.Duration
	// IdleTimeout closes a dialed connection unused this long; an accepted
	// connection is closed after twice as long without a frame, so that the
	// dialer, which knows, is normally the side that closes. Default 2m.
	IdleTimeout time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential delay
	// between failed dials to one peer. Defaults 50ms and 1s: a peer back
	// from a restart is redialled well within an election timeout (and at
	// once when it connects to this node first).
	BackoffMin time.Duration
	BackoffMax time.Duration

	// UrgentQueue and BulkQueue size each peer's outgoing lanes, in
	// messages. A full urgent lane drops (a late heartbeat is worthless); a
	// full bulk lane makes Send wait. The bulk default, 1024, exceeds the
	// node's default append window so Send waits only on a stalled peer.
	// Defaults 256 and 1024.
	UrgentQueue int
	BulkQueue   int
	// RecvQueue sizes the Receive channel. Default 4096.
	RecvQueue int
	// MaxConnsPerHost caps simultaneous accepted connections from one IP
	// address, handshaking or not; further ones are closed at once.
	// Default 64.
	MaxConnsPerHost int
	// MaxConns caps all simultaneous accepted connections. Default 1024.
	MaxConns int

	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *TCPConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	def(&c.DialTimeout, 3*time.Second)
	def(&c.HandshakeTimeout, 5*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.ReadTimeout, 30*time.Second)
	def(&c.IdleTimeout, 2*time.Minute)
	def(&c.BackoffMin, 50*time.Millisecond)
	def(&c.BackoffMax, time.Second)
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	defInt(&c.UrgentQueue, 256)
	defInt(&c.BulkQueue, 1024)
	defInt(&c.RecvQueue, 4096)
	defInt(&c.MaxConnsPerHost, 64)
	defInt(&c.MaxConns, 1024)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *TCPConfig) validate() error {
	switch {
	case c.ID == None:
		return errors.New("raft: TCPConfig.ID must be non-zero")
	case c.ListenAddr == "" && c.Listener == nil:
		return errors.New("raft: TCPConfig needs ListenAddr or Listener")
	case c.MaxFrameSize < maxHandshakeFrame:
		return fmt.Errorf("raft: TCPConfig.MaxFrameSize must be at least %d", maxHandshakeFrame)
	case c.VerifyPeerIdentity && c.TLS == nil:
		return errors.New("raft: TCPConfig.VerifyPeerIdentity needs TLS")
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return errors.New("raft: TCPConfig backoff bounds must be positive and ordered")
	case c.UrgentQueue < 1 || c.BulkQueue < 1 || c.RecvQueue < 1 || c.MaxConnsPerHost < 1 || c.MaxConns < 1:
		return errors.New("raft: TCPConfig queue sizes and connection caps must be positive")
	}
	for id := range c.Peers {
		if id == None || id == c.ID {
			return fmt.Errorf("raft: TCPConfig.Peers lists invalid peer %d", id)
		}
	}
	return nil
}

// TCPStats counts a TCPTransport's traffic and trouble since it started.
type TCPStats struct {
	// FramesIn/BytesIn count message frames read (bytes include headers);
	// FramesOut/BytesOut those written.
	FramesIn, BytesIn   uint64
	FramesOut, BytesOut uint64
	// ConnsAccepted counts inbound connections admitted; ConnsRefused those
	// closed at once for exceeding MaxConns or MaxConnsPerHost.
	ConnsAccepted, ConnsRefused uint64
	// ConnsDialed counts outbound connections established (handshake
	// accepted); DialErrors failed attempts, refusals included.
	ConnsDialed, DialErrors uint64
	// HandshakesRejected counts inbound connections refused at the
	// handshake: bad TLS, wrong version, cluster or node, bad identity,
	// malformed or late hello.
	HandshakesRejected uint64
	// DecodeErrors counts inbound connections closed for a bad frame:
	// malformed, oversized, truncated, or a message not from the
	// authenticated peer.
	DecodeErrors uint64
	// ReadTimeouts counts connections closed because a frame did not
	// arrive in ReadTimeout; IdleClosed those closed for idleness.
	ReadTimeouts, IdleClosed uint64
	// WriteErrors counts outbound connections lost while writing.
	WriteErrors uint64
	// Dropped counts messages given up: a full urgent lane or receive
	// queue, a peer in dial backoff, a message over MaxFrameSize, or queued
	// messages lost with a connection.
	Dropped uint64
}

// tcpCounters is TCPStats as atomics.
type tcpCounters struct {
	framesIn, bytesIn, framesOut, bytesOut      atomic.Uint64
	connsAccepted, connsRefused                 atomic.Uint64
	connsDialed, dialErrors, handshakesRejected atomic.Uint64
	decodeErrors, readTimeouts, idleClosed      atomic.Uint64
	writeErrors, dropped                        atomic.Uint64
}

// TCPTransport is a Transport over TCP (optionally TLS). Create it with
// NewTCPTransport; it listens and dials until Close. All methods are safe
// for concurrent use.
type TCPTransport struct {
	cfg  TCPConfig
	log  *slog.Logger
	ln   net.Listener
	recv chan Message

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu      sync.Mutex
	closed  bool
	peers   map[NodeID]*tcpPeer
	conns   map[net.Conn]struct{} // every open connection, closed by Close
	perHost map[string]int        // accepted connections per remote IP
	nIn     int                   // accepted connections in total
	inbound map[inboundKey]net.Conn

	stats tcpCounters
}

// tcpPeer is one remote node: its address and its two outgoing lanes.
type tcpPeer struct {
	id    NodeID
	lanes [laneCount]*outLane
}

// inboundKey names an authenticated accepted connection: one per peer and
// lane, a newer one replacing an older (the dialer reconnected).
type inboundKey struct {
	peer NodeID
	lane laneKind
}

// NewTCPTransport listens on cfg.ListenAddr (or uses cfg.Listener) and
// starts serving. Peers are dialed lazily, on their first message.
func NewTCPTransport(cfg TCPConfig) (*TCPTransport, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
			return nil, fmt.Errorf("raft: tcp transport listen: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &TCPTransport{
		cfg: cfg, ln: ln, ctx: ctx, cancel: cancel,
		log:     cfg.Logger.With("transport", "tcp", "node", cfg.ID),
		recv:    make(chan Message, cfg.RecvQueue),
		peers:   make(map[NodeID]*tcpPeer),
		conns:   make(map[net.Conn]struct{}),
		perHost: make(map[string]int),
		inbound: make(map[inboundKey]net.Conn),
	}
	t.cfg.Peers = nil // the peers map is the source of truth from now on
	for id, addr := range cfg.Peers {
		t.addPeerLocked(id, addr)
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

// Addr returns the address the transport listens on (with the real port
// when ListenAddr asked for port 0).
func (t *TCPTransport) Addr() net.Addr { return t.ln.Addr() }

// Receive implements Transport.
func (t *TCPTransport) Receive() <-chan Message { return t.recv }

// Send implements Transport. It queues m on its peer's lane and returns; it
// waits only when the bulk lane is full, and then no longer than ctx allows.
// It fails at once, without queueing, for an unknown peer, a peer in dial
// backoff (its error says why the last dial failed) and a message larger
// than MaxFrameSize.
func (t *TCPTransport) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil && t.ctx.Err() == nil {
		return err
	}
	l, err := t.laneFor(&m)
	if err != nil {
		return err
	}
	select {
	case l.q <- m:
		return nil
	default:
	}
	if l.kind == laneUrgent {
		t.stats.dropped.Add(1)
		return errLaneFull
	}
	select {
	case l.q <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.stop:
		return fmt.Errorf("%w: node %d was removed", ErrUnknownPeer, m.To)
	case <-t.ctx.Done():
		return ErrTransportClosed
	}
}

// trySend implements directSender: Send without waiting, dropping a
// message whose lane (bulk included) is full. The node's append window is
// smaller than BulkQueue, so the bulk lane fills only when a peer stalls.
func (t *TCPTransport) trySend(m Message) error {
	l, err := t.laneFor(&m)
	if err != nil {
		return err
	}
	select {
	case l.q <- m:
		return nil
	default:
		t.stats.dropped.Add(1)
		return errLaneFull
	}
}

// laneFor checks m, stamps it with our ID and returns the lane it goes on.
// It fails, without queueing, when the transport is closed, for an invalid
// type, an unknown peer, a peer in dial backoff and an oversized message.
func (t *TCPTransport) laneFor(m *Message) (*outLane, error) {
	if t.ctx.Err() != nil {
		return nil, ErrTransportClosed
	}
	if !m.Type.Valid() {
		return nil, fmt.Errorf("raft: tcp: cannot send message of type %s", m.Type)
	}
	m.From = t.cfg.ID
	t.mu.Lock()
	p := t.peers[m.To]
	t.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("%w: node %d", ErrUnknownPeer, m.To)
	}
	l := p.lanes[laneOf(m.Type)]
	if err := l.sendable(m); err != nil {
		t.stats.dropped.Add(1)
		return nil, err
	}
	return l, nil
}

// SetPeer adds a peer or changes its address, for membership changes. A
// changed address closes the peer's current connections; the next message
// dials the new one.
func (t *TCPTransport) SetPeer(id NodeID, addr string) error {
	if id == None || id == t.cfg.ID {
		return fmt.Errorf("raft: tcp: invalid peer %d", id)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrTransportClosed
	}
	if p := t.peers[id]; p != nil {
		for _, l := range p.lanes {
			l.setAddr(addr)
		}
		return nil
	}
	t.addPeerLocked(id, addr)
	return nil
}

// RemovePeer forgets a peer: its lanes stop, its queued messages are
// dropped, its connections both ways close, and it may no longer connect.
func (t *TCPTransport) RemovePeer(id NodeID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[id]
	if p == nil {
		return
	}
	delete(t.peers, id)
	for _, l := range p.lanes {
		close(l.stop)
	}
	for lane := range laneCount {
		if c := t.inbound[inboundKey{id, lane}]; c != nil {
			c.Close()
		}
	}
}

// addPeerLocked creates a peer's lanes and starts their writers. Caller
// holds mu (or is the constructor).
func (t *TCPTransport) addPeerLocked(id NodeID, addr string) {
	p := &tcpPeer{id: id}
	for lane := range laneCount {
		size := t.cfg.UrgentQueue
		if lane == laneBulk {
			size = t.cfg.BulkQueue
		}
		l := &outLane{t: t, peer: id, kind: lane, addr: addr,
			q: make(chan Message, size), stop: make(chan struct{}), redial: make(chan struct{}, 1)}
		p.lanes[lane] = l
		t.wg.Add(1)
		go l.run()
	}
	t.peers[id] = p
}

// knownPeer reports whether id may connect.
func (t *TCPTransport) knownPeer(id NodeID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peers[id] != nil
}

// track registers c so Close can interrupt it; it reports false, and the
// caller must close c, once the transport is closed.
func (t *TCPTransport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *TCPTransport) untrack(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
}

// Close stops the listener, every connection and every goroutine, and waits
// for them. Sends in flight and later fail with ErrTransportClosed. The
// Receive channel is not closed (a node may still select on it). Close is
// idempotent.
func (t *TCPTransport) Close() error {
	var err error
	t.once.Do(func() {
		t.cancel()
		err = t.ln.Close()
		t.mu.Lock()
		t.closed = true
		for c := range t.conns {
			c.Close()
		}
		t.mu.Unlock()
	})
	t.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Stats returns a snapshot of the transport's counters.
func (t *TCPTransport) Stats() TCPStats {
	s := &t.stats
	return TCPStats{
		FramesIn: s.framesIn.Load(), BytesIn: s.bytesIn.Load(),
		FramesOut: s.framesOut.Load(), BytesOut: s.bytesOut.Load(),
		ConnsAccepted: s.connsAccepted.Load(), ConnsRefused: s.connsRefused.Load(),
		ConnsDialed: s.connsDialed.Load(), DialErrors: s.dialErrors.Load(),
		HandshakesRejected: s.handshakesRejected.Load(), DecodeErrors: s.decodeErrors.Load(),
		ReadTimeouts: s.readTimeouts.Load(), IdleClosed: s.idleClosed.Load(),
		WriteErrors: s.writeErrors.Load(), Dropped: s.dropped.Load(),
	}
}

// verifyIdentity applies VerifyPeerIdentity to a TLS connection's peer.
func (t *TCPTransport) verifyIdentity(c net.Conn, id NodeID) error {
	if !t.cfg.VerifyPeerIdentity {
		return nil
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return refuse(ackBadIdentity, "connection is not TLS")
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return refuse(ackBadIdentity, "node %d presented no certificate", id)
	}
	verify := t.cfg.VerifyPeerCert
	if verify == nil {
		verify = func(id NodeID, cert *x509.Certificate) error { return verifyPeerURI(t.cfg.ClusterID, id, cert) }
	}
	if err := verify(id, certs[0]); err != nil {
		return refuse(ackBadIdentity, "node %d: %v", id, err)
	}
	return nil
}
