package raft

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestFollowerReadsSeeEveryWriteAcknowledgedBeforeThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		l, _ := c.leaderNode()
		for _, f := range others(c.ids, l) {
			for i := range 5 {
				idx := c.one(string(rune('a'+i))+"-for-"+string(rune('0'+f)), 1) // acknowledged once the leader applied it
				got, err := c.nodes[f].ReadIndex(context.Background())
				if err != nil {
					t.Fatalf("follower %d ReadIndex: %v", f, err)
				}
				if got < idx {
					t.Fatalf("follower %d read at %d, before write %d acknowledged earlier", f, got, idx)
				}
				if _, ok := c.sms[f].at(idx); !ok {
					t.Fatalf("follower %d returned from ReadIndex without applying write %d", f, idx)
				}
			}
		}
	})
}

func TestFollowerReadsShareOneRequestToTheLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		l, _ := c.leaderNode()
		f := others(c.ids, l)[0]
		c.net.SetDelay(5*time.Millisecond, 5*time.Millisecond)
		before := c.nodes[f].Metrics().MessagesSent[MsgReadIndex]
		errs := make(chan error, 40)
		for range 40 {
			go func() { _, err := c.nodes[f].ReadIndex(context.Background()); errs <- err }()
		}
		for range 40 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		// The first read's request, then one for all that queued behind
		// it. (Counted by type: a heartbeat tick may fall in the reads'
		// window, and the follower answers it.)
		if sent := c.nodes[f].Metrics().MessagesSent[MsgReadIndex] - before; sent > 2 {
			t.Fatalf("40 concurrent follower reads sent %d read requests, want at most 2", sent)
		}
	})
}

func leaseCluster(t *testing.T) *testCluster {
	return newCluster(t, 3, func(cfg *Config) { cfg.LeaseReads, cfg.MaxClockDrift = true, 0.05 })
}

func TestLeaseReadsNeedNoRoundWhileTheLeaseHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := leaseCluster(t)
		idx := c.one("w", 3)
		_, ln := c.leaderNode()
		time.Sleep(electionTimeout / 5) // a heartbeat round answered
		if !ln.Status().Lease {
			t.Fatalf("leader holds no lease after a heartbeat round")
		}
		before := ln.Metrics()
		got, err := ln.LeaseRead(context.Background())
		if err != nil || got < idx {
			t.Fatalf("LeaseRead = %d, %v; want ≥ %d", got, err, idx)
		}
		// No read round (a periodic heartbeat may still fall at this
		// instant: the sleep above ends on a tick).
		after := ln.Metrics()
		if after.ReadIndexRounds != before.ReadIndexRounds || after.LeaseReads != before.LeaseReads+1 {
			t.Fatalf("a lease read started %d read rounds and counted %d lease reads, want 0 and 1",
				after.ReadIndexRounds-before.ReadIndexRounds, after.LeaseReads-before.LeaseReads)
		}
	})
}

func TestCutOffLeaderLosesItsLeaseBeforeAnyoneElseCanLead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := leaseCluster(t)
		c.one("w", 3)
		l, ln := c.leaderNode()
		time.Sleep(electionTimeout / 5)
		c.net.Isolate(l)
		cut := time.Now()
		// The lease outlives no follower's promise: it ends within
		// (election timeout - a tick) × (1 - drift) of the last round.
		waitFor(t, electionTimeout, "lease to end", func() bool { return !ln.Status().Lease })
		if ended := time.Since(cut); ended >= electionTimeout {
			t.Fatalf("lease lasted %v after the leader was cut off", ended)
		}
		ctx, cancel := context.WithTimeout(context.Background(), electionTimeout/2)
		defer cancel()
		if _, err := ln.LeaseRead(ctx); err == nil {
			t.Fatalf("a cut-off leader whose lease ended served a lease read")
		}
		newLeader := c.checkOneLeader(others(c.ids, l)...)
		if took := time.Since(cut); took < electionTimeout {
			t.Fatalf("node %d led %v after the cut, inside the old leader's lease", newLeader, took)
		}
	})
}

func TestNoLeaseRightAfterElectionOrDuringATransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := leaseCluster(t)
		c.one("w", 3)
		l, ln := c.leaderNode()
		time.Sleep(electionTimeout / 5)
		target := others(c.ids, l)[0]
		c.net.Isolate(target) // the transfer hangs until it aborts
		go ln.TransferLeadership(context.Background(), target)
		synctest.Wait()
		if ln.Status().Lease {
			t.Fatalf("leader keeps its lease while transferring leadership")
		}
		time.Sleep(2 * electionTimeout) // aborted; no MsgTimeoutNow went out
		c.net.Heal()
		time.Sleep(electionTimeout / 5)
		if !ln.Status().Lease {
			t.Fatalf("no lease once the transfer was aborted and rounds are answered")
		}
		if _, err := ln.TransferLeadership(context.Background(), target); err != nil {
			t.Fatal(err)
		}
		if st := c.nodes[target].Status(); st.Role != Leader || st.Lease {
			t.Fatalf("new leader: %v, lease %v; want a leader without a lease until its first round", st.Role, st.Lease)
		}
	})
}
