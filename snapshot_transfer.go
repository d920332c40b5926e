package raft

import (
	"errors"
	"fmt"
)

// This file holds the core's side of snapshots: compacting the log behind
// a durable snapshot, and InstallSnapshot (Raft §7), which sends a follower
// that needs compacted entries the leader's newest snapshot instead.
//
// The core never touches a snapshot's bytes: a MsgSnap it emits names a
// chunk (snapshot, offset, length) that the driver reads from its
// SnapshotStore into the message, and a chunk a follower accepts becomes a
// SnapshotWrite the driver carries out. What the core does is the protocol:
//
//   - The leader streams chunks with a bounded window, on the bulk lane,
//     while heartbeats keep flowing. The follower writes chunks in order
//     and answers each with the bytes it holds; a gap (a lost chunk) is
//     answered with the same, and the leader resends from there.
//   - A transfer resumes instead of starting over: the follower keeps its
//     partial snapshot across dropped connections and leader changes, and
//     when a leader offers a snapshot Same as the partial one (identical
//     bytes), the follower's answer moves the leader to the offset it
//     holds. A different snapshot replaces a partial one.
//   - No install loops: while a follower installs, the leader keeps the
//     entries after that snapshot's index; and a follower whose log holds
//     the snapshot's last entry keeps its later entries.

// snapSend is the leader's side of one snapshot transfer to a peer.
type snapSend struct {
	meta SnapshotMeta
	// next is where the next chunk starts; acked how many bytes the peer
	// said it holds. sentLast: the chunk ending the snapshot went out.
	next, acked uint64
	sentLast    bool
	// resending: after a lost chunk, one chunk at a time until the peer
	// acknowledges one, so the answers to chunks that followed the lost
	// one do not each restart the stream.
	resending bool
	// stalls counts heartbeat answers that came with no progress since
	// lastAcked; after snapStallRounds the leader resends from acked.
	stalls    int
	lastAcked uint64
}

// snapStallRounds is how many heartbeat answers without progress make a
// leader resend a snapshot's chunks: every chunk in flight was lost, or
// the follower lost its partial snapshot (it restarted).
const snapStallRounds = 3

// snapRecv is a follower's side: the snapshot whose chunks it is writing.
type snapRecv struct {
	meta SnapshotMeta
	// written counts the bytes handed to the driver to write, in order.
	written uint64
	// finishing: the last chunk was handed over; the driver verifies and
	// commits the snapshot and reports with snapshotReceived.
	finishing bool
}

// SnapshotWrite asks a Core's driver to write a chunk of the snapshot the
// follower is receiving. A write at Offset 0 starts a new snapshot,
// discarding any partial one; later writes continue it, in order.
type SnapshotWrite struct {
	Meta   SnapshotMeta
	Offset uint64
	Data   []byte
	// Last: the chunk completes the snapshot. The driver checks the whole
	// snapshot's size and checksum against Meta, commits it to its
	// SnapshotStore, and reports with Core.SnapshotReceived.
	Last bool
	// Ack leaves once Data is written.
	Ack Message
}

// startSnapshot switches p to receiving the newest snapshot, because it
// needs entries the log no longer holds. It reports whether it did.
func (c *core) startSnapshot(p *progress) bool {
	if c.snap.Index == 0 || c.snap.Index+1 < c.log.firstIndex() {
		// Compaction follows a snapshot, so this does not happen; should
		// it, keep probing (a later snapshot will cover the gap).
		c.cfg.logger.Error("raft: peer needs compacted entries and no snapshot covers them",
			"peer", p.id, "next", p.next, "first", c.log.firstIndex(), "snapshot", c.snap.Index)
		p.probeSent = true
		return false
	}
	c.cfg.logger.Info("raft: sending snapshot to peer", "peer", p.id, "next", p.next, "snapshot", c.snap.String())
	c.metrics.snapshotsSent++
	p.state = snapshotting
	p.probeSent = false
	p.inflight.reset()
	p.snap = snapSend{meta: c.snap}
	c.sendChunks(p)
	return true
}

// sendChunks fills p's snapshot window: snapshotInflight chunks, or one
// while resending.
func (c *core) sendChunks(p *progress) {
	s := &p.snap
	chunk := c.cfg.snapshotChunk
	window := chunk * uint64(c.cfg.snapshotInflight)
	if s.resending {
		window = chunk
	}
	size := uint64(s.meta.Size)
	for !s.sentLast && s.next-s.acked < window {
		n := min(chunk, size-s.next)
		c.send(Message{Type: MsgSnap, To: p.id, Chunk: &SnapshotChunk{Meta: s.meta, Offset: s.next, Length: n}})
		s.next += n
		s.sentLast = s.next == size
	}
}

// rewindSnapshot resends p's snapshot from offset, one chunk at a time.
func (c *core) rewindSnapshot(p *progress, offset uint64) {
	s := &p.snap
	s.next, s.acked, s.sentLast, s.resending = offset, offset, false, true
	c.sendChunks(p)
}

// handleSnapshotResp is the leader's side of a follower's MsgSnapResp.
func (c *core) handleSnapshotResp(p *progress, m Message) {
	s := &p.snap
	if p.state != snapshotting || m.Index != s.meta.Index {
		return // answers a transfer that has ended
	}
	held := m.Chunk.Offset
	if held > uint64(s.meta.Size) {
		c.reject(m, fmt.Errorf("%w: holds %d bytes of a %d-byte snapshot", errMalformedMessage, held, s.meta.Size))
		return
	}
	switch {
	case m.Reject:
		// A chunk was lost (or the follower lost its partial snapshot):
		// it holds exactly held bytes. Answers to the chunks sent after
		// the lost one say the same; the first rewinds, the rest are old.
		if held < s.next && !(s.resending && held == s.acked) {
			c.rewindSnapshot(p, held)
		}
		return
	case held > s.next:
		// The follower holds more of this very snapshot than we sent (a
		// transfer from an earlier leader, or before a reconnect): resume.
		c.cfg.logger.Info("raft: resuming snapshot transfer", "peer", p.id, "offset", held, "snapshot", s.meta.String())
		s.next, s.sentLast = held, held == uint64(s.meta.Size)
		s.acked, s.resending = held, false
	case held > s.acked:
		s.acked, s.resending = held, false
	}
	c.sendChunks(p)
}

// snapshotStalled runs on each heartbeat answer from a peer receiving a
// snapshot: with no progress for snapStallRounds answers, every chunk in
// flight was lost, so resend from what the peer acknowledged (or, when it
// has everything and is installing, its last chunk, whose answer tells
// whether it still is).
func (c *core) snapshotStalled(p *progress) {
	s := &p.snap
	if s.acked != s.lastAcked {
		s.stalls, s.lastAcked = 0, s.acked
		return
	}
	s.stalls++
	if s.stalls < snapStallRounds {
		return
	}
	s.stalls = 0
	from := s.acked
	if size := uint64(s.meta.Size); from == size {
		from = size - min(size, c.cfg.snapshotChunk)
	}
	c.rewindSnapshot(p, from)
}

// snapshotSent ends p's transfer once p holds the log up to where the
// leader's log begins: it installed the snapshot (or turned out to have the
// entries after all). Replication goes on from p's match.
func (c *core) snapshotSent(p *progress) bool {
	if p.match+1 < c.log.firstIndex() {
		return false
	}
	c.cfg.logger.Info("raft: peer caught up by snapshot", "peer", p.id, "match", p.match)
	p.becomeProbe()
	p.becomeReplicate()
	c.maybeCompact()
	return true
}

// snapshotSendFailed: the driver could not read the snapshot p is being
// sent (a newer one replaced it in the store). Start again with the newest.
func (c *core) snapshotSendFailed(to NodeID, meta SnapshotMeta) {
	p := c.peer(to)
	if c.role != Leader || p == nil || p.state != snapshotting || !p.snap.meta.Same(meta) {
		return
	}
	c.cfg.logger.Warn("raft: could not read the snapshot being sent; starting over", "peer", to, "snapshot", meta.String())
	p.becomeProbe()
	if c.snap.Same(meta) {
		p.probeSent = true // the heartbeat answer retries
		return
	}
	c.startSnapshot(p)
}

// handleSnapshot is the follower's side of MsgSnap: it hands each chunk
// that continues the snapshot being received to the driver to write.
func (c *core) handleSnapshot(m Message) {
	k := m.Chunk
	meta := k.Meta
	if !bugInstallOldSnapshot {
		if meta.Index <= c.log.committed {
			// Everything the snapshot holds is committed here already.
			if c.recv != nil && c.recv.meta.Index <= c.log.committed && !c.recv.finishing {
				c.recv = nil
			}
			c.sendAfterPersist(Message{Type: MsgAppResp, To: m.From, Index: c.log.committed})
			return
		} else if c.log.matchTerm(meta.Index, meta.Term) {
			// Our log holds the snapshot's last entry, so it matches the
			// leader's up to there: appends can take it on from here.
			c.sendAfterPersist(Message{Type: MsgAppResp, To: m.From, Index: meta.Index})
			return
		}
	}
	r := c.recv
	if r != nil && !r.meta.Same(meta) {
		switch {
		case r.finishing:
			return // a complete snapshot is being installed; the leader retries
		case k.Offset != 0 && meta.Index <= r.meta.Index:
			// A late chunk of an older transfer must not cost the newer
			// one its progress; a leader really sending it starts over.
			c.sendSnapResp(m.From, meta.Index, 0, true)
			return
		}
		r = nil // a newer snapshot, or a fresh start, replaces the partial one
	}
	if r == nil {
		if k.Offset != 0 {
			c.sendSnapResp(m.From, meta.Index, 0, true)
			return
		}
		r = &snapRecv{meta: meta}
		c.recv = r
	}
	switch {
	case r.finishing || k.Offset < r.written:
		// Already written: tell the leader how far we are, which moves a
		// leader resuming this snapshot to the right offset.
		c.sendSnapResp(m.From, meta.Index, r.written, false)
		return
	case k.Offset > r.written:
		c.sendSnapResp(m.From, meta.Index, r.written, true)
		return
	case chunkChecksum(k.Data) != k.Checksum:
		c.reject(m, fmt.Errorf("%w: snapshot chunk at %d fails its checksum", errMalformedMessage, k.Offset))
		c.sendSnapResp(m.From, meta.Index, r.written, true)
		return
	}
	r.written += uint64(len(k.Data))
	r.finishing = r.written == uint64(meta.Size)
	ack := Message{Type: MsgSnapResp, From: c.id, To: m.From, Term: c.term, Index: meta.Index, Chunk: &SnapshotChunk{Offset: r.written}}
	c.out.snapWrites = append(c.out.snapWrites, SnapshotWrite{Meta: meta, Offset: k.Offset, Data: k.Data, Last: r.finishing, Ack: ack})
}

func (c *core) sendSnapResp(to NodeID, index, held uint64, gap bool) {
	c.send(Message{Type: MsgSnapResp, To: to, Index: index, Reject: gap, Chunk: &SnapshotChunk{Offset: held}})
}

// snapshotReceived: the driver verified and committed the snapshot whose
// last chunk it wrote (err nil), or failed to.
func (c *core) snapshotReceived(meta SnapshotMeta, err error) {
	r := c.recv
	if r == nil || !r.meta.Same(meta) || (err == nil && !r.finishing) {
		return
	}
	c.recv = nil
	if err != nil {
		c.cfg.logger.Error("raft: receiving a snapshot failed; the leader will send it again", "snapshot", meta.String(), "err", err)
		if c.leader != None && c.role != Leader {
			c.sendSnapResp(c.leader, meta.Index, 0, true)
		}
		return
	}
	if c.failed != nil || c.role == Leader || (meta.Index <= c.log.committed && !bugInstallOldSnapshot) {
		// No longer needed (a leader holds every committed entry), but it
		// is a good snapshot in the store.
		c.noteSnapshot(meta)
		return
	}
	if bugInstallOldSnapshot && meta.Index <= c.log.committed {
		bugHit("install-snapshot-older-than-commit")
	}
	c.installSnapshot(meta)
}

// installSnapshot makes a received snapshot the base of the log and asks
// the owner to make storage and the state machine follow.
func (c *core) installSnapshot(meta SnapshotMeta) {
	c.cfg.logger.Info("raft: installing snapshot", "id", c.id, "snapshot", meta.String(), "commit", c.log.committed)
	c.log.restore(meta)
	c.noteSnapshot(meta)
	installed := meta
	c.out.snapshot = &installed
	if c.configAt <= meta.Index || c.configAt > c.log.lastIndex() {
		c.applyConfig(meta.Config, meta.ConfigIndex)
	}
	if c.leader != None {
		c.sendAfterPersist(Message{Type: MsgAppResp, To: c.leader, Index: meta.Index})
	}
}

// snapshotTaken: a snapshot of the local state machine is durable.
func (c *core) snapshotTaken(meta SnapshotMeta) {
	c.noteSnapshot(meta)
	c.maybeCompact()
}

// noteSnapshot records a durable snapshot as the newest, if it is.
func (c *core) noteSnapshot(meta SnapshotMeta) {
	if meta.Index <= c.snap.Index {
		return
	}
	c.prevSnapIndex = c.snap.Index
	c.snap = meta
}

// maybeCompact asks the owner to compact the log behind the newest
// snapshot, keeping snapshotTrailing entries for slow followers, never past
// the previous snapshot (so that, should the newest prove corrupt on
// restart, the previous one plus the log still reach the present), and
// never past a snapshot a peer is receiving (its next appends start there).
func (c *core) maybeCompact() {
	if c.snap.Index == 0 {
		return
	}
	target := c.snap.Index - min(c.cfg.snapshotTrailing, c.snap.Index)
	target = min(target, c.prevSnapIndex)
	for _, p := range c.peers {
		if p.state == snapshotting {
			target = min(target, p.snap.meta.Index)
		}
	}
	if bugCompactPastSnapshot && c.log.committed > c.snap.Index {
		bugHit("compact-past-snapshot")
		target = c.log.committed // planted bug: past what the snapshot holds
	}
	if target <= c.compacted || target < c.log.firstIndex() {
		return
	}
	c.compacted = target
	c.out.compact = target
}

// isCompacted reports whether err says entries were compacted away.
func isCompacted(err error) bool { return errors.Is(err, ErrCompacted) }
