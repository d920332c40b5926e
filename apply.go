package raft

// This file is the applier actor: it feeds committed entries to the
// StateMachine in log order, hands each proposal its result, and reports
// the applied index back to the owner.

// applyBatch is a run of committed entries and the proposals among them
// (ascending by index).
type applyBatch struct {
	entries []Entry
	waiters []*proposal
}

func (n *Node) runApplier() {
	sm := n.cfg.StateMachine
	for {
		var b applyBatch
		select {
		case <-n.ctx.Done():
			return
		case b = <-n.applyCh:
		}
		w := 0
		for i := range b.entries {
			e := b.entries[i]
			var result any
			if e.Type == EntryNormal {
				result = sm.Apply(e)
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
		n.applied.Store(b.entries[len(b.entries)-1].Index)
		select {
		case n.appliedNotify <- struct{}{}:
		default:
		}
	}
}
