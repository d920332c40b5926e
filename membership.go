package raft

import (
	"fmt"
	"slices"
)

// This file holds membership changes in the core: single-server changes
// through the log (Raft thesis ch. 4). A configuration takes effect on a
// node as soon as its entry is in that node's log, committed or not; so a
// leader allows one uncommitted change at a time, and only after it has
// committed an entry of its own term (the fix to the single-server change
// bug found after the thesis: a new leader could otherwise act on a
// configuration that a change of a previous term had already replaced).
//
// A leader that removes (or demotes) itself keeps leading until the change
// commits, counting only the new configuration's voters for it; then it
// steps down and hands leadership to the most caught-up voter with
// MsgTimeoutNow, so the cluster waits for no election timeout.

// proposeConfChange appends the configuration cc makes of the current one
// and adopts it at once. It returns the entry's index (the current
// configuration's index when cc changes nothing).
func (c *core) proposeConfChange(cc ConfChange) (uint64, error) {
	if c.role != Leader || c.failed != nil {
		return 0, ErrCoreNotLeader
	}
	if c.transfer != nil {
		return 0, ErrTransferInProgress
	}
	if cc.PrevIndex != 0 && cc.PrevIndex != c.configAt {
		return 0, fmt.Errorf("%w: %d given, the configuration in force is at %d", ErrStaleConfiguration, cc.PrevIndex, c.configAt)
	}
	if c.configAt > c.log.committed && !bugConcurrentConfChanges {
		return 0, fmt.Errorf("%w: the change at %d is not committed yet", ErrConfigChangeInProgress, c.configAt)
	}
	if bugConcurrentConfChanges && c.configAt > c.log.committed {
		bugHit("concurrent-config-changes")
	}
	if t, err := c.log.term(c.log.committed); err != nil || t != c.term {
		return 0, fmt.Errorf("%w: a new leader first commits an entry of its own term", ErrConfigChangeInProgress)
	}
	next, changed, err := c.config.Apply(cc)
	if err != nil || !changed {
		return c.configAt, err
	}
	index := c.log.lastIndex() + 1
	c.cfg.logger.Info("raft: changing configuration", "id", c.id, "change", cc.String(), "index", index)
	c.adoptConfig(next, index)
	c.appendEntries([]Entry{{Type: EntryConfig, Data: EncodeConfiguration(next)}})
	return index, nil
}

// adoptConfig makes conf, from the entry at index just added to the log,
// the configuration in force; the one it replaces is kept, as it is the
// one to go back to should the entry be overwritten.
func (c *core) adoptConfig(conf Configuration, index uint64) {
	if bugConfigOnCommit && index > c.log.committed {
		// Planted bug: the configuration waits for its commit.
		bugHit("config-on-commit")
		c.pendingConfig, c.pendingConfigAt = conf, index
		return
	}
	c.prevConfig, c.prevConfigAt = c.config, c.configAt
	c.setConfig(conf, index)
}

// setConfig installs conf and tells the owner, which updates its senders
// and the transport's addresses.
func (c *core) setConfig(conf Configuration, index uint64) {
	c.applyConfig(conf, index)
	c.out.configChanged = true
	c.resetLease() // the quorum that granted it may be gone
	if c.role == Leader {
		c.maybeCommit() // the quorum may have changed
	}
}

// logReplaced runs after a follower's log was overwritten from index from
// with ents (the tail of an append): a configuration whose entry was
// overwritten gives way to the one before it, and configurations among
// the new entries take effect.
func (c *core) logReplaced(from uint64, ents []Entry) {
	if c.configAt >= from {
		c.cfg.logger.Info("raft: uncommitted configuration overwritten", "id", c.id, "index", c.configAt, "back to", c.prevConfigAt)
		c.setConfig(c.prevConfig, c.prevConfigAt)
	}
	if c.pendingConfigAt >= from {
		c.pendingConfigAt = 0
	}
	for i := range ents {
		e := &ents[i]
		if e.Index < from || e.Type != EntryConfig {
			continue
		}
		conf, err := DecodeConfiguration(e.Data)
		if err != nil {
			// Message.check decoded it already; the log cannot hold this.
			c.fail(fmt.Errorf("%w: configuration entry %d: %w", errLogCorrupt, e.Index, err))
			return
		}
		c.adoptConfig(conf, e.Index)
	}
}

// trackLeaving keeps, on a leader, the peers a new configuration dropped
// (from old), so they can be told the removal committed; peers back in the
// configuration stop leaving.
func (c *core) trackLeaving(old []*progress) {
	kept := c.leaving[:0]
	for _, p := range c.leaving {
		if c.peer(p.id) == nil {
			kept = append(kept, p)
		}
	}
	c.leaving = kept
	if c.role != Leader {
		c.leaving = nil
		return
	}
	for _, p := range old {
		if c.peer(p.id) == nil && c.findIn(c.leaving, p.id) == nil {
			p.toldRemoved = false
			c.leaving = append(c.leaving, p)
		}
	}
}

// leavingPeer returns the leaving peer id, if any.
func (c *core) leavingPeer(id NodeID) *progress { return c.findIn(c.leaving, id) }

// leftForGood drops a leaving peer once a message told it the removal
// committed (and it answered): it then knows it was removed
// (EventRemoved) and stops.
func (c *core) leftForGood(p *progress) {
	if !p.toldRemoved {
		return
	}
	c.leaving = slices.DeleteFunc(c.leaving, func(q *progress) bool { return q == p })
	c.out.configChanged = true // its sender and address can go
}

// tellRemoved notes a commit index sent to a leaving peer: once it reaches
// the removal, the peer's next answer ends its leaving.
func (c *core) tellRemoved(p *progress, commit uint64) {
	if c.configAt != 0 && commit >= c.configAt && c.configAt <= c.log.committed {
		p.toldRemoved = true
	}
}

// stepLeaving handles a leaving peer's answers: replication goes on until
// it holds the removal and was told it committed.
func (c *core) stepLeaving(p *progress, m Message) {
	switch m.Type {
	case MsgAppResp:
		c.handleAppendResp(p, m)
	case MsgHeartbeatResp:
		if p.match < c.log.lastIndex() {
			c.sendAppends(p)
		}
	case MsgSnapResp:
		c.handleSnapshotResp(p, m)
		return
	}
	c.leftForGood(p)
}

// commitTo advances the commit index and acts on what became committed.
func (c *core) commitTo(index uint64) {
	if c.log.commitTo(index) {
		c.configCommitted()
	}
}

// configCommitted acts once the configuration in force is committed: a
// leader that is no longer a voter steps down and hands over, and a node
// that was removed says so (once).
func (c *core) configCommitted() {
	if c.pendingConfigAt != 0 && c.pendingConfigAt <= c.log.committed {
		conf, at := c.pendingConfig, c.pendingConfigAt
		c.pendingConfigAt = 0
		c.prevConfig, c.prevConfigAt = c.config, c.configAt
		c.setConfig(conf, at)
	}
	if c.configAt > c.log.committed || c.configAt == 0 {
		return
	}
	if !c.config.Has(c.id) && !c.removed {
		c.removed = true
		c.cfg.logger.Warn("raft: this node was removed from the cluster", "id", c.id, "configuration", c.configAt)
		c.out.peerEvents = append(c.out.peerEvents, Event{Type: EventRemoved, Term: c.term})
	}
	if c.role == Leader && !c.voter && !bugLeaderStaysAfterRemoval {
		c.handOver()
	}
	if bugLeaderStaysAfterRemoval && c.role == Leader && !c.voter {
		bugHit("leader-stays-after-removal")
	}
}

// handOver steps down a leader that left the voters and tells the most
// caught-up voter to campaign at once.
func (c *core) handOver() {
	target := c.mostCaughtUpVoter()
	c.cfg.logger.Info("raft: leader left the configuration; stepping down", "id", c.id, "term", c.term)
	c.becomeFollower(c.term, None)
	if target != None {
		c.sendTimeoutNow(target)
	}
}

// handleTimeoutNow starts an election at once, as the leader asked: a
// transfer campaign skips PreVote, and voters that heard from the leader
// recently grant it anyway (Message.Transfer).
func (c *core) handleTimeoutNow(m Message) {
	if !c.mayCampaign() || c.failed != nil {
		return
	}
	c.cfg.logger.Info("raft: leader handed over leadership; campaigning", "id", c.id, "from", m.From, "term", c.term)
	c.campaignTransfer = true
	c.campaign(false)
	c.campaignTransfer = false
}

// mayCampaign reports whether this node may stand for election: it votes
// in the configuration in force, or in the committed one before it. The
// latter is a leader that removed (or demoted) itself and lost leadership
// before the change committed: the voters of the old configuration may
// need it, as its log is ahead of theirs, and the votes it collects are
// counted in the new configuration, so it can win, commit the change and
// hand over. Without this the cluster can wedge: the old voters wait for
// its vote, which it refuses them, and it never campaigns.
func (c *core) mayCampaign() bool {
	if c.voter {
		return true
	}
	if c.configAt <= c.log.committed {
		return false
	}
	s, ok := c.prevConfig.Server(c.id)
	return ok && s.Suffrage == Voter
}

// committedConfig returns the latest committed configuration and its index.
func (c *core) committedConfig() (Configuration, uint64) {
	if c.configAt <= c.log.committed {
		return c.config, c.configAt
	}
	return c.prevConfig, c.prevConfigAt
}
