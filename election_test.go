package raft

import (
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"
)

// Scenario tests of leader election, on real nodes in a synctest bubble
// with a 1 s election timeout.

func TestInitialElectionElectsOneLeaderAndKeepsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		start := time.Now()
		leader := c.checkOneLeader()
		t.Logf("first leader after %v", time.Since(start))
		if took := time.Since(start); took > 2*electionTimeout+electionTimeout/10 {
			t.Fatalf("first leader took %v, want within 2 election timeouts", took)
		}
		time.Sleep(50 * time.Millisecond)
		term := c.checkTerms()
		if term < 2 {
			t.Fatalf("term after election = %d, want > bootstrap term 1", term)
		}
		// With no faults nothing should change: same term, same leader.
		time.Sleep(5 * electionTimeout)
		if got := c.checkTerms(); got != term {
			t.Fatalf("term changed from %d to %d without any fault", term, got)
		}
		if got := c.checkOneLeader(); got != leader {
			t.Fatalf("leader changed from %d to %d without any fault", leader, got)
		}
	})
}

func TestReElectionAfterLeaderIsCutOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader1 := c.checkOneLeader()

		c.net.Isolate(leader1)
		start := time.Now()
		leader2 := c.checkOneLeader(others(c.ids, leader1)...)
		if leader2 == leader1 {
			t.Fatalf("isolated leader %d still counted", leader1)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("re-election took %v, want ≤ 5s", took)
		}

		// The old leader rejoins: still exactly one leader.
		c.net.Heal()
		c.checkOneLeader()

		// No quorum: no leader may be elected.
		leader3 := c.checkOneLeader()
		c.net.Partition([]NodeID{leader3}, others(c.ids, leader3)[:1])
		time.Sleep(4 * electionTimeout)
		c.checkNoLeader(c.ids...)

		// Quorum back: a leader within 5 s.
		c.net.Heal()
		c.checkOneLeader()
	})
}

func TestRejoiningOldLeaderDoesNotDisruptNewLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 5, nil)
		old := c.checkOneLeader()
		c.net.Isolate(old)
		time.Sleep(3 * electionTimeout) // CheckQuorum: the cut-off leader steps down
		c.checkNoLeader(old)
		leader := c.checkOneLeader(others(c.ids, old)...)
		term := c.nodes[leader].Status().Term

		c.net.Heal()
		time.Sleep(5 * electionTimeout)
		st := c.nodes[leader].Status()
		if st.Role != Leader || st.Term != term {
			t.Fatalf("after rejoin leader %d is %s in term %d; want leader in term %d", leader, st.Role, st.Term, term)
		}
		if got := c.nodes[old].Status(); got.Term != term || got.Leader != leader {
			t.Fatalf("rejoined node follows %d in term %d; want %d in term %d", got.Leader, got.Term, leader, term)
		}
	})
}

func TestPartitionedFollowerRejoiningKeepsTerm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.checkOneLeader()
		term := c.checkTerms()
		follower := others(c.ids, leader)[0]
		// Cut off for many election timeouts: PreVote keeps it from
		// inflating its term, so rejoining costs the cluster nothing.
		c.net.Isolate(follower)
		time.Sleep(10 * electionTimeout)
		c.net.Heal()
		time.Sleep(2 * electionTimeout)
		if got := c.checkTerms(); got != term {
			t.Fatalf("term moved from %d to %d when a follower rejoined", term, got)
		}
		if got := c.checkOneLeader(); got != leader {
			t.Fatalf("leader moved from %d to %d when a follower rejoined", leader, got)
		}
	})
}

func TestManyElectionsUnderRandomPartitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 7, nil)
		c.checkOneLeader()
		rng := rand.New(rand.NewPCG(7, 7))
		for range 10 {
			// Cut three random nodes off; the other four still elect.
			perm := rng.Perm(len(c.ids))
			var cut []NodeID
			for _, i := range perm[:3] {
				cut = append(cut, c.ids[i])
			}
			c.net.Partition(cut)
			c.checkOneLeader(others(c.ids, cut...)...)
			c.net.Heal()
		}
		c.checkOneLeader()
	})
}

func TestElectionUsesFewMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.checkOneLeader()
		// Let the election's last answers land; at most one heartbeat
		// round falls in this window.
		time.Sleep(50 * time.Millisecond)
		sent := c.net.Total().Sent
		// PreVote, Vote and the no-op append, each a request and an
		// answer to two peers, is 12; the bound is the teaching suite's.
		t.Logf("election messages: %d", sent)
		if sent < 1 || sent > 30 {
			t.Fatalf("electing a leader took %d messages, want 1..30", sent)
		}
	})
}

// others returns ids without the excluded ones.
func others(ids []NodeID, exclude ...NodeID) []NodeID {
	var out []NodeID
	for _, id := range ids {
		skip := false
		for _, x := range exclude {
			skip = skip || id == x
		}
		if !skip {
			out = append(out, id)
		}
	}
	return out
}
