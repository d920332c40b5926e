package simtest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftline/raft"
)

// The actor-level soak: real Nodes, with all their goroutines, on the
// in-memory network inside a synctest bubble, through ten virtual minutes of
// partitions, drops and crash-restarts under a key-value workload. The
// deterministic simulator proves the state machine; this proves the
// plumbing around it (no deadlock, no lost wake-up, no leak — goleak runs
// after it), with the same invariants and the same linearizability check.

const soakDuration = 10 * time.Minute

// soakSM is the key-value state machine of one node incarnation; it reports
// every apply to the shared checker.
type soakSM struct {
	mu      sync.Mutex
	kv      *kvStore
	node    raft.NodeID
	checker *soakChecker
}

func (s *soakSM) Apply(e raft.Entry) any {
	s.checker.applied(s.node, e)
	in, err := decodeInput(e.Data)
	if err != nil {
		s.checker.fail(fmt.Errorf("node %d applied malformed command at %d", s.node, e.Index))
		return Output{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kv.apply(in)
}

func (s *soakSM) read(key string) Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kv.apply(Input{Kind: OpGet, Key: key})
}

// Snapshot captures the store's bytes (the store is small).
func (s *soakSM) Snapshot() (raft.StateSnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return soakSnapshot(s.kv.snapshotBytes()), nil
}

func (s *soakSM) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	kv, err := decodeKV(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kv = kv
	s.checker.restored()
	return nil
}

type soakSnapshot []byte

func (v soakSnapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(v)
	return int64(n), err
}

func (soakSnapshot) Release() {}

// soakChecker holds the invariants shared by all nodes.
type soakChecker struct {
	mu      sync.Mutex
	err     error
	byIndex map[uint64][2]uint64 // index → term, data hash
	leaders map[uint64]raft.NodeID
	// restores counts snapshots restored (at restart or from a leader).
	restores int
}

func (c *soakChecker) restored() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.restores++
}

func (c *soakChecker) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (c *soakChecker) applied(node raft.NodeID, e raft.Entry) {
	h := fnv.New64a()
	h.Write(e.Data)
	got := [2]uint64{e.Term, h.Sum64()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if want, ok := c.byIndex[e.Index]; ok && want != got && c.err == nil {
		c.err = fmt.Errorf("state machine safety: node %d applied term %d at %d, another node term %d", node, e.Term, e.Index, want[0])
	}
	c.byIndex[e.Index] = got
}

func (c *soakChecker) leader(e raft.Event) {
	if e.Type != raft.EventRoleChanged || e.Role != raft.Leader {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if other, ok := c.leaders[e.Term]; ok && other != e.Node && c.err == nil {
		c.err = fmt.Errorf("election safety: nodes %d and %d both led term %d", other, e.Node, e.Term)
	}
	c.leaders[e.Term] = e.Node
}

// soakCluster is the running cluster; mu guards the node slots against
// the chaos goroutine.
type soakCluster struct {
	mu      sync.Mutex
	net     *raft.Network
	nodes   []*raft.Node
	sms     []*soakSM
	stores  []*raft.MemoryStorage
	snaps   []*raft.MemorySnapshotStore
	stops   []func()
	checker *soakChecker
	seed    uint64
}

func (c *soakCluster) start(i int) error {
	id := raft.NodeID(i + 1)
	c.seed++
	sm := &soakSM{kv: newKVStore(), node: id, checker: c.checker}
	n, err := raft.NewNode(raft.Config{
		ID: id, Storage: c.stores[i], Snapshots: c.snaps[i], StateMachine: sm, Transport: c.net.Join(id),
		// Snapshots, compaction and InstallSnapshot every few dozen writes.
		SnapshotEntries: 40, SnapshotTrailing: 10, SnapshotInterval: -1,
		Rand:   rand.NewPCG(c.seed, uint64(id)),
		Logger: discardLogger(),
	})
	if err != nil {
		return err
	}
	events := make(chan raft.Event, 256)
	unsubscribe := n.Subscribe(events)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-events:
				c.checker.leader(e)
			}
		}
	}()
	c.nodes[i], c.sms[i] = n, sm
	c.stops[i] = func() { n.Close(); unsubscribe(); cancel(); <-done }
	return nil
}

func (c *soakCluster) crash(i int) {
	if c.nodes[i] != nil {
		c.stops[i]()
		c.nodes[i], c.stops[i] = nil, nil
	}
}

func (c *soakCluster) node(i int) (*raft.Node, *soakSM) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i], c.sms[i]
}

func TestSoakRealNodesUnderSynctest(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped in -short mode")
	}
	var history []Op
	var restores int
	var err error
	synctest.Test(t, func(t *testing.T) {
		history, restores, err = runSoak(t, 5, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	unknown := 0
	for _, op := range history {
		if op.Unknown {
			unknown++
		}
	}
	t.Logf("soak: %v virtual, %d client operations (%d of unknown outcome), %d snapshots restored", soakDuration, len(history), unknown, restores)
	if len(history) < 1000 {
		t.Fatalf("only %d operations in %v: the workload did not run", len(history), soakDuration)
	}
	if restores == 0 {
		t.Fatalf("no node restored a snapshot in %v: restarts and catch-ups did not exercise snapshots", soakDuration)
	}
	checkLinearizable(t, Result{Seed: 1, Nodes: 5, History: history})
}

func runSoak(t *testing.T, nodes int, seed uint64) ([]Op, int, error) {
	c := &soakCluster{
		net:     raft.NewNetwork(seed),
		nodes:   make([]*raft.Node, nodes),
		sms:     make([]*soakSM, nodes),
		stores:  make([]*raft.MemoryStorage, nodes),
		snaps:   make([]*raft.MemorySnapshotStore, nodes),
		stops:   make([]func(), nodes),
		checker: &soakChecker{byIndex: map[uint64][2]uint64{}, leaders: map[uint64]raft.NodeID{}},
		seed:    seed * 1000,
	}
	c.net.SetDelay(time.Millisecond, 5*time.Millisecond)
	var conf raft.Configuration
	for i := range nodes {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(i + 1)})
	}
	for i := range nodes {
		c.stores[i] = raft.NewMemoryStorage()
		c.snaps[i] = raft.NewMemorySnapshotStore()
		if err := raft.Bootstrap(c.stores[i], conf); err != nil {
			return nil, 0, err
		}
		if err := c.start(i); err != nil {
			return nil, 0, err
		}
	}
	defer func() {
		for i := range nodes {
			c.crash(i)
		}
	}()

	var hmu sync.Mutex
	var history []Op
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for client := range 3 {
		wg.Go(func() {
			ops := soakClient(c, client, seed, stop)
			hmu.Lock()
			history = append(history, ops...)
			hmu.Unlock()
		})
	}
	chaos(c, seed, soakDuration)
	close(stop)
	wg.Wait()
	c.checker.mu.Lock()
	defer c.checker.mu.Unlock()
	return history, c.checker.restores, c.checker.err
}

// chaos partitions, drops and crashes for the soak's duration, then heals
// and restarts everything.
func chaos(c *soakCluster, seed uint64, d time.Duration) {
	rng := rand.New(rand.NewPCG(seed, 77))
	n := len(c.nodes)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(500+rng.IntN(4500)) * time.Millisecond)
		c.mu.Lock()
		switch r := rng.IntN(10); {
		case r < 3:
			var a, b []raft.NodeID
			for i := range n {
				if rng.IntN(2) == 0 {
					a = append(a, raft.NodeID(i+1))
				} else {
					b = append(b, raft.NodeID(i+1))
				}
			}
			c.net.Partition(a, b)
		case r < 5:
			c.net.SetDropRate(rng.Float64() * 0.2)
		case r < 7:
			i := rng.IntN(n)
			if c.nodes[i] != nil {
				c.crash(i)
			} else if err := c.start(i); err != nil {
				c.checker.fail(err)
			}
		default:
			c.net.Heal()
			c.net.SetDropRate(0)
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.net.Heal()
	c.net.SetDropRate(0)
	for i := range n {
		if c.nodes[i] == nil {
			if err := c.start(i); err != nil {
				c.checker.fail(err)
			}
		}
	}
	c.mu.Unlock()
	time.Sleep(5 * time.Second) // let the healed cluster settle before clients stop
}

// soakClient runs one closed-loop client until stop, returning its history.
func soakClient(c *soakCluster, id int, seed uint64, stop <-chan struct{}) []Op {
	rng := rand.New(rand.NewPCG(seed, uint64(id)+100))
	var ops []Op
	target := rng.IntN(len(c.nodes))
	for {
		select {
		case <-stop:
			return ops
		case <-time.After(time.Duration(50+rng.IntN(250)) * time.Millisecond):
		}
		in := randomInput(rng, 4)
		op := Op{Client: id, Input: in, Call: time.Now().UnixNano()}
		done := false
		for attempt := 0; attempt < 5 && !done; attempt++ {
			n, sm := c.node(target)
			if n == nil {
				target = rng.IntN(len(c.nodes))
				continue
			}
			out, err := soakDo(n, sm, in)
			var nle *raft.NotLeaderError
			switch {
			case err == nil:
				op.Output, op.Return = out, time.Now().UnixNano()
				ops, done = append(ops, op), true
			case errors.As(err, &nle):
				// Definitely not executed: try the leader it named.
				if nle.Leader != raft.None {
					target = int(nle.Leader) - 1
				} else {
					target = rng.IntN(len(c.nodes))
				}
			default:
				// Timeout, lost leadership, node closed: a write may
				// have happened; a read changed nothing.
				if in.Kind != OpGet {
					op.Unknown = true
					ops = append(ops, op)
				}
				done = true
				target = rng.IntN(len(c.nodes))
			}
		}
		if !done && in.Kind != OpGet {
			// Every attempt was refused outright: nothing happened.
			continue
		}
	}
}

func soakDo(n *raft.Node, sm *soakSM, in Input) (Output, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if in.Kind == OpGet {
		if _, err := n.ReadIndex(ctx); err != nil {
			return Output{}, err
		}
		return sm.read(in.Key), nil
	}
	res, err := n.Propose(ctx, encodeInput(in))
	if err != nil {
		return Output{}, err
	}
	out, ok := res.Value.(Output)
	if !ok {
		return Output{}, errors.New("state machine returned no output")
	}
	return out, nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
