package raft

// progressState is how the leader is currently replicating to a peer.
type progressState uint8

const (
	// probing: the leader does not know where the peer's log matches; it
	// sends one append at a time and waits for the answer.
	probing progressState = iota
	// replicating: the peer's log matches up to Match; the leader streams
	// appends optimistically, up to the inflight window.
	replicating
	// snapshotting: the peer needs entries the leader has compacted; the
	// leader streams it a snapshot in chunks (snapshot_transfer.go).
	snapshotting
)

func (s progressState) String() string {
	switch s {
	case replicating:
		return "replicate"
	case snapshotting:
		return "snapshot"
	}
	return "probe"
}

// progress is the leader's view of one peer (Raft's nextIndex/matchIndex
// plus flow control). Kept open for snapshots and membership: a learner is
// a peer whose acks do not count towards quorums.
type progress struct {
	id      NodeID
	learner bool
	match   uint64
	next    uint64
	state   progressState
	// probeSent pauses a probing peer until it answers or a heartbeat
	// response shows it alive, so a lagging peer gets one probe at a time.
	probeSent bool
	inflight  inflights
	// recentActive is set by any message from the peer and cleared by each
	// CheckQuorum round.
	recentActive bool
	// unreachable is set once the peer missed a whole CheckQuorum round and
	// cleared (with a PeerReachable event) when it answers again.
	unreachable bool
	// readAck is the highest heartbeat round (ReadSeq) the peer answered.
	readAck uint64
	// lastHeartbeatMatch and sentAtLastHeartbeat are match and the last
	// index sent as of the previous heartbeat answer: an append sent by
	// then and still unacknowledged, with no progress since, was lost.
	lastHeartbeatMatch  uint64
	sentAtLastHeartbeat uint64
	// snap is the snapshot transfer, while snapshotting.
	snap snapSend
	// toldRemoved: a leaving peer was sent a commit index past its
	// removal.
	toldRemoved bool
	// lastContact is when the peer last answered, rpcLatency its
	// heartbeat round trips (metrics).
	lastContact int64
	rpcLatency  *histogram
}

// peerStatus is the leader's view of its peers, for Status.
func (c *core) peerStatus() map[NodeID]PeerStatus {
	out := make(map[NodeID]PeerStatus, len(c.peers))
	for _, p := range c.peers {
		ps := PeerStatus{Match: p.match, Next: p.next, State: p.state.String(),
			Inflight: p.inflight.count, Unreachable: p.unreachable, Learner: p.learner}
		if p.state == snapshotting {
			ps.SnapshotSent, ps.SnapshotSize = p.snap.acked, uint64(p.snap.meta.Size)
		}
		out[p.id] = ps
	}
	return out
}

func (p *progress) becomeProbe() {
	p.snap = snapSend{}
	p.state = probing
	p.probeSent = false
	p.inflight.reset()
	p.next = max(p.next, p.match+1)
}

func (p *progress) becomeReplicate() {
	p.state = replicating
	p.probeSent = false
	p.inflight.reset()
	p.next = p.match + 1
}

// paused reports whether the leader must not send this peer more entries now.
func (p *progress) paused() bool {
	switch p.state {
	case probing:
		return p.probeSent
	case snapshotting:
		return true // entries wait until the snapshot is installed
	}
	return p.inflight.full()
}

// sentAppend records an append carrying entries up to last.
func (p *progress) sentAppend(last uint64, nEntries int) {
	if p.state == replicating {
		if nEntries > 0 {
			p.next = last + 1
			p.inflight.add(last)
		}
		return
	}
	p.probeSent = true
}

// acked records a successful append up to index; it reports whether the
// match index moved.
func (p *progress) acked(index uint64) bool {
	p.inflight.freeTo(index)
	if index <= p.match {
		return false
	}
	p.match = index
	p.next = max(p.next, index+1)
	p.probeSent = false
	return true
}

// inflights is a ring of the last indexes of appends sent and not yet
// acknowledged; its capacity is the pipelining window.
type inflights struct {
	buf   []uint64
	start int
	count int
}

func newInflights(size int) inflights { return inflights{buf: make([]uint64, size)} }

func (in *inflights) full() bool { return in.count == len(in.buf) }

func (in *inflights) add(last uint64) {
	if in.full() {
		return
	}
	in.buf[(in.start+in.count)%len(in.buf)] = last
	in.count++
}

// freeTo releases every append whose last index is at most index.
func (in *inflights) freeTo(index uint64) {
	for in.count > 0 && in.buf[in.start] <= index {
		in.start = (in.start + 1) % len(in.buf)
		in.count--
	}
}

func (in *inflights) reset() { in.start, in.count = 0, 0 }
