package raft

import (
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
)

// This file is the TCP transport's handshake: the first frame on every
// connection says which protocol, cluster and node it comes from, and the
// acceptor answers before any Message flows. The frame header, the hello
// and the ack layouts are frozen across protocol versions, so a node can
// always tell a peer of another version why it refuses it.
//
// Hello body (29 bytes): "RFTL", cluster ID uint64, dialer's node ID
// uint64, target node ID uint64, lane byte.
// Ack body: status byte, the acceptor's version byte, uvarint reason length,
// reason (UTF-8, at most maxReasonLen bytes).

// helloMagic opens every hello, so a stray client (an HTTP probe, a port
// scanner) is told apart from a peer with a bug.
const helloMagic = "RFTL"

const helloSize = len(helloMagic) + 8 + 8 + 8 + 1

// maxHandshakeFrame bounds a frame read before the peer is authenticated;
// nothing larger is ever legitimate there.
const maxHandshakeFrame = 512

// maxReasonLen bounds the reason an ack carries.
const maxReasonLen = 255

// laneKind names one of the two connections to a peer.
type laneKind uint8

const (
	// laneUrgent carries heartbeats, votes and every response: small
	// messages whose delay costs elections or read latency.
	laneUrgent laneKind = iota
	// laneBulk carries MsgApp and MsgSnap, pipelined.
	laneBulk

	laneCount
)

func (l laneKind) String() string {
	if l == laneBulk {
		return "bulk"
	}
	return "urgent"
}

// laneOf picks the lane for a message type, the same split the node's
// peerSender makes.
func laneOf(t MessageType) laneKind {
	if t == MsgApp || t == MsgSnap {
		return laneBulk
	}
	return laneUrgent
}

// hello is what a dialer says about itself.
type hello struct {
	clusterID uint64
	from, to  NodeID
	lane      laneKind
}

func appendHelloFrame(dst []byte, h hello) []byte {
	start := len(dst)
	dst = appendFrameHeader(dst, frameHello)
	dst = append(dst, helloMagic...)
	dst = binary.BigEndian.AppendUint64(dst, h.clusterID)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.from))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.to))
	dst = append(dst, byte(h.lane))
	finishFrame(dst, start)
	return dst
}

// ackStatus is the acceptor's verdict on a hello.
type ackStatus uint8

const (
	ackOK ackStatus = iota
	ackBadVersion
	ackWrongCluster
	ackUnknownNode
	ackWrongTarget
	ackBadIdentity
	ackMalformed
)

var ackNames = [...]string{
	ackOK: "ok", ackBadVersion: "unsupported version", ackWrongCluster: "wrong cluster",
	ackUnknownNode: "unknown node", ackWrongTarget: "wrong target node",
	ackBadIdentity: "certificate identity mismatch", ackMalformed: "malformed hello",
}

func (s ackStatus) String() string {
	if int(s) < len(ackNames) {
		return ackNames[s]
	}
	return fmt.Sprintf("ackStatus(%d)", uint8(s))
}

// ErrHandshakeRefused is returned (wrapped in a *HandshakeError) when a
// handshake fails, on either side.
var ErrHandshakeRefused = errors.New("raft: handshake refused")

// HandshakeError says why a connection was refused at the handshake.
// errors.Is(err, ErrHandshakeRefused) is true for it.
type HandshakeError struct {
	status ackStatus
	// Reason is the human-readable cause, as logged and as sent to the peer.
	Reason string
}

// Error implements error.
func (e *HandshakeError) Error() string {
	return fmt.Sprintf("raft: handshake refused (%s): %s", e.status, e.Reason)
}

// Is makes errors.Is(err, ErrHandshakeRefused) true.
func (e *HandshakeError) Is(target error) bool { return target == ErrHandshakeRefused }

func refuse(s ackStatus, format string, args ...any) *HandshakeError {
	reason := fmt.Sprintf(format, args...)
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	return &HandshakeError{status: s, Reason: reason}
}

func appendAckFrame(dst []byte, status ackStatus, reason string) []byte {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	start := len(dst)
	dst = appendFrameHeader(dst, frameHelloAck)
	dst = append(dst, byte(status), wireVersion)
	dst = binary.AppendUvarint(dst, uint64(len(reason)))
	dst = append(dst, reason...)
	finishFrame(dst, start)
	return dst
}

// decodeHello parses a hello frame. It checks only the frame itself; who
// may connect is decided by helloPolicy.check.
func decodeHello(version, kind byte, body []byte) (hello, error) {
	if kind != frameHello {
		return hello{}, refuse(ackMalformed, "first frame has kind %d, want hello", kind)
	}
	if version != wireVersion {
		return hello{}, refuse(ackBadVersion, "peer speaks protocol version %d, this node %d", version, wireVersion)
	}
	if len(body) != helloSize || string(body[:len(helloMagic)]) != helloMagic {
		return hello{}, refuse(ackMalformed, "hello of %d bytes without the %q magic", len(body), helloMagic)
	}
	r := wireReader{b: body, off: len(helloMagic)}
	h := hello{clusterID: r.uint64("cluster"), from: NodeID(r.uint64("from")), to: NodeID(r.uint64("to"))}
	h.lane = laneKind(r.byte("lane"))
	if h.lane >= laneCount {
		return hello{}, refuse(ackMalformed, "unknown lane %d", h.lane)
	}
	return h, nil
}

// decodeAck parses the acceptor's answer and turns a refusal into a
// *HandshakeError carrying the acceptor's reason.
func decodeAck(version, kind byte, body []byte) error {
	if kind != frameHelloAck {
		return fmt.Errorf("%w: answer has frame kind %d, want hello ack", ErrMalformedFrame, kind)
	}
	r := wireReader{b: body}
	status := ackStatus(r.byte("status"))
	peerVersion := r.byte("version")
	reason := r.bytes(r.uvarint("reason length"), "reason")
	if r.err != nil {
		return r.err
	}
	if r.remaining() != 0 || len(reason) > maxReasonLen {
		return malformed("hello ack with %d trailing bytes", r.remaining())
	}
	if status != ackOK {
		return refuse(status, "peer (version %d) says: %s", peerVersion, reason)
	}
	if version != wireVersion || peerVersion != wireVersion {
		return refuse(ackBadVersion, "peer accepted with protocol version %d", peerVersion)
	}
	return nil
}

// helloPolicy decides who may connect to this node.
type helloPolicy struct {
	clusterID uint64
	self      NodeID
	known     func(NodeID) bool
}

// check refuses a hello from another cluster, an unknown node, or meant
// for another node (a stale address).
func (p helloPolicy) check(h hello) error {
	switch {
	case h.clusterID != p.clusterID:
		return refuse(ackWrongCluster, "cluster ID %d, this node is in cluster %d", h.clusterID, p.clusterID)
	case h.to != p.self:
		return refuse(ackWrongTarget, "hello for node %d reached node %d", h.to, p.self)
	case h.from == None || h.from == p.self || !p.known(h.from):
		return refuse(ackUnknownNode, "node %d is not a known peer", h.from)
	}
	return nil
}

// PeerURI is the identity a node's certificate carries when
// TCPConfig.VerifyPeerIdentity is set: a URI SAN
// "raft://<clusterID>/node/<nodeID>" in decimal, e.g. "raft://7/node/3".
// Binding the cluster too stops a certificate of one cluster from being
// used in another signed by the same CA.
func PeerURI(clusterID uint64, id NodeID) string {
	return fmt.Sprintf("raft://%d/node/%d", clusterID, id)
}

// verifyPeerURI is the default identity check: the leaf certificate must
// hold the URI SAN PeerURI(clusterID, id).
func verifyPeerURI(clusterID uint64, id NodeID, cert *x509.Certificate) error {
	want := PeerURI(clusterID, id)
	for _, u := range cert.URIs {
		if u.String() == want {
			return nil
		}
	}
	return fmt.Errorf("certificate %q lacks URI SAN %s", cert.Subject.CommonName, want)
}
