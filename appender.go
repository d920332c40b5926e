package raft

import (
	"errors"
	"time"
)

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
	// snapshot, if set, is installed before hs and entries are saved;
	// compact, if non-zero, is done after they are.
	snapshot *SnapshotMeta
	compact  uint64
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
		var ents []Entry
		ents, merged, failed = n.persist(batches, merged, failed)
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

// persist carries out the batches' storage work in order, with as few
// Saves as it can: one per run of batches between snapshot installs. It
// returns the last run's saved entries.
func (n *Node) persist(batches []*writeBatch, buf []Entry, failed error) (saved, scratch []Entry, _ error) {
	var compact uint64
	start := 0
	for i := 0; i <= len(batches); i++ {
		if i < len(batches) && batches[i].snapshot == nil {
			compact = max(compact, batches[i].compact)
			continue
		}
		run := batches[start:i]
		var ents []Entry
		ents, buf = mergeBatches(run, buf[:0])
		var hs HardState
		for _, b := range run {
			if !b.hs.IsZero() {
				hs = b.hs
			}
		}
		if failed == nil && (len(ents) > 0 || !hs.IsZero()) {
			failed = n.save(hs, ents)
		}
		if len(ents) > 0 {
			saved = ents
		}
		if i == len(batches) {
			break
		}
		b := batches[i]
		compact = max(compact, b.compact)
		if failed == nil {
			failed = n.cfg.Storage.InstallSnapshot(b.snapshot.Index, b.snapshot.Term)
		}
		start = i // the install's own entries and hard state start the next run
	}
	if failed == nil && compact > 0 {
		failed = n.compactStorage(compact)
	}
	return saved, buf, failed
}

// save is Storage.Save, timed.
func (n *Node) save(hs HardState, ents []Entry) error {
	start := n.monotonic()
	err := n.cfg.Storage.Save(hs, ents)
	n.m.saveLatency.observe(time.Duration(n.monotonic() - start))
	return err
}

// compactStorage compacts the log to index; already being compacted there
// is fine, and so is a log that does not reach it yet (the next snapshot
// compacts further).
func (n *Node) compactStorage(index uint64) error {
	err := n.cfg.Storage.Compact(index)
	switch {
	case err == nil:
		n.compactions.Add(1)
	case errors.Is(err, ErrCompacted):
		err = nil
	case errors.Is(err, ErrUnavailable):
		n.cfg.Logger.Warn("raft: compaction past the durable log skipped", "id", n.cfg.ID, "index", index)
		err = nil
	}
	return err
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
	case n.progress <- struct{}{}:
	default:
	}
}
