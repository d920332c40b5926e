package raft

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// coreCluster drives pure cores with no goroutines and no clock: messages
// are delivered one at a time from a FIFO queue and storage writes complete
// at once. It is how the core's transitions are tested in isolation.
type coreCluster struct {
	t      testing.TB
	ids    []NodeID
	cores  map[NodeID]*core
	stores map[NodeID]*MemoryStorage
	queue  []Message
	// drop, if set, loses the messages it returns true for.
	drop  func(Message) bool
	trace []string
	sent  map[MessageType]int
}

func newCoreCluster(t testing.TB, n int, seed uint64) *coreCluster {
	cc := &coreCluster{t: t, cores: map[NodeID]*core{}, stores: map[NodeID]*MemoryStorage{}, sent: map[MessageType]int{}}
	var conf Configuration
	for i := 1; i <= n; i++ {
		cc.ids = append(cc.ids, NodeID(i))
		conf.Servers = append(conf.Servers, Server{ID: NodeID(i)})
	}
	for _, id := range cc.ids {
		s := NewMemoryStorage()
		if err := Bootstrap(s, conf); err != nil {
			t.Fatal(err)
		}
		cc.stores[id] = s
		cc.cores[id] = cc.newCore(id, seed)
	}
	return cc
}

// newCore builds (or rebuilds, after a crash) node id's core from storage.
func (cc *coreCluster) newCore(id NodeID, seed uint64) *core {
	s := cc.stores[id]
	hs, _ := s.InitialState()
	c, err := newCore(coreConfig{
		id: id, electionTicks: electionTickResolution, preVote: true, checkQuorum: true,
		maxMsgBytes: 1 << 20, maxMsgEntries: 64, maxInflight: 16, maxApplyBytes: 1 << 20,
		rand: rand.New(rand.NewPCG(seed, uint64(id))), logger: discardLogger(),
		initialHS: hs,
	}, s)
	if err != nil {
		cc.t.Fatal(err)
	}
	return c
}

// flush carries out one core's ready synchronously.
func (cc *coreCluster) flush(id NodeID) bool {
	c := cc.cores[id]
	rd := c.takeReady()
	if rd.empty() {
		return false
	}
	if err := cc.stores[id].Save(rd.hardState, rd.entries); err != nil {
		cc.t.Fatal(err)
	}
	cc.queue = append(cc.queue, rd.messages...)
	cc.queue = append(cc.queue, rd.afterPersist...)
	if n := len(rd.entries); n > 0 {
		c.persisted(rd.entries[n-1].Index, rd.entries[n-1].Term)
	}
	if n := len(rd.committed); n > 0 {
		c.appliedTo(rd.committed[n-1].Index)
	}
	return true
}

// stabilize flushes and delivers until nothing moves.
func (cc *coreCluster) stabilize() {
	for steps := 0; ; steps++ {
		if steps > 100000 {
			cc.t.Fatal("cluster did not stabilize")
		}
		moved := false
		for _, id := range cc.ids {
			moved = cc.flush(id) || moved
		}
		if len(cc.queue) == 0 {
			if !moved {
				return
			}
			continue
		}
		m := cc.queue[0]
		cc.queue = cc.queue[1:]
		cc.sent[m.Type]++
		cc.trace = append(cc.trace, m.String())
		if cc.drop != nil && cc.drop(m) {
			continue
		}
		cc.cores[m.To].step(m)
	}
}

// elect makes id campaign and lets the election finish.
func (cc *coreCluster) elect(id NodeID) {
	cc.cores[id].campaign(true)
	cc.stabilize()
	if r := cc.cores[id].role; r != Leader {
		cc.t.Fatalf("node %d is %s after campaigning, want leader", id, r)
	}
}

// propose appends commands on id (which must lead) and stabilizes.
func (cc *coreCluster) propose(id NodeID, cmds ...string) {
	ents := make([]Entry, len(cmds))
	for i, cmd := range cmds {
		ents[i] = Entry{Data: []byte(cmd)}
	}
	cc.cores[id].appendEntries(ents)
	cc.stabilize()
}

// isolate drops every message to or from the given nodes.
func (cc *coreCluster) isolate(ids ...NodeID) {
	cc.drop = func(m Message) bool { return slices.Contains(ids, m.From) || slices.Contains(ids, m.To) }
}

func logTerms(t testing.TB, c *core) []uint64 {
	var terms []uint64
	for i := uint64(1); i <= c.log.lastIndex(); i++ {
		term, err := c.log.term(i)
		if err != nil {
			t.Fatal(err)
		}
		terms = append(terms, term)
	}
	return terms
}

func TestVoteRequestRules(t *testing.T) {
	// Our log: entries of terms 1, 1, 2 (last index 3, last term 2); term 2.
	tests := []struct {
		name      string
		msg       Message
		vote      NodeID
		leader    NodeID
		wantGrant bool
	}{
		{"up-to-date candidate, no vote yet", Message{Type: MsgVote, Term: 3, Index: 3, LogTerm: 2}, None, None, true},
		{"longer log, same last term", Message{Type: MsgVote, Term: 3, Index: 5, LogTerm: 2}, None, None, true},
		{"higher last term, shorter log", Message{Type: MsgVote, Term: 3, Index: 1, LogTerm: 3}, None, None, true},
		{"shorter log, same last term", Message{Type: MsgVote, Term: 3, Index: 2, LogTerm: 2}, None, None, false},
		{"lower last term, longer log", Message{Type: MsgVote, Term: 3, Index: 9, LogTerm: 1}, None, None, false},
		{"already voted for another in this term", Message{Type: MsgVote, Term: 2, Index: 3, LogTerm: 2}, 3, None, false},
		{"already voted for this candidate", Message{Type: MsgVote, Term: 2, Index: 3, LogTerm: 2}, 2, None, true},
		{"stale term", Message{Type: MsgVote, Term: 1, Index: 9, LogTerm: 2}, None, None, false},
		{"pre-vote for next term while following nobody", Message{Type: MsgPreVote, Term: 3, Index: 3, LogTerm: 2}, 3, None, true},
		{"pre-vote with stale log", Message{Type: MsgPreVote, Term: 3, Index: 2, LogTerm: 1}, None, None, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := newCoreCluster(t, 3, 1)
			c := cc.cores[1]
			c.log.appendLeader([]Entry{{Index: 2, Term: 1}, {Index: 3, Term: 2}})
			c.term, c.vote, c.leader = 2, tt.vote, tt.leader
			tt.msg.From, tt.msg.To = 2, 1
			c.step(tt.msg)
			rd := c.takeReady()
			granted := false
			for _, m := range rd.messages {
				granted = granted || !m.Reject
			}
			if granted != tt.wantGrant {
				t.Fatalf("granted = %v, want %v (responses %v)", granted, tt.wantGrant, rd.messages)
			}
			if tt.wantGrant && len(rd.messages) != 1 {
				t.Fatalf("want exactly one response, got %v", rd.messages)
			}
			if tt.msg.Type == MsgVote && tt.wantGrant {
				if c.vote != 2 || !rd.syncHS {
					t.Fatalf("vote = %d, syncHS = %v; a grant must record the vote and persist it before replying", c.vote, rd.syncHS)
				}
			}
			if tt.msg.Type == MsgPreVote && c.term != 2 {
				t.Fatalf("a pre-vote moved our term to %d", c.term)
			}
		})
	}
}

func TestFollowerInLeaseIgnoresVoteRequests(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	f := cc.cores[2]
	term := f.term
	f.step(Message{Type: MsgVote, From: 3, To: 2, Term: term + 1, Index: 99, LogTerm: term})
	if f.term != term || f.vote == 3 {
		t.Fatalf("follower with a live leader moved to term %d / voted %d", f.term, f.vote)
	}
	if rd := f.takeReady(); len(rd.messages) != 0 {
		t.Fatalf("follower in lease answered a vote request: %v", rd.messages)
	}
}

func TestLeaderCommitsOnlyByCountingCurrentTermEntries(t *testing.T) {
	// Raft Figure 8: an entry of an earlier term sits on a majority, yet
	// the leader of a later term must not count it committed until an
	// entry of its own term is on a majority too.
	cc := newCoreCluster(t, 5, 1)
	cc.elect(1)
	cc.isolate(3, 4, 5)
	cc.propose(1, "old")
	l := cc.cores[1]
	oldIndex := l.log.lastIndex()
	if l.log.committed >= oldIndex {
		t.Fatalf("committed %d with only 2 of 5 replicas", l.log.committed)
	}
	// Node 1 wins a new term (nodes 2 and 3 vote; no appends get through).
	cc.drop = func(m Message) bool { return m.Type == MsgApp || m.Type == MsgHeartbeat || m.To > 3 || m.From > 3 }
	cc.forgetLeader(2, 3)
	l.becomeFollower(l.term, None)
	l.campaign(false)
	cc.stabilize()
	if l.role != Leader {
		t.Fatalf("node 1 is %s, want leader", l.role)
	}
	noop := l.log.lastIndex()
	// Node 3 now holds the old entry: three of five have it.
	l.step(Message{Type: MsgAppResp, From: 2, To: 1, Term: l.term, Index: oldIndex})
	l.step(Message{Type: MsgAppResp, From: 3, To: 1, Term: l.term, Index: oldIndex})
	if got := l.log.committed; got >= oldIndex {
		t.Fatalf("leader committed earlier-term entry %d by counting replicas (commit %d)", oldIndex, got)
	}
	// Once the current term's no-op is on a majority, both commit.
	l.step(Message{Type: MsgAppResp, From: 2, To: 1, Term: l.term, Index: noop})
	l.step(Message{Type: MsgAppResp, From: 3, To: 1, Term: l.term, Index: noop})
	if got := l.log.committed; got != noop {
		t.Fatalf("commit = %d once the no-op %d is on a majority", got, noop)
	}
}

func TestFastBacktrackingCostsOneRoundTripPerConflictingTerm(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	// Node 3 is cut off holding 60 uncommitted entries over three terms,
	// as a deposed leader of those terms would.
	cc.isolate(3)
	f := cc.cores[3]
	base := f.term
	for term := base + 1; term <= base+3; term++ {
		ents := make([]Entry, 20)
		for i := range ents {
			ents[i] = Entry{Index: f.log.lastIndex() + 1 + uint64(i), Term: term}
		}
		f.log.appendLeader(ents)
	}
	f.term = base + 3
	cc.flush(3)
	// Node 1 leads a later term and commits 40 entries with node 2.
	l := cc.cores[1]
	cc.forgetLeader(2)
	l.becomeFollower(base+4, None)
	l.campaign(false)
	cc.stabilize()
	for i := range 40 {
		cc.propose(1, fmt.Sprint(i))
	}
	// Re-elected with its long log, node 1 will first probe node 3 at its
	// last index, deep inside node 3's conflicting entries.
	cc.forgetLeader(2)
	l.becomeFollower(l.term, None)
	l.campaign(false)
	cc.stabilize()
	cc.drop = nil
	cc.trace = nil
	l.tickHeartbeat()
	cc.stabilize()
	if got, want := logTerms(t, f), logTerms(t, l); !slices.Equal(got, want) {
		t.Fatalf("follower log terms %v, leader %v", got, want)
	}
	rejects := 0
	for _, line := range cc.trace {
		if strings.HasPrefix(line, "AppResp") && strings.Contains(line, "reject") {
			rejects++
		}
	}
	t.Logf("conflicting entries: 60 over 3 terms; rejected appends: %d", rejects)
	if rejects == 0 || rejects > 4 {
		t.Fatalf("catching up took %d rejected appends, want 1..4 (one per conflicting term)", rejects)
	}
}

func TestSameSeedGivesSameTrace(t *testing.T) {
	run := func(seed uint64) uint64 {
		cc := newCoreCluster(t, 5, seed)
		rng := rand.New(rand.NewPCG(seed, 1))
		for step := range 3000 {
			id := cc.ids[rng.IntN(len(cc.ids))]
			switch r := rng.IntN(100); {
			case r < 60:
				cc.cores[id].tickElection()
			case r < 80:
				cc.cores[id].tickHeartbeat()
			case r < 95:
				if cc.cores[id].role == Leader {
					cc.cores[id].appendEntries([]Entry{{Data: []byte(fmt.Sprint(step))}})
				}
			default:
				victim := cc.ids[rng.IntN(len(cc.ids))]
				cc.isolate(victim)
			}
			cc.stabilize()
		}
		h := fnv.New64a()
		for _, line := range cc.trace {
			h.Write([]byte(line))
		}
		return h.Sum64()
	}
	if a, b := run(42), run(42); a != b {
		t.Fatalf("seed 42 gave traces %x and %x", a, b)
	}
	if a, b := run(42), run(43); a == b {
		t.Fatalf("seeds 42 and 43 gave the same trace %x: the seed does not reach the run", a)
	}
}

func TestIsolatedLeaderStepsDownAfterElectionTimeout(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	cc.isolate(1)
	l := cc.cores[1]
	for range 2 * electionTickResolution {
		l.tickElection()
		l.tickHeartbeat()
		cc.stabilize()
	}
	if l.role == Leader {
		t.Fatal("a leader cut off from its quorum for two election timeouts still leads")
	}
}

func TestDeposedLeaderLearnsNewTermFromStaleAppendAnswer(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	f := cc.cores[2]
	f.becomeFollower(f.term+5, None)
	f.step(Message{Type: MsgHeartbeat, From: 1, To: 2, Term: cc.cores[1].term})
	rd := f.takeReady()
	if len(rd.messages) != 1 || rd.messages[0].Term != f.term {
		t.Fatalf("stale heartbeat answered with %v, want one message carrying term %d", rd.messages, f.term)
	}
	cc.cores[1].step(rd.messages[0])
	if got := cc.cores[1].role; got != Follower {
		t.Fatalf("leader is %s after hearing a higher term, want follower", got)
	}
}

func TestAppendAcknowledgementWaitsForPersistence(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	f := cc.cores[2]
	last := f.log.lastIndex()
	term := cc.cores[1].term
	f.step(Message{Type: MsgApp, From: 1, To: 2, Term: term, Index: last, LogTerm: term,
		Entries: []Entry{{Index: last + 1, Term: term, Data: []byte("x")}}})
	rd := f.takeReady()
	for _, m := range rd.messages {
		if m.Type == MsgAppResp {
			t.Fatalf("append acknowledged before persistence: %s", m)
		}
	}
	if len(rd.afterPersist) != 1 || rd.afterPersist[0].Index != last+1 || len(rd.entries) != 1 {
		t.Fatalf("want the ack of %d held until the entry is persisted; got entries %v after %v", last+1, rd.entries, rd.afterPersist)
	}
}

func TestStaleDuplicateAppendNeverTruncatesFollowerLog(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	cc.propose(1, "a", "b")
	f := cc.cores[2]
	before := logTerms(t, f)
	e2, err := f.log.entries(2, 3, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// An old append, delivered late, carrying a prefix the follower has.
	for _, commit := range []uint64{0, f.log.committed} {
		f.log.committed = max(commit, 1)
		f.step(Message{Type: MsgApp, From: 1, To: 2, Term: f.term, Index: 1, LogTerm: 1, Entries: e2})
		if got := logTerms(t, f); !slices.Equal(got, before) {
			t.Fatalf("stale append (follower commit %d) changed log terms from %v to %v", commit, before, got)
		}
	}
}

func TestSingleVoterCommitsOnItsOwn(t *testing.T) {
	cc := newCoreCluster(t, 1, 1)
	cc.elect(1)
	cc.propose(1, "solo")
	c := cc.cores[1]
	if c.log.committed != c.log.lastIndex() || c.log.applied != c.log.lastIndex() {
		t.Fatalf("single voter: commit %d applied %d last %d", c.log.committed, c.log.applied, c.log.lastIndex())
	}
}

func TestForgedAppendOverCommittedEntriesChangesNothing(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	cc.propose(1, "a", "b")
	f := cc.cores[2]
	if f.log.committed < 2 {
		t.Fatalf("setup: follower commit %d, want entry 2 committed", f.log.committed)
	}
	before := logTerms(t, f)
	// A faulty peer claims a later term's leadership and replaces committed
	// entry 2: no correct leader can, and the follower must neither take
	// it nor stop.
	forged := Message{Type: MsgApp, From: 3, To: 2, Term: f.term + 1, Index: 1, LogTerm: 1,
		Entries: []Entry{{Index: 2, Term: f.term + 1, Data: []byte("forged")}}}
	f.step(forged)
	if f.failed != nil {
		t.Fatalf("a forged append stopped the node: %v", f.failed)
	}
	if got := logTerms(t, f); !slices.Equal(got, before) {
		t.Fatalf("forged append changed log terms from %v to %v", before, got)
	}
}

func TestLeaderRefusesAcknowledgementOfEntriesItNeverSent(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	l := cc.cores[1]
	p := l.peer(2)
	match := p.match
	l.step(Message{Type: MsgAppResp, From: 2, To: 1, Term: l.term, Index: l.log.lastIndex() + 100})
	if p.match != match || l.rejected != 1 {
		t.Fatalf("after a bogus acknowledgement: match %d (was %d), rejected %d; want it refused and counted", p.match, match, l.rejected)
	}
	if l.role != Leader || l.failed != nil {
		t.Fatalf("leader is %s, failed %v after a bogus acknowledgement", l.role, l.failed)
	}
}

// A follower's promise to its leader (no vote for another within an
// election timeout, which the leader's lease rests on) outlives a higher
// term it learns from a message that is not the leader's: found by the
// simulator (seed 4683, 3 nodes), where a lagged candidate's answer of a
// higher term made the follower forget its leader and free its vote.
func TestFollowerKeepsItsPromiseAcrossATermLearnedFromANonLeader(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	f := cc.cores[2]
	term, last := f.term, f.log.lastIndex()
	// Node 3, campaigning on its own, answers with a higher term.
	f.step(Message{Type: MsgAppResp, From: 3, To: 2, Term: term + 1, Index: 0})
	if f.term != term+1 || f.leader != None {
		t.Fatalf("follower at term %d following %d, want term %d and no leader", f.term, f.leader, term+1)
	}
	f.takeReady()
	// An up-to-date candidate of that term asks for its vote.
	f.step(Message{Type: MsgVote, From: 3, To: 2, Term: term + 1, Index: last, LogTerm: term})
	for _, m := range f.takeReady().messages {
		if m.Type == MsgVoteResp && !m.Reject {
			t.Fatalf("follower voted for node 3 in term %d within an election timeout of hearing from leader 1", term+1)
		}
	}
	if !f.inLease() {
		t.Fatalf("inLease says the follower would vote (Status.RefusesVotes rests on it)")
	}
	// An election timeout after the leader last spoke, it votes again.
	for range f.cfg.electionTicks {
		f.tickElection()
	}
	f.takeReady()
	f.step(Message{Type: MsgVote, From: 3, To: 2, Term: term + 1, Index: last, LogTerm: term})
	granted := false
	for _, m := range f.takeReady().messages {
		granted = granted || (m.Type == MsgVoteResp && !m.Reject)
	}
	if !granted {
		t.Fatalf("follower still refuses its vote an election timeout later")
	}
}

// forgetLeader makes nodes behave as if their leader had been silent for
// an election timeout, so that a test can start an election at once.
func (cc *coreCluster) forgetLeader(ids ...NodeID) {
	for _, id := range ids {
		c := cc.cores[id]
		c.leader, c.leaderSilence = None, c.cfg.electionTicks
	}
}
