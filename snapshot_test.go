package raft

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// snapshotEvery makes a cluster snapshot every n applied entries and keep
// trailing entries behind each snapshot, so a short test compacts.
func snapshotEvery(n, trailing int) func(*Config) {
	return func(cfg *Config) {
		cfg.SnapshotEntries, cfg.SnapshotTrailing = n, trailing
	}
}

// writeN proposes count commands named prefix-i through the leader.
func (c *testCluster) writeN(prefix string, count, want int) uint64 {
	c.t.Helper()
	var last uint64
	for i := range count {
		last = c.one(fmt.Sprintf("%s-%d", prefix, i), want)
	}
	return last
}

// waitFor polls cond every tick for up to d, failing with what when it
// never holds.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(electionTimeout / 20) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within %v", what, d)
}

func TestFollowerCutOffWhileLeaderCompactsCatchesUpBySnapshotThenAppends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, snapshotEvery(20, 5))
		c.one("first", 3)
		leader := c.checkOneLeader()
		f := others(c.ids, leader)[0]
		c.net.Isolate(f)
		last := c.writeN("while-away", 100, 2)
		ln := c.nodes[leader]
		waitFor(t, 5*time.Second, "leader compacts past the follower", func() bool {
			st := ln.Status()
			return st.FirstIndex > c.nodes[f].Status().LastIndex+1 && st.SnapshotIndex > 0
		})
		c.net.Heal()
		waitFor(t, 10*time.Second, "follower catches up", func() bool {
			return c.nodes[f].Status().Applied >= last
		})
		if c.sms[f].restoreCalls() == 0 {
			t.Fatalf("follower caught up without restoring a snapshot")
		}
		after := c.one("after", 3)
		waitFor(t, 5*time.Second, "follower applies a new entry by append", func() bool {
			_, ok := c.sms[f].at(after)
			return ok
		})
		if got, want := c.sms[f].commands(), c.sms[leader].commands(); !slices.Equal(got, want) {
			t.Fatalf("follower applied %d commands, leader %d; they differ", len(got), len(want))
		}
		if st := ln.Status(); st.Peers[f].State != "replicate" {
			t.Fatalf("leader replicates to the follower in state %q, want replicate", st.Peers[f].State)
		}
	})
}

func TestRestartAfterSnapshotAppliesOnlyTheTail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, snapshotEvery(50, 10))
		last := c.writeN("w", 70, 3)
		id := c.checkOneLeader()
		var snapAt uint64
		waitFor(t, 5*time.Second, "snapshot taken", func() bool {
			snapAt = c.nodes[id].Status().SnapshotIndex
			return snapAt > 0
		})
		c.crash(id)
		c.start(id)
		sm := c.sms[id]
		waitFor(t, 5*time.Second, "restarted node applies everything", func() bool {
			return c.nodes[id].Status().Applied >= last
		})
		if sm.restoreCalls() != 1 {
			t.Fatalf("restarted node restored %d snapshots, want 1", sm.restoreCalls())
		}
		if calls := uint64(sm.applyCalls()); calls > last-snapAt {
			t.Fatalf("restart applied %d entries; the snapshot at %d leaves at most %d", calls, snapAt, last-snapAt)
		}
		if got, want := sm.commands(), c.sms[others(c.ids, id)[0]].commands(); !slices.Equal(got, want) {
			t.Fatalf("restarted node's state differs from a peer's")
		}
	})
}

func TestNodeSnapshotTakesOneNowAndCompacts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, snapshotEvery(-1, -1))
		c.writeN("w", 30, 3)
		id := c.checkOneLeader()
		n := c.nodes[id]
		applied := n.Status().Applied
		first, err := n.Snapshot(context.Background())
		if err != nil || first != applied {
			t.Fatalf("Snapshot() = %d, %v; want %d, nil", first, err, applied)
		}
		again, err := n.Snapshot(context.Background())
		if err != nil || again != first {
			t.Fatalf("Snapshot with nothing new applied = %d, %v; want %d", again, err, first)
		}
		c.writeN("more", 5, 3)
		second, err := n.Snapshot(context.Background())
		if err != nil || second <= first {
			t.Fatalf("second Snapshot() = %d, %v; want past %d", second, err, first)
		}
		// No trailing entries, but never past the previous snapshot.
		waitFor(t, time.Second, "log compacted to the previous snapshot", func() bool {
			return n.Status().FirstIndex == first+1
		})
	})
}
