package raft

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Tests of the public API's contract: errors, reads, status, events, close.

func TestProposeOnFollowerNamesTheLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.checkOneLeader()
		time.Sleep(electionTimeout / 5) // followers hear a heartbeat
		f := others(c.ids, leader)[0]
		_, err := c.nodes[f].Propose(context.Background(), []byte("x"))
		var nle *NotLeaderError
		if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nle) || nle.Leader != leader {
			t.Fatalf("propose on follower: %v, want NotLeaderError naming %d", err, leader)
		}
	})
}

func TestProposalOutcomeUnknownWhenLeaderIsCutOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.checkOneLeader()
		c.net.Isolate(leader)
		_, err := c.nodes[leader].Propose(context.Background(), []byte("x"))
		if !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("proposal on a leader that lost its quorum: %v, want ErrOutcomeUnknown", err)
		}
	})
}

func TestProposalLargerThanMaxEntrySizeIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, func(cfg *Config) { cfg.MaxEntrySize = 10 })
		leader := c.checkOneLeader()
		if _, err := c.nodes[leader].Propose(context.Background(), make([]byte, 11)); !errors.Is(err, ErrProposalTooLarge) {
			t.Fatalf("11-byte proposal with MaxEntrySize 10: %v", err)
		}
	})
}

func TestReadIndexSeesEveryEarlierWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.checkOneLeader()
		n := c.nodes[leader]
		res, err := n.Propose(context.Background(), []byte("w"))
		if err != nil {
			t.Fatal(err)
		}
		before := c.net.Total().Sent
		idx, err := n.ReadIndex(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if idx < res.Index {
			t.Fatalf("read index %d before acknowledged write %d", idx, res.Index)
		}
		if got, ok := c.sms[leader].at(res.Index); !ok || got != "w" {
			t.Fatalf("after ReadIndex the state machine lacks the write (got %q)", got)
		}
		if sent := c.net.Total().Sent - before; sent == 0 {
			t.Fatal("ReadIndex returned without a heartbeat round confirming leadership")
		}
	})
}

func TestReadIndexFailsWithoutALeaderAndOnCutOffLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.checkOneLeader()
		f := others(c.ids, leader)[0]
		// A follower that lost its leader has no one to ask.
		c.net.Isolate(f)
		time.Sleep(3 * electionTimeout)
		if _, err := c.nodes[f].ReadIndex(context.Background()); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("ReadIndex on a follower without a leader: %v, want ErrNotLeader", err)
		}
		c.net.Heal()
		leader = c.checkOneLeader()
		// A leader cut off from its quorum must not serve a read.
		c.net.Isolate(leader)
		ctx, cancel := context.WithTimeout(context.Background(), 5*electionTimeout)
		defer cancel()
		if _, err := c.nodes[leader].ReadIndex(ctx); err == nil {
			t.Fatal("a leader cut off from its quorum confirmed a read")
		}
	})
}

func TestManyConcurrentReadsShareOneHeartbeatRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.checkOneLeader()
		n := c.nodes[leader]
		if _, err := n.ReadIndex(context.Background()); err != nil {
			t.Fatal(err)
		}
		// A little latency, so reads arriving while a round is in flight
		// pile up behind it.
		c.net.SetDelay(5*time.Millisecond, 5*time.Millisecond)
		synctest.Wait()
		before := c.net.Total().Sent
		errs := make(chan error, 50)
		for range 50 {
			go func() { _, err := n.ReadIndex(context.Background()); errs <- err }()
		}
		for range 50 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		// Two rounds serve them (the one in flight when they arrive, then
		// one for all), plus at most one periodic heartbeat round.
		rounds := (c.net.Total().Sent - before) / 4
		t.Logf("50 concurrent reads: %d heartbeat rounds", rounds)
		if rounds > 3 {
			t.Fatalf("50 concurrent reads cost %d heartbeat rounds, want ≤ 3", rounds)
		}
	})
}

func TestStatusReportsLeaderAndPeerProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		idx := c.one("x", 3)
		leader := c.checkOneLeader()
		st := c.nodes[leader].Status()
		if st.ID != leader || st.Role != Leader || st.Leader != leader || st.Commit < idx || st.Applied < idx || st.LastIndex < idx {
			t.Fatalf("leader status %+v after committing %d", st, idx)
		}
		if len(st.Peers) != 2 {
			t.Fatalf("leader reports %d peers, want 2", len(st.Peers))
		}
		for id, p := range st.Peers {
			if p.Match < idx || p.Next <= p.Match || p.State != "replicate" {
				t.Fatalf("peer %d progress %+v, want match ≥ %d, replicating", id, p, idx)
			}
		}
		if got := len(st.Config.Voters()); got != 3 {
			t.Fatalf("status config has %d voters", got)
		}
		f := c.nodes[others(c.ids, leader)[0]].Status()
		if f.Role != Follower || f.Leader != leader || len(f.Peers) != 0 {
			t.Fatalf("follower status %+v", f)
		}
	})
}

func TestSubscribersSeeLeaderRoleAndReachabilityEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		events := make(chan Event, 100)
		for _, id := range c.ids {
			c.nodes[id].Subscribe(events)
		}
		leader := c.checkOneLeader()
		f := others(c.ids, leader)[0]
		c.net.Block(f, leader) // the leader stops hearing from f
		time.Sleep(3 * electionTimeout)
		c.net.Heal()
		time.Sleep(electionTimeout)

		var sawLeader, sawRole, sawUnreachable, sawReachable bool
		for len(events) > 0 {
			e := <-events
			switch {
			case e.Type == EventLeaderChanged && e.Leader == leader:
				sawLeader = true
			case e.Type == EventRoleChanged && e.Node == leader && e.Role == Leader:
				sawRole = true
			case e.Type == EventPeerUnreachable && e.Node == leader && e.Peer == f:
				sawUnreachable = true
			case e.Type == EventPeerReachable && e.Node == leader && e.Peer == f && sawUnreachable:
				sawReachable = true
			}
		}
		if !sawLeader || !sawRole || !sawUnreachable || !sawReachable {
			t.Fatalf("events: leader-changed %v, role-changed %v, unreachable %v, reachable-again %v",
				sawLeader, sawRole, sawUnreachable, sawReachable)
		}
	})
}

func TestCloseFailsPendingCallsAndLaterCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.checkOneLeader()
		n := c.nodes[leader]
		c.net.Isolate(leader)
		errc := make(chan error, 1)
		go func() { _, err := n.Propose(context.Background(), []byte("x")); errc <- err }()
		synctest.Wait()
		c.crash(leader)
		if err := <-errc; !errors.Is(err, ErrClosed) && !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("pending proposal at close: %v, want ErrClosed", err)
		}
		if _, err := n.Propose(context.Background(), []byte("y")); !errors.Is(err, ErrClosed) {
			t.Fatalf("propose after close: %v, want ErrClosed", err)
		}
		if _, err := n.ReadIndex(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("read after close: %v, want ErrClosed", err)
		}
		if st := n.Status(); st.ID != leader {
			t.Fatalf("status after close: %+v", st)
		}
		if err := n.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestMalformedAndMisaddressedMessagesAreCountedAndIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.checkOneLeader()
		term := c.checkTerms()
		// Garbage straight into the leader's inbox, as a buggy transport
		// might deliver it: each carries a term that would depose the leader.
		other := leader%3 + 1 // a follower: its messages pass the address checks
		bad := []Message{
			{Type: MessageType(200), From: 2, To: leader, Term: term + 50},
			{Type: MsgApp, From: 2, To: leader + 100, Term: term + 50},
			{Type: MsgApp, From: 2, To: leader, Group: 7, Term: term + 50},
			{Type: MsgApp, From: None, To: leader, Term: term + 50},
			{Type: MsgApp, From: leader, To: leader, Term: term + 50},
			// Well addressed but impossible: entries that skip indexes, an
			// entry from a term after the message's, a candidate whose log
			// is ahead of its term.
			{Type: MsgApp, From: other, To: leader, Term: term + 50, Index: 1, LogTerm: 1, Entries: []Entry{{Index: 5, Term: term + 50}}},
			{Type: MsgApp, From: other, To: leader, Term: term + 50, Index: 1, LogTerm: 1, Entries: []Entry{{Index: 2, Term: term + 51}}},
			{Type: MsgVote, From: other, To: leader, Term: term + 50, Index: 9, LogTerm: term + 60},
			// A term no cluster reaches: adopting it, a node could never
			// campaign again without its term wrapping to zero.
			{Type: MsgHeartbeat, From: other, To: leader, Term: math.MaxUint64},
		}
		inbox := c.net.endpoints[leader].inbox
		for _, m := range bad {
			inbox <- m
		}
		// A well-formed message from an unknown peer, with a stale term.
		evil := c.net.Join(9)
		evil.Send(context.Background(), Message{Type: MsgAppResp, To: leader, Term: 1, Index: 1 << 40})
		time.Sleep(electionTimeout)
		st := c.nodes[leader].Status()
		if st.Role != Leader || st.Term != term {
			t.Fatalf("after hostile messages leader is %s in term %d, want leader in %d", st.Role, st.Term, term)
		}
		if st.Metrics.RecvRejected != uint64(len(bad)) {
			t.Fatalf("RecvRejected = %d, want %d", st.Metrics.RecvRejected, len(bad))
		}
		c.one("still-serving", 3)
	})
}

func TestConfigValidation(t *testing.T) {
	base := func() Config {
		return Config{ID: 1, Storage: NewMemoryStorage(), StateMachine: &recordingSM{}, Transport: NewNetwork(1).Join(1)}
	}
	tests := []struct {
		name   string
		modify func(*Config)
	}{
		{"zero id", func(c *Config) { c.ID = 0 }},
		{"no storage", func(c *Config) { c.Storage = nil }},
		{"no state machine", func(c *Config) { c.StateMachine = nil }},
		{"no transport", func(c *Config) { c.Transport = nil }},
		{"heartbeat not below election timeout", func(c *Config) { c.HeartbeatInterval = c.ElectionTimeout }},
		{"negative window", func(c *Config) { c.MaxInflightMsgs = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			cfg.setDefaults()
			tt.modify(&cfg)
			if n, err := NewNode(cfg); err == nil {
				n.Close()
				t.Fatal("invalid config accepted")
			}
		})
	}
}

// The default snapshot interval spaces snapshots where they cost disk
// writes, not where the log lives in the heap, and an explicit value wins.
func TestSnapshotIntervalDefaultsByStorage(t *testing.T) {
	durable := struct{ Storage }{NewMemoryStorage()} // any Storage but a *MemoryStorage
	tests := []struct {
		name    string
		storage Storage
		set     time.Duration
		want    time.Duration
	}{
		{"durable storage", durable, 0, DefaultSnapshotInterval},
		{"MemoryStorage", NewMemoryStorage(), 0, 0},
		{"explicit, durable", durable, 5 * time.Second, 5 * time.Second},
		{"explicit, MemoryStorage", NewMemoryStorage(), 5 * time.Second, 5 * time.Second},
		{"turned off", durable, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{ID: 1, Storage: tt.storage, SnapshotInterval: tt.set}
			cfg.setDefaults()
			if cfg.SnapshotInterval != tt.want {
				t.Fatalf("SnapshotInterval %v, want %v", cfg.SnapshotInterval, tt.want)
			}
		})
	}
}

// flakyStorage is a MemoryStorage whose Save starts failing on demand, as a
// full or broken disk would.
type flakyStorage struct {
	*MemoryStorage
	broken atomic.Bool
	// slow is how long a broken Save takes to fail, as a disk that times
	// out would.
	slow time.Duration
}

var errDiskFull = errors.New("no space left on device")

func (s *flakyStorage) Save(hs HardState, ents []Entry) error {
	if s.broken.Load() {
		time.Sleep(s.slow)
		return errDiskFull
	}
	return s.MemoryStorage.Save(hs, ents)
}

func TestStorageFailureStopsTheNodeAndAcknowledgesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Every node's disk can break; the leader's will.
		disks := map[NodeID]*flakyStorage{}
		events := make(chan Event, 64)
		c := newCluster(t, 3, func(cfg *Config) {
			d := &flakyStorage{MemoryStorage: cfg.Storage.(*MemoryStorage)}
			disks[cfg.ID] = d
			cfg.Storage = d
		})
		for _, id := range c.ids {
			c.nodes[id].Subscribe(events)
		}
		leader := c.checkOneLeader()
		n := c.nodes[leader]
		flaky := disks[leader]
		before := c.sms[leader].commands()
		flaky.broken.Store(true)
		res, err := n.Propose(context.Background(), []byte("after-failure"))
		if err == nil {
			t.Fatalf("proposal acknowledged at %d by a node whose disk fails", res.Index)
		}
		// The caller learns why, and that followers may still commit it.
		if !errors.Is(err, ErrStorageFailed) || !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("proposal in flight when the disk failed: %v, want ErrStorageFailed and ErrOutcomeUnknown", err)
		}
		time.Sleep(electionTimeout)
		st := n.Status()
		if !errors.Is(st.Err, ErrStorageFailed) || !errors.Is(st.Err, errDiskFull) {
			t.Fatalf("Status.Err = %v, want ErrStorageFailed wrapping the disk error", st.Err)
		}
		if _, err := n.Propose(context.Background(), []byte("later")); !errors.Is(err, ErrStorageFailed) {
			t.Fatalf("proposal to a failed node: %v, want ErrStorageFailed", err)
		}
		sawFailed := false
		for len(events) > 0 {
			sawFailed = sawFailed || (<-events).Type == EventFailed
		}
		if !sawFailed {
			t.Fatal("no EventFailed delivered")
		}
		if got := c.sms[leader].commands(); len(got) != len(before) {
			t.Fatalf("failed node applied %d more commands", len(got)-len(before))
		}
		// The rest of the cluster carries on without it.
		c.crash(leader)
		c.one("survivors", 2)
	})
}

func TestLeaderWhoseSaveFailsAppliesAndAcknowledgesNothingEvenIfFollowersPersistedIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		disks := map[NodeID]*flakyStorage{}
		c := newCluster(t, 3, func(cfg *Config) {
			d := &flakyStorage{MemoryStorage: cfg.Storage.(*MemoryStorage), slow: electionTimeout / 10}
			disks[cfg.ID] = d
			cfg.Storage = d
		})
		leader := c.checkOneLeader()
		before := c.sms[leader].commands()
		// The leader's Save fails only after the followers, whose disks
		// work, have persisted the entry and answered: it is committed, but
		// the leader never held it durably.
		disks[leader].broken.Store(true)
		res, err := c.nodes[leader].Propose(context.Background(), []byte("unpersisted"))
		if err == nil {
			t.Fatalf("proposal acknowledged at %d by a leader whose disk failed to persist it", res.Index)
		}
		if got := c.sms[leader].commands(); len(got) != len(before) {
			t.Fatalf("the leader applied %v, which its disk failed to persist", got[len(before):])
		}
		// The followers carry on and elect a leader with the entry.
		c.crash(leader)
		c.one("survivors", 2)
	})
}

func TestProposeWithADoneContextSubmitsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		_, ln := c.leaderNode()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		last := ln.Status().LastIndex
		for range 50 { // a select between a ready channel and ctx picks at random
			if _, err := ln.Propose(ctx, []byte("never")); !errors.Is(err, context.Canceled) || errors.Is(err, ErrOutcomeUnknown) {
				t.Fatalf("Propose with a cancelled context: %v, want context.Canceled alone", err)
			}
		}
		time.Sleep(electionTimeout)
		if got := ln.Status().LastIndex; got != last {
			t.Fatalf("the log grew from %d to %d: a cancelled proposal was submitted", last, got)
		}
	})
}

// What Close means for a proposal: one the node appended may still commit
// (ErrOutcomeUnknown as well as ErrClosed); one on a closed node was never
// submitted (ErrClosed alone), so a client may retry it elsewhere.
func TestProposeSaysWhetherClosingLeftTheWriteUndecided(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		l, ln := c.leaderNode()
		c.net.Isolate(l) // the append cannot commit
		errc := make(chan error, 1)
		go func() { _, err := ln.Propose(context.Background(), []byte("stuck")); errc <- err }()
		synctest.Wait()
		c.crash(l)
		if err := <-errc; !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrClosed) {
			t.Fatalf("appended proposal when the leader closed: %v, want ErrOutcomeUnknown and ErrClosed", err)
		}
		if _, err := ln.Propose(context.Background(), []byte("late")); !errors.Is(err, ErrClosed) || errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("proposal on a closed node: %v, want ErrClosed alone", err)
		}
	})
}
