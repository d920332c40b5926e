package raft_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftline/raft"
	"github.com/raftline/raft/snapstore"
	"github.com/raftline/raft/wal"
)

// kv is the state machine of these examples: a map from string to string,
// set by commands "key=value". The library calls Apply from one goroutine
// while the examples read the map from others, so the map has its own
// lock: the library does not lock anything for the state machine.
type kv struct {
	mu sync.Mutex
	m  map[string]string
}

func newKV() *kv { return &kv{m: map[string]string{}} }

// Apply sets a key. It returns the key's previous value, which Propose
// hands back as Result.Value on the node that proposed the command. A
// malformed command is not an error that stops anything: the entry is
// committed on every node whatever Apply makes of it, so Apply answers
// it the same way everywhere (here: an error value, and no change).
func (s *kv) Apply(e raft.Entry) any {
	k, v, ok := strings.Cut(string(e.Data), "=")
	if !ok {
		return fmt.Errorf("malformed command %q", e.Data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.m[k]
	s.m[k] = v
	return prev
}

// get reads a key, as a client of the state machine would.
func (s *kv) get(k string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[k]
}

// Snapshot copies the map: it is small. A large state would hand out an
// immutable (copy-on-write) view instead, since applying goes on while
// the snapshot is written.
func (s *kv) Snapshot() (raft.StateSnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return kvSnapshot(maps.Clone(s.m)), nil
}

// Restore replaces the map with a snapshot's.
func (s *kv) Restore(r io.Reader) error {
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		m[k] = v
	}
	if err := sc.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = m
	return nil
}

// kvSnapshot is a frozen copy of the map, written as "key=value" lines in
// key order.
type kvSnapshot map[string]string

func (s kvSnapshot) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(s)) {
		fmt.Fprintf(&b, "%s=%s\n", k, s[k])
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func (kvSnapshot) Release() {}

// quiet keeps the examples' output to what they print: nodes log
// elections and snapshots through slog, at Info.
var quiet = slog.New(slog.DiscardHandler)

// exampleTimeout is the in-memory examples' election timeout: there is no
// network latency to allow for, and a short timeout elects a leader fast.
const exampleTimeout = 300 * time.Millisecond

// startCluster starts a cluster of three nodes on one in-memory network,
// as Example (the package example) does step by step, and returns the
// nodes and their state machines, indexed by ID (0 is unused).
func startCluster() ([]*raft.Node, []*kv) {
	network := raft.NewNetwork(1)
	conf := raft.Configuration{Servers: []raft.Server{{ID: 1}, {ID: 2}, {ID: 3}}}
	nodes, sms := make([]*raft.Node, 4), make([]*kv, 4)
	for id := raft.NodeID(1); id <= 3; id++ {
		store := raft.NewMemoryStorage()
		if err := raft.Bootstrap(store, conf); err != nil {
			panic(err)
		}
		sms[id] = newKV()
		n, err := raft.NewNode(raft.Config{
			ID: id, Storage: store, Transport: network.Join(id), StateMachine: sms[id],
			ElectionTimeout: exampleTimeout, Logger: quiet,
		})
		if err != nil {
			panic(err)
		}
		nodes[id] = n
	}
	return nodes, sms
}

// closeAll stops every node. Close leaves a node's transport and storage
// open: the caller owns them (here the network and MemoryStorage need no
// closing).
func closeAll(nodes []*raft.Node) {
	for _, n := range nodes[1:] {
		n.Close()
	}
}

// waitForLeader waits until every node follows one leader, and returns it.
func waitForLeader(nodes []*raft.Node) *raft.Node {
	for {
		leader := nodes[1].Status().Leader
		agreed := leader != raft.None
		for _, n := range nodes[2:] {
			agreed = agreed && n.Status().Leader == leader
		}
		if agreed && nodes[leader].Status().Role == raft.Leader {
			return nodes[leader]
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// propose proposes cmd to whichever node leads, as a client must: a node
// that is not the leader says which node is (NotLeaderError), and a
// proposal cut short by a leader change may or may not have committed
// (ErrOutcomeUnknown), so it is sent again; the commands here are
// idempotent, which makes that safe.
func propose(ctx context.Context, nodes []*raft.Node, cmd string) (raft.Result, error) {
	to := nodes[1]
	for {
		res, err := to.Propose(ctx, []byte(cmd))
		var notLeader *raft.NotLeaderError
		switch {
		case err == nil:
			return res, nil
		case errors.As(err, &notLeader) && notLeader.Leader != raft.None:
			to = nodes[notLeader.Leader]
			continue
		case errors.As(err, &notLeader), errors.Is(err, raft.ErrOutcomeUnknown), errors.Is(err, raft.ErrTransferInProgress):
			// No leader known yet, or leadership changed: try again shortly.
		default:
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// A three-node cluster in one process: each node has its own storage and
// state machine, and they talk over the in-memory network. A write is
// proposed on the leader and returns once committed and applied there; a
// linearizable read on a follower sees it.
func Example() {
	// All nodes join the same network: Join(id) is one node's endpoint.
	network := raft.NewNetwork(1)
	conf := raft.Configuration{Servers: []raft.Server{{ID: 1}, {ID: 2}, {ID: 3}}}
	nodes, sms := make([]*raft.Node, 4), make([]*kv, 4)
	for id := raft.NodeID(1); id <= 3; id++ {
		store := raft.NewMemoryStorage()
		// Once, on every initial voter, before its first start.
		if err := raft.Bootstrap(store, conf); err != nil {
			panic(err)
		}
		sms[id] = newKV()
		n, err := raft.NewNode(raft.Config{
			ID: id, Storage: store, Transport: network.Join(id), StateMachine: sms[id],
			ElectionTimeout: exampleTimeout, Logger: quiet,
		})
		if err != nil {
			panic(err)
		}
		defer n.Close()
		nodes[id] = n
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := waitForLeader(nodes)
	if _, err := propose(ctx, nodes, "greeting=hello"); err != nil {
		panic(err)
	}
	res, err := propose(ctx, nodes, "greeting=hello raft")
	if err != nil {
		panic(err)
	}
	fmt.Printf("the leader applied it; the value before was %q\n", res.Value)

	// Any other node: ReadIndex returns once it has applied everything
	// committed before the call, so its state machine is up to date.
	follower := nodes[leader.ID()%3+1]
	if _, err := follower.ReadIndex(ctx); err != nil {
		panic(err)
	}
	fmt.Printf("a follower reads %q\n", sms[follower.ID()].get("greeting"))
	// Output:
	// the leader applied it; the value before was "hello"
	// a follower reads "hello raft"
}

// A follower refuses a proposal with a *NotLeaderError naming the leader,
// so the caller can send it there.
func ExampleNotLeaderError() {
	nodes, _ := startCluster()
	defer closeAll(nodes)
	leader := waitForLeader(nodes)
	follower := nodes[leader.ID()%3+1]

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := follower.Propose(ctx, []byte("x=1"))
	fmt.Println("refused:", errors.Is(err, raft.ErrNotLeader))
	var notLeader *raft.NotLeaderError
	if errors.As(err, &notLeader) {
		fmt.Println("names the leader:", notLeader.Leader == leader.ID())
		// Send it to the leader instead (a real client would also retry
		// when the leader changed meanwhile: see propose).
		if _, err := nodes[notLeader.Leader].Propose(ctx, []byte("x=1")); err == nil {
			fmt.Println("the leader committed it")
		}
	}
	// Output:
	// refused: true
	// names the leader: true
	// the leader committed it
}

// A node's events tell an operator (or a supervisor) what it sees: here
// the leader reports a follower it cannot reach, and reports it again
// once the follower is back. Subscribe never blocks the node: a full
// channel loses events (Metrics.EventsDropped counts them), so give it a
// buffer.
func ExampleNode_Subscribe() {
	network := raft.NewNetwork(1)
	conf := raft.Configuration{Servers: []raft.Server{{ID: 1}, {ID: 2}, {ID: 3}}}
	nodes := make([]*raft.Node, 4)
	for id := raft.NodeID(1); id <= 3; id++ {
		store := raft.NewMemoryStorage()
		if err := raft.Bootstrap(store, conf); err != nil {
			panic(err)
		}
		n, err := raft.NewNode(raft.Config{
			ID: id, Storage: store, Transport: network.Join(id), StateMachine: newKV(),
			ElectionTimeout: exampleTimeout, Logger: quiet,
		})
		if err != nil {
			panic(err)
		}
		defer n.Close()
		nodes[id] = n
	}
	leader := waitForLeader(nodes)
	events := make(chan raft.Event, 64)
	unsubscribe := leader.Subscribe(events)
	defer unsubscribe()

	// Cut a follower off, wait for the leader to notice, then reconnect it.
	follower := leader.ID()%3 + 1
	network.Isolate(follower)
	for e := range events {
		if e.Type == raft.EventPeerUnreachable && e.Peer == follower {
			fmt.Println("leader: the follower is unreachable")
			network.Heal()
		}
		if e.Type == raft.EventPeerReachable && e.Peer == follower {
			fmt.Println("leader: the follower is reachable again")
			break
		}
	}
	// Output:
	// leader: the follower is unreachable
	// leader: the follower is reachable again
}

// A durable node: its log in a WAL (package wal), its snapshots in files
// (package snapstore), talking TCP. Stopped and started again on the same
// directories, it restores its newest snapshot and replays the log entries
// after it. The cluster here has one voter, so it needs no peers.
func ExampleNewNode_restart() {
	dir, err := os.MkdirTemp("", "raft-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// start opens the node's storage and transport and starts it; stop
	// closes them again, node first: Node.Close leaves the transport and
	// the storage open, since the caller owns them.
	addr := "127.0.0.1:0"
	start := func(bootstrap bool) (n *raft.Node, sm *kv, stop func()) {
		log, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Logger: quiet})
		if err != nil {
			panic(err)
		}
		snaps, err := snapstore.Open(filepath.Join(dir, "snapshots"), snapstore.Options{Logger: quiet})
		if err != nil {
			panic(err)
		}
		tr, err := raft.NewTCPTransport(raft.TCPConfig{ID: 1, ClusterID: 7, ListenAddr: addr, Logger: quiet})
		if err != nil {
			panic(err)
		}
		addr = tr.Addr().String() // the same address after a restart
		if bootstrap {
			conf := raft.Configuration{Servers: []raft.Server{{ID: 1, Address: addr}}}
			if err := raft.Bootstrap(log, conf); err != nil {
				panic(err)
			}
		}
		sm = newKV()
		n, err = raft.NewNode(raft.Config{
			ID: 1, Storage: log, Snapshots: snaps, Transport: tr, StateMachine: sm,
			ElectionTimeout: exampleTimeout, Logger: quiet,
		})
		if err != nil {
			panic(err)
		}
		return n, sm, func() { n.Close(); tr.Close(); snaps.Close(); log.Close() }
	}

	n, _, stop := start(true)
	for _, cmd := range []string{"a=1", "b=2", "c=3"} {
		// propose waits for the node to be elected (see Example).
		if _, err := propose(ctx, []*raft.Node{nil, n}, cmd); err != nil {
			panic(err)
		}
	}
	snap, err := n.Snapshot(ctx) // usually Config.SnapshotEntries decides when
	if err != nil {
		panic(err)
	}
	fmt.Println("snapshot up to index", snap)
	if _, err := n.Propose(ctx, []byte("c=4")); err != nil {
		panic(err)
	}
	stop()

	n, sm, stop := start(false)
	defer stop()
	// Once it leads again, ReadIndex returns when it has applied everything
	// committed: the snapshot, then the entries after it.
	waitForLeader([]*raft.Node{nil, n})
	if _, err := n.ReadIndex(ctx); err != nil {
		panic(err)
	}
	st := n.Status()
	fmt.Println("restored snapshot", st.SnapshotIndex, "and replayed the log up to", st.Applied)
	fmt.Println("a, b, c =", sm.get("a"), sm.get("b"), sm.get("c"))
	// Output:
	// snapshot up to index 5
	// restored snapshot 5 and replayed the log up to 7
	// a, b, c = 1 2 4
}

// What Apply returned comes back in Result.Value, an error included: the
// library does not look at it. The command was committed all the same,
// and every node's Apply answered it the same way, so Propose itself
// succeeded.
func ExampleResult() {
	nodes, _ := startCluster()
	defer closeAll(nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	res, err := propose(ctx, nodes, "no equals sign")
	fmt.Println("Propose error:", err)
	fmt.Println("Apply's answer:", res.Value)
	// Output:
	// Propose error: <nil>
	// Apply's answer: malformed command "no equals sign"
}
