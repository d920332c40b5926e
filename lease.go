package raft

// This file holds lease reads (Raft thesis §6.4.1), opt-in with
// Config.LeaseReads. A leader whose heartbeat round a quorum answered may
// serve reads without another round while its lease holds, because every
// follower that answered promised (by CheckQuorum's leader stickiness) not
// to vote for anyone else until an election timeout after it heard that
// round. The lease therefore runs from when the leader sent the round,
// never from when the answers came, for
//
//	(election timeout − one election tick) × (1 − MaxClockDrift)
//
// of the leader's monotonic clock: the tick because followers count their
// election timeout in whole ticks, the drift because the followers' clocks
// may run faster than the leader's by up to that rate.
//
// There is no lease right after an election (until a round sent in the new
// term is answered), across a configuration change (the quorum changed),
// during a leadership transfer, or for an election timeout after the last
// MsgTimeoutNow (a late one can still elect the target). A restarted node
// refuses votes for an election timeout, since it may have promised a
// lease before it crashed. Without a lease a read falls back to ReadIndex.

// roundsKept is how many recent heartbeat rounds remember when they left.
const roundsKept = 16

// sentRound is a heartbeat round and when it left.
type sentRound struct {
	seq uint64
	at  int64
}

// newRound numbers a new heartbeat round and notes when it leaves.
func (c *core) newRound() uint64 {
	c.readSeq++
	c.rounds[c.readSeq%roundsKept] = sentRound{seq: c.readSeq, at: c.now}
	return c.readSeq
}

// roundConfirmed extends the lease from round seq, which a quorum answered.
func (c *core) roundConfirmed(seq uint64) {
	if !c.cfg.leaseReads || seq <= c.leaseSeq {
		return
	}
	r := c.rounds[seq%roundsKept]
	if r.seq != seq {
		return // too old to remember when it left: no lease from it
	}
	c.leaseSeq, c.leaseFrom = seq, r.at
	if bugLeaseFromAcks {
		bugHit("lease-from-acks")
		c.leaseFrom = c.now // planted bug: from the answers, not the round
	}
}

// leaseDuration is how long a confirmed round's lease lasts.
func (c *core) leaseDuration() int64 {
	tick := c.cfg.electionTimeout / int64(c.cfg.electionTicks)
	d := float64(c.cfg.electionTimeout - tick)
	if bugLeaseIgnoresDrift {
		bugHit("lease-ignores-drift")
		return int64(d) // planted bug: as if clocks never drift
	}
	return int64(d * (1 - c.cfg.maxClockDrift))
}

// leaseValid reports whether this leader may serve a read on its lease.
func (c *core) leaseValid() bool {
	if !c.cfg.leaseReads || c.role != Leader || c.failed != nil || c.leaseSeq < c.leaseMinSeq || c.leaseSeq == 0 {
		return false
	}
	if !bugLeaseAcrossTransfer && (c.transfer != nil || (c.timeoutNowSent && c.now-c.timeoutNowAt < c.cfg.electionTimeout)) {
		return false
	}
	if bugLeaseAcrossTransfer && c.transfer != nil {
		bugHit("lease-across-transfer")
	}
	if t, err := c.log.term(c.log.committed); err != nil || t != c.term {
		return false
	}
	return c.now-c.leaseFrom < c.leaseDuration()
}

// leaseRead serves a read on the lease, or falls back to readIndex.
func (c *core) leaseRead(id uint64) {
	if c.leaseValid() {
		c.out.reads = append(c.out.reads, readDone{id: id, index: c.log.committed})
		c.metrics.leaseReads++
		return
	}
	c.readIndex(id)
}

// restartVoteHold reports whether a node restarted less than an election
// timeout ago, during which it grants no vote: before the crash it may
// have answered a leader's round and so promised it a lease.
func (c *core) restartVoteHold() bool {
	return c.cfg.leaseReads && c.ticksSinceStart < c.cfg.electionTicks
}

// resetLease drops the lease: a new term or a new configuration needs a
// round sent after it.
func (c *core) resetLease() { c.leaseMinSeq = c.readSeq + 1 }
