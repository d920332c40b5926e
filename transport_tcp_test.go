package raft

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTestTCP starts a transport for node id on loopback with the given
// peers; tweak may adjust the config.
func newTestTCP(t *testing.T, id NodeID, peers map[NodeID]string, tweak func(*TCPConfig)) *TCPTransport {
	t.Helper()
	cfg := TCPConfig{ID: id, ClusterID: 42, ListenAddr: "127.0.0.1:0", Peers: peers, Logger: discardLogger(),
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	tr, err := NewTCPTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// refusingAddr is a loopback address where nothing listens, for a peer
// that is down. Port 1 is outside the range port 0 is given from and needs
// privileges to bind, so unlike a port closed after use, no other test's
// listener can take it over.
const refusingAddr = "127.0.0.1:1"

// recvWithin returns the next message tr receives, failing after d.
func recvWithin(t *testing.T, tr *TCPTransport, d time.Duration) Message {
	t.Helper()
	select {
	case m := <-tr.Receive():
		return m
	case <-time.After(d):
		t.Fatalf("no message within %v", d)
		return Message{}
	}
}

func TestTCPTransportDeliversBothLanesAndStampsTheSender(t *testing.T) {
	b := newTestTCP(t, 2, map[NodeID]string{1: ""}, nil)
	a := newTestTCP(t, 1, map[NodeID]string{2: b.Addr().String()}, nil)
	app := Message{Type: MsgApp, To: 2, Term: 3, Index: 10, LogTerm: 3, Commit: 9,
		Entries: []Entry{{Index: 11, Term: 3, Data: []byte("x")}}}
	hb := Message{Type: MsgHeartbeat, From: 77, To: 2, Term: 3, Commit: 9}
	for _, m := range []Message{app, hb} {
		if err := a.Send(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	got := map[MessageType]Message{}
	for range 2 {
		m := recvWithin(t, b, 5*time.Second)
		got[m.Type] = m
	}
	if m := got[MsgApp]; m.From != 1 || len(m.Entries) != 1 || string(m.Entries[0].Data) != "x" {
		t.Fatalf("append arrived as %v", m)
	}
	if m := got[MsgHeartbeat]; m.From != 1 {
		t.Fatalf("heartbeat's From = %d, want the sender's ID 1 whatever the caller set", m.From)
	}
	if s := a.Stats(); s.FramesOut != 2 || s.ConnsDialed != 2 {
		t.Fatalf("sender stats %+v, want 2 frames on 2 connections (one per lane)", s)
	}
	if s := b.Stats(); s.FramesIn != 2 || s.BytesIn == 0 {
		t.Fatalf("receiver stats %+v, want 2 frames in", s)
	}
}

func TestTCPSendFailsForUnknownPeerInvalidTypeCancelledContextAndOversizedMessage(t *testing.T) {
	a := newTestTCP(t, 1, map[NodeID]string{2: refusingAddr}, func(c *TCPConfig) { c.MaxFrameSize = 1024 })
	if err := a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 9}); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("send to unknown peer: %v, want ErrUnknownPeer", err)
	}
	if err := a.Send(t.Context(), Message{Type: 0, To: 2}); err == nil {
		t.Error("send of an invalid message type succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := a.Send(ctx, Message{Type: MsgHeartbeat, To: 2}); !errors.Is(err, context.Canceled) {
		t.Errorf("send with a cancelled context: %v, want context.Canceled", err)
	}
	big := Message{Type: MsgApp, To: 2, Entries: []Entry{{Index: 1, Term: 1, Data: make([]byte, 4096)}}}
	if err := a.Send(t.Context(), big); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("send over MaxFrameSize: %v, want ErrFrameTooLarge", err)
	}
}

func TestTCPSendFailsFastWhileThePeerIsDown(t *testing.T) {
	// A backoff of 30 s or more outlasts any pause a loaded machine puts
	// between the failed dial and the sends below; Close cuts it short.
	a := newTestTCP(t, 1, map[NodeID]string{2: refusingAddr}, func(c *TCPConfig) {
		c.BackoffMin, c.BackoffMax = time.Minute, time.Minute
	})
	hb := Message{Type: MsgHeartbeat, To: 2}
	a.Send(t.Context(), hb)
	// DialErrors counts a failure just before the lane is marked down, so
	// waiting for the count and then sending once can race: wait for the
	// refusal itself.
	eventually(t, 5*time.Second, "a send refused while the peer is down", func() bool {
		return a.Send(t.Context(), hb) != nil
	})
	// Fast means without waiting for a dial (DialTimeout, 3 s) or for the
	// backoff to end.
	start := time.Now()
	err := a.Send(t.Context(), hb)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || time.Since(start) > time.Second {
		t.Fatalf("send to a peer in backoff: err %v after %v, want a fast unreachable error", err, time.Since(start))
	}
	if s := a.Stats(); s.DialErrors != 1 {
		t.Fatalf("%d dial errors, want 1: sends to a peer in backoff must not dial", s.DialErrors)
	}
}

// stuckPeer completes handshakes as node 2 but reads only its urgent
// lane: its bulk lane's socket buffers fill and stay full.
type stuckPeer struct {
	ln     net.Listener
	urgent chan Message
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newStuckPeer(t *testing.T) *stuckPeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stuckPeer{ln: ln, urgent: make(chan Message, 100)}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			p.wg.Add(1)
			go p.serve(c)
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *stuckPeer) serve(c net.Conn) {
	defer p.wg.Done()
	fr := frameReader{r: bufio.NewReader(c), max: DefaultMaxFrameSize}
	version, kind, body, err := fr.next()
	if err != nil {
		return
	}
	h, err := decodeHello(version, kind, body)
	if err != nil {
		return
	}
	c.Write(appendAckFrame(nil, ackOK, ""))
	if h.lane == laneBulk {
		return // never read again; close() closes c
	}
	for {
		_, _, body, err := fr.next()
		if err != nil {
			return
		}
		var m Message
		if decodeMessage(body, &m, true) == nil {
			p.urgent <- m
		}
	}
}

func (p *stuckPeer) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// fillBulkLane sends large appends until Send blocks, and returns.
func fillBulkLane(t *testing.T, a *TCPTransport) {
	t.Helper()
	app := Message{Type: MsgApp, To: 2, Entries: []Entry{{Index: 1, Term: 1, Data: make([]byte, 1<<20)}}}
	for i := range 1000 {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		err := a.Send(ctx, app)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if err != nil {
			t.Fatalf("bulk send %d: %v", i, err)
		}
	}
	t.Fatal("1000 MiB went into a peer that reads nothing without Send blocking")
}

func TestTCPUrgentLaneIsNotBlockedByAStuckBulkLane(t *testing.T) {
	p := newStuckPeer(t)
	a := newTestTCP(t, 1, map[NodeID]string{2: p.ln.Addr().String()}, func(c *TCPConfig) {
		c.BulkQueue, c.WriteTimeout = 2, time.Minute
	})
	fillBulkLane(t, a)
	for i := range 5 {
		if err := a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 2, Term: 1, ReadSeq: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		select {
		case m := <-p.urgent:
			if m.ReadSeq != uint64(i+1) {
				t.Fatalf("heartbeat %d arrived as %v", i+1, m)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("heartbeat %d stuck behind the full bulk lane", i+1)
		}
	}
}

func TestTCPBlockedSendReturnsOnCloseWithErrTransportClosed(t *testing.T) {
	p := newStuckPeer(t)
	a := newTestTCP(t, 1, map[NodeID]string{2: p.ln.Addr().String()}, func(c *TCPConfig) {
		c.BulkQueue, c.WriteTimeout = 2, time.Minute
	})
	fillBulkLane(t, a)
	errc := make(chan error, 1)
	go func() {
		// On a loaded machine fillBulkLane may return while the writer
		// still drains into the socket buffers, and a send then goes
		// through: send again until one blocks, which ends only with Close.
		app := Message{Type: MsgApp, To: 2, Entries: []Entry{{Index: 1, Term: 1, Data: make([]byte, 1<<20)}}}
		for {
			if err := a.Send(context.Background(), app); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // let it block
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrTransportClosed) {
			t.Fatalf("blocked send returned %v, want ErrTransportClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("blocked send did not return after Close")
	}
	if err := a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 2}); !errors.Is(err, ErrTransportClosed) {
		t.Fatalf("send after close: %v, want ErrTransportClosed", err)
	}
}

// countingConn counts writes and blocks them while gate is set.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
	gate   chan struct{}
}

func (c *countingConn) Write(p []byte) (int, error) {
	<-c.gate
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func TestTCPWritesAreCoalescedAndFlushedPerBatch(t *testing.T) {
	b := newTestTCP(t, 2, map[NodeID]string{1: ""}, nil)
	var writes atomic.Int64
	gate := make(chan struct{})
	gateOpen := make(chan struct{})
	close(gateOpen)
	var dialed atomic.Int64
	a := newTestTCP(t, 1, map[NodeID]string{2: b.Addr().String()}, func(c *TCPConfig) {
		c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			dialed.Add(1)
			return &handshakeThenGate{countingConn: countingConn{Conn: conn, writes: &writes, gate: gateOpen}, after: gate}, nil
		}
	})
	// The first message dials; the writer then blocks on the gate while
	// 199 more queue up.
	const n = 200
	for i := range n {
		if err := a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 2, Term: 1, ReadSeq: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 2*time.Second, "the dial", func() bool { return dialed.Load() == 1 })
	time.Sleep(50 * time.Millisecond)
	close(gate)
	for i := range n {
		if m := recvWithin(t, b, 5*time.Second); m.ReadSeq != uint64(i+1) {
			t.Fatalf("message %d arrived as %v (out of order or lost)", i+1, m)
		}
	}
	// One write for the hello, then the blocked first message's batch and
	// one more batch for the rest: far fewer writes than messages.
	if w := writes.Load(); w > 5 {
		t.Fatalf("%d messages took %d writes, want them coalesced into a few", n, w)
	}
}

// handshakeThenGate lets the hello through and gates later writes.
type handshakeThenGate struct {
	countingConn
	after chan struct{}
	n     atomic.Int64
}

func (c *handshakeThenGate) Write(p []byte) (int, error) {
	if c.n.Add(1) > 1 {
		<-c.after
	}
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func TestTCPSetPeerRedirectsToTheNewAddress(t *testing.T) {
	b := newTestTCP(t, 2, map[NodeID]string{1: ""}, nil)
	a := newTestTCP(t, 1, map[NodeID]string{2: refusingAddr}, nil)
	a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 2})
	eventually(t, 5*time.Second, "the dial to the wrong address to fail", func() bool { return a.Stats().DialErrors > 0 })
	if err := a.SetPeer(2, b.Addr().String()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a message at the new address", func() bool {
		a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 2, Term: 5})
		select {
		case m := <-b.Receive():
			return m.Term == 5
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	// A peer added at runtime is reachable too.
	c := newTestTCP(t, 3, map[NodeID]string{1: ""}, nil)
	if err := a.SetPeer(3, c.Addr().String()); err != nil {
		t.Fatal(err)
	}
	a.Send(t.Context(), Message{Type: MsgVote, To: 3, Term: 6})
	if m := recvWithin(t, c, 5*time.Second); m.Type != MsgVote || m.From != 1 {
		t.Fatalf("new peer received %v", m)
	}
}

func TestTCPRemovedPeerIsRefused(t *testing.T) {
	b := newTestTCP(t, 2, map[NodeID]string{1: ""}, nil)
	a := newTestTCP(t, 1, map[NodeID]string{2: b.Addr().String()}, nil)
	a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 2})
	recvWithin(t, b, 5*time.Second)
	b.RemovePeer(1)
	eventually(t, 5*time.Second, "the removed peer's reconnection to be refused", func() bool {
		a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 2})
		return b.Stats().HandshakesRejected > 0
	})
	if err := b.Send(t.Context(), Message{Type: MsgHeartbeat, To: 1}); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("send to a removed peer: %v, want ErrUnknownPeer", err)
	}
}

func TestTCPIdleConnectionsAreClosedAndRedialled(t *testing.T) {
	b := newTestTCP(t, 2, map[NodeID]string{1: ""}, nil)
	a := newTestTCP(t, 1, map[NodeID]string{2: b.Addr().String()}, func(c *TCPConfig) { c.IdleTimeout = 100 * time.Millisecond })
	a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 2})
	recvWithin(t, b, 5*time.Second)
	eventually(t, 5*time.Second, "the idle connection to close", func() bool { return a.Stats().IdleClosed > 0 })
	a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 2, Term: 9})
	if m := recvWithin(t, b, 5*time.Second); m.Term != 9 {
		t.Fatalf("after idle close received %v", m)
	}
	if d := a.Stats().ConnsDialed; d != 2 {
		t.Fatalf("%d dials, want 2 (one redial after the idle close)", d)
	}
}

func TestTCPConfigIsValidated(t *testing.T) {
	cases := map[string]TCPConfig{
		"no ID":             {ListenAddr: "127.0.0.1:0"},
		"no address":        {ID: 1},
		"self as peer":      {ID: 1, ListenAddr: "127.0.0.1:0", Peers: map[NodeID]string{1: "x"}},
		"tiny frames":       {ID: 1, ListenAddr: "127.0.0.1:0", MaxFrameSize: 10},
		"identity with TLS": {ID: 1, ListenAddr: "127.0.0.1:0", VerifyPeerIdentity: true},
	}
	for name, cfg := range cases {
		if tr, err := NewTCPTransport(cfg); err == nil {
			tr.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTCPCloseIsIdempotentAndStopsTheListener(t *testing.T) {
	a := newTestTCP(t, 1, nil, nil)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Dialing the old address would not tell: once released, the port may
	// be given to another test's listener at any moment. The socket
	// itself says whether it was closed; the deadline only bounds the
	// wait on one that was not.
	ln := a.ln.(*net.TCPListener)
	ln.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("Accept on a closed transport's listener: %v, want net.ErrClosed", err)
	}
}

// A peer that comes back and connects to us ends our backoff towards it at
// once: a restarted follower hears from its leader before its election
// timeout instead of when a long backoff runs out.
func TestTCPPeerThatConnectsEndsTheBackoffTowardsIt(t *testing.T) {
	// Node 2's address listens but nobody accepts yet: node 1's dial
	// fails its handshake and backs off for about a minute.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := newTestTCP(t, 1, map[NodeID]string{2: ln.Addr().String()}, func(c *TCPConfig) {
		c.BackoffMin, c.BackoffMax = time.Minute, time.Minute
		c.HandshakeTimeout = 100 * time.Millisecond
	})
	hb := Message{Type: MsgHeartbeat, To: 2, From: 1}
	a.Send(t.Context(), hb)
	eventually(t, 5*time.Second, "node 1 backing off from node 2", func() bool {
		return a.Send(t.Context(), hb) != nil
	})

	// Node 2 starts on that listener and sends node 1 a message.
	b := newTestTCP(t, 2, map[NodeID]string{1: a.Addr().String()}, func(c *TCPConfig) { c.Listener = ln })
	if err := b.Send(t.Context(), Message{Type: MsgHeartbeatResp, To: 1, From: 2}); err != nil {
		t.Fatal(err)
	}
	recvWithin(t, a, 5*time.Second)

	// Node 1 reaches node 2 again long before its minute of backoff ends.
	// (A send accepted just as the backoff ends may still be dropped with
	// the backoff's queue: Raft resends, and so does this loop.)
	eventually(t, 5*time.Second, "node 2 receiving from node 1 again", func() bool {
		if a.Send(t.Context(), hb) != nil {
			return false
		}
		select {
		case m := <-b.Receive():
			return m.Type == MsgHeartbeat
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
}
