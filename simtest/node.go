package simtest

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/raftline/raft"
)

// simNode is one server: a raft.Core, its durable storage, the writes its
// disk has not finished, and its key-value state machine.
type simNode struct {
	id    raft.NodeID
	up    bool
	inc   int // incarnation: bumped by each crash, so stale timers die
	core  *raft.Core
	store *raft.MemoryStorage // what the disk durably holds
	// writes are queued on the disk, not yet durable; they complete in
	// order and a crash loses them.
	writes   []pendingWrite
	diskFree int64 // when the disk finishes its queue
	kv       *kvStore
	applied  uint64
	commit   uint64 // highest commit index seen in this incarnation

	proposals  map[uint64]clientRef // by log index
	reads      map[uint64]clientRef // by read ID
	readsReady []readWait
	nextRead   uint64
	// moments: the critical moments since its last event (moments.go).
	moments moment

	// snaps are the snapshots on its disk; meta describes the applied
	// state; sinceSnap counts entries applied since the last snapshot,
	// snapBusy that one is being written; recv is the partial snapshot
	// being received (snapshots.go).
	snaps     snapDisk
	meta      raft.SnapshotMeta
	sinceSnap int
	snapBusy  bool
	recv      *simSnapshot
	// decommissioned: removed and stopped for good (membership.go).
	decommissioned bool
	// leaseRead is the id of the lease read being issued, while it is.
	leaseRead uint64
}

// pendingWrite is one ready's persistence plus the messages that wait for it.
type pendingWrite struct {
	hs      raft.HardState
	entries []raft.Entry
	held    []raft.Message
	sync    bool
	done    int64
	// install: the log starts after this snapshot before entries are
	// saved; compact: the log is compacted after they are.
	install *raft.SnapshotMeta
	compact uint64
	// snap is a snapshot's commit (taken locally, or received); chunk an
	// incoming chunk's write.
	snap  *simSnapshot
	taken bool
	chunk *raft.SnapshotWrite
}

type clientRef struct {
	client, attempt int
	term            uint64
}

type readWait struct {
	index uint64
	ref   clientRef
}

func (s *sim) bootstrap() {
	var conf raft.Configuration
	for i := 1; i <= s.opts.Nodes; i++ {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(i)})
	}
	for i := 1; i <= s.slots; i++ {
		n := &simNode{id: raft.NodeID(i), store: raft.NewMemoryStorage()}
		if i <= s.opts.Nodes {
			if err := raft.Bootstrap(n.store, conf); err != nil {
				s.fail(err)
				return
			}
		}
		s.nodes = append(s.nodes, n)
		s.boot(i - 1)
	}
}

// boot starts node i from what its disk holds.
func (s *sim) boot(i int) {
	n := s.nodes[i]
	n.kv = newKVStore()
	snap, ok := s.recoverSnapshot(n)
	if !ok {
		return
	}
	cfg := raft.CoreConfig{
		ID: n.id, ElectionTicks: electionTicks,
		MaxInflightMsgs: s.tuning.Window, MaxEntriesPerMsg: s.tuning.Batch,
		DisablePreVote: s.tuning.NoPreVote, DisableCheckQuorum: s.tuning.NoCheckQuorum,
		Rand:     rand.NewPCG(s.rng.Uint64(), s.rng.Uint64()),
		Snapshot: snap, SnapshotTrailing: s.tuning.SnapTrailing,
		SnapshotChunkSize: s.tuning.SnapChunk, MaxSnapshotInflight: s.tuning.SnapInflight,
	}
	s.leaseConfig(&cfg)
	core, err := raft.NewCore(cfg, n.store)
	if err != nil {
		s.fail(fmt.Errorf("node %d cannot restart: %w", n.id, err))
		return
	}
	n.core, n.up = core, true
	core.SetClock(s.local(i))
	n.writes, n.diskFree = nil, s.now
	n.applied, n.commit, n.meta = snap.Index, 0, snap
	n.sinceSnap, n.snapBusy, n.recv = 0, false, nil
	if snap.Index > 0 {
		s.check.stateAt(n, snap.Index)
	}
	n.proposals, n.reads, n.readsReady = map[uint64]clientRef{}, map[uint64]clientRef{}, nil
	// Each incarnation's timers start at a random phase.
	s.schedule(s.between(0, s.localInterval(i, tickEvery)), event{kind: evTickElection, node: i, inc: n.inc})
	s.schedule(s.between(0, s.localInterval(i, tickEvery)), event{kind: evTickHeartbeat, node: i, inc: n.inc})
	s.check.observeCommit(n)
}

// crash stops node i: its disk keeps what was durable (and, with torn
// writes, part of the write in flight).
func (s *sim) crash(i int) {
	n := s.nodes[i]
	if !n.up {
		return
	}
	if s.opts.TornWrites && len(n.writes) > 0 && n.writes[0].snap != nil && s.rng.IntN(2) == 0 {
		s.tearSnapshot(n, n.writes[0])
	}
	if s.opts.TornWrites && len(n.writes) > 0 && n.writes[0].install == nil && len(n.writes[0].entries) > 1 && s.rng.IntN(2) == 0 {
		w := n.writes[0]
		cut := 1 + s.rng.IntN(len(w.entries)-1)
		if err := n.store.Save(raft.HardState{}, w.entries[:cut]); err != nil {
			s.fail(fmt.Errorf("node %d torn write: %w", n.id, err))
		}
	}
	n.up, n.core, n.writes = false, nil, nil
	n.inc++
	s.tracef("crash node %d", n.id)
}

func (s *sim) restart(i int) {
	if !s.nodes[i].up && !s.nodes[i].decommissioned {
		s.tracef("restart node %d", s.nodes[i].id)
		s.boot(i)
		s.flush(i)
	}
}

func (s *sim) tick(e *event) {
	n := s.nodes[e.node]
	if !n.up || n.inc != e.inc {
		return
	}
	// A paused process misses its ticks; its ticker goes on.
	s.schedule(s.localInterval(e.node, tickEvery), event{kind: e.kind, node: e.node, inc: e.inc})
	if s.paused(e.node) {
		return
	}
	if e.kind == evTickElection {
		n.core.TickElection()
	} else {
		n.core.TickHeartbeat()
	}
	s.flush(e.node)
}

func (s *sim) deliver(e *event) {
	n := s.nodes[e.node]
	// A cut link loses what was in flight on it, too.
	if !n.up || !s.connected(int(e.msg.From)-1, e.node) {
		return
	}
	n.core.Step(e.msg)
	s.flush(e.node)
}

// flush carries out everything node i's core asks for, as Node does: a
// changed term or vote is durable before any message leaves, appends are
// acknowledged only once durable, and committed entries are applied.
func (s *sim) flush(i int) {
	n := s.nodes[i]
	for n.up && n.core.HasReady() {
		rd := n.core.Ready()
		if readyEmpty(&rd) {
			s.fail(fmt.Errorf("node %d: HasReady said there was work, Ready gave none", n.id))
			return
		}
		s.check.events(n, rd.Events)
		held := rd.AfterPersist
		if rd.MustSync || n.syncPending() {
			held = append(append([]raft.Message(nil), rd.Messages...), held...)
		} else {
			for _, m := range rd.Messages {
				s.emit(n, m)
			}
		}
		if len(rd.Entries) > 0 && n.core.Status().Role == raft.Leader {
			n.noteMoment(momentAppend)
		}
		for k := range rd.SnapshotWrites {
			s.queueWrite(n, i, pendingWrite{chunk: &rd.SnapshotWrites[k]})
		}
		if rd.MustSync || len(rd.Entries) > 0 || len(held) > 0 || !rd.HardState.IsZero() || rd.Snapshot != nil || rd.Compact > 0 {
			s.queueWrite(n, i, pendingWrite{hs: rd.HardState, entries: rd.Entries, held: held, sync: rd.MustSync,
				install: rd.Snapshot, compact: rd.Compact})
		}
		if rd.Snapshot != nil {
			s.installSnapshot(i, *rd.Snapshot)
		}
		s.apply(i, rd.Committed)
		s.readStates(i, rd.Reads)
		s.check.observeCommit(n)
	}
}

// emit sends a message that leaves node n. Votes are recorded as they
// become visible (a vote request carries the candidate's vote for itself),
// and are the node's critical moments (moments.go).
func (s *sim) emit(n *simNode, m raft.Message) {
	if m.Type == raft.MsgSnap && m.Chunk != nil && m.Chunk.Data == nil && !s.fillChunk(n, &m) {
		return
	}
	switch {
	case m.Type == raft.MsgVote:
		s.check.vote(m.From, m.From, m.Term)
		n.noteMoment(momentCampaign)
	case m.Type == raft.MsgVoteResp && !m.Reject:
		s.check.vote(m.From, m.To, m.Term)
		n.noteMoment(momentVote)
	case m.Type == raft.MsgHeartbeat:
		n.noteMoment(momentHeartbeat)
	}
	s.send(m)
}

func readyEmpty(rd *raft.Ready) bool {
	return rd.HardState.IsZero() && !rd.MustSync && len(rd.Entries) == 0 && len(rd.Messages) == 0 &&
		len(rd.AfterPersist) == 0 && len(rd.Committed) == 0 && len(rd.Reads) == 0 &&
		len(rd.Events) == 0 && !rd.ProposalsLost && rd.Snapshot == nil && rd.Compact == 0 && len(rd.SnapshotWrites) == 0 &&
		!rd.TransferAborted && !rd.ConfigChanged
}

func (n *simNode) syncPending() bool {
	for i := range n.writes {
		if n.writes[i].sync {
			return true
		}
	}
	return false
}

// queueWrite puts a write on node i's disk, which completes writes in order
// after a latency with occasional long stalls.
func (s *sim) queueWrite(n *simNode, i int, w pendingWrite) {
	lat := s.between(500*time.Microsecond, 5*time.Millisecond)
	if s.rng.IntN(10) == 0 {
		lat = s.between(10*time.Millisecond, 100*time.Millisecond)
	}
	w.done = max(s.now, n.diskFree) + int64(lat)
	n.diskFree = w.done
	n.writes = append(n.writes, w)
	s.schedule(time.Duration(w.done-s.now), event{kind: evDiskDone, node: i, inc: n.inc})
}

func (s *sim) diskDone(e *event) {
	n := s.nodes[e.node]
	if !n.up || n.inc != e.inc || len(n.writes) == 0 {
		return
	}
	w := n.writes[0]
	n.writes = n.writes[1:]
	switch {
	case w.chunk != nil:
		s.writeChunk(e.node, w.chunk)
		s.flush(e.node)
		return
	case w.snap != nil:
		s.commitSnapshot(n, &w)
		s.flush(e.node)
		return
	}
	if w.install != nil {
		if err := n.store.InstallSnapshot(w.install.Index, w.install.Term); err != nil {
			s.fail(fmt.Errorf("node %d installing %v in its log: %w", n.id, w.install, err))
			return
		}
	}
	if err := n.store.Save(w.hs, w.entries); err != nil {
		s.fail(fmt.Errorf("node %d disk: %w", n.id, err))
		return
	}
	if k := len(w.entries); k > 0 {
		n.core.Persisted(w.entries[k-1].Index, w.entries[k-1].Term)
	}
	if w.compact > 0 {
		s.compact(n, w.compact)
	}
	for _, m := range w.held {
		s.emit(n, m)
	}
	s.flush(e.node)
}

// apply runs committed entries through the state machine and answers the
// clients whose proposals they are.
func (s *sim) apply(i int, ents []raft.Entry) {
	n := s.nodes[i]
	if len(ents) == 0 {
		return
	}
	commit := n.core.Status().Commit
	for _, e := range ents {
		if !s.check.applied(n, e, commit) {
			return
		}
		n.applied = e.Index
		n.sinceSnap++
		if err := n.meta.Advance(e); err != nil {
			s.fail(fmt.Errorf("node %d: %w", n.id, err))
			return
		}
		if e.Type != raft.EntryNormal {
			s.check.stateAt(n, e.Index)
			continue
		}
		in, err := decodeInput(e.Data)
		if err != nil {
			s.fail(fmt.Errorf("node %d applied a malformed command at %d", n.id, e.Index))
			return
		}
		out := n.kv.apply(in)
		s.check.stateAt(n, e.Index)
		if ref, ok := n.proposals[e.Index]; ok {
			delete(n.proposals, e.Index)
			if ref.term == e.Term {
				s.check.ack(e)
				s.replyToClient(i, ref, reply{ok: true, out: out})
			} else {
				// Another leader's entry took the index: ours never ran.
				s.replyToClient(i, ref, reply{retry: true})
			}
		}
	}
	n.core.Applied(n.applied)
	s.releaseReads(i)
	s.maybeSnapshot(i)
}

// readStates records confirmed reads (and answers lost ones).
func (s *sim) readStates(i int, reads []raft.ReadState) {
	n := s.nodes[i]
	for _, r := range reads {
		ref, ok := n.reads[r.ID]
		if !ok {
			continue
		}
		delete(n.reads, r.ID)
		if r.ID == n.leaseRead && !r.Lost {
			// Answered at once: served on the lease (a leader's own
			// round takes a round trip).
			s.check.leaseRead(n)
		}
		if r.Lost {
			s.replyToClient(i, ref, reply{retry: true, hint: n.core.Status().Leader})
			continue
		}
		n.readsReady = append(n.readsReady, readWait{index: r.Index, ref: ref})
	}
	s.releaseReads(i)
}

// releaseReads answers confirmed reads the state machine has caught up with.
func (s *sim) releaseReads(i int) {
	n := s.nodes[i]
	kept := n.readsReady[:0]
	for _, w := range n.readsReady {
		if w.index > n.applied {
			kept = append(kept, w)
			continue
		}
		c := s.clients[w.ref.client]
		out := n.kv.apply(Input{Kind: OpGet, Key: c.op.Input.Key})
		s.replyToClient(i, w.ref, reply{ok: true, out: out})
	}
	n.readsReady = kept
}
