package raft

// This file is the log appender actor: it drains everything queued on
// logEntries and turns it into one Storage.Save, so many proposals (and a
// follower's many appends) share one write and one fsync: group commit.

// maxBatchesPerSave bounds how many queued batches one Save merges.
const maxBatchesPerSave = 64

// writeBatch is one ready's worth of persistence.
type writeBatch struct {
	hs      HardState // zero: unchanged
	entries []Entry
	// after are messages that may leave only once entries are durable.
	after []Message
	// done, if set, receives the outcome (the owner waits on it).
	done chan error
}

func (n *Node) runAppender() {
	var (
		batches []*writeBatch
		merged  []Entry
		failed  error
	)
	for {
		select {
		case <-n.ctx.Done():
			return
		case b := <-n.logEntries:
			batches = append(batches[:0], b)
		}
	drain:
		for len(batches) < maxBatchesPerSave {
			select {
			case b := <-n.logEntries:
				batches = append(batches, b)
			default:
				break drain
			}
		}
		var hs HardState
		var ents []Entry
		ents, merged = mergeBatches(batches, merged[:0])
		for _, b := range batches {
			if !b.hs.IsZero() {
				hs = b.hs
			}
		}
		if failed == nil && (len(ents) > 0 || !hs.IsZero()) {
			failed = n.cfg.Storage.Save(hs, ents)
		}
		for _, b := range batches {
			if failed == nil {
				for i := range b.after {
					n.send(b.after[i])
				}
			}
			if b.done != nil {
				b.done <- failed
			}
		}
		n.reportPersisted(ents, failed)
		clear(merged) // drop references to entry data
		clear(batches)
	}
}

// mergeBatches joins the batches' entries into one run, a later batch
// replacing the tail of an earlier one from its first index on. With one
// batch of entries it returns that batch's slice untouched.
func mergeBatches(batches []*writeBatch, buf []Entry) (ents, scratch []Entry) {
	var single []Entry
	count := 0
	for _, b := range batches {
		if len(b.entries) > 0 {
			single = b.entries
			count++
		}
	}
	if count <= 1 {
		return single, buf
	}
	for _, b := range batches {
		if len(b.entries) == 0 {
			continue
		}
		if len(buf) > 0 {
			first := b.entries[0].Index
			base := buf[0].Index
			if first <= base {
				buf = buf[:0]
			} else if first-base < uint64(len(buf)) {
				buf = buf[:first-base]
			}
		}
		buf = append(buf, b.entries...)
	}
	return buf, buf
}

// reportPersisted tells the owner how far the durable log reaches.
func (n *Node) reportPersisted(ents []Entry, err error) {
	n.persistMu.Lock()
	if err != nil {
		n.persistErr = err
	} else if len(ents) > 0 {
		last := ents[len(ents)-1]
		n.persistedAt = logPosition{index: last.Index, term: last.Term}
	}
	n.persistMu.Unlock()
	if err == nil && len(ents) == 0 {
		return
	}
	select {
	case n.persistNotify <- struct{}{}:
	default:
	}
}
