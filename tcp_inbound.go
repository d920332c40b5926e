package raft

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// This file is the accepting side of the TCP transport: admission under
// the connection caps, the handshake, and one reader goroutine per
// connection that decodes frames into Messages for the node. Nothing read
// from the network can panic or allocate beyond MaxFrameSize: a bad frame
// closes its connection and is counted, and the node never sees it.

// readBufferSize is each accepted connection's read buffer.
const readBufferSize = 64 << 10

// acceptLoop admits connections until the listener closes.
func (t *TCPTransport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait rather than spin,
			// as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("raft: tcp accept failed; retrying", "err", err, "delay", delay)
			select {
			case <-time.After(delay):
			case <-t.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		host := remoteHost(c)
		if !t.admit(c, host) {
			t.stats.connsRefused.Add(1)
			t.log.Debug("raft: tcp connection over the cap; closed", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		t.stats.connsAccepted.Add(1)
		t.wg.Add(1)
		go t.serve(c, host)
	}
}

func remoteHost(c net.Conn) string {
	addr := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// admit applies MaxConns and MaxConnsPerHost and tracks c.
func (t *TCPTransport) admit(c net.Conn, host string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.nIn >= t.cfg.MaxConns || t.perHost[host] >= t.cfg.MaxConnsPerHost {
		return false
	}
	t.nIn++
	t.perHost[host]++
	t.conns[c] = struct{}{}
	return true
}

// release closes and forgets an admitted connection.
func (t *TCPTransport) release(c net.Conn, host string) {
	c.Close()
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
	t.nIn--
	if t.perHost[host]--; t.perHost[host] <= 0 {
		delete(t.perHost, host)
	}
}

// serve runs one accepted connection: handshake, then frames until error.
func (t *TCPTransport) serve(raw net.Conn, host string) {
	defer t.wg.Done()
	defer t.release(raw, host)
	c, fr, h, err := t.acceptHandshake(raw)
	if err != nil {
		t.stats.handshakesRejected.Add(1)
		t.log.Warn("raft: tcp refused connection", "remote", raw.RemoteAddr(), "reason", err)
		return
	}
	key := inboundKey{h.from, h.lane}
	if !t.setInbound(key, raw) {
		return
	}
	defer t.clearInbound(key, raw)
	t.readLoop(c, fr, h)
}

// acceptHandshake runs TLS, reads the hello, decides and answers. A
// refusal is answered with its reason when the stream still makes sense.
func (t *TCPTransport) acceptHandshake(raw net.Conn) (net.Conn, *frameReader, hello, error) {
	raw.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	c := raw
	if t.cfg.TLS != nil {
		tc := tls.Server(raw, t.cfg.TLS)
		if err := tc.HandshakeContext(t.ctx); err != nil {
			return nil, nil, hello{}, fmt.Errorf("tls handshake: %w", err)
		}
		c = tc
	}
	// A small reader until the peer is known: a flood of strangers costs
	// little memory. The dialer waits for the ack before sending frames,
	// so nothing may follow the hello in this buffer.
	fr := &frameReader{r: bufio.NewReaderSize(c, 2*maxHandshakeFrame), max: maxHandshakeFrame}
	version, kind, body, err := fr.next()
	if err != nil {
		return nil, nil, hello{}, fmt.Errorf("reading hello: %w", err)
	}
	h, err := decodeHello(version, kind, body)
	if err == nil {
		policy := helloPolicy{clusterID: t.cfg.ClusterID, self: t.cfg.ID, known: t.knownPeer}
		err = policy.check(h)
	}
	if err == nil {
		err = t.verifyIdentity(c, h.from)
	}
	if err == nil && fr.r.Buffered() != 0 {
		err = refuse(ackMalformed, "%d bytes sent before the hello was answered", fr.r.Buffered())
	}
	var refused *HandshakeError
	if errors.As(err, &refused) {
		c.Write(appendAckFrame(nil, refused.status, refused.Reason))
		return nil, nil, hello{}, err
	}
	if err != nil {
		return nil, nil, hello{}, err
	}
	if _, err := c.Write(appendAckFrame(nil, ackOK, "")); err != nil {
		return nil, nil, hello{}, fmt.Errorf("answering hello: %w", err)
	}
	c.SetDeadline(time.Time{})
	fr.r, fr.max = bufio.NewReaderSize(c, readBufferSize), t.cfg.MaxFrameSize
	return c, fr, h, nil
}

// setInbound records an authenticated connection, closing the one it
// replaces. It holds raw connections: closing a TLS one may block.
func (t *TCPTransport) setInbound(key inboundKey, raw net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if old := t.inbound[key]; old != nil {
		old.Close()
	}
	t.inbound[key] = raw
	if p := t.peers[key.peer]; p != nil {
		for _, l := range p.lanes {
			l.peerIsBack()
		}
	}
	return true
}

func (t *TCPTransport) clearInbound(key inboundKey, raw net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inbound[key] == raw {
		delete(t.inbound, key)
	}
}

// readLoop decodes frames from an authenticated peer into the Receive
// channel. Between frames it waits up to twice IdleTimeout; once a frame's
// first byte arrived, the whole frame must within ReadTimeout. A busy
// connection, whose next frame is already buffered, keeps its read
// deadline until a quarter of ReadTimeout is used up, instead of paying to
// reset it for every frame.
func (t *TCPTransport) readLoop(c net.Conn, fr *frameReader, h hello) {
	var m Message
	var readBy time.Time // the frame deadline in force; zero after an idle wait
	for {
		if fr.r.Buffered() == 0 {
			c.SetReadDeadline(time.Now().Add(2 * t.cfg.IdleTimeout))
			if _, err := fr.r.Peek(1); err != nil {
				if isTimeout(err) {
					t.stats.idleClosed.Add(1)
				}
				return
			}
			readBy = time.Time{}
		}
		if now := time.Now(); readBy.Sub(now) < t.cfg.ReadTimeout*3/4 {
			readBy = now.Add(t.cfg.ReadTimeout)
			c.SetReadDeadline(readBy)
		}
		version, kind, body, err := fr.next()
		if err != nil && !isTimeout(err) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, ErrFrameTooLarge) {
			// The frame had begun: whatever cut it (EOF, a reset), the
			// peer sent a truncated frame.
			err = fmt.Errorf("%w: truncated frame: %w", ErrMalformedFrame, err)
		}
		if err == nil {
			err = decodeFrame(version, kind, body, &m, h.from)
		}
		if err != nil {
			t.frameError(c, h, err)
			return
		}
		t.stats.framesIn.Add(1)
		t.stats.bytesIn.Add(uint64(frameHeaderSize + len(body)))
		if !t.deliver(m, h.lane) {
			return
		}
	}
}

// decodeFrame checks a frame read after the handshake and decodes its
// message, which must come from the authenticated peer.
func decodeFrame(version, kind byte, body []byte, m *Message, from NodeID) error {
	if version != wireVersion {
		return malformed("frame of version %d on a version %d connection", version, wireVersion)
	}
	if kind != frameMessage {
		return malformed("frame kind %d after the handshake", kind)
	}
	if err := decodeMessage(body, m, true); err != nil {
		return err
	}
	if m.From != from {
		return malformed("message from node %d on node %d's connection", m.From, from)
	}
	return nil
}

// frameError counts and logs why a connection is being closed.
func (t *TCPTransport) frameError(c net.Conn, h hello, err error) {
	attrs := []any{"peer", h.from, "lane", h.lane, "remote", c.RemoteAddr(), "err", err}
	switch {
	case isTimeout(err):
		t.stats.readTimeouts.Add(1)
		t.log.Warn("raft: tcp frame not received within ReadTimeout; closing", attrs...)
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrMalformedFrame):
		t.stats.decodeErrors.Add(1)
		t.log.Warn("raft: tcp bad frame; closing", attrs...)
	default:
		t.log.Debug("raft: tcp connection lost", attrs...)
	}
}

// deliver hands m to the node. An urgent message is dropped when the
// receive queue is full (the node is swamped; a late heartbeat is
// worthless); a bulk one waits, pushing back on the sender through TCP.
func (t *TCPTransport) deliver(m Message, lane laneKind) bool {
	select {
	case t.recv <- m:
		return true
	default:
	}
	if lane == laneUrgent {
		t.stats.dropped.Add(1)
		return true
	}
	select {
	case t.recv <- m:
		return true
	case <-t.ctx.Done():
		return false
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
