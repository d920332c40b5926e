package raft

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Scenario tests of log agreement, on real nodes in a synctest bubble.

func TestBasicAgreementCommitsInOrderOnAllNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.checkOneLeader()
		// Index 1 is the bootstrap configuration, 2 the leader's no-op.
		for i, want := range []uint64{3, 4, 5} {
			if n, _ := c.nCommitted(want); n > 0 {
				t.Fatalf("index %d applied before it was proposed", want)
			}
			if got := c.one(fmt.Sprint(100+i), 3); got != want {
				t.Fatalf("command %d got index %d, want %d", i, got, want)
			}
		}
	})
}

func TestEachEntryIsSentToEachFollowerAboutOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.checkOneLeader()
		before := c.net.Total().SentBytes
		const iters, size = 10, 5000
		payload := 0
		for i := range iters {
			cmd := fmt.Sprintf("%04d", i) + strings.Repeat("x", size)
			payload += len(cmd)
			c.one(cmd, 3)
		}
		sent := c.net.Total().SentBytes - before
		t.Logf("payload %d bytes, sent %d bytes", payload, sent)
		if limit := uint64(3*payload + 50000); sent > limit {
			t.Fatalf("sent %d bytes for %d bytes of commands, want ≤ %d", sent, payload, limit)
		}
	})
}

func TestAgreementSurvivesFollowerFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("101", 3)
		leader := c.checkOneLeader()
		c.crash(others(c.ids, leader)[0])
		c.one("102", 2)
		time.Sleep(electionTimeout)
		c.one("103", 2)

		// With both followers gone, a proposal must not commit.
		leader2 := c.checkOneLeader()
		for _, id := range others(c.ids, leader2) {
			c.crash(id)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*electionTimeout)
		defer cancel()
		res, err := c.nodes[leader2].Propose(ctx, []byte("104"))
		if err == nil {
			t.Fatalf("proposal committed at %d without a majority", res.Index)
		}
		if !errors.Is(err, ErrOutcomeUnknown) && !errors.Is(err, ErrNotLeader) {
			t.Fatalf("proposal without majority failed with %v, want ErrOutcomeUnknown or ErrNotLeader", err)
		}
	})
}

func TestAgreementSurvivesLeaderFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("101", 3)
		leader1 := c.checkOneLeader()
		c.crash(leader1)
		c.one("102", 2)
		time.Sleep(electionTimeout)
		c.one("103", 2)
	})
}

func TestDisconnectedFollowerCatchesUpOnReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("101", 3)
		leader := c.checkOneLeader()
		f := others(c.ids, leader)[0]
		c.net.Isolate(f)
		c.one("102", 2)
		c.one("103", 2)
		time.Sleep(electionTimeout)
		c.one("104", 2)
		c.one("105", 2)
		c.net.Heal()
		// The rejoined follower gets everything and agrees on new entries.
		c.one("106", 3)
		time.Sleep(electionTimeout)
		c.one("107", 3)
	})
}

func TestNoAgreementWithoutMajorityThenRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 5, nil)
		c.one("10", 5)
		leader := c.checkOneLeader()
		cut := others(c.ids, leader)[:3]
		c.net.Partition(cut)

		ctx, cancel := context.WithTimeout(context.Background(), 2*electionTimeout)
		defer cancel()
		if res, err := c.nodes[leader].Propose(ctx, []byte("20")); err == nil {
			t.Fatalf("committed at %d with 3 of 5 followers cut off", res.Index)
		}
		c.net.Heal()
		// The uncommitted entry may or may not survive; either way new
		// commands commit on all five.
		c.one("30", 5)
		c.one("1000", 5)
	})
}

func TestConcurrentProposalsAllCommitOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.checkOneLeader()
		var wg sync.WaitGroup
		indexes := make([]uint64, 5)
		errs := make([]error, 5)
		for i := range 5 {
			wg.Go(func() {
				res, err := c.nodes[leader].Propose(context.Background(), []byte(fmt.Sprint(100+i)))
				indexes[i], errs[i] = res.Index, err
			})
		}
		wg.Wait()
		seen := map[uint64]bool{}
		for i := range 5 {
			if errs[i] != nil {
				t.Fatalf("proposal %d: %v", i, errs[i])
			}
			if seen[indexes[i]] {
				t.Fatalf("two proposals got index %d", indexes[i])
			}
			seen[indexes[i]] = true
			if got := c.waitCommitted(indexes[i], 3); got != fmt.Sprint(100+i) {
				t.Fatalf("index %d holds %q, want %q", indexes[i], got, fmt.Sprint(100+i))
			}
		}
	})
}

func TestPartitionedLeaderWithConflictingEntriesRejoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("101", 3)
		leader1 := c.checkOneLeader()
		c.net.Isolate(leader1)
		// The cut-off leader appends entries no one else will see.
		for _, cmd := range []string{"102", "103", "104"} {
			go c.nodes[leader1].Propose(context.Background(), []byte(cmd))
		}
		leader2 := c.checkOneLeader(others(c.ids, leader1)...)
		c.one("103", 2)

		// The new leader is cut off too; the old one comes back.
		c.net.Partition([]NodeID{leader2})
		c.one("104", 2)

		c.net.Heal()
		c.one("105", 3)
		for _, id := range c.ids {
			for _, cmd := range c.sms[id].commands() {
				if cmd == "102" {
					t.Fatalf("node %d applied the deposed leader's uncommitted entry", id)
				}
			}
		}
	})
}

func TestFollowerFarBehindWithConflictsCatchesUpQuickly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 5, nil)
		c.one("start", 5)
		leader1 := c.checkOneLeader()
		rest := others(c.ids, leader1)

		// Leader and one follower are cut off and take 50 uncommittable
		// entries.
		c.net.Partition([]NodeID{leader1, rest[0]})
		for i := range 50 {
			go c.nodes[leader1].Propose(context.Background(), []byte(fmt.Sprint("lost", i)))
		}
		time.Sleep(electionTimeout / 2)

		// The other three elect a leader and commit 50 entries.
		c.net.Partition(rest[1:])
		for i := range 50 {
			c.one(fmt.Sprint("a", i), 3)
		}
		// Now leader2 and one of its followers take 50 more uncommitted.
		leader2 := c.checkOneLeader(rest[1:]...)
		other := others(rest[1:], leader2)[0]
		c.net.Partition([]NodeID{leader2, other})
		for i := range 50 {
			go c.nodes[leader2].Propose(context.Background(), []byte(fmt.Sprint("lost2-", i)))
		}
		time.Sleep(electionTimeout / 2)

		// The first group (with its 50 conflicting entries) plus one node
		// that has the committed ones form a majority.
		third := others(rest[1:], leader2, other)[0]
		c.net.Partition([]NodeID{leader1, rest[0], third})
		before := c.net.Total().Sent
		for i := range 50 {
			c.one(fmt.Sprint("b", i), 3)
		}
		c.net.Heal()
		c.one("end", 5)
		t.Logf("catching up took %d messages", c.net.Total().Sent-before)
	})
}

func TestMessageCountsForAgreementAndIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.checkOneLeader()
		time.Sleep(electionTimeout / 20) // no heartbeat round due in the window below
		before := c.net.Total().Sent
		for i := range 10 {
			if _, err := c.nodes[leader].Propose(context.Background(), []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		agree := c.net.Total().Sent - before
		t.Logf("10 sequential agreements: %d messages", agree)
		if agree > 42 {
			t.Fatalf("10 agreements took %d messages, want ≤ 42", agree)
		}

		before = c.net.Total().Sent
		time.Sleep(time.Second)
		idle := c.net.Total().Sent - before
		t.Logf("idle second: %d messages", idle)
		if idle > 60 {
			t.Fatalf("idle cluster sent %d messages in a second, want ≤ 60", idle)
		}
	})
}

func TestUnreliableNetworkStillAgrees(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 5, nil)
		c.net.SetDropRate(0.1)
		c.net.SetDelay(0, 26*time.Millisecond)
		var wg sync.WaitGroup
		for iter := 1; iter < 50; iter++ {
			for j := range 4 {
				wg.Go(func() { c.one(fmt.Sprint(100*iter+j), 1) })
			}
			c.one(fmt.Sprint(iter), 1)
		}
		c.net.SetDropRate(0)
		c.net.SetDelay(0, 0)
		wg.Wait()
		c.one("100", 5)
	})
}

func TestLongReorderingStillAgrees(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 5, nil)
		c.one("elected", 5)
		// Two thirds of all answers now arrive 0.2 to 2.2 s late, behind
		// newer ones; requests and answers are also dropped and delayed.
		// (Elections in this network are slow, since a vote answer often
		// outlives the candidacy; the Figure 8 test covers them.)
		c.net.SetDropRate(0.1)
		c.net.SetDelay(0, 26*time.Millisecond)
		c.net.SetLongReordering(2.0/3, 200*time.Millisecond, 2200*time.Millisecond)
		for i := range 40 {
			c.one(fmt.Sprint("r", i), 3)
		}
		c.net.SetLongReordering(0, 0, 0)
		c.net.SetDropRate(0)
		c.one("final", 5)
	})
}
