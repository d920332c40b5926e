package raft

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestTransferLeadershipToANamedNodeAndToTheBest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.writeN("w", 5, 3)
		l, ln := c.leaderNode()
		to := others(c.ids, l)[1]
		start := time.Now()
		got, err := ln.TransferLeadership(context.Background(), to)
		if err != nil || got != to {
			t.Fatalf("TransferLeadership(%d) = %d, %v", to, got, err)
		}
		if took := time.Since(start); took >= electionTimeout {
			t.Fatalf("transfer took %v, not under an election timeout", took)
		}
		if c.checkOneLeader() != to {
			t.Fatalf("node %d does not lead after the transfer", to)
		}
		best, err := c.nodes[to].TransferLeadership(context.Background(), None)
		if err != nil || best == to || best == None {
			t.Fatalf("TransferLeadership(None) = %d, %v", best, err)
		}
		c.one("after", 3)
	})
}

func TestTransferToAPartitionedNodeAbortsWithinAnElectionTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		l, ln := c.leaderNode()
		target := others(c.ids, l)[0]
		c.net.Isolate(target)
		start := time.Now()
		_, err := ln.TransferLeadership(context.Background(), target)
		if !errors.Is(err, ErrTransferAborted) {
			t.Fatalf("transfer to a cut-off node: %v, want ErrTransferAborted", err)
		}
		if took := time.Since(start); took > electionTimeout+electionTimeout/5 {
			t.Fatalf("abort took %v, want about one election timeout", took)
		}
		if st := ln.Status(); st.Role != Leader || st.Transferring != None {
			t.Fatalf("old leader after the abort: %v, transferring to %d", st.Role, st.Transferring)
		}
		if _, err := ln.Propose(context.Background(), []byte("serves again")); err != nil {
			t.Fatalf("old leader refuses proposals after the abort: %v", err)
		}
	})
}

func TestInvalidTransfersAreRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		c.join(4)
		l, ln := c.leaderNode()
		if _, err := ln.AddLearner(context.Background(), 4, "", 0); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, tc := range []struct {
			to   NodeID
			want error
		}{{l, ErrInvalidTransfer}, {4, ErrInvalidTransfer}, {9, ErrUnknownServer}} {
			if _, err := ln.TransferLeadership(ctx, tc.to); !errors.Is(err, tc.want) {
				t.Errorf("transfer to %d: %v, want %v", tc.to, err, tc.want)
			}
		}
		f := others(c.ids, l, 4)[0]
		if _, err := c.nodes[f].TransferLeadership(ctx, None); !errors.Is(err, ErrNotLeader) {
			t.Errorf("transfer asked of a follower: %v, want ErrNotLeader", err)
		}
	})
}

func TestProposalsDuringATransferFailFastAndNoneIsLostOrDoubled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.one("first", 3)
		l, ln := c.leaderNode()
		target := others(c.ids, l)[0]
		c.net.Isolate(target) // the transfer hangs until it aborts
		go ln.TransferLeadership(context.Background(), target)
		synctest.Wait()
		var refused, accepted int
		for i := range 20 {
			start := time.Now()
			_, err := ln.Propose(context.Background(), []byte{'p', byte(i)})
			switch {
			case errors.Is(err, ErrTransferInProgress):
				refused++
				if took := time.Since(start); took > 0 {
					t.Fatalf("a refused proposal took %v", took)
				}
			case err == nil:
				accepted++
			default:
				t.Fatalf("proposal during a transfer: %v", err)
			}
			time.Sleep(electionTimeout / 10)
		}
		if refused == 0 || accepted == 0 {
			t.Fatalf("%d refused and %d accepted: want refusals during the transfer and acceptance after its abort", refused, accepted)
		}
		c.net.Heal()
		c.one("last", 3)
		seen := map[string]int{}
		for _, cmd := range c.sms[l].commands() {
			seen[cmd]++
		}
		applied := 0
		for i := range 20 {
			switch n := seen[string([]byte{'p', byte(i)})]; n {
			case 0:
			case 1:
				applied++
			default:
				t.Fatalf("proposal %d applied %d times", i, n)
			}
		}
		if applied != accepted {
			t.Fatalf("%d proposals acknowledged, %d applied", accepted, applied)
		}
	})
}

func TestGracefulCloseOfTheLeaderFailsNoClientWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, func(cfg *Config) { cfg.CloseTransferTimeout = electionTimeout })
		c.one("first", 3)
		l, _ := c.leaderNode()
		var mu sync.Mutex
		var failures []error
		stop := make(chan struct{})
		var wg sync.WaitGroup
		stopWriter := sync.OnceFunc(func() { close(stop); wg.Wait() })
		defer stopWriter()
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// A client retries a write the leader refused or
				// redirected, as kvexample's clients do.
				if err := c.proposeWithRetry([]byte{'c', byte(i)}); err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
				time.Sleep(electionTimeout / 100) // a client's pace
			}
		})
		time.Sleep(electionTimeout / 2)
		c.crash(l) // Close: hands leadership over first
		if st := c.nodes[others(c.ids, l)[0]].Status(); st.Leader == None || st.Leader == l {
			t.Fatalf("after the leader's graceful close its peers see leader %d", st.Leader)
		}
		time.Sleep(electionTimeout / 2)
		stopWriter()
		if len(failures) > 0 {
			t.Fatalf("%d client writes failed across a graceful leader shutdown, first: %v", len(failures), failures[0])
		}
	})
}

// proposeWithRetry proposes cmd on whichever running node leads, retrying
// (as a client would) refusals that say the write did not happen (not the
// leader, a transfer under way, or the node closed before taking it);
// other errors are returned.
func (c *testCluster) proposeWithRetry(cmd []byte) error {
	deadline := time.Now().Add(5 * electionTimeout)
	for time.Now().Before(deadline) {
		for _, n := range c.running() {
			if n.Status().Role != Leader {
				continue
			}
			_, err := n.Propose(context.Background(), cmd)
			// ErrClosed alone: the node closed before taking the write.
			closedFirst := errors.Is(err, ErrClosed) && !errors.Is(err, ErrOutcomeUnknown)
			if err == nil || !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrTransferInProgress) || closedFirst) {
				return err
			}
		}
		time.Sleep(electionTimeout / 50)
	}
	return errors.New("no leader took the write")
}
