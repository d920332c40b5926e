package raft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// snapshotEvery makes a cluster snapshot every n applied entries and keep
// trailing entries behind each snapshot (no interval between them), so a
// short test compacts.
func snapshotEvery(n, trailing int) func(*Config) {
	return func(cfg *Config) {
		cfg.SnapshotEntries, cfg.SnapshotTrailing, cfg.SnapshotInterval = n, trailing, -1
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
		if c.sms[f].restoreCalls() == 0 || c.nodes[f].Status().Metrics.SnapshotsReceived == 0 {
			t.Fatalf("follower caught up without receiving and restoring a snapshot")
		}
		if m := ln.Status().Metrics; m.SnapshotsTaken == 0 || m.Compactions == 0 {
			t.Fatalf("leader's metrics show %d snapshots taken, %d compactions", m.SnapshotsTaken, m.Compactions)
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

// snapshotBoth takes a snapshot on each node once all have applied the
// same index, so (with the deterministic recordingSM) their snapshots are
// byte-identical. It returns the index.
func (c *testCluster) snapshotBoth(ids ...NodeID) uint64 {
	c.t.Helper()
	var index uint64
	for _, id := range ids {
		got, err := c.nodes[id].Snapshot(context.Background())
		if err != nil {
			c.t.Fatal(err)
		}
		if index != 0 && got != index {
			c.t.Fatalf("nodes snapshotted at %d and %d", index, got)
		}
		index = got
	}
	return index
}

func TestInterruptedTransferResumesFromItsOffsetOnANewLeaderWithTheSameSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, func(cfg *Config) {
			cfg.SnapshotEntries, cfg.SnapshotTrailing = -1, -1
			cfg.SnapshotChunkSize, cfg.MaxSnapshotInflight = 1<<10, 1
		})
		c.net.SetDelay(2*time.Millisecond, 5*time.Millisecond)
		c.one("first", 3)
		l := c.checkOneLeader()
		f2, lag := others(c.ids, l)[0], others(c.ids, l)[1]
		c.net.Isolate(lag)
		payload := string(make([]byte, 100))
		last := c.writeN("old"+payload, 60, 2)
		waitFor(t, time.Second, "both apply", func() bool {
			return c.nodes[l].Status().Applied >= last && c.nodes[f2].Status().Applied >= last
		})
		c.snapshotBoth(l, f2)
		last = c.writeN("new"+payload, 60, 2)
		waitFor(t, time.Second, "both apply", func() bool {
			return c.nodes[l].Status().Applied >= last && c.nodes[f2].Status().Applied >= last
		})
		snapAt := c.snapshotBoth(l, f2)
		waitFor(t, time.Second, "both compact", func() bool {
			return c.nodes[l].Status().FirstIndex > 1 && c.nodes[f2].Status().FirstIndex > 1
		})

		// The lagging node starts receiving the leader's snapshot...
		before := c.net.Stats(f2).SnapshotBytes
		c.net.Heal()
		var sent, size uint64
		waitFor(t, 5*time.Second, "transfer half-way", func() bool {
			ps := c.nodes[l].Status().Peers[lag]
			sent, size = ps.SnapshotSent, ps.SnapshotSize
			return ps.State == "snapshot" && sent > size/3
		})
		// ...when the leader is cut off; f2, holding the same snapshot,
		// takes over and resumes the transfer where it stopped.
		c.net.Isolate(l)
		waitFor(t, 10*time.Second, "lagging node installs", func() bool {
			return c.nodes[lag].Status().Applied >= snapAt
		})
		fromNewLeader := c.net.Stats(f2).SnapshotBytes - before
		if fromNewLeader == 0 || fromNewLeader > size-sent {
			t.Fatalf("new leader sent %d snapshot bytes; the follower held %d of %d, so a resumed transfer sends at most %d",
				fromNewLeader, sent, size, size-sent)
		}
		if got := c.sms[lag].restoreCalls(); got != 1 {
			t.Fatalf("lagging node restored %d snapshots, want 1", got)
		}
	})
}

// corruptNewest flips a byte of the newest snapshot in a memory store.
func corruptNewest(t testing.TB, s *MemorySnapshotStore) SnapshotMeta {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.snaps) < 2 {
		t.Fatalf("store holds %d snapshots, want 2", len(s.snaps))
	}
	s.snaps[0].data = slices.Clone(s.snaps[0].data)
	s.snaps[0].data[len(s.snaps[0].data)/2] ^= 1
	return s.snaps[0].meta
}

func TestCorruptNewestSnapshotFallsBackToThePreviousOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, snapshotEvery(-1, -1))
		id := c.checkOneLeader()
		c.writeN("a", 20, 3)
		c.snapshotBoth(id)
		last := c.writeN("b", 20, 3)
		c.snapshotBoth(id)
		waitFor(t, time.Second, "compaction", func() bool { return c.nodes[id].Status().FirstIndex > 1 })
		bad := corruptNewest(t, c.snaps[id])
		c.crash(id)
		c.start(id)
		waitFor(t, 5*time.Second, "restarted node catches up", func() bool {
			return c.nodes[id].Status().Applied >= last
		})
		if st := c.nodes[id].Status(); st.SnapshotIndex >= bad.Index {
			t.Fatalf("restarted node uses snapshot %d, the corrupt one is %d", st.SnapshotIndex, bad.Index)
		}
		if got, want := c.sms[id].commands(), c.sms[others(c.ids, id)[0]].commands(); !slices.Equal(got, want) {
			t.Fatalf("after falling back the node's state differs from a peer's (%d vs %d commands)", len(got), len(want))
		}
		if _, err := c.snaps[id].Open(bad); !errors.Is(err, ErrSnapshotNotFound) {
			t.Fatalf("the corrupt snapshot is still in the store (Open: %v)", err)
		}
	})
}

// Config.SnapshotInterval spaces automatic snapshots: the first is not
// held back, a due one waits for the interval (and is then taken with no
// further writes), and SnapshotIntervalOverrun thresholds of entries end
// the wait early.
func TestSnapshotIntervalSpacesAutomaticSnapshots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every, interval = 20, time.Hour
		c := newCluster(t, 3, func(cfg *Config) {
			cfg.SnapshotEntries, cfg.SnapshotTrailing, cfg.SnapshotInterval = every, 5, interval
		})
		c.one("first", 3)
		leader := c.nodes[c.checkOneLeader()]
		taken := func() uint64 { return leader.Status().Metrics.SnapshotsTaken }
		start := time.Now()
		c.writeN("a", every, 3)
		waitFor(t, time.Second, "the first snapshot, which no interval holds back", func() bool { return taken() == 1 })
		c.writeN("b", 2*every, 3)
		time.Sleep(time.Second)
		if got := taken(); got != 1 || time.Since(start) >= interval {
			t.Fatalf("%d snapshots %v after the first: the interval did not hold the second back", got, time.Since(start))
		}
		waitFor(t, interval+interval/snapshotRechecks+time.Second, "the held-back snapshot once the interval ends, with no more writes", func() bool { return taken() == 2 })
		second := time.Now()
		c.writeN("c", SnapshotIntervalOverrun*every, 3)
		waitFor(t, time.Second, "a snapshot once the entries overran the interval", func() bool { return taken() == 3 })
		if since := time.Since(second); since >= interval {
			t.Fatalf("the overrun snapshot came %v after the previous one, not before the interval", since)
		}
	})
}
