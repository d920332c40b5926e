package raft

import "time"

// This file holds leader election: the election timer, PreVote and
// RequestVote on both sides, and the election-timer actor that feeds the
// core its ticks.

// electionTickResolution is how many election ticks make one election
// timeout: the timer actor ticks every ElectionTimeout/electionTickResolution
// and the core randomizes timeouts in whole ticks.
const electionTickResolution = 10

// tickElection advances the election clock by one tick. Followers and
// candidates campaign when their randomized timeout passes; a leader runs
// its CheckQuorum round every election timeout.
func (c *core) tickElection() {
	if c.failed != nil {
		return
	}
	c.electionElapsed++
	c.ticksSinceStart = min(c.ticksSinceStart+1, c.cfg.electionTicks)
	c.leaderSilence = min(c.leaderSilence+1, c.cfg.electionTicks)
	if c.role == Leader {
		c.transferTick()
		if c.electionElapsed >= c.cfg.electionTicks {
			c.electionElapsed = 0
			c.checkQuorumRound()
		}
		return
	}
	if c.electionElapsed >= c.randomizedTimeout && c.mayCampaign() {
		c.electionElapsed = 0
		c.campaign(c.cfg.preVote)
	}
}

// inLease reports whether this node heard from a live leader within the
// last election timeout, in which case it refuses to help unseat it: a
// leader of its own (as etcd's leader stickiness), or the leader it
// followed before a message of a higher term made it forget that leader.
func (c *core) inLease() bool {
	return c.cfg.checkQuorum &&
		(c.leader != None && c.electionElapsed < c.cfg.electionTicks || c.promisedLeader())
}

// promisedLeader reports whether a leader spoke to this node within the
// last election timeout, whatever its term since.
func (c *core) promisedLeader() bool { return c.leaderSilence < c.cfg.electionTicks }

// campaign starts an election: a pre-vote round first when enabled (so a
// node that cannot win never bumps the cluster's term), then a real one.
func (c *core) campaign(pre bool) {
	c.metrics.electionsStarted++
	var voteTerm uint64
	if pre {
		c.resetTerm(c.term) // keeps term and vote; resets timers and votes
		c.setRole(PreCandidate)
		c.setLeader(None)
		voteTerm = c.term + 1
	} else {
		c.resetTerm(c.term + 1)
		c.vote = c.id
		c.setRole(Candidate)
		c.setLeader(None)
		voteTerm = c.term
	}
	c.votes = map[NodeID]bool{c.id: true}
	if c.wonElection() {
		return
	}
	typ := MsgVote
	if pre {
		typ = MsgPreVote
	}
	for _, p := range c.peers {
		if p.learner && !bugVoteFromNonVoter {
			continue
		}
		c.send(Message{Type: typ, To: p.id, Term: voteTerm, Index: c.log.lastIndex(), LogTerm: c.log.lastTerm(),
			Transfer: c.campaignTransfer && !pre})
	}
}

// wonElection tallies votes and moves on when the outcome is decided.
func (c *core) wonElection() bool {
	granted, rejected := 0, 0
	if c.votes[c.id] && c.voter {
		granted++
	}
	for _, p := range c.peers {
		if p.learner && !bugVoteFromNonVoter {
			continue
		}
		if v, ok := c.votes[p.id]; ok {
			if p.learner {
				bugHit("vote-from-non-voter")
			}
			if v {
				granted++
			} else {
				rejected++
			}
		}
	}
	q := c.quorum()
	switch {
	case granted >= q:
		if c.role == PreCandidate {
			c.campaign(false)
		} else {
			c.becomeLeader()
		}
		return true
	case rejected >= q:
		c.becomeFollower(c.term, None)
		return true
	}
	return false
}

// handleVoteRequest answers MsgVote and MsgPreVote (Raft §5.2, §5.4.1).
func (c *core) handleVoteRequest(m Message) {
	respType := MsgVoteResp
	if m.Type == MsgPreVote {
		respType = MsgPreVoteResp
	}
	canVote := c.vote == m.From ||
		(c.vote == None && c.leader == None && !c.holdsVote(m)) ||
		(m.Type == MsgPreVote && m.Term > c.term)
	if !canVote || (!c.log.isUpToDate(m.Index, m.LogTerm) && !bugVoteWithoutLogCheck) {
		c.send(Message{Type: respType, To: m.From, Reject: true})
		return
	}
	// A grant answers with the term asked about: for a pre-vote that is
	// the candidate's future term, which our own term does not reach.
	c.send(Message{Type: respType, To: m.From, Term: m.Term})
	if m.Type == MsgVote {
		// The owner persists this vote before the response leaves.
		c.electionElapsed = 0
		c.vote = m.From
	}
}

// holdsVote reports whether a vote request must be refused to keep a
// promise: a leader spoke to us within an election timeout (or we restarted
// less than one ago) and its lease counts on us. step ignores such a
// request of a higher term; handleVoteRequest refuses one of our own term,
// which we reach without a leader or a vote when a higher term came from a
// non-leader. A transfer's campaign is exempt.
func (c *core) holdsVote(m Message) bool {
	if m.Type == MsgVote && m.Transfer {
		return false
	}
	return c.inLease() || c.restartVoteHold()
}

// stepCandidate handles messages while campaigning.
func (c *core) stepCandidate(m Message) {
	want := MsgVoteResp
	if c.role == PreCandidate {
		want = MsgPreVoteResp
	}
	switch m.Type {
	case MsgApp:
		c.becomeFollower(m.Term, m.From)
		c.handleAppend(m)
	case MsgHeartbeat:
		c.becomeFollower(m.Term, m.From)
		c.handleHeartbeat(m)
	case MsgSnap:
		c.becomeFollower(m.Term, m.From)
		c.handleSnapshot(m)
	case want:
		if c.peer(m.From) == nil {
			return
		}
		c.votes[m.From] = !m.Reject
		c.wonElection()
	}
}

// becomeLeader takes office: every peer is probed from our last index and a
// no-op entry of the new term lets earlier entries commit (Raft §5.4.2).
func (c *core) becomeLeader() {
	c.metrics.electionsWon++
	c.resetTerm(c.term)
	c.setRole(Leader)
	c.setLeader(c.id)
	last := c.log.lastIndex()
	for _, p := range c.peers {
		p.match, p.next = 0, last+1
		p.becomeProbe()
		p.recentActive = true
		p.unreachable = false
	}
	c.self = progress{id: c.id, match: c.log.stableIndex()}
	c.resetLease()
	c.cfg.logger.Info("raft: became leader", "id", c.id, "term", c.term)
	c.appendEntries([]Entry{{Type: EntryNoop}})
}

// electionTimer is the actor that turns wall-clock (or synctest) time into
// election ticks for the owner goroutine. When the owner is busy a tick is
// dropped: a missed tick only delays a timeout.
func electionTimer(clock Clock, every time.Duration, ticks chan<- struct{}, done <-chan struct{}) {
	pace(clock, every, ticks, done)
}
