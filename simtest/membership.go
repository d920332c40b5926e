package simtest

import (
	"errors"
	"time"

	"github.com/raftline/raft"
)

// Membership changes in the simulator: a run has Nodes initial voters and
// a few spare slots that start empty, waiting to be added. Until the heal,
// an operator keeps changing the configuration through whoever leads:
// adding a spare or a removed server as a learner, promoting learners
// (sometimes before they caught up), demoting and removing servers, the
// leader itself a third of the time, and now and then firing a second
// change right behind the first (which must be refused while the first is
// uncommitted). Removed servers keep running. Every fault goes on
// meanwhile; the invariants use the configuration in force on each node.

// membershipEvery bounds the time between two operator actions.
const (
	membershipMin = 200 * time.Millisecond
	membershipMax = 2 * time.Second
)

// scheduleMembership queues the operator's next action.
func (s *sim) scheduleMembership() {
	if s.opts.NoMembership || (s.healed && !s.decommissions()) {
		return
	}
	s.schedule(s.between(membershipMin, membershipMax), event{kind: evMembership})
}

// membership is the operator's action: a change before the heal; after
// it, only stopping servers whose removal committed (decommissionRemoved).
func (s *sim) membership() {
	defer s.scheduleMembership()
	if s.healed {
		s.decommissionRemoved()
		return
	}
	leader := s.currentLeader()
	if leader < 0 || s.paused(leader) {
		return
	}
	s.stamp(leader)
	if s.rng.IntN(4) == 0 {
		s.transfer(leader)
		return
	}
	s.changeMembership(leader)
	if s.rng.IntN(3) == 0 && s.nodes[leader].up {
		s.changeMembership(leader) // right behind: refused while the first is uncommitted
	}
}

// currentLeader is the running leader of the highest term, or -1.
func (s *sim) currentLeader() int {
	leader, term := -1, uint64(0)
	for i, n := range s.nodes {
		if n.up {
			if st := n.core.Status(); st.Role == raft.Leader && st.Term >= term {
				leader, term = i, st.Term
			}
		}
	}
	return leader
}

// changeMembership proposes one random change on the leader at index i.
func (s *sim) changeMembership(i int) {
	n := s.nodes[i]
	conf := n.core.Status().Config
	var outside, learners, voters []raft.NodeID
	for _, m := range s.nodes {
		srv, ok := conf.Server(m.id)
		switch {
		case !ok:
			outside = append(outside, m.id)
		case srv.Suffrage == raft.Learner:
			learners = append(learners, m.id)
		default:
			voters = append(voters, m.id)
		}
	}
	var cc raft.ConfChange
	switch r := s.rng.IntN(10); {
	case r < 3 && len(outside) > 0:
		cc = raft.ConfChange{Type: raft.ConfAddLearner, ID: s.pick(outside)}
	case r < 6 && len(learners) > 0:
		cc = raft.ConfChange{Type: raft.ConfAddVoter, ID: s.pick(learners)}
	case r < 7 && len(voters) > 2:
		cc = raft.ConfChange{Type: raft.ConfDemote, ID: s.pick(voters)}
	case r < 10 && len(voters)+len(learners) > 2:
		victim := s.pick(append(voters, learners...))
		if s.rng.IntN(3) == 0 && len(voters) > 2 {
			victim = n.id // the leader removes itself
		}
		cc = raft.ConfChange{Type: raft.ConfRemove, ID: victim}
	default:
		return
	}
	index, err := n.core.ProposeConfChange(cc)
	switch {
	case err == nil:
		s.tracef("node %d proposes %v at %d", n.id, cc, index)
		s.memberStats.Proposed++
	case errors.Is(err, raft.ErrConfigChangeInProgress):
		s.memberStats.Refused++
	default:
		s.tracef("node %d refuses %v: %v", n.id, cc, err)
	}
	s.flush(i)
}

func (s *sim) pick(ids []raft.NodeID) raft.NodeID { return ids[s.rng.IntN(len(ids))] }

// transfer hands leadership from the leader at index i to a random voter,
// cut off or crashed ones included, or to the most caught-up one; readers
// then keep reading from the old leader, where a lease kept across the
// transfer would answer stale reads.
func (s *sim) transfer(i int) {
	n := s.nodes[i]
	var to raft.NodeID
	if voters := n.core.Status().Config.Voters(); s.rng.IntN(2) == 0 && len(voters) > 0 {
		to = s.pick(voters)
	}
	target, err := n.core.TransferLeadership(to)
	if err != nil {
		s.tracef("node %d refuses transfer to %d: %v", n.id, to, err)
		return
	}
	s.tracef("node %d transfers leadership to %d", n.id, target)
	s.memberStats.Transfers++
	s.stickyReaders(i)
	s.flush(i)
	if !s.opts.NoFaults && s.rng.IntN(2) == 0 {
		// The old leader stalls right after handing over (a GC pause):
		// on waking it must not serve reads on a lease it gave up.
		s.pause(i, s.between(300*time.Millisecond, 2*time.Second))
	}
}

// logConfig returns the configuration node n's own log puts in force: the
// latest configuration entry in it, committed or not (the rule the core
// must follow), else the one its snapshot holds. With upTo, only entries
// up to that index count (the committed configuration).
func logConfig(n *simNode, upTo uint64) (raft.Configuration, uint64, bool) {
	st := n.core.Status()
	hi := min(st.LastIndex, upTo)
	if hi >= st.FirstIndex {
		ents, err := n.core.Entries(st.FirstIndex, hi+1)
		if err != nil {
			return raft.Configuration{}, 0, false
		}
		for k := len(ents) - 1; k >= 0; k-- {
			if ents[k].Type == raft.EntryConfig {
				conf, err := raft.DecodeConfiguration(ents[k].Data)
				return conf, ents[k].Index, err == nil
			}
		}
	}
	// No configuration entry in range: when the core's is behind the log
	// start it is committed (the snapshot's); otherwise the one in range
	// was compacted away, which the caller cannot judge.
	if st.ConfigIndex < st.FirstIndex {
		return st.Config, st.ConfigIndex, true
	}
	return raft.Configuration{}, 0, false
}

// isVoter reports whether id votes in conf.
func isVoter(conf raft.Configuration, id raft.NodeID) bool {
	srv, ok := conf.Server(id)
	return ok && srv.Suffrage == raft.Voter
}

// leadersInConfiguration checks that no node leads once the configuration
// in force, leaving it out of the voters, is committed: it must have
// handed over. (A leader may lead while such a configuration is being
// committed, and a new leader whose newer, uncommitted configuration makes
// it a voter leads rightly.)
func (c *checker) leadersInConfiguration() {
	for _, n := range c.sim.nodes {
		if !n.up {
			continue
		}
		st := n.core.Status()
		if st.Role != raft.Leader {
			continue
		}
		conf, at, ok := logConfig(n, ^uint64(0))
		if ok && at <= st.Commit && !isVoter(conf, n.id) {
			c.fail("node %d leads term %d although its committed configuration %v (at %d) leaves it out of the voters", n.id, st.Term, conf.Voters(), at)
			return
		}
	}
}

// decommissionRemoved stops, at the heal, the servers the committed
// configuration left out, in runs that turned off both PreVote and
// CheckQuorum: without either, a removed server that never learned of its
// removal keeps campaigning in ever higher terms and deposes every leader
// (hashicorp/raft #524); the cure is to stop it, as an operator does. With
// either one on, removed servers stay up and must not disrupt.
func (s *sim) decommissionRemoved() {
	if !s.decommissions() {
		return
	}
	conf, ok := s.committedConfig()
	if !ok {
		return
	}
	for i, n := range s.nodes {
		if !conf.Has(n.id) && !n.decommissioned {
			s.crash(i)
			n.decommissioned = true
			s.tracef("decommission removed node %d", n.id)
		}
	}
}

// decommissions reports whether removed servers are stopped in this run.
func (s *sim) decommissions() bool { return s.tuning.NoPreVote && s.tuning.NoCheckQuorum }

// committedConfig finds the newest committed configuration from every
// node's disk: the configuration entry of highest index at or below the
// highest index any node committed, or failing that (compacted away
// everywhere) the newest one a snapshot holds.
func (s *sim) committedConfig() (raft.Configuration, bool) {
	commit := uint64(len(s.check.committed)) - 1
	var best raft.Configuration
	var at uint64
	found := false
	for _, n := range s.nodes {
		first, _ := n.store.FirstIndex()
		last, _ := n.store.LastIndex()
		if hi := min(last, commit); hi >= first {
			ents, err := n.store.Entries(first, hi+1, ^uint64(0))
			for k := len(ents) - 1; err == nil && k >= 0; k-- {
				if e := ents[k]; e.Type == raft.EntryConfig {
					if conf, err := raft.DecodeConfiguration(e.Data); err == nil && (!found || e.Index > at) {
						best, at, found = conf, e.Index, true
					}
					break
				}
			}
		}
		for _, sn := range n.snaps.snaps {
			if sn.meta.Index <= commit && sn.meta.ConfigIndex > 0 && (!found || sn.meta.ConfigIndex > at) {
				best, at, found = sn.meta.Config, sn.meta.ConfigIndex, true
			}
		}
	}
	return best, found
}

// oneChangeAtATime checks that no log holds two configuration entries past
// the highest index known committed: a leader accepts a change only once
// the previous one committed, and only after committing an entry of its
// own term, so a second uncommitted one can never reach any log.
func (c *checker) oneChangeAtATime() {
	commit := uint64(len(c.committed)) - 1
	for _, n := range c.sim.nodes {
		if !n.up {
			continue
		}
		st := n.core.Status()
		if st.LastIndex <= commit {
			continue
		}
		ents, err := n.core.Entries(max(commit+1, st.FirstIndex), st.LastIndex+1)
		if err != nil {
			continue
		}
		var at []uint64
		for _, e := range ents {
			if e.Type == raft.EntryConfig {
				at = append(at, e.Index)
			}
		}
		if len(at) > 1 {
			c.fail("node %d's log holds configuration entries %v, all past the committed index %d", n.id, at, commit)
			return
		}
	}
}

// MemberStats counts a run's membership changes.
type MemberStats struct {
	Proposed, Refused, Transfers int
}
