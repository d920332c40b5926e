package raft

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// This file holds the node's snapshot actors, which do the snapshot I/O the
// core asks for, off the state owner's goroutine:
//
//   - the snapshot writer writes a view the applier captured
//     (StateMachine.Snapshot) into the SnapshotStore while applying goes
//     on, then reports it durable, and the owner compacts the log;
//   - the snapshot sender reads the chunks of MsgSnap messages from the
//     store and sends them on the bulk lane;
//   - the snapshot receiver writes a follower's incoming chunks into the
//     store, verifies and commits the snapshot, and reports it; the owner
//     then installs it (storage through the appender, the state machine
//     through the applier, so both stay in order with the log).
//
// Each reports back on ctrlc, which the owner drains like any event.

// snapReport is a snapshot actor's news for the owner.
type snapReport struct {
	kind snapReportKind
	meta SnapshotMeta
	peer NodeID // sendFailed
	err  error
}

type snapReportKind uint8

const (
	snapTaken snapReportKind = iota + 1
	snapReceived
	snapSendFailed
	// snapRestoreFailed: the applier could not restore a received
	// snapshot, so the state machine can no longer be trusted.
	snapRestoreFailed
)

// snapJob is a view of the state machine to write, and the Snapshot calls
// waiting for it.
type snapJob struct {
	meta    SnapshotMeta
	view    StateSnapshot
	waiters []*snapRequest
}

// snapRequest is one Node.Snapshot call.
type snapRequest struct {
	index uint64
	err   error
	done  chan struct{}
}

func (r *snapRequest) finish(index uint64, err error) {
	r.index, r.err = index, err
	close(r.done)
}

// Snapshot takes a snapshot of the state machine now, waits until it is
// durable (and the log compacted behind it), and returns the last index it
// holds. When nothing was applied since the newest snapshot, it returns
// that one's index at once. A snapshot already being written finishes
// first; then a new one is taken.
func (n *Node) Snapshot(ctx context.Context) (uint64, error) {
	req := &snapRequest{done: make(chan struct{})}
	select {
	case n.snapRequests <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.ctx.Done():
		return 0, ErrClosed
	}
	select {
	case <-req.done:
		return req.index, req.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.ctx.Done():
		return 0, ErrClosed
	}
}

// report hands r to the owner, unless the node is closing.
func (n *Node) report(r snapReport) {
	select {
	case n.ctrlc <- func() { n.takeSnapReport(r) }:
	case <-n.ctx.Done():
	}
}

// takeSnapReport hands an actor's report to the core.
func (n *Node) takeSnapReport(r snapReport) {
	switch r.kind {
	case snapTaken:
		if r.err != nil {
			n.cfg.Logger.Error("raft: taking a snapshot failed", "id", n.cfg.ID, "snapshot", r.meta.Index, "err", r.err)
			return
		}
		n.snapshotsTaken.Add(1)
		n.core.snapshotTaken(r.meta)
	case snapReceived:
		if r.err == nil {
			n.snapshotsReceived.Add(1)
		}
		n.core.snapshotReceived(r.meta, r.err)
	case snapSendFailed:
		n.core.snapshotSendFailed(r.peer, r.meta)
	case snapRestoreFailed:
		n.core.fail(fmt.Errorf("%w: restoring %v: %w", ErrStorageFailed, r.meta, r.err))
	}
}

// runSnapshotWriter writes the views the applier captures, one at a time.
func (n *Node) runSnapshotWriter() {
	for {
		var job snapJob
		select {
		case <-n.ctx.Done():
			return
		case job = <-n.snapJobs:
		}
		start := time.Now()
		meta, err := writeSnapshot(n.cfg.Snapshots, job.meta, job.view)
		job.view.Release()
		if err == nil {
			n.durableSnapshot.Store(meta.Index)
			n.m.snapshotDuration.observe(time.Since(start))
			n.m.snapshotBytes.Store(uint64(meta.Size))
		}
		for _, w := range job.waiters {
			w.finish(meta.Index, err)
		}
		n.snapshotBusy.Store(false)
		select {
		case n.snapWriterIdle <- struct{}{}:
		default:
		}
		n.report(snapReport{kind: snapTaken, meta: meta, err: err})
	}
}

// snapshotWriteBuffer batches a StateSnapshot's small writes.
const snapshotWriteBuffer = 256 << 10

// writeSnapshot writes view into a new snapshot of store and commits it
// with its size and checksum.
func writeSnapshot(store SnapshotStore, meta SnapshotMeta, view StateSnapshot) (SnapshotMeta, error) {
	sink, err := store.Create()
	if err != nil {
		return meta, fmt.Errorf("raft: creating snapshot %d: %w", meta.Index, err)
	}
	cw := &checksumWriter{w: sink}
	bw := bufio.NewWriterSize(cw, snapshotWriteBuffer)
	_, err = view.WriteTo(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		sink.Abort()
		return meta, fmt.Errorf("raft: writing snapshot %d: %w", meta.Index, err)
	}
	meta.Size, meta.Checksum = cw.size, cw.crc
	if err := sink.Commit(meta); err != nil {
		return meta, fmt.Errorf("raft: committing snapshot %d: %w", meta.Index, err)
	}
	return meta, nil
}

// runSnapshotSender reads and sends the chunks the core asks for.
func (n *Node) runSnapshotSender() {
	readers := snapReaders{store: n.cfg.Snapshots}
	defer readers.closeAll()
	for {
		var m Message
		select {
		case <-n.ctx.Done():
			return
		case m = <-n.snapSends:
		}
		k := *m.Chunk
		data := make([]byte, k.Length)
		if err := readers.readAt(k.Meta, data, k.Offset); err != nil {
			n.cfg.Logger.Warn("raft: reading snapshot chunk", "peer", m.To, "snapshot", k.Meta.String(), "offset", k.Offset, "err", err)
			n.report(snapReport{kind: snapSendFailed, meta: k.Meta, peer: m.To, err: err})
			continue
		}
		k.Data, k.Checksum = data, chunkChecksum(data)
		m.Chunk = &k
		// Wait for room on the bulk lane, but not for ever: a lost chunk
		// costs a resend, a stalled peer must not hold up the others.
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ElectionTimeout)
		err := n.cfg.Transport.Send(ctx, m)
		cancel()
		if err == nil {
			n.m.sent[MsgSnap].Add(1)
		} else if n.ctx.Err() == nil {
			n.sendErrors.Add(1)
		}
	}
}

// snapReaders keeps the snapshots being sent open between chunks. On Unix
// an open file stays readable after the store drops it, so a transfer
// outlives the store's retention.
type snapReaders struct {
	store SnapshotStore
	open  []openSnapshot
}

type openSnapshot struct {
	meta SnapshotMeta
	r    SnapshotReader
}

// snapReadersKept bounds the open snapshots: the newest and the one before
// cover a transfer that began before the latest snapshot.
const snapReadersKept = 2

func (s *snapReaders) readAt(meta SnapshotMeta, p []byte, off uint64) error {
	var r SnapshotReader
	for _, o := range s.open {
		if o.meta.Same(meta) {
			r = o.r
		}
	}
	if r == nil {
		var err error
		if r, err = s.store.Open(meta); err != nil {
			return err
		}
		if len(s.open) == snapReadersKept {
			s.open[0].r.Close()
			s.open = s.open[1:]
		}
		s.open = append(s.open, openSnapshot{meta, r})
	}
	k, err := r.ReadAt(p, int64(off))
	if k == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: %v ends before %d", ErrSnapshotCorrupt, meta, off+uint64(len(p)))
	}
	return err
}

func (s *snapReaders) closeAll() {
	for _, o := range s.open {
		o.r.Close()
	}
	s.open = nil
}

// runSnapshotReceiver writes a follower's incoming chunks in order.
func (n *Node) runSnapshotReceiver() {
	var in incomingSnapshot
	defer in.abort()
	for {
		var w SnapshotWrite
		select {
		case <-n.ctx.Done():
			return
		case w = <-n.snapWrites:
		}
		if err := in.write(n.cfg.Snapshots, w); err != nil {
			in.abort()
			n.report(snapReport{kind: snapReceived, meta: w.Meta, err: err})
			continue
		}
		n.send(w.Ack)
		if w.Offset == 0 {
			in.started = time.Now()
		}
		if !w.Last {
			continue
		}
		err := in.commit()
		if err == nil {
			n.m.installDuration.observe(time.Since(in.started))
			n.m.snapshotBytes.Store(uint64(w.Meta.Size))
		}
		n.report(snapReport{kind: snapReceived, meta: w.Meta, err: err})
	}
}

// incomingSnapshot is the partial snapshot a follower is receiving.
type incomingSnapshot struct {
	meta SnapshotMeta
	sink SnapshotSink
	cw   checksumWriter
	// started is when its first chunk was written (install duration).
	started time.Time
}

// write continues (or, at offset 0, starts) the snapshot with w's chunk.
func (in *incomingSnapshot) write(store SnapshotStore, w SnapshotWrite) error {
	if w.Offset == 0 {
		in.abort()
		sink, err := store.Create()
		if err != nil {
			return fmt.Errorf("raft: creating incoming snapshot: %w", err)
		}
		in.meta, in.sink, in.cw = w.Meta, sink, checksumWriter{w: sink}
	}
	if in.sink == nil || !in.meta.Same(w.Meta) || uint64(in.cw.size) != w.Offset {
		return fmt.Errorf("raft: snapshot chunk at %d does not continue the snapshot being received", w.Offset)
	}
	if _, err := in.cw.Write(w.Data); err != nil {
		return fmt.Errorf("raft: writing incoming %v: %w", w.Meta, err)
	}
	return nil
}

// commit checks the complete snapshot against its meta and makes it
// durable in the store.
func (in *incomingSnapshot) commit() error {
	meta, sink := in.meta, in.sink
	in.sink = nil
	if in.cw.size != meta.Size || in.cw.crc != meta.Checksum {
		sink.Abort()
		return fmt.Errorf("%w: received %v has %d bytes with checksum %08x", ErrSnapshotCorrupt, meta, in.cw.size, in.cw.crc)
	}
	if err := sink.Commit(meta); err != nil {
		return fmt.Errorf("raft: committing received %v: %w", meta, err)
	}
	return nil
}

func (in *incomingSnapshot) abort() {
	if in.sink != nil {
		in.sink.Abort()
		in.sink = nil
	}
}

// restoreSnapshot replaces the state machine with a stored snapshot,
// checking its bytes as it reads: a corrupt snapshot makes Restore see an
// error, never a silently different state.
func restoreSnapshot(store SnapshotStore, sm StateMachine, meta SnapshotMeta) error {
	r, err := store.Open(meta)
	if err != nil {
		return err
	}
	defer r.Close()
	vr := newVerifiedReader(r, meta)
	if err := sm.Restore(bufio.NewReaderSize(vr, snapshotWriteBuffer)); err != nil {
		return err
	}
	// A Restore that stopped short of the end has not seen the checksum.
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return err
	}
	return nil
}

// recoverSnapshot restores the state machine from the newest good snapshot
// that covers the start of the log, and makes the log agree with it (a
// crash can fall between a received snapshot becoming durable and the log
// being reset to it). With no snapshot it returns the zero meta.
func recoverSnapshot(cfg *Config) (SnapshotMeta, error) {
	first, err := cfg.Storage.FirstIndex()
	if err != nil {
		return SnapshotMeta{}, err
	}
	last, err := cfg.Storage.LastIndex()
	if err != nil {
		return SnapshotMeta{}, err
	}
	metas, err := cfg.Snapshots.List()
	if err != nil {
		return SnapshotMeta{}, fmt.Errorf("raft: listing snapshots: %w", err)
	}
	for _, meta := range metas {
		if meta.Index+1 < first {
			break // older than the log's start, as are the rest
		}
		start := time.Now()
		if err := restoreSnapshot(cfg.Snapshots, cfg.StateMachine, meta); err != nil {
			cfg.Logger.Error("raft: cannot restore snapshot; trying an older one", "id", cfg.ID, "snapshot", meta.String(), "err", err)
			if r, ok := cfg.Snapshots.(SnapshotRemover); ok && errors.Is(err, ErrSnapshotCorrupt) {
				if err := r.Remove(meta); err != nil {
					cfg.Logger.Error("raft: cannot remove corrupt snapshot", "id", cfg.ID, "snapshot", meta.String(), "err", err)
				}
			}
			continue
		}
		if t, err := cfg.Storage.Term(meta.Index); meta.Index > last || err != nil || t != meta.Term {
			if err := cfg.Storage.InstallSnapshot(meta.Index, meta.Term); err != nil {
				return SnapshotMeta{}, fmt.Errorf("raft: resetting the log to %v: %w", meta, err)
			}
		}
		cfg.Logger.Info("raft: restored snapshot", "id", cfg.ID, "snapshot", meta.String(), "took", time.Since(start))
		return meta, nil
	}
	if first > 1 {
		return SnapshotMeta{}, fmt.Errorf("%w: the log starts at %d and no good snapshot holds the entries before it (%d listed)",
			ErrSnapshotNotFound, first, len(metas))
	}
	return SnapshotMeta{}, nil
}

// snapshotPolicy decides, on the applier goroutine, when to snapshot.
type snapshotPolicy struct {
	entries int   // threshold, ≤ 0 for off
	bytes   int64 // threshold, 0 for off
	ratio   int   // Config.SnapshotSizeRatio, ≤ 0 for off
	// interval is Config.SnapshotInterval (≤ 0 for none) and last when
	// the previous snapshot was taken or restored (zero before the first,
	// which the interval does not hold back).
	interval time.Duration
	last     time.Time
	// applied counts entries and command bytes since the last snapshot.
	appliedEntries int
	appliedBytes   int64
}

func (p *snapshotPolicy) applied(ents []Entry) {
	p.appliedEntries += len(ents)
	for i := range ents {
		p.appliedBytes += int64(len(ents[i].Data))
	}
}

// due reports whether an automatic snapshot should be taken, lastSize
// being the size of the newest snapshot (0 for none or unknown); the clock
// is read only when the interval decides.
func (p *snapshotPolicy) due(lastSize int64, clock Clock) bool {
	threshold := p.reached(1)
	if threshold && p.ratio > 0 {
		threshold = p.appliedBytes >= lastSize/int64(p.ratio)
	}
	if !threshold || p.interval <= 0 || p.reached(SnapshotIntervalOverrun) {
		return threshold
	}
	return clock.Now().Sub(p.last) >= p.interval
}

// reached reports whether the entries or bytes applied since the last
// snapshot are at least times their threshold.
func (p *snapshotPolicy) reached(times int) bool {
	return (p.entries > 0 && p.appliedEntries >= times*p.entries) ||
		(p.bytes > 0 && p.appliedBytes >= int64(times)*p.bytes)
}

// taken starts a new interval: a snapshot was taken (or restored) at now.
func (p *snapshotPolicy) taken(now time.Time) {
	p.reset()
	p.last = now
}

func (p *snapshotPolicy) reset() { p.appliedEntries, p.appliedBytes = 0, 0 }
