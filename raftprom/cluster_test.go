package raftprom

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/raftline/raft"
)

// testCluster is three real nodes on the library's in-memory network, each
// with its own registry, as three processes would have.
type testCluster struct {
	net   *raft.Network
	nodes []*raft.Node
	regs  []*prometheus.Registry
}

// startCluster starts the cluster; run it inside a synctest bubble, so
// election timeouts and network delays cost no real time.
func startCluster(t *testing.T) *testCluster {
	t.Helper()
	c := &testCluster{net: raft.NewNetwork(7)}
	conf := raft.Configuration{Servers: []raft.Server{{ID: 1}, {ID: 2}, {ID: 3}}}
	for id := raft.NodeID(1); id <= 3; id++ {
		store := raft.NewMemoryStorage()
		if err := raft.Bootstrap(store, conf); err != nil {
			t.Fatal(err)
		}
		n, err := raft.NewNode(raft.Config{
			ID: id, Storage: store, Transport: c.net.Join(id), StateMachine: nopMachine{},
			ElectionTimeout: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		// The pedantic registry checks every scrape against Describe.
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewCollector(n, Opts{}))
		c.nodes = append(c.nodes, n)
		c.regs = append(c.regs, reg)
	}
	return c
}

// waitLeader waits (in virtual time) for a leader among the nodes not
// excluded, and returns its position in c.nodes.
func (c *testCluster) waitLeader(t *testing.T, exclude int) int {
	t.Helper()
	for range 200 {
		for i, n := range c.nodes {
			if i != exclude && n.Status().Role == raft.Leader {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader elected")
	return -1
}

// waitKnowsLeader waits until node i follows the leader at position l.
func (c *testCluster) waitKnowsLeader(t *testing.T, i, l int) {
	t.Helper()
	for range 200 {
		if c.nodes[i].Status().Leader == c.nodes[l].ID() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("node %d never learned that node %d leads", c.nodes[i].ID(), c.nodes[l].ID())
}

// propose commits one command through the leader at position l.
func (c *testCluster) propose(t *testing.T, l int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.nodes[l].Propose(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// family scrapes node i and returns the named metric family.
func (c *testCluster) family(t *testing.T, i int, name string) *dto.MetricFamily {
	t.Helper()
	fams, err := c.regs[i].Gather()
	if err != nil {
		t.Fatalf("scrape of node %d: %v", c.nodes[i].ID(), err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("node %d exports no %s", c.nodes[i].ID(), name)
	return nil
}

// value is the value of the named counter or gauge on node i whose labels
// include the given name/value pairs.
func (c *testCluster) value(t *testing.T, i int, name string, labels ...string) float64 {
	t.Helper()
	m := find(t, c.family(t, i, name), labels...)
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s is neither a counter nor a gauge", name)
	return 0
}

// find returns the metric of f with the given labels.
func find(t *testing.T, f *dto.MetricFamily, labels ...string) *dto.Metric {
	t.Helper()
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			if labelValue(m, labels[i]) != labels[i+1] {
				continue next
			}
		}
		return m
	}
	t.Fatalf("%s has no series with labels %v", f.GetName(), labels)
	return nil
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// nopMachine is a state machine with no state.
type nopMachine struct{}

func (nopMachine) Apply(raft.Entry) any                  { return nil }
func (nopMachine) Snapshot() (raft.StateSnapshot, error) { return nopSnapshot{}, nil }
func (nopMachine) Restore(io.Reader) error               { return nil }

type nopSnapshot struct{}

func (nopSnapshot) WriteTo(io.Writer) (int64, error) { return 0, nil }
func (nopSnapshot) Release()                         {}
