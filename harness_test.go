package raft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file is the scenario-test harness: a cluster of real Nodes (all
// their goroutines) on the in-memory Network, meant to run inside a
// testing/synctest bubble so that seconds of virtual time cost nothing.

// electionTimeout is the suite's election timeout; the thresholds of the
// scenario tests are expressed in it.
const electionTimeout = time.Second

// recordingSM is a StateMachine that records what it applied, in order.
type recordingSM struct {
	mu      sync.Mutex
	applied []Entry
	// calls counts Apply calls and restores Restore calls.
	calls, restores int
}

func (s *recordingSM) Apply(e Entry) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.applied); n > 0 && s.applied[n-1].Index >= e.Index {
		panic(fmt.Sprintf("applied index %d after %d", e.Index, s.applied[n-1].Index))
	}
	s.applied = append(s.applied, e)
	s.calls++
	return string(e.Data)
}

// Snapshot captures the applied entries; the slice is append-only, so a
// copy of its header is a point-in-time view.
func (s *recordingSM) Snapshot() (StateSnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return recordedSnapshot(s.applied[:len(s.applied):len(s.applied)]), nil
}

// Restore replaces the applied entries with a snapshot's; it does not
// count as applying them (applyCalls).
func (s *recordingSM) Restore(r io.Reader) error {
	var ents []Entry
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(r, hdr[:]); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
		data := make([]byte, binary.BigEndian.Uint64(hdr[8:]))
		if _, err := io.ReadFull(r, data); err != nil {
			return err
		}
		ents = append(ents, Entry{Index: binary.BigEndian.Uint64(hdr[:8]), Data: data})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied, s.restores = ents, s.restores+1
	return nil
}

// recordedSnapshot is a recordingSM's view: its entries, each written as
// index, length and data.
type recordedSnapshot []Entry

func (v recordedSnapshot) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for _, e := range v {
		var hdr [16]byte
		binary.BigEndian.PutUint64(hdr[:8], e.Index)
		binary.BigEndian.PutUint64(hdr[8:], uint64(len(e.Data)))
		n, err := w.Write(append(hdr[:], e.Data...))
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (recordedSnapshot) Release() {}

// restoreCalls returns how many snapshots were restored.
func (s *recordingSM) restoreCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restores
}

// applyCalls returns how many entries Apply was given (restores aside).
func (s *recordingSM) applyCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// commands returns the data of every applied command, in order.
func (s *recordingSM) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.applied))
	for i, e := range s.applied {
		out[i] = string(e.Data)
	}
	return out
}

// at returns the command applied at index, if any.
func (s *recordingSM) at(index uint64) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.applied {
		if e.Index == index {
			return string(e.Data), true
		}
	}
	return "", false
}

type testCluster struct {
	// mu guards nodes against a test goroutine crashing one meanwhile.
	mu     sync.Mutex
	t      testing.TB
	net    *Network
	ids    []NodeID
	nodes  map[NodeID]*Node
	stores map[NodeID]*MemoryStorage
	snaps  map[NodeID]*MemorySnapshotStore
	sms    map[NodeID]*recordingSM
	tweak  func(*Config)
	seed   uint64
}

// newCluster bootstraps and starts n nodes with IDs 1..n.
func newCluster(t testing.TB, n int, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{
		t: t, net: NewNetwork(uint64(n) * 7919),
		nodes: map[NodeID]*Node{}, stores: map[NodeID]*MemoryStorage{}, sms: map[NodeID]*recordingSM{},
		snaps: map[NodeID]*MemorySnapshotStore{},
		tweak: tweak,
	}
	var conf Configuration
	for i := 1; i <= n; i++ {
		id := NodeID(i)
		c.ids = append(c.ids, id)
		conf.Servers = append(conf.Servers, Server{ID: id})
	}
	for _, id := range c.ids {
		c.stores[id] = NewMemoryStorage()
		c.snaps[id] = NewMemorySnapshotStore()
		if err := Bootstrap(c.stores[id], conf); err != nil {
			t.Fatal(err)
		}
		c.start(id)
	}
	t.Cleanup(c.closeAll)
	return c
}

// start (re)starts node id from its storage with a fresh state machine,
// which replays the committed log.
func (c *testCluster) start(id NodeID) {
	c.t.Helper()
	c.seed++
	sm := &recordingSM{}
	cfg := Config{
		ID: id, Storage: c.stores[id], Snapshots: c.snaps[id], StateMachine: sm, Transport: c.net.Join(id),
		ElectionTimeout: electionTimeout, Logger: discardLogger(),
		Rand: newSeededSource(uint64(id)*1000 + c.seed),
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	n, err := NewNode(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[id], c.sms[id] = n, sm
}

// crash stops node id; its storage survives for a restart.
func (c *testCluster) crash(id NodeID) {
	c.mu.Lock()
	n := c.nodes[id]
	c.mu.Unlock()
	if n != nil {
		n.Close()
		c.mu.Lock()
		c.nodes[id] = nil
		c.mu.Unlock()
	}
}

// running returns the nodes up now; safe to call while another goroutine
// crashes nodes.
func (c *testCluster) running() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, id := range c.ids {
		if n := c.nodes[id]; n != nil {
			out = append(out, n)
		}
	}
	return out
}

func (c *testCluster) closeAll() {
	for _, id := range c.ids {
		c.crash(id)
	}
}

// leaders returns, per term, the running nodes that think they lead it.
func (c *testCluster) leaders() map[uint64][]NodeID {
	out := map[uint64][]NodeID{}
	for _, id := range c.ids {
		if n := c.nodes[id]; n != nil {
			if st := n.Status(); st.Role == Leader {
				out[st.Term] = append(out[st.Term], id)
			}
		}
	}
	return out
}

// checkOneLeader waits up to 5 election timeouts for exactly one leader in
// the newest term among the given nodes and fails on two leaders in a term.
func (c *testCluster) checkOneLeader(among ...NodeID) NodeID {
	c.t.Helper()
	if len(among) == 0 {
		among = c.ids
	}
	for range 50 {
		time.Sleep(electionTimeout / 10)
		var newest uint64
		var leader NodeID
		for term, ls := range c.leaders() {
			if len(ls) > 1 {
				c.t.Fatalf("term %d has %d leaders: %v", term, len(ls), ls)
			}
			if term >= newest && slices.Contains(among, ls[0]) {
				newest, leader = term, ls[0]
			}
		}
		if leader != None {
			return leader
		}
	}
	c.t.Fatalf("no leader among %v within %v", among, 5*electionTimeout)
	return None
}

// checkNoLeader fails if any of the given running nodes believes it leads.
func (c *testCluster) checkNoLeader(among ...NodeID) {
	c.t.Helper()
	for _, id := range among {
		if n := c.nodes[id]; n != nil && n.Status().Role == Leader {
			c.t.Fatalf("node %d is leader but should not be", id)
		}
	}
}

// terms returns the current term of each running node.
func (c *testCluster) terms() map[NodeID]uint64 {
	out := map[NodeID]uint64{}
	for _, id := range c.ids {
		if n := c.nodes[id]; n != nil {
			out[id] = n.Status().Term
		}
	}
	return out
}

// checkTerms fails unless every running node reports the same term, and
// returns it.
func (c *testCluster) checkTerms() uint64 {
	c.t.Helper()
	var term uint64
	for id, t := range c.terms() {
		if term == 0 {
			term = t
		} else if t != term {
			c.t.Fatalf("servers disagree on term: node %d has %d, others %d", id, t, term)
		}
	}
	return term
}

// nCommitted counts the running nodes that applied index, and checks they
// all applied the same command there.
func (c *testCluster) nCommitted(index uint64) (int, string) {
	c.t.Helper()
	count, cmd := 0, ""
	for _, id := range c.ids {
		got, ok := c.sms[id].at(index)
		if !ok {
			continue
		}
		if count > 0 && got != cmd {
			c.t.Fatalf("index %d: node %d applied %q, another node %q", index, id, got, cmd)
		}
		count, cmd = count+1, got
	}
	return count, cmd
}

// one proposes cmd on whichever node leads, retrying like a client for up
// to 10 s, and waits until at least want nodes applied it. It returns the
// entry's index.
func (c *testCluster) one(cmd string, want int) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	index, ok := proposeToLeader(c.ids, c.nodes, cmd, deadline, func(index uint64) bool {
		for time.Now().Before(deadline) {
			if got, applied := c.nCommitted(index); got >= want && applied == cmd {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})
	if !ok {
		c.t.Fatalf("one(%q) failed to reach agreement on %d nodes\n%s", cmd, want, c.describe())
	}
	return index
}

// proposeToLeader submits cmd through whichever of nodes leads, retrying
// like a client until deadline, until applied reports the entry at the
// index it got applied as the caller wants. Both cluster harnesses (in
// memory and over TCP) propose through it.
func proposeToLeader(ids []NodeID, nodes map[NodeID]*Node, cmd string, deadline time.Time, applied func(index uint64) bool) (uint64, bool) {
	for time.Now().Before(deadline) {
		for _, id := range ids {
			n := nodes[id]
			if n == nil || n.Status().Role != Leader {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			res, err := n.Propose(ctx, []byte(cmd))
			cancel()
			if err == nil && applied(res.Index) {
				return res.Index, true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, false
}

// describe summarizes every node's status for failure messages.
func (c *testCluster) describe() string {
	var b strings.Builder
	for _, id := range c.ids {
		n := c.nodes[id]
		if n == nil {
			fmt.Fprintf(&b, "  node %d: down\n", id)
			continue
		}
		st := n.Status()
		fmt.Fprintf(&b, "  node %d: %s term %d vote %d leader %d commit %d applied %d last %d peers %v\n",
			id, st.Role, st.Term, st.Vote, st.Leader, st.Commit, st.Applied, st.LastIndex, st.Peers)
	}
	return b.String()
}

// waitCommitted waits until at least want nodes applied index.
func (c *testCluster) waitCommitted(index uint64, want int) string {
	c.t.Helper()
	for range 500 {
		if n, cmd := c.nCommitted(index); n >= want {
			return cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	n, _ := c.nCommitted(index)
	c.t.Fatalf("index %d applied on %d nodes, want %d", index, n, want)
	return ""
}
