package raft

import (
	"fmt"
	"time"
)

// This file is the applier actor: it feeds committed entries to the
// StateMachine in log order, hands each proposal its result, restores
// snapshots received from the leader, reports the applied index back to
// the owner, and captures the state machine's snapshots when the policy
// (or Node.Snapshot) asks for one.

// applyBatch is a run of committed entries and the proposals among them
// (ascending by index), or a snapshot to restore first.
type applyBatch struct {
	snapshot *SnapshotMeta
	entries  []Entry
	waiters  []*proposal
	// handed is when the owner handed it over (Node.monotonic, for the
	// apply latency).
	handed int64
}

// applier is the applier goroutine's state.
type applier struct {
	n *Node
	// meta describes the applied state: what a snapshot taken now holds.
	meta   SnapshotMeta
	policy snapshotPolicy
	// snapshotted is the index of the newest snapshot handed to the
	// writer (or restored); waiting are Snapshot calls for the next one.
	snapshotted uint64
	waiting     []*snapRequest
	// broken: a restore failed, so nothing more may be applied.
	broken bool
}

func (n *Node) runApplier(restored SnapshotMeta) {
	a := &applier{n: n, meta: restored, snapshotted: restored.Index,
		policy: snapshotPolicy{entries: n.cfg.SnapshotEntries, bytes: n.cfg.SnapshotBytes,
			ratio: n.cfg.SnapshotSizeRatio, interval: n.cfg.SnapshotInterval}}
	defer func() {
		for _, w := range a.waiting {
			w.finish(0, ErrClosed)
		}
	}()
	// A snapshot the interval held back is taken when the interval ends
	// even if nothing more is applied: the ticker looks again a few times
	// per interval.
	var recheck <-chan time.Time
	if iv := n.cfg.SnapshotInterval; iv > 0 && (n.cfg.SnapshotEntries > 0 || n.cfg.SnapshotBytes > 0) {
		t := n.cfg.Clock.NewTicker(iv / snapshotRechecks)
		defer t.Stop()
		recheck = t.C()
	}
	for {
		select {
		case <-n.ctx.Done():
			return
		case b := <-n.applyCh:
			a.apply(b)
		case req := <-n.snapRequests:
			a.waiting = append(a.waiting, req)
		case <-n.snapWriterIdle:
		case <-recheck:
		}
		a.maybeSnapshot()
	}
}

// snapshotRechecks is how many times per Config.SnapshotInterval an idle
// applier looks whether a held-back snapshot is due.
const snapshotRechecks = 4

func (a *applier) apply(b applyBatch) {
	n := a.n
	if a.broken {
		return
	}
	if b.snapshot != nil {
		a.restore(*b.snapshot)
	}
	if len(b.entries) == 0 {
		return
	}
	sm := n.cfg.StateMachine
	w := 0
	for i := range b.entries {
		e := b.entries[i]
		var result any
		if e.Type == EntryNormal {
			result = sm.Apply(e)
		}
		if err := a.meta.Advance(e); err != nil {
			n.cfg.Logger.Error("raft: applied entry", "id", n.cfg.ID, "err", err)
		}
		for w < len(b.waiters) && b.waiters[w].index < e.Index {
			w++
		}
		if w < len(b.waiters) && b.waiters[w].index == e.Index {
			p := b.waiters[w]
			if p.term == e.Term {
				p.result = result
				p.finish(nil)
			} else {
				// Another leader's entry took this index: ours is gone.
				p.finish(ErrOutcomeUnknown)
			}
			w++
		}
	}
	a.policy.applied(b.entries)
	a.published(b.entries[len(b.entries)-1].Index)
	n.m.applyLatency.observe(time.Duration(n.monotonic() - b.handed))
}

// restore replaces the state machine with a snapshot the leader sent.
func (a *applier) restore(meta SnapshotMeta) {
	n := a.n
	if err := restoreSnapshot(n.cfg.Snapshots, n.cfg.StateMachine, meta); err != nil {
		a.broken = true
		n.report(snapReport{kind: snapRestoreFailed, meta: meta, err: err})
		return
	}
	n.cfg.Logger.Info("raft: restored snapshot from the leader", "id", n.cfg.ID, "snapshot", meta.String())
	a.meta, a.snapshotted = meta, meta.Index
	a.policy.taken(n.cfg.Clock.Now())
	a.published(meta.Index)
}

// published makes index the applied index the owner and readers see.
func (a *applier) published(index uint64) {
	a.n.applied.Store(index)
	select {
	case a.n.progress <- struct{}{}:
	default:
	}
}

// maybeSnapshot captures the state machine when a snapshot is due and the
// writer is free: the capture is quick, the writing happens on the writer.
func (a *applier) maybeSnapshot() {
	n := a.n
	if a.broken || n.snapshotBusy.Load() || (!a.policy.due(int64(n.m.snapshotBytes.Load()), n.cfg.Clock) && len(a.waiting) == 0) {
		return
	}
	if a.meta.Index <= a.snapshotted {
		// Nothing applied since the newest snapshot: it is the answer.
		for _, w := range a.waiting {
			w.finish(n.durableSnapshot.Load(), nil)
		}
		a.waiting = nil
		a.policy.reset()
		return
	}
	a.policy.taken(n.cfg.Clock.Now())
	view, err := n.cfg.StateMachine.Snapshot()
	if err != nil {
		err = fmt.Errorf("raft: StateMachine.Snapshot at %d: %w", a.meta.Index, err)
		n.cfg.Logger.Error("raft: taking a snapshot failed", "id", n.cfg.ID, "err", err)
		for _, w := range a.waiting {
			w.finish(0, err)
		}
		a.waiting = nil
		return
	}
	n.snapshotBusy.Store(true)
	a.snapshotted = a.meta.Index
	n.snapJobs <- snapJob{meta: a.meta, view: view, waiters: a.waiting}
	a.waiting = nil
}
