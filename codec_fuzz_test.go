package raft

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Fuzz targets for everything the TCP transport reads from the network.
// Seeds live in testdata/fuzz/<Target>/ and in the f.Add calls below.
//
//	go test -run '^$' -fuzz '^FuzzFrameDecode$' -fuzztime 60s .
//	go test -run '^$' -fuzz '^FuzzHandshake$' -fuzztime 60s .

// fuzzMaxFrame keeps the fuzzer's frames small enough to explore.
const fuzzMaxFrame = 1 << 16

// FuzzFrameDecode feeds arbitrary bytes to the frame reader and message
// decoder, as an authenticated peer could. It must never panic, never hand
// out more entries than the frame could hold, and whatever decodes must
// re-encode to a frame that decodes to the same message.
func FuzzFrameDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		if frame := appendMessageFrame(nil, &m); len(frame) <= fuzzMaxFrame {
			f.Add(frame)
		}
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, wireVersion, frameMessage})
	f.Add([]byte{0, 0, 0, 9, wireVersion, frameMessage, byte(MsgApp), 0x80, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := frameReader{r: bufio.NewReader(bytes.NewReader(data)), max: fuzzMaxFrame}
		for range 8 {
			version, kind, body, err := fr.next()
			if err != nil {
				if len(body) > fuzzMaxFrame {
					t.Fatalf("frame reader returned %d bytes over the limit", len(body))
				}
				return
			}
			var framed, owned, reused Message
			decodeFrame(version, kind, body, &framed, 2) // must not panic either
			errOwned := decodeMessage(body, &owned, true)
			errReused := decodeMessage(body, &reused, false)
			if (errOwned == nil) != (errReused == nil) {
				t.Fatalf("owned and reused decoding disagree: %v vs %v", errOwned, errReused)
			}
			if errOwned != nil {
				if !errors.Is(errOwned, ErrMalformedFrame) {
					t.Fatalf("decode error %v is not ErrMalformedFrame", errOwned)
				}
				continue
			}
			if diff := cmp.Diff(owned, reused, equateEmpty); diff != "" {
				t.Fatalf("owned and reused decoding differ:\n%s", diff)
			}
			if len(reused.Entries) > len(body)/minEntryWireSize {
				t.Fatalf("%d entries from a %d-byte body", len(reused.Entries), len(body))
			}
			again := appendMessage(nil, &reused)
			var round Message
			if err := decodeMessage(again, &round, true); err != nil {
				t.Fatalf("re-encoded message does not decode: %v", err)
			}
			if diff := cmp.Diff(reused, round, equateEmpty); diff != "" {
				t.Fatalf("re-encoding changed the message:\n%s", diff)
			}
		}
	})
}

// FuzzHandshake plays an arbitrary stranger against the acceptor's
// handshake: it must never panic, and must accept only a well-formed hello
// from a known peer of the right cluster, addressed to this node.
func FuzzHandshake(f *testing.F) {
	f.Add(appendHelloFrame(nil, hello{clusterID: 42, from: 2, to: 1, lane: laneBulk}))
	f.Add(appendHelloFrame(nil, hello{clusterID: 41, from: 2, to: 1}))
	f.Add(appendHelloFrame(nil, hello{clusterID: 42, from: 9, to: 1}))
	f.Add(appendAckFrame(nil, ackWrongCluster, "nope"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, wireVersion, frameHello})
	t := fuzzAcceptor()
	f.Fuzz(func(tt *testing.T, data []byte) {
		conn := &scriptedConn{in: bytes.NewReader(data)}
		_, _, h, err := t.acceptHandshake(conn)
		if err == nil {
			if h.clusterID != 42 || h.to != 1 || h.from != 2 || h.lane >= laneCount {
				tt.Fatalf("accepted a hello that should be refused: %+v", h)
			}
			if !bytes.HasPrefix(data[frameHeaderSize:], []byte(helloMagic)) {
				tt.Fatalf("accepted a hello without magic")
			}
		}
		// The dialer's side must survive the same bytes as an answer.
		fr := frameReader{r: bufio.NewReader(bytes.NewReader(data)), max: maxHandshakeFrame}
		if version, kind, body, err := fr.next(); err == nil {
			decodeAck(version, kind, body)
		}
	})
}

// fuzzAcceptor is a transport with just what the acceptor's handshake
// reads: node 1 of cluster 42, knowing node 2.
func fuzzAcceptor() *TCPTransport {
	cfg := TCPConfig{ID: 1, ClusterID: 42, ListenAddr: "unused", Logger: discardLogger()}
	cfg.setDefaults()
	return &TCPTransport{cfg: cfg, ctx: context.Background(), peers: map[NodeID]*tcpPeer{2: {id: 2}}}
}

// scriptedConn is a net.Conn that reads a script and discards writes.
type scriptedConn struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *scriptedConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *scriptedConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *scriptedConn) Close() error                     { return nil }
func (c *scriptedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }
