package raft

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Scenario tests with crashes and restarts: each node's MemoryStorage
// outlives the Node, as a disk outlives a process.

// proposeAsync proposes without waiting, as a client that may never learn
// the outcome; it reports whether the node took the proposal as leader.
func (c *testCluster) proposeAsync(id NodeID, cmd string) bool {
	n := c.nodes[id]
	if n == nil || n.Status().Role != Leader {
		return false
	}
	go n.Propose(context.Background(), []byte(cmd))
	return true
}

func TestRestartedNodesKeepTermVoteAndLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		idx := c.one("11", 3)
		term := c.checkTerms()
		for _, id := range c.ids {
			c.crash(id)
		}
		for _, id := range c.ids {
			hs, _ := c.stores[id].InitialState()
			if hs.Term != term {
				t.Fatalf("node %d persisted term %d, want %d", id, hs.Term, term)
			}
			c.start(id)
		}
		// The restarted state machines replay the committed log.
		if got := c.waitCommitted(idx, 3); got != "11" {
			t.Fatalf("after restart index %d holds %q", idx, got)
		}
		c.one("12", 3)

		// Leader and followers restarted in turns.
		for range 3 {
			leader := c.checkOneLeader()
			c.crash(leader)
			c.start(leader)
			c.one(fmt.Sprint("l", leader), 3)
			f := others(c.ids, c.checkOneLeader())[0]
			c.crash(f)
			c.one(fmt.Sprint("f", f), 2)
			c.start(f)
		}
		c.one("end", 3)
	})
}

func TestFigure8LeaderCrashesDoNotLoseCommittedEntries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		figure8(t, false)
	})
}

func TestFigure8WithUnreliableNetwork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		figure8(t, true)
	})
}

// figure8 repeatedly crashes whoever leads right after it appended, so
// entries of old terms are replicated unevenly (Raft paper, Figure 8), then
// checks the cluster still agrees.
func figure8(t *testing.T, unreliable bool) {
	c := newCluster(t, 5, nil)
	rng := rand.New(rand.NewPCG(8, 8))
	if unreliable {
		c.net.SetDropRate(0.1)
		c.net.SetDelay(0, 26*time.Millisecond)
		c.net.SetLongReordering(2.0/3, 200*time.Millisecond, 2200*time.Millisecond)
	}
	c.one("first", 1)
	up := len(c.ids)
	iters := 300
	for i := range iters {
		leader := None
		for _, id := range c.ids {
			if c.proposeAsync(id, fmt.Sprint("x", i, "-", id)) {
				leader = id
			}
		}
		if rng.IntN(1000) < 100 {
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(rng.IntN(13)) * time.Millisecond)
		}
		if leader != None && c.nodes[leader] != nil {
			c.crash(leader)
			up--
		}
		if up < 3 {
			id := c.ids[rng.IntN(len(c.ids))]
			if c.nodes[id] == nil {
				c.start(id)
				up++
			}
		}
	}
	c.net.SetLongReordering(0, 0, 0)
	c.net.SetDropRate(0)
	c.net.SetDelay(0, 0)
	for _, id := range c.ids {
		if c.nodes[id] == nil {
			c.start(id)
		}
	}
	c.one("last", 5)
}

func TestChurnKeepsEveryAcknowledgedWrite(t *testing.T) {
	for _, unreliable := range []bool{false, true} {
		t.Run(fmt.Sprintf("unreliable=%v", unreliable), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { churn(t, unreliable) })
		})
	}
}

// churn runs clients against a cluster whose nodes crash, restart and
// disconnect at random, then checks every write a client saw succeed is
// applied at the index it was given, on every node.
func churn(t *testing.T, unreliable bool) {
	c := newCluster(t, 5, nil)
	if unreliable {
		c.net.SetDropRate(0.1)
		c.net.SetDelay(0, 26*time.Millisecond)
	}
	var mu sync.Mutex // guards c.nodes against the churn loop
	acked := map[uint64]string{}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for client := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(client), 99))
			for seq := 0; !stop.Load(); seq++ {
				mu.Lock()
				n := c.nodes[c.ids[rng.IntN(len(c.ids))]]
				mu.Unlock()
				if n == nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				cmd := fmt.Sprintf("c%d-%d", client, seq)
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				res, err := n.Propose(ctx, []byte(cmd))
				cancel()
				if err == nil {
					mu.Lock()
					acked[res.Index] = cmd
					mu.Unlock()
				} else {
					time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
				}
			}
		})
	}
	rng := rand.New(rand.NewPCG(5, 5))
	for range 20 {
		id := c.ids[rng.IntN(len(c.ids))]
		mu.Lock()
		switch r := rng.IntN(1000); {
		case r < 200:
			c.net.Isolate(id)
		case r < 400 && c.nodes[id] == nil:
			c.start(id)
		case r < 500:
			c.crash(id)
		default:
			c.net.Heal()
		}
		mu.Unlock()
		time.Sleep(700 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	c.net.SetDropRate(0)
	c.net.SetDelay(0, 0)
	c.net.Heal()
	for _, id := range c.ids {
		if c.nodes[id] == nil {
			c.start(id)
		}
	}
	last := c.one("final", 5)
	if len(acked) == 0 {
		t.Fatal("no client write succeeded during churn")
	}
	for index, cmd := range acked {
		if got := c.waitCommitted(index, 5); got != cmd {
			t.Fatalf("acknowledged %q at %d, but nodes applied %q", cmd, index, got)
		}
	}
	t.Logf("%d acknowledged writes, log reached %d", len(acked), last)
}
