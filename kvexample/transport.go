package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/raftline/raft"
)

// This file chooses how a node talks to its peers (the in-memory network in
// single-process mode, TCP otherwise), and watches what arrives: a
// follower redirects clients only to a leader it has heard from recently.
//
// The library's Status says who the leader is but not when this node last
// heard from it, and a follower keeps naming a leader that died until its
// election timeout runs out (one to two seconds here, plus a PreVote
// round). Redirecting clients to it meanwhile sends them to a dead port. So
// the node's transport is wrapped: every message it delivers passes a
// contactTracker on its way to the node.

// contactTracker records when this node last received a message from each
// peer, and counts what arrived from whom (the flows on the /ui page and
// kvexample_messages_received_total). Its zero value is ready to use.
type contactTracker struct {
	mu       sync.Mutex
	last     map[raft.NodeID]time.Time
	received map[flowKey]uint64
}

// flowKey is a sender and a message type.
type flowKey struct {
	From raft.NodeID
	Type raft.MessageType
}

// receivedFrom records message m, received at t.
func (c *contactTracker) receivedFrom(m raft.Message, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.received == nil {
		c.received = make(map[flowKey]uint64)
	}
	c.received[flowKey{m.From, m.Type}]++
	c.heardLocked(m.From, t)
}

// flows returns a copy of the message counts by sender and type.
func (c *contactTracker) flows() map[flowKey]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[flowKey]uint64, len(c.received))
	for k, v := range c.received {
		out[k] = v
	}
	return out
}

// heard records a message from id received at t.
func (c *contactTracker) heard(id raft.NodeID, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.heardLocked(id, t)
}

func (c *contactTracker) heardLocked(id raft.NodeID, t time.Time) {
	if c.last == nil {
		c.last = make(map[raft.NodeID]time.Time)
	}
	c.last[id] = t
}

// since returns how long ago, as of now, the last message from id arrived;
// ok is false if none ever did.
func (c *contactTracker) since(id raft.NodeID, now time.Time) (d time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.last[id]
	return now.Sub(t), ok
}

// forward passes every message from in to the returned channel, recording
// its sender, until stop is closed (or in is). delay, if not nil, holds
// back the messages of slowed links (the teaching-only slow link,
// slowlink.go).
func (c *contactTracker) forward(in <-chan raft.Message, stop <-chan struct{}, delay func(from raft.NodeID) time.Duration) (out <-chan raft.Message, done <-chan struct{}) {
	// As deep as the node's own inbox would otherwise have been, so a
	// burst waits here rather than at the transport.
	ch := make(chan raft.Message, cap(in))
	fin := make(chan struct{})
	go func() {
		lines := delayLines{out: ch, stop: stop, tracker: c}
		defer close(fin)
		defer lines.wait()
		for {
			select {
			case m, ok := <-in:
				if !ok {
					lines.wait()
					close(ch)
					return
				}
				if delay != nil {
					if d := delay(m.From); d > 0 {
						lines.add(m, d)
						continue
					}
				}
				c.receivedFrom(m, time.Now())
				select {
				case ch <- m:
				case <-stop:
					return
				}
			case <-stop:
				return
			}
		}
	}()
	return ch, fin
}

// The wrappers embed the library's transports rather than hold them, so
// that every method the node looks for (sending without blocking, the
// PeerUpdater that keeps TCP addresses in step with the configuration) is
// still there; only Receive is replaced.
type (
	watchedTCP struct {
		*raft.TCPTransport
		in <-chan raft.Message
	}
	watchedMem struct {
		*raft.MemTransport
		in <-chan raft.Message
	}
)

// Receive implements raft.Transport: the messages, once recorded.
func (t *watchedTCP) Receive() <-chan raft.Message { return t.in }

// Receive implements raft.Transport: the messages, once recorded.
func (t *watchedMem) Receive() <-chan raft.Message { return t.in }

// newTransport returns the node's transport, watched by contact, and a
// function that closes it. peers are the raft addresses the TCP transport
// starts with: the node then keeps them in step with every configuration
// it adopts (raft.PeerUpdater).
func newTransport(cfg nodeConfig, peers raft.Configuration, contact *contactTracker) (raft.Transport, func() error, error) {
	stop := make(chan struct{})
	if cfg.Network != nil {
		mt := cfg.Network.Join(cfg.ID)
		in, done := contact.forward(mt.Receive(), stop, cfg.LinkDelay)
		// The in-memory network needs no closing: a node that stops simply
		// stops reading its inbox.
		return &watchedMem{MemTransport: mt, in: in}, func() error { close(stop); <-done; return nil }, nil
	}
	addrs := make(map[raft.NodeID]string)
	for _, s := range peers.Servers {
		if s.ID != cfg.ID {
			addrs[s.ID] = s.Address
		}
	}
	t, err := raft.NewTCPTransport(raft.TCPConfig{
		ID: cfg.ID, ClusterID: cfg.ClusterID, ListenAddr: cfg.RaftAddr, Listener: cfg.RaftListener,
		Peers: addrs, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("node %d: %w", cfg.ID, err)
	}
	in, done := contact.forward(t.Receive(), stop, nil)
	return &watchedTCP{TCPTransport: t, in: in}, func() error {
		close(stop)
		<-done
		return t.Close()
	}, nil
}
