package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftline/raft"
	"github.com/raftline/raft/snapstore"
	"github.com/raftline/raft/wal"
)

// stateMachine is the harness' trivial state machine: a counter and a copy
// of the last command, so applying costs the same as for the anchors. The
// applier is its only user, so it needs no lock.
type stateMachine struct {
	count atomic.Uint64
	last  []byte
}

func (s *stateMachine) Apply(e raft.Entry) any {
	s.last = append(s.last[:0], e.Data...)
	s.count.Add(1)
	return nil
}

// Snapshot captures the counter and a copy of the last command.
func (s *stateMachine) Snapshot() (raft.StateSnapshot, error) {
	b := binary.BigEndian.AppendUint64(nil, s.count.Load())
	return benchSnapshot(append(b, s.last...)), nil
}

func (s *stateMachine) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(b) < 8 {
		return errors.New("bench: snapshot too short")
	}
	s.count.Store(binary.BigEndian.Uint64(b))
	s.last = append(s.last[:0], b[8:]...)
	return nil
}

type benchSnapshot []byte

func (v benchSnapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(v)
	return int64(n), err
}

func (benchSnapshot) Release() {}

// options describes the cluster to build.
type options struct {
	nodes     int
	transport string // "inmem" or "tcp"
	durable   bool
	dir       string
	// snapshotEntries and snapshotTrailing set the library's snapshot
	// policy (0: its defaults).
	snapshotEntries, snapshotTrailing int
}

// cluster is an in-process raftline cluster.
type cluster struct {
	nodes   []*raft.Node
	stores  []raft.Storage
	closers []func() error
	leader  atomic.Pointer[raft.Node]

	elections atomic.Uint64 // leader changes seen by any node
	unsub     []func()
	events    chan raft.Event
	evDone    chan struct{}
}

func newCluster(o options) (c *cluster, err error) {
	c = &cluster{events: make(chan raft.Event, 256), evDone: make(chan struct{})}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	go c.countElections()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var conf raft.Configuration
	for i := 1; i <= o.nodes; i++ {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(i)})
	}
	transports, err := c.transports(o, logger)
	if err != nil {
		return c, err
	}
	for i := 1; i <= o.nodes; i++ {
		id := raft.NodeID(i)
		store, snaps, err := c.storage(o, id, logger)
		if err != nil {
			return c, err
		}
		if err := raft.Bootstrap(store, conf); err != nil {
			return c, fmt.Errorf("bootstrap: %w", err)
		}
		n, err := raft.NewNode(raft.Config{
			ID: id, Storage: store, StateMachine: &stateMachine{}, Snapshots: snaps,
			SnapshotEntries: o.snapshotEntries, SnapshotTrailing: o.snapshotTrailing,
			Transport: transports[i-1], Logger: logger,
		})
		if err != nil {
			return c, err
		}
		c.nodes = append(c.nodes, n)
		c.stores = append(c.stores, store)
		c.closers = append(c.closers, n.Close)
		c.unsub = append(c.unsub, n.Subscribe(c.events))
	}
	return c, c.waitReady()
}

// transports builds one transport per node.
func (c *cluster) transports(o options, logger *slog.Logger) ([]raft.Transport, error) {
	out := make([]raft.Transport, o.nodes)
	if o.transport == "inmem" {
		nw := raft.NewNetwork(1)
		for i := range out {
			out[i] = nw.Join(raft.NodeID(i + 1))
		}
		return out, nil
	}
	lns := make([]net.Listener, o.nodes)
	addrs := map[raft.NodeID]string{}
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return nil, err
		}
		lns[i] = ln
		addrs[raft.NodeID(i+1)] = ln.Addr().String()
	}
	for i := range lns {
		id := raft.NodeID(i + 1)
		peers := map[raft.NodeID]string{}
		for p, a := range addrs {
			if p != id {
				peers[p] = a
			}
		}
		t, err := raft.NewTCPTransport(raft.TCPConfig{
			ID: id, ClusterID: 1, Listener: lns[i], Peers: peers, Logger: logger,
		})
		if err != nil {
			for _, l := range lns[i:] {
				l.Close()
			}
			return nil, err
		}
		out[i] = t
		c.closers = append(c.closers, t.Close)
	}
	return out, nil
}

// storage opens node id's log and snapshot store: a fsync'ed WAL and
// snapshot files, or memory.
func (c *cluster) storage(o options, id raft.NodeID, logger *slog.Logger) (raft.Storage, raft.SnapshotStore, error) {
	if !o.durable {
		return raft.NewMemoryStorage(), raft.NewMemorySnapshotStore(), nil
	}
	dir := filepath.Join(o.dir, fmt.Sprintf("node%d", id))
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	c.closers = append(c.closers, w.Close)
	snaps, err := snapstore.Open(filepath.Join(dir, "snapshots"), snapstore.Options{Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	c.closers = append(c.closers, snaps.Close)
	return w, snaps, nil
}

// countElections counts leader changes reported by any node.
func (c *cluster) countElections() {
	defer close(c.evDone)
	for e := range c.events {
		if e.Type == raft.EventLeaderChanged && e.Leader != raft.None {
			c.elections.Add(1)
		}
	}
}

// waitReady waits for a leader and pushes one proposal through it.
func (c *cluster) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if err := c.propose(ctx, []byte("warm")); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.New("no leader accepted a proposal within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// findLeader asks every node and caches the one that leads.
func (c *cluster) findLeader() *raft.Node {
	for _, n := range c.nodes {
		if n.Status().Role == raft.Leader {
			c.leader.Store(n)
			return n
		}
	}
	return nil
}

// propose sends cmd to the leader and waits until it is applied there.
func (c *cluster) propose(ctx context.Context, cmd []byte) error {
	n := c.leader.Load()
	if n == nil {
		if n = c.findLeader(); n == nil {
			return errors.New("no leader")
		}
	}
	_, err := n.Propose(ctx, cmd)
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrOutcomeUnknown) {
		c.leader.CompareAndSwap(n, nil) // re-resolve on the next call
	}
	return err
}

// term reports the leader's term (0 when none is known).
func (c *cluster) term() uint64 {
	if n := c.leader.Load(); n != nil {
		return n.Status().Term
	}
	return 0
}

// metrics sums what the nodes dropped.
func (c *cluster) dropped() uint64 {
	var d uint64
	for _, n := range c.nodes {
		m := n.Status().Metrics
		d += m.SendDropped + m.SendErrors
	}
	return d
}

// diskUse sums the sizes of the files under dir.
func diskUse(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

// close stops nodes first, then transports and logs, in creation order.
func (c *cluster) close() error {
	for _, u := range c.unsub {
		u()
	}
	var errs []error
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() { n.Close() })
	}
	wg.Wait()
	for _, cl := range c.closers {
		if err := cl(); err != nil && !errors.Is(err, wal.ErrClosed) {
			errs = append(errs, err)
		}
	}
	close(c.events)
	<-c.evDone
	return errors.Join(errs...)
}
