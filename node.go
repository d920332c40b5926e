package raft

import (
	"errors"
	"fmt"
	"maps"
	"time"
)

// This file is the state owner: the one goroutine that steps the core. It
// turns what arrives on its channels into core events, batches whatever
// else is already queued into the same round, and carries out the core's
// ready: persistence through the appender (or inline for MemoryStorage),
// messages straight to a non-blocking transport (or through per-peer
// senders), committed entries through the applier.

// ownerBusySample: Metrics.OwnerBusy is measured on one round in this
// many and scaled up.
const ownerBusySample = 8

// maxEventsPerRound bounds how many queued events one ready covers, so a
// flood of messages still lets the owner flush regularly.
const maxEventsPerRound = 256

func (n *Node) run() {
	defer n.shutdown()
	recv := n.cfg.Transport.Receive()
	for {
		n.stampedAt = time.Time{}
		if !n.handleOne(recv, true) {
			return
		}
		// One clock read serves the whole round: the events polled below
		// take the time of the one that woke the owner (clock reads were
		// a tenth of the owner's CPU when each event took its own).
		busy := n.stampedAt
		if busy.IsZero() {
			busy = n.stampNow()
		}
		for range maxEventsPerRound {
			if !n.handleOne(recv, false) {
				break
			}
		}
		if !n.dispatch(n.core.takeReady()) {
			return
		}
		// Busy time is sampled, one round in ownerBusySample, to spare
		// the clock read that ends each round.
		if n.rounds++; n.rounds%ownerBusySample == 0 {
			n.m.ownerBusy.Add(ownerBusySample * int64(n.cfg.Clock.Now().Sub(busy)))
		}
	}
}

// handleOne takes one event into the core. With wait it blocks for one and
// returns false only on shutdown; without, it returns false when nothing is
// queued.
func (n *Node) handleOne(recv <-chan Message, wait bool) bool {
	if !wait {
		return n.pollOne(recv)
	}
	select {
	case <-n.ctx.Done():
		return false
	case m := <-recv:
		n.stampNow()
		n.receive(m)
	case p := <-n.propc:
		n.stampNow() // the round's clock, read now so the proposal's start is current
		n.propose(p)
	case w := <-n.readc:
		n.stampNow()
		n.read(w)
	case <-n.electionTicks:
		n.stampNow()
		n.core.tickElection()
	case <-n.heartbeats:
		n.stampNow()
		n.core.tickHeartbeat()
	case <-n.progress:
		n.takeProgress()
	case f := <-n.ctrlc:
		f()
	}
	return true
}

// pollOne takes one queued event, if any, without blocking. It polls each
// channel on its own rather than in one select: a one-case select with a
// default does not lock an empty channel, while a many-case select locks
// every channel in it, some shared with hundreds of waiting callers, and
// the owner polls up to maxEventsPerRound times per round.
func (n *Node) pollOne(recv <-chan Message) bool {
	select {
	case <-n.progress:
		n.takeProgress()
		return true
	default:
	}
	select {
	case m := <-recv:
		n.receive(m)
		return true
	default:
	}
	select {
	case p := <-n.propc:
		n.propose(p)
		return true
	default:
	}
	select {
	case w := <-n.readc:
		n.read(w)
		return true
	default:
	}
	select {
	case <-n.heartbeats:
		n.core.tickHeartbeat()
		return true
	default:
	}
	select {
	case <-n.electionTicks:
		n.core.tickElection()
		return true
	default:
	}
	select {
	case f := <-n.ctrlc:
		f()
		return true
	default:
	}
	return false
}

// read registers a ReadIndex call with the core.
func (n *Node) read(w *readWaiter) {
	n.nextReadID++
	w.id = n.nextReadID
	n.readWaiters[w.id] = w
	if w.lease {
		n.core.leaseRead(w.id)
	} else {
		n.core.readIndex(w.id)
	}
}

// stampNow gives the core the time, for lease reads: the monotonic time
// since the node started. It returns the time it read.
func (n *Node) stampNow() time.Time {
	t := n.cfg.Clock.Now()
	n.core.now = int64(t.Sub(n.started))
	n.stampedAt = t
	return t
}

// takeProgress reads how far the appender and the applier got: one
// wake-up serves both, and reading one that has not moved changes nothing.
func (n *Node) takeProgress() {
	n.takePersisted()
	n.takeApplied()
}

// takePersisted tells the core how far the log is durable.
func (n *Node) takePersisted() {
	n.persistMu.Lock()
	at, err := n.persistedAt, n.persistErr
	n.persistMu.Unlock()
	if err != nil {
		n.core.fail(fmt.Errorf("%w: %w", ErrStorageFailed, err))
	}
	n.core.persisted(at.index, at.term)
}

// takeApplied tells the core how far the state machine got.
func (n *Node) takeApplied() {
	n.core.appliedTo(n.applied.Load())
	n.releaseReads()
	n.releaseCache()
}

// cacheReleaseStep is how far the cache floor moves before the storage
// hears of it: a lock and a few evictions per call, so rare enough at 64
// entries, and soon enough that large entries do not pile up (1024 of
// 4 KiB held 4 MiB per node past what anyone needed).
const cacheReleaseStep = 64

// releaseCache tells a CacheReleaser storage which entries no one is
// about to read: those applied here and, on a leader, held by every peer
// (a peer that is down holds the floor back, and the cache's own limit
// bounds it then).
func (n *Node) releaseCache() {
	if n.cacheReleaser == nil {
		return
	}
	floor := n.core.log.applied + 1
	if n.core.role == Leader {
		for _, p := range n.core.peers {
			floor = min(floor, p.match+1)
		}
	}
	if floor >= n.cacheReleased+cacheReleaseStep {
		n.cacheReleaser.ReleaseCached(floor)
		n.cacheReleased = floor
	}
}

// receive checks a message's envelope before the core sees it.
func (n *Node) receive(m Message) {
	if m.To != n.cfg.ID || m.From == None || m.From == n.cfg.ID || m.Group != n.cfg.Group || !m.Type.Valid() {
		n.recvRejected.Add(1)
		if m.Type.Valid() {
			n.m.refused[m.Type].Add(1)
		}
		return
	}
	n.core.step(m)
}

// propose turns p and every proposal queued behind it into one append.
func (n *Node) propose(first *proposal) {
	batch := append(n.propBatch[:0], first)
	for len(batch) < n.cfg.MaxProposalBatch {
		select {
		case p := <-n.propc:
			batch = append(batch, p)
			continue
		default:
		}
		break
	}
	n.propBatch = batch[:0]
	if n.core.role != Leader || n.core.failed != nil || n.core.handingOver() {
		err := n.notLeader()
		if n.core.role == Leader && n.core.failed == nil {
			err = ErrTransferInProgress
		}
		for _, p := range batch {
			p.finish(err)
		}
		return
	}
	ents := make([]Entry, len(batch))
	for i, p := range batch {
		ents[i] = Entry{Type: EntryNormal, Data: p.cmd}
	}
	firstIndex := n.core.appendEntries(ents)
	for i, p := range batch {
		p.index, p.term, p.accepted, p.start = firstIndex+uint64(i), n.core.term, true, n.core.now
		n.pending = append(n.pending, p)
		batch[i] = nil
	}
}

func (n *Node) notLeader() error {
	if n.core.failed != nil {
		return n.core.failed
	}
	return &NotLeaderError{Leader: n.core.leader}
}

// dispatch carries out a ready. It returns false if the node is shutting down.
func (n *Node) dispatch(rd ready) bool {
	if rd.empty() && (n.core.failed == nil || n.failureReported) {
		n.core.recycle(rd.messages, rd.afterPersist) // empty, but keep the arrays
		return true
	}
	if rd.configChanged {
		n.adoptPeers()
	}
	if n.inlineSave {
		n.saveInline(&rd)
	} else if !n.saveViaAppender(&rd) {
		return false
	}
	for i := range rd.messages {
		n.send(rd.messages[i])
	}
	for _, w := range rd.snapWrites {
		select {
		case n.snapWrites <- w:
		case <-n.ctx.Done():
			return false
		}
	}
	if rd.snapshot != nil || len(rd.committed) > 0 {
		if !n.handToApplier(rd.snapshot, rd.committed) {
			return false
		}
	}
	if rd.proposalsLost {
		err := ErrOutcomeUnknown
		if n.core.failed != nil {
			// The storage failed: say so, and that the outcome is unknown
			// (followers may have the entry and commit it).
			err = fmt.Errorf("%w (%w)", n.core.failed, ErrOutcomeUnknown)
		}
		for _, p := range n.pending {
			p.finish(err)
		}
		clear(n.pending)
		n.pending = n.pending[:0]
	}
	n.finishReads(rd.reads)
	n.publish(rd)
	if len(n.transfers) > 0 {
		n.settleTransfers(&rd)
	}
	// Every message went out by value; acknowledgements too when saved
	// inline (the appender still holds them otherwise).
	after := rd.afterPersist
	if !n.inlineSave {
		after = nil
	}
	n.core.recycle(rd.messages, after)
	return true
}

// saveViaAppender queues a ready's persistence for the appender, which
// merges it with whatever else is queued into one Save. A new term or vote
// must be durable before any message carrying it leaves, so then it waits.
// It returns false if the node is shutting down.
func (n *Node) saveViaAppender(rd *ready) bool {
	if !rd.syncHS && len(rd.entries) == 0 && len(rd.afterPersist) == 0 && rd.snapshot == nil && rd.compact == 0 {
		return true
	}
	b := &writeBatch{hs: rd.hardState, entries: rd.entries, after: rd.afterPersist, snapshot: rd.snapshot, compact: rd.compact}
	if rd.syncHS {
		b.done = make(chan error, 1)
	}
	select {
	case n.logEntries <- b:
	case <-n.ctx.Done():
		return false
	}
	if b.done == nil {
		return true
	}
	select {
	case err := <-b.done:
		if err != nil {
			n.core.fail(fmt.Errorf("%w: %w", ErrStorageFailed, err))
			rd.messages = nil
		}
		return true
	case <-n.ctx.Done():
		return false
	}
}

// saveInline persists a ready on the owner goroutine, before any of its
// messages leave, and reports it the way the appender would: the next
// round takes the report without a goroutine hand-off. Only for storage
// whose Save is cheap (MemoryStorage).
func (n *Node) saveInline(rd *ready) {
	if !rd.syncHS && len(rd.entries) == 0 && len(rd.afterPersist) == 0 && rd.snapshot == nil && rd.compact == 0 {
		return
	}
	n.persistMu.Lock()
	err := n.persistErr
	n.persistMu.Unlock()
	if err == nil && rd.snapshot != nil {
		err = n.cfg.Storage.InstallSnapshot(rd.snapshot.Index, rd.snapshot.Term)
	}
	if err == nil && (len(rd.entries) > 0 || !rd.hardState.IsZero()) {
		// Untimed: SaveLatency is the disk's latency, and a MemoryStorage
		// copy is not worth the two clock reads per round it would cost.
		err = n.cfg.Storage.Save(rd.hardState, rd.entries)
	}
	if err == nil && rd.compact > 0 {
		err = n.compactStorage(rd.compact)
	}
	if err != nil {
		n.core.fail(fmt.Errorf("%w: %w", ErrStorageFailed, err))
		rd.messages = nil
	} else {
		for i := range rd.afterPersist {
			n.send(rd.afterPersist[i])
		}
	}
	n.reportPersisted(rd.entries, err)
}

// send hands m to its peer's sender, or the transport, without blocking.
// A snapshot chunk goes to the snapshot sender, which reads its bytes.
func (n *Node) send(m Message) {
	m.Group = n.cfg.Group
	if m.Type == MsgSnap && m.Chunk != nil && m.Chunk.Data == nil {
		select {
		case n.snapSends <- m:
		default:
			n.dropped(m.Type) // the transfer resends what is lost
		}
		return
	}
	if n.direct != nil {
		if err := n.direct.trySend(m); errors.Is(err, errLaneFull) {
			n.dropped(m.Type)
		} else if err != nil {
			n.sendErrors.Add(1)
		} else {
			n.m.sent[m.Type].Add(1)
		}
		return
	}
	n.sendersMu.RLock()
	s := n.senders[m.To]
	n.sendersMu.RUnlock()
	if s == nil || !s.enqueue(m) {
		n.dropped(m.Type)
		return
	}
	n.m.sent[m.Type].Add(1)
}

// dropped counts a message dropped on a full lane.
func (n *Node) dropped(t MessageType) {
	n.sendDropped.Add(1)
	n.m.dropped[t].Add(1)
}

// handToApplier sends committed entries, with the waiters of the proposals
// among them, to the applier.
func (n *Node) handToApplier(snapshot *SnapshotMeta, ents []Entry) bool {
	b := applyBatch{snapshot: snapshot, entries: ents}
	k := 0
	if len(ents) > 0 {
		last := ents[len(ents)-1].Index
		for k < len(n.pending) && n.pending[k].index <= last {
			k++
		}
	}
	now := n.core.now // this round's clock: a read per hand-off is a read per proposal at low load
	if k > 0 {
		b.waiters = make([]*proposal, k)
		copy(b.waiters, n.pending[:k])
		var latency histogramBatch
		for _, p := range b.waiters {
			if p.m != nil {
				latency.observe(time.Duration(now - p.start))
			}
		}
		latency.addTo(&n.m.commitLatency)
		clear(n.pending[:k])
		n.pending = n.pending[k:]
	}
	b.handed = now
	select { // room in applyCh is the common case: no select on ctx too
	case n.applyCh <- b:
		return true
	default:
	}
	select {
	case n.applyCh <- b:
		return true
	case <-n.ctx.Done():
		return false
	}
}

// finishReads resolves reads the core has decided on.
func (n *Node) finishReads(reads []readDone) {
	for _, r := range reads {
		w := n.readWaiters[r.id]
		if w == nil {
			continue
		}
		if r.lost {
			delete(n.readWaiters, r.id)
			w.err = n.notLeader()
			close(w.done)
			continue
		}
		w.index = r.index
		n.readsApplied = append(n.readsApplied, w)
	}
	n.releaseReads()
}

// releaseReads completes confirmed reads the state machine has caught up with.
func (n *Node) releaseReads() {
	applied := n.applied.Load()
	kept := n.readsApplied[:0]
	for _, w := range n.readsApplied {
		if w.index <= applied {
			delete(n.readWaiters, w.id)
			w.index = applied
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	clear(n.readsApplied[len(kept):])
	n.readsApplied = kept
}

// publish tells subscribers about role, leader and peer changes.
func (n *Node) publish(rd ready) {
	c := n.core
	if rd.roleChanged {
		n.subs.publish(Event{Type: EventRoleChanged, Node: n.cfg.ID, Term: c.term, Role: c.role})
	}
	if rd.leaderChange {
		n.subs.publish(Event{Type: EventLeaderChanged, Node: n.cfg.ID, Term: c.term, Leader: c.leader})
	}
	for _, e := range rd.peerEvents {
		e.Node = n.cfg.ID
		n.subs.publish(e)
	}
	if c.failed != nil && !n.failureReported {
		n.failureReported = true
		n.cfg.Logger.Error("raft: node failed", "id", n.cfg.ID, "err", c.failed)
		n.subs.publish(Event{Type: EventFailed, Node: n.cfg.ID, Term: c.term})
	}
}

func (n *Node) status() Status {
	n.stampNow()
	c := n.core
	st := Status{
		ID: n.cfg.ID, Role: c.role, Term: c.term, Vote: c.vote, Leader: c.leader,
		Commit: c.log.committed, Applied: n.applied.Load(), LastIndex: c.log.lastIndex(),
		FirstIndex: c.log.firstIndex(), SnapshotIndex: c.snap.Index,
		Config:      Configuration{Servers: append([]Server(nil), c.config.Servers...)},
		ConfigIndex: c.configAt, Lease: c.leaseValid(),
		Err:     c.failed,
		Metrics: n.metrics(),
	}
	if c.role == Leader {
		st.Peers = c.peerStatus()
	}
	if c.transfer != nil {
		st.Transferring = c.transfer.target
	}
	return st
}

// shutdown runs when the owner stops: callers still waiting are told.
func (n *Node) shutdown() {
	n.final = n.status()
	n.final.Peers = maps.Clone(n.final.Peers)
	for _, p := range n.pending {
		p.finish(errClosedAfterAppend)
	}
	n.pending = nil
	for _, w := range n.readWaiters {
		w.err = ErrClosed
		close(w.done)
	}
	n.readWaiters = nil
	n.readsApplied = nil
}
