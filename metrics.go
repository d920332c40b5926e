package raft

import (
	"math"
	"sync/atomic"
	"time"
)

// This file holds the node's metrics: what operators alert on for
// hashicorp/raft, etcd and dragonboat clusters, as a typed snapshot
// (Node.Metrics). The hot path pays an atomic add per event: counters are
// atomics, histograms fixed buckets of atomics, and the owner's own
// counters plain fields read on its goroutine.

// Metrics is a point-in-time view of a node's counters, gauges and
// histograms. Counters only grow (for rates); durations are seconds in
// histograms and time.Duration elsewhere.
type Metrics struct {
	// SendDropped: messages dropped because the queue of messages to their
	// peer was full (Raft resends what matters).
	SendDropped uint64
	// SendErrors: messages the transport failed to send.
	SendErrors uint64
	// RecvRejected: received messages for another node or group, or
	// malformed ones (also by type in MessagesRefused).
	RecvRejected uint64
	// EventsDropped: events a full subscriber channel missed.
	EventsDropped uint64
	// SnapshotsTaken: snapshots of this node's state machine made durable;
	// SnapshotsReceived: snapshots received from a leader and verified;
	// SnapshotsSent: snapshot transfers this node (as leader) started;
	// Compactions: times the log was compacted behind a snapshot.
	SnapshotsTaken    uint64
	SnapshotsReceived uint64
	SnapshotsSent     uint64
	Compactions       uint64
	// SnapshotBytes is the size of the newest snapshot this node took,
	// received or restored at start; SnapshotDuration how long taking one (writing it out) and
	// InstallDuration how long receiving one (first chunk to durable)
	// took, in seconds.
	SnapshotBytes    uint64
	SnapshotDuration Histogram
	InstallDuration  Histogram

	// HasLeader: the node knows a leader; Term its current term.
	HasLeader bool
	Term      uint64
	// LeaderChanges counts the times this node learned of a new leader
	// (losing track of one is not a change); ElectionsStarted its
	// campaigns (pre-votes included), ElectionsWon the ones that made it
	// leader.
	LeaderChanges    uint64
	ElectionsStarted uint64
	ElectionsWon     uint64

	// ProposalsCommitted: proposals committed and applied here;
	// ProposalsFailed: proposals that ended with an error after they were
	// accepted (leadership lost, storage failed, closed);
	// ProposalsDropped: proposals refused before being appended (not the
	// leader, a transfer in progress, too large).
	ProposalsCommitted uint64
	ProposalsFailed    uint64
	ProposalsDropped   uint64
	// CommitLatency is a proposal's time from the leader taking it (its
	// owner goroutine's round; the wait in Propose's queue before that is
	// not counted, as in hashicorp/raft's commitTime) to its commit;
	// ApplyLatency a committed batch's time from commit to
	// applied; SaveLatency one Storage.Save (the fsync; not recorded for a
	// MemoryStorage, whose Save is a copy on the owner goroutine) — all in
	// seconds.
	CommitLatency Histogram
	ApplyLatency  Histogram
	SaveLatency   Histogram
	// ApplyBacklog is commit index − applied index.
	ApplyBacklog uint64

	// LeaderContact is how long ago this follower last heard from its
	// leader (0 on a leader, and when no leader is known).
	LeaderContact time.Duration
	// Peers is the leader's view of each peer; empty elsewhere.
	Peers map[NodeID]PeerMetrics

	// MessagesSent, MessagesDropped and MessagesRefused count messages by
	// type: handed to the transport, dropped on a full queue, and refused
	// as malformed or impossible when received.
	MessagesSent    map[MessageType]uint64
	MessagesDropped map[MessageType]uint64
	MessagesRefused map[MessageType]uint64

	// ReadIndexRounds counts heartbeat rounds that confirmed reads;
	// ReadsFailed reads that ended without an answer (leadership lost);
	// LeaseReads reads served on the lease.
	ReadIndexRounds uint64
	ReadsFailed     uint64
	LeaseReads      uint64

	// OwnerBusy is the time the state-owner goroutine spent handling
	// events (not waiting for one), estimated from one round in eight:
	// its rate, in seconds per second, is the owner's saturation; near 1
	// the node cannot go faster.
	OwnerBusy time.Duration
}

// PeerMetrics is the leader's view of one peer.
type PeerMetrics struct {
	// LastContact is how long ago the peer last answered.
	LastContact time.Duration
	// MatchLag is the leader's last index − the peer's match index.
	MatchLag uint64
	// RPCLatency is the heartbeat round trip to the peer, in seconds.
	RPCLatency Histogram
}

// Histogram is a distribution of observations in fixed buckets, in
// seconds, as Prometheus histograms are.
type Histogram struct {
	// Bounds are the buckets' upper bounds, ascending; Counts[i] counts
	// the observations in (Bounds[i-1], Bounds[i]], and the last element
	// of Counts those above every bound.
	Bounds []float64
	Counts []uint64
	// Count and Sum are the number of observations and their total.
	Count uint64
	Sum   float64
}

// histogramBounds are the buckets, in seconds, of every histogram: from a
// loopback round trip to a stalled disk.
var histogramBounds = []float64{
	50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3,
	25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10,
}

// histogramBoundsNS are histogramBounds in nanoseconds, for observe.
var histogramBoundsNS = func() (ns [17]time.Duration) {
	for i, b := range histogramBounds {
		ns[i] = time.Duration(math.Round(b * 1e9))
	}
	return ns
}()

// histogram is a Histogram being filled, safe for concurrent use.
type histogram struct {
	counts [len(histogramBoundsNS) + 1]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

// observe records one duration.
func (h *histogram) observe(d time.Duration) {
	h.counts[bucketOf(d)].Add(1)
	h.sum.Add(int64(d))
}

// bucketOf is the index of the bucket d falls in.
func bucketOf(d time.Duration) int {
	i := 0
	for i < len(histogramBoundsNS) && d > histogramBoundsNS[i] {
		i++
	}
	return i
}

// histogramBatch gathers the observations of one loop (a batch of
// proposals), so that the shared histogram pays its atomic adds once per
// bucket used rather than twice per observation.
type histogramBatch struct {
	counts [len(histogramBoundsNS) + 1]uint64
	sum    int64
	n      int
}

func (b *histogramBatch) observe(d time.Duration) {
	b.counts[bucketOf(d)]++
	b.sum += int64(d)
	b.n++
}

// addTo adds the batch to h.
func (b *histogramBatch) addTo(h *histogram) {
	if b.n == 0 {
		return
	}
	for i, c := range b.counts {
		if c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.sum.Add(b.sum)
}

// snapshot returns the histogram's current state.
func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: histogramBounds, Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	out.Sum = time.Duration(h.sum.Load()).Seconds()
	return out
}

// Quantile estimates the q-quantile (0 < q < 1) in seconds, from the upper
// bound of the bucket it falls in: good enough for an alert, as with
// Prometheus' histogram_quantile.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 {
		return 0
	}
	want := uint64(q*float64(h.Count)) + 1
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= want {
			if i < len(h.Bounds) {
				return h.Bounds[i]
			}
			break
		}
	}
	return h.Bounds[len(h.Bounds)-1]
}

// nodeMetrics are the counters the node's goroutines update.
type nodeMetrics struct {
	proposalsCommitted, proposalsFailed, proposalsDropped atomic.Uint64
	commitLatency, applyLatency, saveLatency              histogram
	snapshotDuration, installDuration                     histogram
	snapshotBytes                                         atomic.Uint64
	sent, dropped, refused                                [msgTypeCount]atomic.Uint64
	ownerBusy                                             atomic.Int64 // nanoseconds
}

// countByType turns per-type counters into a map of the non-zero ones.
func countByType(c *[msgTypeCount]atomic.Uint64) map[MessageType]uint64 {
	out := map[MessageType]uint64{}
	for t := MessageType(1); t < msgTypeCount; t++ {
		if v := c[t].Load(); v > 0 {
			out[t] = v
		}
	}
	return out
}

// coreMetrics are the counters the core keeps on the owner goroutine.
type coreMetrics struct {
	leaderChanges, electionsStarted, electionsWon uint64
	readRounds, readsFailed, leaseReads           uint64
	snapshotsSent                                 uint64
	refused                                       [msgTypeCount]uint64
}

// Metrics returns the node's metrics; it is Status().Metrics.
func (n *Node) Metrics() Metrics { return n.Status().Metrics }

// metrics assembles the snapshot, on the owner goroutine.
func (n *Node) metrics() Metrics {
	c, m := n.core, &n.m
	applied := n.applied.Load()
	out := Metrics{
		SendDropped: n.sendDropped.Load(), SendErrors: n.sendErrors.Load(),
		RecvRejected:   n.recvRejected.Load() + c.rejected,
		SnapshotsTaken: n.snapshotsTaken.Load(), SnapshotsReceived: n.snapshotsReceived.Load(),
		SnapshotsSent: c.metrics.snapshotsSent, Compactions: n.compactions.Load(),
		SnapshotBytes: m.snapshotBytes.Load(), SnapshotDuration: m.snapshotDuration.snapshot(),
		InstallDuration: m.installDuration.snapshot(),

		HasLeader: c.leader != None, Term: c.term,
		LeaderChanges: c.metrics.leaderChanges, ElectionsStarted: c.metrics.electionsStarted,
		ElectionsWon: c.metrics.electionsWon,

		ProposalsCommitted: m.proposalsCommitted.Load(), ProposalsFailed: m.proposalsFailed.Load(),
		ProposalsDropped: m.proposalsDropped.Load(),
		CommitLatency:    m.commitLatency.snapshot(), ApplyLatency: m.applyLatency.snapshot(),
		SaveLatency: m.saveLatency.snapshot(),

		MessagesSent: countByType(&m.sent), MessagesDropped: countByType(&m.dropped),
		MessagesRefused: countByType(&m.refused),
		ReadIndexRounds: c.metrics.readRounds, ReadsFailed: c.metrics.readsFailed,
		LeaseReads: c.metrics.leaseReads,
		OwnerBusy:  time.Duration(m.ownerBusy.Load()),
	}
	for t, v := range c.metrics.refused {
		if v > 0 {
			out.MessagesRefused[MessageType(t)] += v
		}
	}
	if c.log.committed > applied {
		out.ApplyBacklog = c.log.committed - applied
	}
	if c.role != Leader && c.leader != None {
		out.LeaderContact = time.Duration(c.now - c.leaderContact)
	}
	if c.role == Leader {
		out.Peers = make(map[NodeID]PeerMetrics, len(c.peers))
		last := c.log.lastIndex()
		for _, p := range c.peers {
			out.Peers[p.id] = PeerMetrics{
				LastContact: time.Duration(c.now - p.lastContact),
				MatchLag:    last - min(p.match, last),
				RPCLatency:  p.rpcLatency.snapshot(),
			}
		}
	}
	n.subs.mu.Lock()
	out.EventsDropped = n.subs.dropped
	n.subs.mu.Unlock()
	return out
}
