package raft

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestALeaderChangeCountsOnceOnEveryNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		l, _ := c.leaderNode()
		f := others(c.ids, l)[0]
		before := c.nodes[f].Metrics().LeaderChanges
		if before != 1 {
			t.Fatalf("a follower that saw one election counts %d leader changes", before)
		}
		c.crash(l)
		next := c.checkOneLeader(others(c.ids, l)...)
		waitFor(t, electionTimeout, "follower learns the new leader", func() bool { return c.nodes[f].Status().Leader == next })
		if got := c.nodes[f].Metrics().LeaderChanges; got != before+1 {
			t.Fatalf("after one failover the follower counts %d leader changes, want %d", got, before+1)
		}
		if m := c.nodes[next].Metrics(); m.ElectionsWon != 1 || m.ElectionsStarted < 1 {
			t.Fatalf("new leader: %d elections started, %d won; want ≥1 and 1", m.ElectionsStarted, m.ElectionsWon)
		}
	})
}

func TestProposalOutcomesAreCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		l, ln := c.leaderNode()
		f := c.nodes[others(c.ids, l)[0]]
		for range 3 {
			if _, err := ln.Propose(context.Background(), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.Propose(context.Background(), []byte("refused")); !errors.Is(err, ErrNotLeader) {
			t.Fatal(err)
		}
		if _, err := ln.Propose(context.Background(), make([]byte, 9<<20)); !errors.Is(err, ErrProposalTooLarge) {
			t.Fatal(err)
		}
		if m := ln.Metrics(); m.ProposalsCommitted != 3 || m.ProposalsDropped != 1 || m.ProposalsFailed != 0 {
			t.Fatalf("leader counts %d committed, %d dropped, %d failed; want 3, 1, 0", m.ProposalsCommitted, m.ProposalsDropped, m.ProposalsFailed)
		}
		if m := f.Metrics(); m.ProposalsDropped != 1 {
			t.Fatalf("follower counts %d dropped proposals, want 1", m.ProposalsDropped)
		}
		// A proposal accepted, then lost with leadership, failed.
		c.net.Isolate(l)
		ctx, cancel := context.WithTimeout(context.Background(), 3*electionTimeout)
		defer cancel()
		if _, err := ln.Propose(ctx, []byte("lost")); !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("proposal on a cut-off leader: %v", err)
		}
		if got := ln.Metrics().ProposalsFailed; got != 1 {
			t.Fatalf("%d failed proposals counted, want 1", got)
		}
	})
}

func TestLatencyHistogramsRecordSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.net.SetDelay(2*time.Millisecond, 2*time.Millisecond)
		_, ln := c.leaderNode()
		for range 10 {
			if _, err := ln.Propose(context.Background(), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		h := ln.Metrics().CommitLatency
		if h.Count != 10 {
			t.Fatalf("commit latency counted %d proposals, want 10", h.Count)
		}
		// Each commit waits for a round trip of 2 ms each way.
		if mean := h.Sum / float64(h.Count); mean < 0.004 || mean > 0.1 {
			t.Fatalf("mean commit latency %.6f s, want about 0.004 s", mean)
		}
		if q := h.Quantile(0.5); q < 0.004 || q > 0.01 {
			t.Fatalf("median commit latency bucket %.6f s, want the 5 ms or 10 ms bucket", q)
		}
		time.Sleep(electionTimeout / 2)
		m := ln.Metrics()
		for id, p := range m.Peers {
			if p.RPCLatency.Count == 0 || p.RPCLatency.Sum/float64(p.RPCLatency.Count) < 0.004 {
				t.Fatalf("peer %d heartbeat round trips: %d, mean %.6f s; want some, about 0.004 s", id, p.RPCLatency.Count, p.RPCLatency.Sum/float64(max(p.RPCLatency.Count, 1)))
			}
			if p.LastContact > electionTimeout/5 {
				t.Fatalf("peer %d last heard %v ago", id, p.LastContact)
			}
		}
		if m.MessagesSent[MsgApp] == 0 || m.MessagesSent[MsgHeartbeat] == 0 {
			t.Fatalf("messages sent by type: %v", m.MessagesSent)
		}
		if m.ApplyLatency.Count == 0 {
			t.Fatalf("no apply latency recorded")
		}
	})
}

// slowSaveStorage is durable storage as the node sees it (not a
// MemoryStorage, so saved by the appender goroutine) whose Save takes a
// fixed time, as an fsync would.
type slowSaveStorage struct {
	*MemoryStorage
	delay time.Duration
}

func (s slowSaveStorage) Save(hs HardState, ents []Entry) error {
	time.Sleep(s.delay)
	return s.MemoryStorage.Save(hs, ents)
}

// SaveLatency is the time of one Storage.Save, in seconds; a MemoryStorage's
// saves, copies in memory, are not timed.
func TestSaveLatencyRecordsEachSaveInSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, func(cfg *Config) {
			cfg.Storage = slowSaveStorage{cfg.Storage.(*MemoryStorage), 3 * time.Millisecond}
		})
		_, ln := c.leaderNode()
		before := ln.Metrics().SaveLatency.Count
		for range 5 {
			if _, err := ln.Propose(context.Background(), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		h := ln.Metrics().SaveLatency
		if h.Count < before+5 {
			t.Fatalf("%d saves timed for 5 sequential proposals (had %d)", h.Count, before)
		}
		if mean := h.Sum / float64(h.Count); mean < 0.003 || mean > 0.004 {
			t.Fatalf("mean save latency %.6f s, want 0.003 s", mean)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		_, ln := c.leaderNode()
		if _, err := ln.Propose(context.Background(), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if n := ln.Metrics().SaveLatency.Count; n != 0 {
			t.Fatalf("a MemoryStorage timed %d saves", n)
		}
	})
}

func TestFollowerReportsTimeSinceItHeardFromTheLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, func(cfg *Config) { cfg.DisablePreVote = true; cfg.DisableCheckQuorum = true })
		l, _ := c.leaderNode()
		f := c.nodes[others(c.ids, l)[0]]
		if got := f.Metrics().LeaderContact; got > electionTimeout/5 {
			t.Fatalf("follower of a live leader last heard from it %v ago", got)
		}
		c.net.Block(l, f.ID())
		time.Sleep(electionTimeout / 2)
		if got := f.Metrics().LeaderContact; got < electionTimeout/2-electionTimeout/10 {
			t.Fatalf("follower cut off from its leader for half an election timeout reports %v", got)
		}
	})
}

func TestRefusedMessagesAreCountedByType(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		l, ln := c.leaderNode()
		f := others(c.ids, l)[0]
		// An append whose entries skip an index: no correct leader sends it.
		bad := Message{Type: MsgApp, From: f, To: l, Term: ln.Status().Term + 1, Index: 5, LogTerm: 1,
			Entries: []Entry{{Index: 7, Term: 1}}}
		c.net.Join(f) // an impostor endpoint for f
		c.nodes[f].Close()
		c.net.Join(f).Send(context.Background(), bad)
		waitFor(t, electionTimeout, "the malformed append is refused", func() bool {
			return ln.Metrics().MessagesRefused[MsgApp] == 1
		})
	})
}

// OwnerBusy measures real work: a leader that committed proposals was busy
// for some of the time, never for more than the time that passed.
func TestOwnerBusyIsPartOfTheElapsedTime(t *testing.T) {
	c := newCluster(t, 3, nil)
	_, ln := c.leaderNode()
	start, before := time.Now(), ln.Metrics().OwnerBusy
	for range 2000 {
		if _, err := ln.Propose(context.Background(), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	busy, elapsed := ln.Metrics().OwnerBusy-before, time.Since(start)
	// Sampled one round in eight: a little over the elapsed time is the
	// sampling's noise, far over it a wrong scale.
	if busy <= 0 || busy > elapsed*3/2 {
		t.Fatalf("owner busy %v of %v elapsed over 2000 proposals", busy, elapsed)
	}
}

// A duration on a bucket's bound falls in that bucket (bounds are upper
// bounds, inclusive, as Prometheus' le), and one a nanosecond over in the
// next.
func TestHistogramBoundsAreInclusive(t *testing.T) {
	for i, b := range histogramBounds {
		var h histogram
		on := time.Duration(b * float64(time.Second))
		h.observe(on)
		h.observe(on + 1)
		if h.counts[i].Load() != 1 || h.counts[i+1].Load() != 1 {
			t.Fatalf("bound %v s: %v counted in bucket %d, %v in %d; want one each in %d and %d",
				b, on, i, on+1, i+1, i, i+1)
		}
	}
}

// A batch of observations lands in the histogram as the same counts and
// sum as observing each one.
func TestHistogramBatchAddsLikeSingleObservations(t *testing.T) {
	durations := []time.Duration{0, 50 * time.Microsecond, 51 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, time.Minute}
	var one, batched histogram
	var b histogramBatch
	for _, d := range durations {
		one.observe(d)
		b.observe(d)
	}
	b.addTo(&batched)
	if diff := cmp.Diff(one.snapshot(), batched.snapshot()); diff != "" {
		t.Fatalf("batched histogram differs (-single +batched):\n%s", diff)
	}
}

// BenchmarkMetricsPerProposal is the metrics work one proposal costs on
// the hot path, as the node does it: its start taken from the owner's
// round clock (no read of its own), its commit latency observed in a batch
// of 64 against one round clock read, and its commit counted.
func BenchmarkMetricsPerProposal(b *testing.B) {
	n := &Node{started: time.Now(), cfg: Config{Clock: realClock{}}}
	starts := make([]int64, 64)
	for b.Loop() {
		round := n.monotonic()
		for i := range starts {
			starts[i] = round
		}
		now := n.monotonic()
		var latency histogramBatch
		for _, s := range starts {
			latency.observe(time.Duration(now - s))
		}
		latency.addTo(&n.m.commitLatency)
		for range starts {
			n.m.proposalsCommitted.Add(1)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(starts)), "ns/proposal")
}
