package raft

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"
)

// These tests run real nodes in real time over loopback TCP.

func TestTCPThreeNodesElectAgreeAndSurviveLeaderFailure(t *testing.T) {
	c := newTCPCluster(t, 3, nil)
	leader := c.waitLeader()
	for i := range 5 {
		c.propose(fmt.Sprintf("a%d", i), 3)
	}

	c.crash(leader)
	others := slices.DeleteFunc(slices.Clone(c.ids), func(id NodeID) bool { return id == leader })
	next := c.waitLeader(others...)
	if next == leader {
		t.Fatalf("crashed node %d still leads", leader)
	}
	idx := c.propose("after-failover", 2)

	// The old leader comes back on the same address and catches up.
	c.start(leader)
	if !c.waitApplied(idx, "after-failover", 3, time.Now().Add(10*time.Second)) {
		t.Fatalf("restarted node %d did not catch up to index %d", leader, idx)
	}
	if s := c.totalStats(); s.DecodeErrors != 0 {
		t.Fatalf("healthy cluster saw %d decode errors", s.DecodeErrors)
	}
}

func TestTCPFiveNodesElectAgreeAndSurviveLeaderFailure(t *testing.T) {
	c := newTCPCluster(t, 5, nil)
	leader := c.waitLeader()
	for i := range 5 {
		c.propose(fmt.Sprintf("b%d", i), 5)
	}
	c.crash(leader)
	others := slices.DeleteFunc(slices.Clone(c.ids), func(id NodeID) bool { return id == leader })
	if next := c.waitLeader(others...); next == leader {
		t.Fatalf("crashed node %d still leads", leader)
	}
	for i := range 5 {
		c.propose(fmt.Sprintf("c%d", i), 4)
	}
}

func TestTCPPartitionedLeaderIsReplacedAndRejoins(t *testing.T) {
	c := newTCPCluster(t, 3, nil)
	old := c.waitLeader()
	c.propose("before", 3)

	c.faults.isolate(old, c.ids)
	others := slices.DeleteFunc(slices.Clone(c.ids), func(id NodeID) bool { return id == old })
	next := c.waitLeader(others...)
	if next == old {
		t.Fatalf("isolated node %d still leads the majority", old)
	}
	idx := c.propose("during-partition", 2)
	if _, ok := c.sms[old].at(idx); ok {
		t.Fatalf("isolated node %d applied an entry committed without it", old)
	}

	c.faults.heal()
	if !c.waitApplied(idx, "during-partition", 3, time.Now().Add(10*time.Second)) {
		t.Fatalf("node %d did not catch up after the partition healed", old)
	}
	eventually(t, 5*time.Second, "old leader to step down", func() bool {
		return c.nodes[old].Status().Role != Leader
	})
}

func TestTCPSlowAndStalledFollowersDoNotBlockCommits(t *testing.T) {
	c := newTCPCluster(t, 3, nil)
	leader := c.waitLeader()
	var slow, stalled NodeID
	for _, id := range c.ids {
		if id != leader && slow == None {
			slow = id
		} else if id != leader {
			stalled = id
		}
	}
	// The slow follower reads its connections with 5ms per read, the
	// stalled one accepts nothing the leader writes.
	c.faults.slowReads(slow, 5*time.Millisecond)
	c.faults.set(leader, stalled, linkFault{mode: faultStall})

	start := time.Now()
	var last uint64
	for i := range 20 {
		last = c.propose(fmt.Sprintf("s%d", i), 2)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("20 proposals took %v with one stalled follower", d)
	}
	if _, ok := c.sms[stalled].at(last); ok {
		t.Fatalf("stalled follower %d applied index %d through a stalled link", stalled, last)
	}
	// The stalled write hits WriteTimeout and the connection is redialled.
	eventually(t, 5*time.Second, "a write error on the stalled link", func() bool {
		return c.trans[leader].Stats().WriteErrors > 0
	})

	c.faults.heal()
	if !c.waitApplied(last, "s19", 3, time.Now().Add(10*time.Second)) {
		t.Fatalf("stalled follower %d did not catch up after the stall", stalled)
	}
}

func TestTCPConnectionsResetMidFrameAreRecovered(t *testing.T) {
	c := newTCPCluster(t, 3, nil)
	leader := c.waitLeader()
	c.propose("warm", 3)
	for _, id := range c.ids {
		if id != leader {
			c.faults.set(leader, id, linkFault{mode: faultReset, resets: 3})
		}
	}
	var last uint64
	for i := range 10 {
		last = c.propose(fmt.Sprintf("r%d", i), 2)
	}
	if !c.waitApplied(last, "r9", 3, time.Now().Add(10*time.Second)) {
		t.Fatal("followers did not catch up after connection resets")
	}
	s := c.totalStats()
	if s.WriteErrors == 0 {
		t.Fatal("no write error counted although connections were reset mid-frame")
	}
	if s.DecodeErrors == 0 {
		t.Fatal("no receiver counted a truncated frame although writes were cut mid-frame")
	}
}

func TestTCPOneWayLinkLossNeitherStopsCommitsNorDisruptsTheLeader(t *testing.T) {
	c := newTCPCluster(t, 3, nil)
	leader := c.waitLeader()
	term := c.nodes[leader].Status().Term
	var f NodeID
	for _, id := range c.ids {
		if id != leader {
			f = id
			break
		}
	}
	// The follower cannot answer the leader but still hears heartbeats, so
	// it must not campaign; the leader commits with the third node.
	c.faults.set(f, leader, linkFault{mode: faultDrop})
	var idx uint64
	for i := range 5 {
		idx = c.propose(fmt.Sprintf("o%d", i), 2)
	}
	if st := c.nodes[leader].Status(); st.Role != Leader || st.Term != term {
		t.Fatalf("leader %d disrupted by a one-way link loss: role %v term %d (was %d)", leader, st.Role, st.Term, term)
	}
	c.faults.heal()
	if !c.waitApplied(idx, "o4", 3, time.Now().Add(10*time.Second)) {
		t.Fatalf("follower %d did not catch up after the link healed", f)
	}
}

func TestTCPCrashedNodeKeepsItsPortAndFailsDialsFastUntilItRestarts(t *testing.T) {
	c := newTCPCluster(t, 3, nil)
	leader := c.waitLeader()
	c.crash(leader)
	// Another listener given the port now would make the restart fail.
	if ln, err := net.Listen("tcp", c.addrs[leader]); err == nil {
		ln.Close()
		t.Fatalf("crashed node %d's port %s was free for another listener", leader, c.addrs[leader])
	}
	start := time.Now()
	err := handshakeAs(t, dialRaw(t, c.addrs[leader]), hello{clusterID: 42, from: intruder, to: leader, lane: laneUrgent})
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("handshake with a crashed node: %v after %v, want a prompt failure", err, time.Since(start))
	}
	c.start(leader)
	c.propose("after-restart", 3)
}
