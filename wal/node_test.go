package wal_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftline/raft"
	"github.com/raftline/raft/wal"
)

// Persistence scenarios: real raft.Nodes on the in-memory network, each
// with a WAL in its own directory, inside a synctest bubble. Real file I/O
// is fine there: a goroutine in a syscall is not durably blocked, so fake
// time simply waits for it.

const electionTimeout = 150 * time.Millisecond

// cmdSM records the commands it applied, in order.
type cmdSM struct {
	mu   sync.Mutex
	cmds []string
}

func (s *cmdSM) Apply(e raft.Entry) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmds = append(s.cmds, string(e.Data))
	return nil
}
func (s *cmdSM) Snapshot() (raft.StateSnapshot, error) { return nil, errors.New("unsupported") }
func (s *cmdSM) Restore(io.Reader) error               { return errors.New("unsupported") }
func (s *cmdSM) applied() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cmds)
}

type walCluster struct {
	t     *testing.T
	net   *raft.Network
	ids   []raft.NodeID
	dirs  map[raft.NodeID]string
	wals  map[raft.NodeID]*wal.WAL
	snaps map[raft.NodeID]*raft.MemorySnapshotStore
	nodes map[raft.NodeID]*raft.Node
	sms   map[raft.NodeID]*cmdSM
}

func newWALCluster(t *testing.T, n int) *walCluster {
	c := &walCluster{t: t, net: raft.NewNetwork(42), dirs: map[raft.NodeID]string{},
		wals: map[raft.NodeID]*wal.WAL{}, snaps: map[raft.NodeID]*raft.MemorySnapshotStore{}, nodes: map[raft.NodeID]*raft.Node{}, sms: map[raft.NodeID]*cmdSM{}}
	var conf raft.Configuration
	for i := 1; i <= n; i++ {
		c.ids = append(c.ids, raft.NodeID(i))
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(i)})
	}
	for _, id := range c.ids {
		c.dirs[id] = t.TempDir()
		c.snaps[id] = raft.NewMemorySnapshotStore()
		w := c.openWAL(id)
		if err := raft.Bootstrap(w, conf); err != nil {
			t.Fatal(err)
		}
		c.start(id)
	}
	t.Cleanup(c.stopAll)
	return c
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (c *walCluster) openWAL(id raft.NodeID) *wal.WAL {
	w, err := wal.Open(c.dirs[id], wal.Options{SegmentSize: 16 << 10, Logger: quiet()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.wals[id] = w
	return w
}

// start runs node id on its WAL (reopened if it was stopped) with a fresh
// state machine, which replays the committed log.
func (c *walCluster) start(id raft.NodeID) {
	w := c.wals[id]
	if w == nil {
		w = c.openWAL(id)
	}
	sm := &cmdSM{}
	n, err := raft.NewNode(raft.Config{ID: id, Storage: w, Snapshots: c.snaps[id], StateMachine: sm, Transport: c.net.Join(id),
		ElectionTimeout: electionTimeout, Logger: quiet()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[id], c.sms[id] = n, sm
}

// stop closes node id, then its WAL (never the other way round).
func (c *walCluster) stop(id raft.NodeID) {
	if n := c.nodes[id]; n != nil {
		n.Close()
		c.nodes[id] = nil
	}
	if w := c.wals[id]; w != nil {
		if err := w.Close(); err != nil {
			c.t.Errorf("closing WAL %d: %v", id, err)
		}
		c.wals[id] = nil
	}
}

func (c *walCluster) stopAll() {
	for _, id := range c.ids {
		c.stop(id)
	}
}

// leader waits for a running node to lead and returns it.
func (c *walCluster) leader() raft.NodeID {
	c.t.Helper()
	for range 100 {
		time.Sleep(electionTimeout / 5)
		for _, id := range c.ids {
			if n := c.nodes[id]; n != nil && n.Status().Role == raft.Leader {
				return id
			}
		}
	}
	c.t.Fatal("no leader elected")
	return 0
}

// propose commits cmd through the current leader, retrying like a client.
func (c *walCluster) propose(cmd string) uint64 {
	c.t.Helper()
	for range 20 {
		n := c.nodes[c.leader()]
		ctx, cancel := context.WithTimeout(context.Background(), 4*electionTimeout)
		res, err := n.Propose(ctx, []byte(cmd))
		cancel()
		if err == nil {
			return res.Index
		}
	}
	c.t.Fatalf("proposal %q never committed", cmd)
	return 0
}

// waitApplied waits until every running node applied want, in order.
func (c *walCluster) waitApplied(want []string) {
	c.t.Helper()
	for range 200 {
		ok := true
		for _, id := range c.ids {
			if c.nodes[id] != nil && !slices.Equal(c.sms[id].applied(), want) {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(electionTimeout / 5)
	}
	for _, id := range c.ids {
		if c.nodes[id] != nil {
			c.t.Errorf("node %d applied %q", id, c.sms[id].applied())
		}
	}
	c.t.Fatalf("want %q applied everywhere", want)
}

func TestNodeRestartedFromWALKeepsTermVoteAndLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newWALCluster(t, 3)
		var cmds []string
		for i := range 5 {
			cmds = append(cmds, fmt.Sprintf("cmd-%d", i))
			c.propose(cmds[i])
		}
		c.waitApplied(cmds)
		for _, id := range c.ids {
			st := c.nodes[id].Status()
			c.stop(id)
			w := c.openWAL(id)
			hs, _ := w.InitialState()
			last, _ := w.LastIndex()
			if hs.Term != st.Term || hs.Vote != st.Vote || last != st.LastIndex {
				t.Fatalf("node %d: WAL holds term %d vote %d last %d; node had term %d vote %d last %d",
					id, hs.Term, hs.Vote, last, st.Term, st.Vote, st.LastIndex)
			}
			c.start(id)
		}
		c.waitApplied(cmds) // fresh state machines replay the log
	})
}

func TestAllNodesRestartedFromWALsKeepCommittedCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newWALCluster(t, 3)
		cmds := []string{"a", "b", "c"}
		for _, cmd := range cmds {
			c.propose(cmd)
		}
		c.waitApplied(cmds)
		term := c.nodes[c.leader()].Status().Term
		c.stopAll()
		for _, id := range c.ids {
			c.start(id)
		}
		c.waitApplied(cmds)
		cmds = append(cmds, "d")
		c.propose("d")
		c.waitApplied(cmds)
		if st := c.nodes[c.leader()].Status(); st.Term <= term {
			t.Fatalf("leader after full restart has term %d, want above %d", st.Term, term)
		}
	})
}

func TestLeaderAndFollowersRestartedInTurnsLoseNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newWALCluster(t, 3)
		var cmds []string
		add := func(cmd string) {
			cmds = append(cmds, cmd)
			c.propose(cmd)
		}
		add("first")
		for round := range 3 {
			ld := c.leader()
			c.stop(ld)
			add(fmt.Sprintf("after leader %d restart %d", ld, round))
			c.start(ld)
			c.waitApplied(cmds)
			ld = c.leader()
			follower := c.ids[(int(ld)+round)%len(c.ids)]
			if follower == ld {
				follower = c.ids[(int(ld))%len(c.ids)]
			}
			c.stop(follower)
			add(fmt.Sprintf("after follower %d restart %d", follower, round))
			c.start(follower)
			c.waitApplied(cmds)
		}
	})
}

// TestCrashDuringAgreementKeepsAcknowledgedCommands stops the leader while
// proposals are in flight: every acknowledged command survives, applied in
// the same order everywhere, and the log goes on.
func TestCrashDuringAgreementKeepsAcknowledgedCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newWALCluster(t, 3)
		c.propose("warm-up")
		c.net.SetDelay(time.Millisecond, 4*time.Millisecond)
		ld := c.leader()
		n := c.nodes[ld]
		var mu sync.Mutex
		var acked []string
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * time.Millisecond)
				cmd := fmt.Sprintf("inflight-%d", i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*electionTimeout)
				defer cancel()
				if _, err := n.Propose(ctx, []byte(cmd)); err == nil {
					mu.Lock()
					acked = append(acked, cmd)
					mu.Unlock()
				}
			}()
		}
		// Crash the leader while they are being appended and replicated:
		// proposals go out one per millisecond over links of 1-4 ms.
		time.Sleep(10 * time.Millisecond)
		c.stop(ld)
		wg.Wait()
		c.start(ld)
		c.propose("after")
		ref := c.sms[c.leader()].applied()
		c.waitApplied(ref)
		for _, cmd := range append(acked, "warm-up", "after") {
			if !slices.Contains(ref, cmd) {
				t.Fatalf("acknowledged %q missing from applied log %q", cmd, ref)
			}
		}
		t.Logf("%d of 20 in-flight proposals acknowledged before the crash", len(acked))
	})
}

// Figure 8 with crashes: whoever leads is stopped (node and WAL) right
// after it appended, so entries of old terms sit unevenly on disks; nodes
// come back from their WAL directories. Every acknowledged command must
// survive, and all nodes must end with the same log.
func TestFigure8WithCrashesOnWALsLosesNothingAcknowledged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newWALCluster(t, 5)
		c.propose("first")
		// Links of 1-4 ms: crashes land while entries are on the wire.
		c.net.SetDelay(time.Millisecond, 4*time.Millisecond)
		rng := rand.New(rand.NewPCG(8, 8))
		var mu sync.Mutex
		var acked []string
		var wg sync.WaitGroup
		up := 5
		for i := range 60 {
			leader := c.leader()
			n := c.nodes[leader]
			for j := range 3 {
				cmd := fmt.Sprintf("x%d-%d", i, j)
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*electionTimeout)
					defer cancel()
					if _, err := n.Propose(ctx, []byte(cmd)); err == nil {
						mu.Lock()
						acked = append(acked, cmd)
						mu.Unlock()
					}
				})
			}
			if rng.IntN(10) == 0 {
				time.Sleep(time.Duration(rng.IntN(int(3 * electionTimeout))))
			} else {
				time.Sleep(time.Duration(rng.IntN(13)) * time.Millisecond / 4)
			}
			c.stop(leader)
			up--
			for up < 3 {
				if id := c.ids[rng.IntN(len(c.ids))]; c.nodes[id] == nil {
					c.start(id)
					up++
				}
			}
		}
		wg.Wait()
		for _, id := range c.ids {
			if c.nodes[id] == nil {
				c.start(id)
			}
		}
		c.propose("last")
		ref := c.sms[c.leader()].applied()
		c.waitApplied(ref)
		for _, cmd := range append(acked, "first", "last") {
			if !slices.Contains(ref, cmd) {
				t.Fatalf("acknowledged %q missing from the applied log", cmd)
			}
		}
		t.Logf("%d proposals acknowledged across 60 leader crashes; log of %d commands agreed by all 5", len(acked), len(ref))
	})
}
