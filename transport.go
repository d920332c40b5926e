package raft

import (
	"context"
	"errors"
)

// Transport moves Messages between nodes. The in-memory Network
// (transport_mem.go) and the TCP transport (transport_tcp.go) implement it.
//
// A transport is best-effort: Raft tolerates lost, delayed, duplicated and
// reordered messages, so a transport may drop a message it cannot deliver
// rather than block the node.
type Transport interface {
	// Send delivers m to m.To. It may block for backpressure, but returns
	// when ctx is done. The node calls Send from one goroutine per peer, so
	// a slow peer delays only its own messages.
	Send(ctx context.Context, m Message) error
	// Receive returns the channel on which messages for this node arrive.
	// It must return the same channel on every call.
	Receive() <-chan Message
}

// ErrUnknownPeer is returned by a transport asked to reach a node it has no
// address for, or told of by a peer it does not know.
var ErrUnknownPeer = errors.New("raft: unknown peer")

// ErrTransportClosed is returned by Send after the transport was closed.
var ErrTransportClosed = errors.New("raft: transport closed")

// directSender is implemented by transports whose send never blocks: it
// queues the message or drops it at once. The node then sends from its
// own goroutines instead of through a sender goroutine per peer and lane,
// which saves a goroutine hand-off per message; the transport's own
// queues keep a slow peer from delaying the others.
type directSender interface {
	// trySend queues m for m.To without blocking. errLaneFull means the
	// peer's queue was full and m was dropped.
	trySend(m Message) error
}

// errLaneFull is returned when a peer's queue is full and a message dropped.
var errLaneFull = errors.New("raft: peer's send queue is full; message dropped")
