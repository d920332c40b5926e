package raft

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// These tests attack one node of a running cluster with hostile input and
// check that each attack is refused, counted and logged, and that the node
// still serves afterwards.

// intruder is a node ID the attacked node knows as a transport peer but
// that is not a member of the raft cluster: attacks that need a completed
// handshake use it.
const intruder NodeID = 99

func hostileCluster(t *testing.T) *liveCluster {
	return newTCPCluster(t, 3, func(cfg *TCPConfig) {
		cfg.MaxConnsPerHost = 16
		if cfg.ID == 1 {
			cfg.Peers[intruder] = "" // may connect, never dialed
		}
	})
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// handshakeAs sends h and returns the acceptor's verdict.
func handshakeAs(t *testing.T, c net.Conn, h hello) error {
	t.Helper()
	if _, err := c.Write(appendHelloFrame(nil, h)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	fr := frameReader{r: bufio.NewReader(c), max: maxHandshakeFrame}
	version, kind, body, err := fr.next()
	if err != nil {
		return err
	}
	return decodeAck(version, kind, body)
}

// waitClosedBy fails unless the peer closes c within d.
func waitClosedBy(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			if isTimeout(err) {
				t.Fatalf("connection still open after %v", d)
			}
			return
		}
	}
}

// counterRose waits until get() exceeds before.
func counterRose(t *testing.T, what string, before uint64, get func() uint64) {
	t.Helper()
	eventually(t, 5*time.Second, what+" to be counted", func() bool { return get() > before })
}

func TestTCPHostileInputIsRefusedAndTheNodeKeepsServing(t *testing.T) {
	c := hostileCluster(t)
	c.waitLeader()
	c.propose("warm-up", 3)
	victim := c.trans[1]
	addr := c.addrs[1]
	rejected := func() uint64 { return victim.Stats().HandshakesRejected }
	decodeErrs := func() uint64 { return victim.Stats().DecodeErrors }
	authed := func(t *testing.T) net.Conn {
		conn := dialRaw(t, addr)
		if err := handshakeAs(t, conn, hello{clusterID: 42, from: intruder, to: 1, lane: laneBulk}); err != nil {
			t.Fatalf("intruder's valid handshake refused: %v", err)
		}
		return conn
	}

	attacks := []struct {
		name    string
		counter func() uint64
		attack  func(t *testing.T)
	}{
		{"garbage bytes", rejected, func(t *testing.T) {
			conn := dialRaw(t, addr)
			conn.Write([]byte("GET / HTTP/1.1\r\nHost: raft\r\n\r\n\x00\xff\x13\x37"))
			waitClosedBy(t, conn, 3*time.Second)
		}},
		{"frame claiming 4 GiB before the handshake", rejected, func(t *testing.T) {
			conn := dialRaw(t, addr)
			conn.Write([]byte{0xff, 0xff, 0xff, 0xff, wireVersion, frameHello})
			waitClosedBy(t, conn, 3*time.Second)
		}},
		{"frame claiming 4 GiB after the handshake", decodeErrs, func(t *testing.T) {
			conn := authed(t)
			conn.Write([]byte{0xff, 0xff, 0xff, 0xff, wireVersion, frameMessage})
			waitClosedBy(t, conn, 3*time.Second)
		}},
		{"truncated frame", decodeErrs, func(t *testing.T) {
			conn := authed(t)
			hb := Message{Type: MsgHeartbeat, From: intruder, To: 1, Term: 1}
			frame := appendMessageFrame(nil, &hb)
			conn.Write(frame[:len(frame)-3])
			conn.(*net.TCPConn).CloseWrite()
			waitClosedBy(t, conn, 3*time.Second)
		}},
		{"garbage frame after the handshake", decodeErrs, func(t *testing.T) {
			conn := authed(t)
			frame := []byte{0, 0, 0, 5, wireVersion, frameMessage, 0xee, 0xff, 0xff, 0xff, 0xff}
			conn.Write(frame)
			waitClosedBy(t, conn, 3*time.Second)
		}},
		{"message spoofing another node", decodeErrs, func(t *testing.T) {
			conn := authed(t)
			spoof := Message{Type: MsgVote, From: 2, To: 1, Term: 1000, Index: 1 << 40, LogTerm: 1000}
			conn.Write(appendMessageFrame(nil, &spoof))
			waitClosedBy(t, conn, 3*time.Second)
		}},
		{"wrong cluster ID", rejected, func(t *testing.T) {
			err := handshakeAs(t, dialRaw(t, addr), hello{clusterID: 7, from: 2, to: 1})
			wantRefusal(t, err, ackWrongCluster)
			wantLogged(t, c, "wrong cluster")
		}},
		{"unknown node ID", rejected, func(t *testing.T) {
			err := handshakeAs(t, dialRaw(t, addr), hello{clusterID: 42, from: 77, to: 1})
			wantRefusal(t, err, ackUnknownNode)
			wantLogged(t, c, "node 77 is not a known peer")
		}},
		{"unsupported version", rejected, func(t *testing.T) {
			conn := dialRaw(t, addr)
			frame := appendHelloFrame(nil, hello{clusterID: 42, from: 2, to: 1})
			frame[4] = wireVersion + 7
			conn.Write(frame)
			fr := frameReader{r: bufio.NewReader(conn), max: maxHandshakeFrame}
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			version, kind, body, err := fr.next()
			if err == nil {
				err = decodeAck(version, kind, body)
			}
			wantRefusal(t, err, ackBadVersion)
		}},
		{"slowloris hello, one byte per second", rejected, func(t *testing.T) {
			conn := dialRaw(t, addr)
			trickle(t, conn, appendHelloFrame(nil, hello{clusterID: 42, from: 2, to: 1}), 3*time.Second)
		}},
		{"slowloris frame, one byte per second", func() uint64 { return victim.Stats().ReadTimeouts }, func(t *testing.T) {
			conn := authed(t)
			hb := Message{Type: MsgHeartbeat, From: intruder, To: 1, Term: 1}
			trickle(t, conn, appendMessageFrame(nil, &hb), 3*time.Second)
		}},
	}
	for i, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			before := a.counter()
			a.attack(t)
			counterRose(t, a.name, before, a.counter)
			c.propose(fmt.Sprintf("after-attack-%d", i), 3)
		})
	}
}

// trickle writes data one byte per second until the peer closes the
// connection, which must happen within d.
func trickle(t *testing.T, c net.Conn, data []byte, d time.Duration) {
	t.Helper()
	start := time.Now()
	for i := 0; time.Since(start) < d; i++ {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(data[i%len(data) : i%len(data)+1]); err != nil {
			return // closed by the node
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 64)); err != nil && !isTimeout(err) {
			return // closed by the node
		}
	}
	t.Fatalf("a one-byte-per-second sender was still connected after %v", d)
}

func wantRefusal(t *testing.T, err error, status ackStatus) {
	t.Helper()
	var he *HandshakeError
	if !errors.As(err, &he) || he.status != status {
		t.Fatalf("handshake: err = %v, want a %q refusal", err, status)
	}
}

func wantLogged(t *testing.T, c *liveCluster, reason string) {
	t.Helper()
	eventually(t, 2*time.Second, "refusal reason "+reason+" in the log", func() bool {
		return strings.Contains(c.logs.String(), reason)
	})
}

func TestTCPConnectionFloodIsCappedAndTheNodeKeepsServing(t *testing.T) {
	c := hostileCluster(t)
	c.waitLeader()
	c.propose("warm-up", 3)
	victim := c.trans[1]
	before := victim.Stats()

	const flood = 200
	conns := make([]net.Conn, 0, flood)
	for range flood {
		conn, err := net.DialTimeout("tcp", c.addrs[1], time.Second)
		if err != nil {
			break // the kernel's backlog is full: also a refusal
		}
		conns = append(conns, conn)
	}
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	// At most MaxConnsPerHost connections from 127.0.0.1 are held (the
	// peers' included); the rest are closed at once.
	eventually(t, 5*time.Second, "the flood to be refused", func() bool {
		return victim.Stats().ConnsRefused-before.ConnsRefused >= uint64(len(conns)-16)
	})
	// The established peer connections are untouched: the cluster,
	// victim included, commits while the flood holds its slots.
	c.propose("during-flood", 3)

	// Flood connections that were admitted are closed when their
	// handshake times out; the node then accepts peers again.
	eventually(t, 5*time.Second, "admitted flood connections to time out", func() bool {
		return victim.Stats().HandshakesRejected > before.HandshakesRejected
	})
	for _, conn := range conns {
		conn.Close()
	}
	ok := dialRaw(t, c.addrs[1])
	if err := handshakeAs(t, ok, hello{clusterID: 42, from: intruder, to: 1, lane: laneUrgent}); err != nil {
		t.Fatalf("a known peer's handshake after the flood: %v", err)
	}
	ok.Close()
	c.propose("after-flood", 3)
}

// TestTCPFrameLengthPrefixIsBigEndian pins the wire format's header.
func TestTCPFrameLengthPrefixIsBigEndian(t *testing.T) {
	hb := Message{Type: MsgHeartbeat, From: 1, To: 2, Term: 3}
	frame := appendMessageFrame(nil, &hb)
	if got := binary.BigEndian.Uint32(frame); int(got) != len(frame)-frameHeaderSize {
		t.Fatalf("length prefix %d, body is %d bytes", got, len(frame)-frameHeaderSize)
	}
	if frame[4] != wireVersion || frame[5] != frameMessage {
		t.Fatalf("header version/kind = %d/%d", frame[4], frame[5])
	}
}
