package raft

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Network is an in-memory network connecting many nodes in one process, for
// tests, simulations and the single-process example. Its faults
// (partitions, blocked links, drops, delays, reordering, duplication) are
// drawn from one seeded source, so a run's faults follow from its seed and
// the order in which messages are sent.
//
// Delays use time.AfterFunc, so under testing/synctest they cost no real
// time.
type Network struct {
	mu        sync.Mutex
	rng       *rand.Rand
	endpoints map[NodeID]*MemTransport
	// group assigns each node to a partition side; nodes talk only within
	// a side. A node with no entry is on side 0.
	group   map[NodeID]int
	blocked map[[2]NodeID]bool // one-way links (from, to) that drop everything

	dropRate      float64
	duplicateRate float64
	delayMin      time.Duration
	delayMax      time.Duration
	// Long reordering: a response is, with probability reorderRate, held
	// back by a delay in [reorderMin, reorderMax].
	reorderRate float64
	reorderMin  time.Duration
	reorderMax  time.Duration

	stats map[NodeID]*NetStats
}

// NetStats counts one node's traffic.
type NetStats struct {
	// Sent and SentBytes count every message the node sent, delivered or not.
	Sent      uint64
	SentBytes uint64
	// SnapshotBytes counts the snapshot chunk bytes among them.
	SnapshotBytes uint64
	// Delivered counts messages that reached the node.
	Delivered uint64
	// Dropped counts messages to the node the network lost (faults or a
	// full receive queue).
	Dropped uint64
}

// memQueueSize is each endpoint's receive buffer; a full one drops, like a
// congested link.
const memQueueSize = 4096

// NewNetwork returns a network with no faults whose random choices come from
// seed.
func NewNetwork(seed uint64) *Network {
	return &Network{
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		endpoints: make(map[NodeID]*MemTransport),
		group:     make(map[NodeID]int),
		blocked:   make(map[[2]NodeID]bool),
		stats:     make(map[NodeID]*NetStats),
	}
}

// Join returns the transport for node id. Joining again (a restarted node)
// replaces the endpoint, so messages queued for the old one are lost, as
// they would be for a crashed process.
func (n *Network) Join(id NodeID) *MemTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := &MemTransport{net: n, id: id, inbox: make(chan Message, memQueueSize)}
	n.endpoints[id] = t
	if n.stats[id] == nil {
		n.stats[id] = &NetStats{}
	}
	return t
}

// Partition splits the network: nodes in the same group talk, others do
// not. Nodes not listed form one more group together.
func (n *Network) Partition(groups ...[]NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.group)
	for i, g := range groups {
		for _, id := range g {
			n.group[id] = i + 1
		}
	}
}

// Isolate cuts one node off from every other.
func (n *Network) Isolate(id NodeID) { n.Partition([]NodeID{id}) }

// Heal removes partitions and blocked links (drop, delay and other rates
// stay as set).
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.group)
	clear(n.blocked)
}

// Block drops every message from one node to another (one way).
func (n *Network) Block(from, to NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blocked[[2]NodeID{from, to}] = true
}

// Unblock reopens a link closed by Block.
func (n *Network) Unblock(from, to NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.blocked, [2]NodeID{from, to})
}

// SetDropRate makes each message lost with probability p.
func (n *Network) SetDropRate(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dropRate = p
}

// SetDuplicateRate makes each delivered message arrive twice with
// probability p.
func (n *Network) SetDuplicateRate(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.duplicateRate = p
}

// SetDelay delays each message by a uniform random time in [lo, hi]; unequal
// delays reorder messages.
func (n *Network) SetDelay(lo, hi time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delayMin, n.delayMax = lo, hi
}

// SetLongReordering holds back each response, with probability p, by a
// delay in [lo, hi], so answers arrive long after newer ones.
func (n *Network) SetLongReordering(p float64, lo, hi time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.reorderRate, n.reorderMin, n.reorderMax = p, lo, hi
}

// Stats returns a copy of one node's traffic counters.
func (n *Network) Stats(id NodeID) NetStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s := n.stats[id]; s != nil {
		return *s
	}
	return NetStats{}
}

// Total returns the traffic counters summed over all nodes.
func (n *Network) Total() NetStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	var t NetStats
	for _, s := range n.stats {
		t.Sent += s.Sent
		t.SentBytes += s.SentBytes
		t.SnapshotBytes += s.SnapshotBytes
		t.Delivered += s.Delivered
		t.Dropped += s.Dropped
	}
	return t
}

// connected reports whether from can reach to now. Caller holds mu.
func (n *Network) connected(from, to NodeID) bool {
	return n.group[from] == n.group[to] && !n.blocked[[2]NodeID{from, to}]
}

func (n *Network) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(n.rng.Int64N(int64(hi-lo)+1))
}

// send routes m, applying the network's faults.
func (n *Network) send(m Message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.stats[m.From]
	if st == nil {
		st = &NetStats{}
		n.stats[m.From] = st
	}
	st.Sent++
	st.SentBytes += uint64(m.wireSize())
	if m.Chunk != nil {
		st.SnapshotBytes += uint64(len(m.Chunk.Data))
	}
	copies := 1
	if n.duplicateRate > 0 && n.rng.Float64() < n.duplicateRate {
		copies = 2
	}
	for range copies {
		if !n.connected(m.From, m.To) || (n.dropRate > 0 && n.rng.Float64() < n.dropRate) {
			n.countDrop(m.To)
			continue
		}
		delay := n.between(n.delayMin, n.delayMax)
		if m.Type.isResponse() && n.reorderRate > 0 && n.rng.Float64() < n.reorderRate {
			delay = n.between(n.reorderMin, n.reorderMax)
		}
		if delay <= 0 {
			n.deliverLocked(m)
			continue
		}
		n.deliverLater(m, delay)
	}
}

// deliverLater delivers m after delay. It is its own function so that only
// delayed messages are captured by a closure (and so escape to the heap).
func (n *Network) deliverLater(m Message, delay time.Duration) {
	time.AfterFunc(delay, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		// Re-check: a partition made while in flight loses the message.
		if n.connected(m.From, m.To) {
			n.deliverLocked(m)
		} else {
			n.countDrop(m.To)
		}
	})
}

func (n *Network) countDrop(to NodeID) {
	if s := n.stats[to]; s != nil {
		s.Dropped++
	}
}

// deliverLocked puts m in the recipient's inbox. Caller holds mu.
func (n *Network) deliverLocked(m Message) {
	ep := n.endpoints[m.To]
	if ep == nil {
		return
	}
	select {
	case ep.inbox <- m:
		n.stats[m.To].Delivered++
	default:
		n.countDrop(m.To)
	}
}

// MemTransport is one node's endpoint on a Network.
type MemTransport struct {
	net   *Network
	id    NodeID
	inbox chan Message
}

// Send implements Transport; it never blocks.
func (t *MemTransport) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.From != t.id {
		m.From = t.id
	}
	t.net.send(m)
	return nil
}

// trySend implements directSender: the network never blocks a sender.
func (t *MemTransport) trySend(m Message) error {
	m.From = t.id
	t.net.send(m)
	return nil
}

// Receive implements Transport.
func (t *MemTransport) Receive() <-chan Message { return t.inbox }

// wireSize approximates the message's encoded size, for traffic accounting.
func (m *Message) wireSize() int {
	size := 64
	for i := range m.Entries {
		size += int(m.Entries[i].size())
	}
	if m.Chunk != nil {
		size += 64 + len(m.Chunk.Data)
	}
	return size
}
