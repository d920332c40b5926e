package raft

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// join starts a new node id with empty storage, waiting to be added.
func (c *testCluster) join(id NodeID) {
	c.t.Helper()
	c.ids = append(c.ids, id)
	c.stores[id] = NewMemoryStorage()
	c.snaps[id] = NewMemorySnapshotStore()
	tweak := c.tweak
	c.tweak = func(cfg *Config) {
		if tweak != nil {
			tweak(cfg)
		}
		cfg.Join = true
	}
	c.start(id)
	c.tweak = tweak
}

// leaderNode returns the current leader and its node.
func (c *testCluster) leaderNode() (NodeID, *Node) {
	c.t.Helper()
	id := c.checkOneLeader()
	return id, c.nodes[id]
}

// voters returns the committed configuration's voters as node id sees it.
func (c *testCluster) voters(id NodeID) []NodeID {
	c.t.Helper()
	conf, _, err := c.nodes[id].Configuration(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	return conf.Voters()
}

func TestAddVoterCatchesUpAFarBehindNewServerThenPromotesIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, snapshotEvery(30, 5))
		last := c.writeN("before", 100, 3)
		c.join(4)
		if st := c.nodes[4].Status(); st.Role != Follower || len(st.Config.Servers) != 0 {
			t.Fatalf("joining node: role %v, configuration %v; want a follower with none", st.Role, st.Config)
		}
		_, ln := c.leaderNode()
		index, err := ln.AddVoter(context.Background(), 4, "", 0)
		if err != nil {
			t.Fatalf("AddVoter: %v", err)
		}
		if got := c.voters(c.checkOneLeader()); !slices.Equal(got, []NodeID{1, 2, 3, 4}) {
			t.Fatalf("committed voters %v, want [1 2 3 4]", got)
		}
		waitFor(t, electionTimeout, "new server learns it is a voter", func() bool {
			st := c.nodes[4].Status()
			return st.Applied >= last && st.Commit >= index && slices.Equal(c.voters(4), []NodeID{1, 2, 3, 4})
		})
		if c.sms[4].restoreCalls() == 0 {
			t.Fatalf("the log was compacted, yet the new server caught up without a snapshot")
		}
		// With four voters, losing two stops commits; losing one does not.
		c.crash(1)
		c.one("three of four", 3)
	})
}

func TestPartitionedLearnerIsNotPromotedAndAddVoterFailsClearly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.writeN("w", 10, 3)
		c.join(4)
		c.net.Isolate(4)
		_, ln := c.leaderNode()
		_, err := ln.AddVoter(context.Background(), 4, "", 0)
		if !errors.Is(err, ErrNotCaughtUp) {
			t.Fatalf("AddVoter of a cut-off server: %v, want ErrNotCaughtUp", err)
		}
		conf, _, _ := ln.Configuration(context.Background())
		if s, ok := conf.Server(4); !ok || s.Suffrage != Learner {
			t.Fatalf("after a failed AddVoter the server is %+v (member %v), want a learner", s, ok)
		}
		c.one("quorum intact", 3)
	})
}

func TestRemoveFollowerShrinksTheQuorum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		l, ln := c.leaderNode()
		f := others(c.ids, l)[0]
		if _, err := ln.RemoveServer(context.Background(), f, 0); err != nil {
			t.Fatal(err)
		}
		if got := c.voters(l); len(got) != 2 || slices.Contains(got, f) {
			t.Fatalf("voters after removing %d: %v", f, got)
		}
		// Two voters left: the other one must ack.
		c.crash(f)
		c.one("two voters", 2)
	})
}

func TestRemovingTheLeaderHandsOverWithinAnElectionTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		acked := c.writeN("before", 20, 3)
		l, ln := c.leaderNode()
		removedAt := time.Now()
		if _, err := ln.RemoveServer(context.Background(), l, 0); err != nil {
			t.Fatalf("leader removing itself: %v", err)
		}
		var next NodeID
		waitFor(t, electionTimeout, "a new leader", func() bool {
			for _, id := range others(c.ids, l) {
				if c.nodes[id].Status().Role == Leader {
					next = id
					return true
				}
			}
			return false
		})
		t.Logf("new leader %d after %v", next, time.Since(removedAt))
		if st := ln.Status(); st.Role == Leader {
			t.Fatalf("removed leader still leads")
		}
		idx := c.one("after", 2)
		for _, id := range others(c.ids, l) {
			if got, _ := c.sms[id].at(acked); got != "before-19" {
				t.Fatalf("node %d lost acknowledged write at %d (has %q)", id, acked, got)
			}
			if _, ok := c.sms[id].at(idx); !ok {
				t.Fatalf("node %d did not apply the write after the removal", id)
			}
		}
	})
}

func TestReplaceADeadVoterWhileWritesContinue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		l, _ := c.leaderNode()
		dead := others(c.ids, l)[0]
		c.crash(dead)
		c.join(4) // the replacement: a new ID, empty storage
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var written []uint64
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				written = append(written, c.one("during-"+string(rune('a'+i%26)), 2))
			}
		})
		_, ln := c.leaderNode()
		if _, err := ln.RemoveServer(context.Background(), dead, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ln.AddVoter(context.Background(), 4, "", 0); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		want := slices.Sorted(slices.Values(others(c.ids, dead)))
		if got := c.voters(l); !slices.Equal(got, want) {
			t.Fatalf("voters %v, want %v", got, want)
		}
		if len(written) == 0 {
			t.Fatalf("no write completed during the replacement")
		}
		waitFor(t, 5*time.Second, "new voter applies every write", func() bool {
			_, ok := c.sms[4].at(written[len(written)-1])
			return ok
		})
	})
}

func TestTwoNodeClusterRemovesOneMemberWithoutLosingTheOther(t *testing.T) {
	for _, removeLeader := range []bool{false, true} {
		t.Run(map[bool]string{false: "follower", true: "leader"}[removeLeader], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t, 2, nil)
				c.one("first", 2)
				l, ln := c.leaderNode()
				victim := others(c.ids, l)[0]
				if removeLeader {
					victim = l
				}
				if _, err := ln.RemoveServer(context.Background(), victim, 0); err != nil {
					t.Fatal(err)
				}
				c.crash(victim)
				survivor := others(c.ids, victim)[0]
				c.checkOneLeader(survivor)
				c.one("alone", 1)
			})
		})
	}
}

func TestRemovedServerLeftRunningRaisesNoTerm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		l, ln := c.leaderNode()
		f := others(c.ids, l)[0]
		// The follower is cut off first, so it never learns of its removal.
		c.net.Isolate(f)
		if _, err := ln.RemoveServer(context.Background(), f, 0); err != nil {
			t.Fatal(err)
		}
		c.one("after removal", 2)
		term := c.nodes[l].Status().Term
		time.Sleep(5 * electionTimeout) // it times out and campaigns, alone
		c.net.Heal()
		time.Sleep(5 * electionTimeout)
		for _, id := range others(c.ids, f) {
			if got := c.nodes[id].Status().Term; got != term {
				t.Fatalf("node %d's term went from %d to %d: the removed server disrupted the cluster", id, term, got)
			}
		}
		c.one("still serving", 2)
	})
}

func TestConcurrentAddVotersOneWinsOneIsStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		c.join(4)
		c.join(5)
		_, ln := c.leaderNode()
		_, at, err := ln.Configuration(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, id := range []NodeID{4, 5} {
			wg.Go(func() { _, errs[i] = ln.AddVoter(context.Background(), id, "", at) })
		}
		wg.Wait()
		ok, stale := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrStaleConfiguration), errors.Is(err, ErrConfigChangeInProgress):
				stale++
			default:
				t.Fatalf("unexpected error: %v", err)
			}
		}
		if ok != 1 || stale != 1 {
			t.Fatalf("two AddVoters from index %d: %d succeeded, %d refused (%v)", at, ok, stale, errs)
		}
	})
}

func TestMembershipErrorsAreClear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, nil)
		c.one("first", 1)
		n := c.nodes[1]
		ctx := context.Background()
		if _, err := n.RemoveServer(ctx, 9, 0); !errors.Is(err, ErrUnknownServer) {
			t.Fatalf("removing a non-member: %v", err)
		}
		if _, err := n.RemoveServer(ctx, 1, 0); !errors.Is(err, ErrRemoveLastVoter) {
			t.Fatalf("removing the last voter: %v", err)
		}
		if _, err := n.AddLearner(ctx, 2, "", 1_000_000); !errors.Is(err, ErrStaleConfiguration) {
			t.Fatalf("a change from a stale index: %v", err)
		}
		if _, err := NewNode(Config{ID: 7, Storage: NewMemoryStorage(), StateMachine: &recordingSM{}, Transport: c.net.Join(7)}); !errors.Is(err, ErrNotBootstrapped) {
			t.Fatalf("NewNode on empty storage without Join: %v", err)
		}
		s := NewMemoryStorage()
		Bootstrap(s, Configuration{Servers: []Server{{ID: 1}, {ID: 2}}})
		if _, err := NewNode(Config{ID: 3, Storage: s, StateMachine: &recordingSM{}, Transport: c.net.Join(3)}); !errors.Is(err, ErrNotInConfiguration) {
			t.Fatalf("NewNode on a bootstrap that leaves the node out: %v", err)
		}
		dup := Configuration{Servers: []Server{{ID: 1, Address: "a:1"}, {ID: 2, Address: "a:1"}}}
		if err := Bootstrap(NewMemoryStorage(), dup); err == nil {
			t.Fatalf("Bootstrap with two servers at one address succeeded")
		}
	})
}

func TestRemovedFollowerLearnsItWasRemoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		l, ln := c.leaderNode()
		f := others(c.ids, l)[0]
		events := make(chan Event, 64)
		defer c.nodes[f].Subscribe(events)()
		if _, err := ln.RemoveServer(context.Background(), f, 0); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(electionTimeout)
		for {
			select {
			case e := <-events:
				if e.Type == EventRemoved {
					return
				}
			case <-deadline:
				t.Fatalf("removed follower %d heard nothing of its removal within an election timeout", f)
			}
		}
	})
}

func TestLeaderRemovingItselfRefusesProposalsUntilItHandsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		_, ln := c.leaderNode()
		c.net.SetDelay(5*time.Millisecond, 5*time.Millisecond) // the removal takes a round trip to commit
		done := make(chan error, 1)
		go func() { _, err := ln.RemoveServer(context.Background(), ln.ID(), 0); done <- err }()
		time.Sleep(time.Millisecond) // the removal is appended, not yet committed
		if _, err := ln.Propose(context.Background(), []byte("late")); !errors.Is(err, ErrTransferInProgress) {
			t.Fatalf("proposal to a leader removing itself: %v, want ErrTransferInProgress", err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
