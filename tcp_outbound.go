package raft

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the dialing side of the TCP transport: one writer goroutine
// per peer and lane owns that lane's connection. It dials on demand, backs
// off after failures, writes queued messages in batches through a
// bufio.Writer, flushing once the queue is empty, and closes the
// connection when it has been idle too long.

// outLane is one peer's lane: a queue and the goroutine draining it.
type outLane struct {
	t    *TCPTransport
	peer NodeID
	kind laneKind
	q    chan Message
	stop chan struct{} // closed by RemovePeer
	// redial is signalled when the address changed: the current connection
	// goes, the next message dials the new address.
	redial chan struct{}

	mu   sync.Mutex
	addr string

	// downUntil (unix nanos) is set while the lane backs off after a
	// failed dial; until then Send fails fast with downErr instead of
	// queueing messages that would only be dropped.
	downUntil atomic.Int64
	downErr   atomic.Pointer[error]

	scratch []byte // encodes frames too large for the bufio.Writer's room
}

// outConn is a dialed connection and whether the peer has closed it.
type outConn struct {
	net.Conn          // raw, or its TLS wrapper
	raw      net.Conn // as tracked by the transport
	bw       *bufio.Writer
	// dead is set by the watcher when the peer closed the connection, so
	// the writer redials before writing rather than losing a batch.
	dead atomic.Bool
	// deadlineSet is when the write deadline was last pushed forward.
	deadlineSet time.Time
}

// extendDeadline pushes the write deadline to WriteTimeout from now, but
// only once a quarter of it has passed: setting a deadline takes a lock in
// the runtime poller, too costly per message, while a write still always
// has at least three quarters of WriteTimeout before a stuck peer is given
// up on.
func (c *outConn) extendDeadline(timeout time.Duration) error {
	now := time.Now()
	if now.Sub(c.deadlineSet) < timeout/4 {
		return nil
	}
	c.deadlineSet = now
	return c.SetWriteDeadline(now.Add(timeout))
}

// writeBufferSize is each dialed connection's coalescing buffer.
const writeBufferSize = 64 << 10

func (l *outLane) address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr
}

func (l *outLane) setAddr(addr string) {
	l.mu.Lock()
	changed := l.addr != addr
	l.addr = addr
	l.mu.Unlock()
	if changed {
		l.downUntil.Store(0) // a new address deserves a try at once
		select {
		case l.redial <- struct{}{}:
		default:
		}
	}
}

// peerIsBack ends a backoff early: the peer just connected to us, so it
// is up again, and a follower that restarted should hear from its leader
// now rather than when the backoff (up to BackoffMax) runs out, which
// could be after its election timeout.
func (l *outLane) peerIsBack() {
	if until := l.downUntil.Load(); until == 0 || time.Now().UnixNano() >= until {
		return
	}
	l.downUntil.Store(0)
	select {
	case l.redial <- struct{}{}:
	default:
	}
}

// sendable fails fast for a message the lane cannot carry now.
func (l *outLane) sendable(m *Message) error {
	if until := l.downUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		err := errors.New("dial failed")
		if p := l.downErr.Load(); p != nil {
			err = *p
		}
		return fmt.Errorf("raft: tcp: node %d unreachable (%s lane): %w", l.peer, l.kind, err)
	}
	if l.kind == laneBulk && messageFrameSize(m)-frameHeaderSize > int(l.t.cfg.MaxFrameSize) {
		return fmt.Errorf("raft: tcp: %s to node %d exceeds MaxFrameSize %d: %w", m.Type, l.peer, l.t.cfg.MaxFrameSize, ErrFrameTooLarge)
	}
	return nil
}

// run is the lane's writer goroutine.
func (l *outLane) run() {
	t := l.t
	defer t.wg.Done()
	var conn *outConn
	closeConn := func() {
		if conn != nil {
			conn.Close()
			t.untrack(conn.raw)
			conn = nil
		}
	}
	defer closeConn()
	idle := time.NewTimer(t.cfg.IdleTimeout)
	defer idle.Stop()
	failures := 0
	for {
		var m Message
		select {
		case m = <-l.q:
		case <-idle.C:
			if conn != nil {
				t.stats.idleClosed.Add(1)
				closeConn()
			}
			continue
		case <-l.redial:
			closeConn()
			continue
		case <-l.stop:
			l.dropQueued()
			return
		case <-t.ctx.Done():
			return
		}
		if conn != nil && conn.dead.Load() {
			closeConn()
		}
		if conn == nil {
			c, err := l.connect()
			if err != nil {
				failures++
				l.backoff(failures, err)
				continue // m is dropped: Raft resends what matters
			}
			conn, failures = c, 0
		}
		if err := l.writeBatch(conn, m); err != nil {
			t.stats.writeErrors.Add(1)
			t.log.Debug("raft: tcp write failed; reconnecting", "peer", l.peer, "lane", l.kind, "err", err)
			closeConn()
		}
		idle.Reset(t.cfg.IdleTimeout)
	}
}

// backoff marks the lane down for a jittered, capped, exponential delay
// and waits it out, dropping what is queued meanwhile.
func (l *outLane) backoff(failures int, err error) {
	t := l.t
	t.stats.dialErrors.Add(1)
	t.stats.dropped.Add(1)
	if failures == 1 {
		t.log.Warn("raft: tcp cannot reach peer; backing off", "peer", l.peer, "lane", l.kind, "err", err)
	} else {
		t.log.Debug("raft: tcp still cannot reach peer", "peer", l.peer, "lane", l.kind, "failures", failures, "err", err)
	}
	d := backoffDelay(t.cfg.BackoffMin, t.cfg.BackoffMax, failures)
	l.downErr.Store(&err)
	l.downUntil.Store(time.Now().Add(d).UnixNano())
	l.dropQueued()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-l.redial:
	case <-l.stop:
	case <-t.ctx.Done():
	}
	l.dropQueued()
}

// backoffDelay is min·2^(failures-1), capped at max, with equal jitter:
// half fixed so retries do not hammer, half random so peers that lost a
// node together do not redial in lockstep.
func backoffDelay(lo, hi time.Duration, failures int) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// dropQueued discards the lane's queue without blocking.
func (l *outLane) dropQueued() {
	for {
		select {
		case <-l.q:
			l.t.stats.dropped.Add(1)
		default:
			return
		}
	}
}

// writeBatch writes m and whatever else is queued, flushing once the queue
// is empty: one syscall per burst, not per message.
func (l *outLane) writeBatch(c *outConn, m Message) error {
	t := l.t
	for {
		if err := c.extendDeadline(t.cfg.WriteTimeout); err != nil {
			return err
		}
		if err := l.writeMessage(c.bw, &m); err != nil {
			return err
		}
		select {
		case m = <-l.q:
			continue
		default:
		}
		// Yield once before paying for a write syscall: messages produced
		// in the same instant (other followers' answers, the next batch)
		// then join this write instead of needing their own.
		runtime.Gosched()
		select {
		case m = <-l.q:
			continue
		default:
		}
		return c.bw.Flush()
	}
}

// writeMessage encodes m straight into the writer's free space when it
// fits (no copy, no allocation), else through the lane's scratch buffer.
func (l *outLane) writeMessage(bw *bufio.Writer, m *Message) error {
	t := l.t
	bound := messageFrameSize(m)
	if bound-frameHeaderSize > int(t.cfg.MaxFrameSize) {
		t.stats.dropped.Add(1)
		t.log.Warn("raft: tcp message exceeds MaxFrameSize; dropped", "peer", l.peer, "type", m.Type, "limit", t.cfg.MaxFrameSize)
		return nil
	}
	var frame []byte
	if bound <= bw.Available() {
		frame = appendMessageFrame(bw.AvailableBuffer(), m)
	} else {
		l.scratch = appendMessageFrame(l.scratch[:0], m)
		frame = l.scratch
		defer func() {
			if cap(l.scratch) > retainLimit {
				l.scratch = nil
			}
		}()
	}
	if _, err := bw.Write(frame); err != nil {
		return err
	}
	t.stats.framesOut.Add(1)
	t.stats.bytesOut.Add(uint64(len(frame)))
	return nil
}

// connect dials the peer, runs TLS and the hello exchange, and starts the
// watcher that notices when the peer closes the connection.
func (l *outLane) connect() (*outConn, error) {
	t := l.t
	addr := l.address()
	if addr == "" {
		return nil, errors.New("no address known")
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
	defer cancel()
	raw, err := t.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if !t.track(raw) {
		raw.Close()
		return nil, ErrTransportClosed
	}
	c, err := l.handshake(ctx, raw, addr)
	if err != nil {
		raw.Close()
		t.untrack(raw)
		return nil, err
	}
	oc := &outConn{Conn: c, raw: raw, bw: bufio.NewWriterSize(c, writeBufferSize)}
	t.stats.connsDialed.Add(1)
	t.wg.Add(1)
	go l.watch(oc)
	return oc, nil
}

func (t *TCPTransport) dial(ctx context.Context, addr string) (net.Conn, error) {
	if t.cfg.Dial != nil {
		return t.cfg.Dial(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// handshake wraps raw in TLS if configured and exchanges hello and ack. The
// returned conn is raw or its TLS wrapper; on error the caller closes raw.
func (l *outLane) handshake(ctx context.Context, raw net.Conn, addr string) (net.Conn, error) {
	t := l.t
	c := raw
	if deadline, ok := ctx.Deadline(); ok {
		raw.SetDeadline(deadline)
	}
	if t.cfg.TLS != nil {
		cfg := t.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if err := t.verifyIdentity(tc, l.peer); err != nil {
			return nil, err
		}
		c = tc
	}
	c.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	h := hello{clusterID: t.cfg.ClusterID, from: t.cfg.ID, to: l.peer, lane: l.kind}
	if _, err := c.Write(appendHelloFrame(nil, h)); err != nil {
		return nil, err
	}
	fr := frameReader{r: bufio.NewReaderSize(c, maxHandshakeFrame), max: maxHandshakeFrame}
	version, kind, body, err := fr.next()
	if err != nil {
		return nil, fmt.Errorf("reading handshake answer: %w", err)
	}
	if err := decodeAck(version, kind, body); err != nil {
		return nil, err
	}
	if fr.r.Buffered() != 0 {
		return nil, malformed("data after the hello ack")
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// watch blocks reading a connection the peer never writes to after the
// handshake; any return means it is gone (closed, reset, or sent garbage).
func (l *outLane) watch(c *outConn) {
	defer l.t.wg.Done()
	var b [1]byte
	c.Read(b[:])
	c.dead.Store(true)
	c.Close()
}
