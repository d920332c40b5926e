package simtest

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/raftline/raft"
)

// checker holds what the invariants need across the whole run.
type checker struct {
	sim     *sim
	leaders map[uint64]raft.NodeID
	// votes[term][voter] is whom voter voted for in term, as seen by
	// others (a grant leaving it) or by its own candidacy.
	votes map[uint64]map[raft.NodeID]raft.NodeID
	// committed[i] is the term of the entry committed at index i (any
	// node's commit index counts), and committedIn[i] the earliest term in
	// which a node knew it committed: Leader Completeness binds the leaders
	// of later terms only (a leader of an older term, elected late by
	// delayed votes, cannot commit anything and need not hold it).
	committed, committedIn []uint64
	// appliedTerm and appliedHash record what was applied at each index.
	appliedTerm []uint64
	appliedHash []uint64
	// ref applies the committed log in order, once, as entries are first
	// applied anywhere; refDigest[i] is the digest of its state after
	// index i. Every node's state at i must match it, however it got
	// there (entries, a snapshot, a restart).
	ref       *kvStore
	refDigest []uint64
	acked     []raft.Entry // entry positions acknowledged to clients
	// progressAfterHeal: a client operation that started after the heal
	// completed.
	progressAfterHeal bool
	sinceFull         int
}

// fullCheckEvery is how many steps pass between the O(log) checks.
const fullCheckEvery = 64

func (c *checker) fail(format string, args ...any) { c.sim.fail(fmt.Errorf(format, args...)) }

// events checks Election Safety and Leader Completeness when a node takes
// office.
func (c *checker) events(n *simNode, evs []raft.Event) {
	for _, e := range evs {
		if e.Type != raft.EventRoleChanged || e.Role != raft.Leader {
			continue
		}
		c.electedByQuorum(n, e.Term)
		if c.leaders == nil {
			c.leaders = map[uint64]raft.NodeID{}
		}
		if other, ok := c.leaders[e.Term]; ok && other != n.id {
			c.fail("election safety: nodes %d and %d both lead term %d", other, n.id, e.Term)
			return
		}
		c.leaders[e.Term] = n.id
		// Entries before the leader's log start are in its snapshot,
		// whose last entry's term is checked at first-1.
		first := n.core.Status().FirstIndex
		for i := max(1, first-1); i < uint64(len(c.committed)); i++ {
			if c.committedIn[i] >= e.Term {
				continue
			}
			t, err := n.core.Term(i)
			if err != nil || t != c.committed[i] {
				c.fail("leader completeness: node %d leads term %d without committed entry %d (term %d; has %d, %v)",
					n.id, e.Term, i, c.committed[i], t, err)
				return
			}
		}
	}
}

// leaseRead checks a read node n serves on its lease: no leader of a later
// term may have been elected, since the lease rests on a quorum's promise
// to vote for no one until it ends.
func (c *checker) leaseRead(n *simNode) {
	st := n.core.Status()
	if st.Role != raft.Leader {
		return
	}
	for term, leader := range c.leaders {
		if term > st.Term {
			c.fail("node %d served a lease read in term %d, after node %d was elected in term %d", n.id, st.Term, leader, term)
			return
		}
	}
	// The lease is safe only while a quorum of the voters would still
	// refuse to elect anyone else: the leader, the followers that promised
	// (heard from it within an election timeout, or restarted less than
	// one ago), and those down, which cannot vote at all.
	voters := st.Config.Voters()
	promising := 0
	for _, id := range voters {
		m := c.sim.nodes[id-1]
		if m == n || !m.up || m.core.Status().RefusesVotes {
			promising++
		}
	}
	if promising < len(voters)/2+1 {
		c.fail("node %d served a lease read in term %d while only %d of voters %v would refuse to elect another leader", n.id, st.Term, promising, voters)
	}
}

// vote records that voter voted for candidate in term and checks it is the
// only candidate voter votes for in that term, whatever crashes happened in
// between (Raft §5.2: a vote is durable before it is promised).
func (c *checker) vote(voter, candidate raft.NodeID, term uint64) {
	if c.votes == nil {
		c.votes = map[uint64]map[raft.NodeID]raft.NodeID{}
	}
	byVoter := c.votes[term]
	if byVoter == nil {
		byVoter = map[raft.NodeID]raft.NodeID{}
		c.votes[term] = byVoter
	}
	if prev, ok := byVoter[voter]; ok && prev != candidate {
		c.fail("vote safety: node %d voted for %d and for %d in term %d", voter, prev, candidate, term)
		return
	}
	byVoter[voter] = candidate
}

// electedByQuorum checks a new leader holds votes of a majority cast in its
// own term: the step Election Safety rests on, checked where it happens
// rather than waiting for a second leader to show up.
func (c *checker) electedByQuorum(n *simNode, term uint64) {
	conf, _, ok := logConfig(n, ^uint64(0))
	if !ok {
		c.fail("election: node %d leads term %d and its log names no configuration", n.id, term)
		return
	}
	voters := conf.Voters()
	// A candidate votes for itself; alone in its configuration it sends
	// no request that would show it.
	c.vote(n.id, n.id, term)
	granted := 0
	for voter, candidate := range c.votes[term] {
		if candidate == n.id && isVoter(conf, voter) {
			granted++
		}
	}
	if quorum := len(voters)/2 + 1; granted < quorum {
		c.fail("election: node %d leads term %d with %d votes from voters %v of that term, quorum %d", n.id, term, granted, voters, quorum)
	}
}

// observeCommit checks the commit index never goes back and that what a
// node commits agrees with what any node committed before.
func (c *checker) observeCommit(n *simNode) {
	if !n.up {
		return
	}
	st := n.core.Status()
	commit := st.Commit
	if commit < n.commit {
		c.fail("node %d commit index went back from %d to %d", n.id, n.commit, commit)
		return
	}
	if len(c.committed) == 0 {
		c.committed, c.committedIn = []uint64{0}, []uint64{0}
	}
	if commit > n.commit && st.Role == raft.Leader {
		n.noteMoment(momentCommit)
	}
	// A snapshot may carry a node past entries it never held: those
	// before its log start are covered by the snapshot, whose last entry's
	// term is the one at first-1.
	from := max(n.commit+1, st.FirstIndex-1)
	if uint64(len(c.committed)) < from {
		c.fail("node %d committed up to %d (by snapshot) before any node committed %d", n.id, commit, len(c.committed))
		return
	}
	for i := from; i <= commit; i++ {
		t, err := n.core.Term(i)
		if err != nil {
			c.fail("node %d committed %d but cannot read it: %v", n.id, i, err)
			return
		}
		if i < uint64(len(c.committed)) {
			if c.committed[i] != t {
				c.fail("state machine safety: node %d committed term %d at %d, another node term %d", n.id, t, i, c.committed[i])
				return
			}
			c.committedIn[i] = min(c.committedIn[i], st.Term)
			continue
		}
		c.committed, c.committedIn = append(c.committed, t), append(c.committedIn, st.Term)
	}
	n.commit = commit
}

// applied checks an entry about to be applied: applied ≤ commit, and every
// node applies the same entry at each index. It reports whether to go on.
func (c *checker) applied(n *simNode, e raft.Entry, commit uint64) bool {
	if e.Index > commit {
		c.fail("node %d applies index %d past its commit index %d", n.id, e.Index, commit)
		return false
	}
	if e.Index != n.applied+1 {
		c.fail("node %d applies index %d after %d", n.id, e.Index, n.applied)
		return false
	}
	h := fnv.New64a()
	h.Write(e.Data)
	sum := h.Sum64()
	for uint64(len(c.appliedTerm)) <= e.Index {
		c.appliedTerm = append(c.appliedTerm, 0)
		c.appliedHash = append(c.appliedHash, 0)
	}
	if t := c.appliedTerm[e.Index]; t != 0 && (t != e.Term || c.appliedHash[e.Index] != sum) {
		c.fail("state machine safety: node %d applies term %d at %d, another node applied term %d", n.id, e.Term, e.Index, t)
		return false
	}
	c.appliedTerm[e.Index], c.appliedHash[e.Index] = e.Term, sum
	return c.advanceRef(e)
}

// advanceRef applies e to the reference state if it is the next entry.
func (c *checker) advanceRef(e raft.Entry) bool {
	if c.ref == nil {
		c.ref, c.refDigest = newKVStore(), []uint64{newKVStore().digest()}
	}
	next := uint64(len(c.refDigest))
	switch {
	case e.Index < next:
		return true
	case e.Index > next:
		c.fail("entry %d applied before any node applied %d", e.Index, next)
		return false
	}
	if e.Type == raft.EntryNormal {
		in, err := decodeInput(e.Data)
		if err != nil {
			c.fail("malformed command at %d", e.Index)
			return false
		}
		c.ref.apply(in)
	}
	c.refDigest = append(c.refDigest, c.ref.digest())
	return true
}

// stateAt checks node n's state machine, now at index, equals the state
// the committed log produces up to index.
func (c *checker) stateAt(n *simNode, index uint64) {
	if index >= uint64(len(c.refDigest)) {
		c.fail("node %d's state is at %d, past every index applied in order (%d)", n.id, index, len(c.refDigest)-1)
		return
	}
	if got := n.kv.digest(); got != c.refDigest[index] {
		c.fail("state machine: node %d's state at %d differs from the committed log's (%v)", n.id, index, n.kv.data)
	}
}

// snapshotDurable checks a snapshot names a committed entry.
func (c *checker) snapshotDurable(n *simNode, meta raft.SnapshotMeta) {
	if meta.Index >= uint64(len(c.committed)) || c.committed[meta.Index] != meta.Term {
		var want uint64
		if meta.Index < uint64(len(c.committed)) {
			want = c.committed[meta.Index]
		}
		c.fail("node %d holds %v, but the entry committed at %d has term %d", n.id, meta, meta.Index, want)
	}
}

// compaction checks the log is compacted only behind a durable snapshot:
// otherwise a restart could need an entry no longer anywhere on its disk.
func (c *checker) compaction(n *simNode, index uint64) {
	if newest := n.snaps.newest(); newest < index {
		c.fail("node %d compacts its log to %d, past its newest durable snapshot %d", n.id, index, newest)
	}
}

// ack records a write acknowledged to a client.
func (c *checker) ack(e raft.Entry) {
	c.acked = append(c.acked, raft.Entry{Index: e.Index, Term: e.Term})
}

func (c *checker) progress(op Op) {
	if c.sim.healed && op.Call >= int64(c.sim.opts.HealAt) {
		c.progressAfterHeal = true
	}
}

// afterStep runs the periodic whole-log checks.
func (c *checker) afterStep() {
	c.leadersInConfiguration()
	c.sinceFull++
	if c.sinceFull < fullCheckEvery {
		return
	}
	c.sinceFull = 0
	c.logMatching()
	c.ackedDurable()
	c.oneChangeAtATime()
}

// logMatching checks Raft's Log Matching property between every pair of
// running nodes: where two logs hold an entry of the same term at the same
// index, they are identical up to there.
func (c *checker) logMatching() {
	var logs [][]raft.Entry
	var ids []raft.NodeID
	for _, n := range c.sim.nodes {
		if !n.up {
			continue
		}
		st := n.core.Status()
		ents, err := n.core.Entries(st.FirstIndex, st.LastIndex+1)
		if err != nil {
			c.fail("node %d log unreadable: %v", n.id, err)
			return
		}
		logs, ids = append(logs, ents), append(ids, n.id)
	}
	for a := range logs {
		for b := a + 1; b < len(logs); b++ {
			if err := matchLogs(logs[a], logs[b]); err != nil {
				c.fail("log matching: nodes %d and %d %v", ids[a], ids[b], err)
				return
			}
		}
	}
}

// matchLogs compares two logs where both hold entries (each may start past
// index 1, behind a snapshot): where they hold an entry of the same term at
// the same index, they are identical up to there.
func matchLogs(la, lb []raft.Entry) error {
	if len(la) == 0 || len(lb) == 0 {
		return nil
	}
	lo := max(la[0].Index, lb[0].Index)
	hi := min(la[len(la)-1].Index, lb[len(lb)-1].Index)
	at := func(l []raft.Entry, i uint64) *raft.Entry { return &l[i-l[0].Index] }
	k := hi
	for k >= lo && at(la, k).Term != at(lb, k).Term {
		k--
	}
	for i := lo; i <= k && k >= lo; i++ {
		ea, eb := at(la, i), at(lb, i)
		if ea.Term != eb.Term || ea.Type != eb.Type || !bytes.Equal(ea.Data, eb.Data) {
			return fmt.Errorf("agree at index %d (term %d) but differ at %d", k, at(la, k).Term, i)
		}
	}
	return nil
}

// ackedDurable checks no acknowledged write was lost: where the cluster
// committed its index, it committed that very entry.
func (c *checker) ackedDurable() {
	for _, e := range c.acked {
		if e.Index < uint64(len(c.committed)) && c.committed[e.Index] != e.Term {
			c.fail("acknowledged write at %d (term %d) lost: index committed with term %d", e.Index, e.Term, c.committed[e.Index])
			return
		}
	}
}

// liveness runs livenessBound after the heal.
func (c *checker) liveness() {
	leader := false
	for _, n := range c.sim.nodes {
		leader = leader || (n.up && n.core.Status().Role == raft.Leader)
	}
	if !leader || !c.progressAfterHeal {
		c.fail("liveness: %v after healing, leader elected %v, client progress %v; nodes: %s", livenessBound, leader, c.progressAfterHeal, c.describe())
	}
}

// describe summarizes every node for a failure message.
func (c *checker) describe() string {
	var b strings.Builder
	for _, n := range c.sim.nodes {
		if !n.up {
			fmt.Fprintf(&b, "[%d down] ", n.id)
			continue
		}
		st := n.core.Status()
		fmt.Fprintf(&b, "[%d %v t%d last %d commit %d voters %v at %d] ", n.id, st.Role, st.Term, st.LastIndex, st.Commit, st.Config.Voters(), st.ConfigIndex)
	}
	return b.String()
}

// final runs when the run ends.
func (c *checker) final() {
	c.logMatching()
	c.ackedDurable()
	for _, e := range c.acked {
		if e.Index >= uint64(len(c.committed)) {
			c.fail("acknowledged write at %d was never seen committed", e.Index)
			return
		}
	}
}
