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
	"syscall"
	"time"

	"github.com/raftline/raft"
	"github.com/raftline/raft/snapstore"
	"github.com/raftline/raft/wal"
)

// stateMachine is the harness' trivial state machine: a counter and a copy
// of the last command, so applying costs the same as for the anchors. The
// applier is its only user, so it needs no lock. With -state-mb it also
// keeps a copy-on-write table of that size (state.go), so that snapshots
// have a realistic size.
type stateMachine struct {
	count atomic.Uint64
	last  []byte
	table *pagedTable // nil unless -state-mb
}

func (s *stateMachine) Apply(e raft.Entry) any {
	s.last = append(s.last[:0], e.Data...)
	s.count.Add(1)
	if s.table != nil {
		s.table.put(e.Data)
	}
	return nil
}

// Snapshot captures the counter and a copy of the last command (and a
// frozen view of the table, if any).
func (s *stateMachine) Snapshot() (raft.StateSnapshot, error) {
	b := binary.BigEndian.AppendUint64(nil, s.count.Load())
	if s.table != nil {
		return &tableSnapshot{head: append(b, s.last...), pages: s.table.freeze()}, nil
	}
	return benchSnapshot(append(b, s.last...)), nil
}

func (s *stateMachine) Restore(r io.Reader) error {
	if s.table != nil {
		count, last, err := s.table.restore(r)
		if err != nil {
			return err
		}
		s.count.Store(count)
		s.last = append(s.last[:0], last...)
		return nil
	}
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
	// leaseReads turns on Config.LeaseReads with maxClockDrift.
	leaseReads    bool
	maxClockDrift float64
	// stateBytes, when positive, gives each state machine a table of that
	// many bytes (slots of slotSize), which its snapshots hold.
	stateBytes, slotSize int
	// tap, if set, watches every TCP connection's heartbeat frames.
	tap *hbTap
}

// member is one node of the cluster and what it runs on. A member can be
// stopped and restarted on the same storage directory and address.
type member struct {
	id   raft.NodeID
	node atomic.Pointer[raft.Node] // nil while stopped
	sm   *stateMachine
	tcp  *raft.TCPTransport // nil on the in-memory network
	addr string             // TCP listen address
	ln   net.Listener       // reserved listener, used by the first start
	dir  string             // durable: node directory (wal/, snapshots/)
	// closers close the member's transport and storage, in order.
	closers []func() error
	unsub   func()
}

// cluster is an in-process raftline cluster.
type cluster struct {
	o       options
	members []*member
	network *raft.Network // inmem only
	logger  *slog.Logger
	leader  atomic.Pointer[raft.Node]

	elections  atomic.Uint64 // leader changes seen by any node
	candidates atomic.Uint64 // a node becoming (pre)candidate
	candMu     sync.Mutex
	candLog    []candEvent // which node became what, when
	events     chan raft.Event
	evDone     chan struct{}
}

func newCluster(o options) (c *cluster, err error) {
	c = &cluster{o: o, events: make(chan raft.Event, 256), evDone: make(chan struct{}),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	go c.countElections()
	var conf raft.Configuration
	for i := 1; i <= o.nodes; i++ {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(i)})
	}
	if err := c.addresses(); err != nil {
		return c, err
	}
	for _, m := range c.members {
		if err := c.startMember(m, &conf); err != nil {
			return c, err
		}
	}
	return c, c.waitReady()
}

// addresses creates the members and, for TCP, picks each one's address.
func (c *cluster) addresses() error {
	if c.o.transport == "inmem" {
		c.network = raft.NewNetwork(1)
	}
	for i := 1; i <= c.o.nodes; i++ {
		m := &member{id: raft.NodeID(i)}
		if c.o.durable {
			m.dir = filepath.Join(c.o.dir, fmt.Sprintf("node%d", i))
		}
		c.members = append(c.members, m)
	}
	if c.o.transport != "tcp" {
		return nil
	}
	// Every member listens before any node starts; a restarted member
	// listens on the same address again.
	for _, m := range c.members {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		m.ln, m.addr = ln, ln.Addr().String()
		m.closers = append(m.closers, ln.Close)
	}
	return nil
}

// startMember opens m's storage and transport and starts its node. conf,
// if not nil, is bootstrapped into fresh storage.
func (c *cluster) startMember(m *member, conf *raft.Configuration) error {
	tr, err := c.transport(m)
	if err != nil {
		return err
	}
	store, snaps, err := c.storage(m)
	if err != nil {
		return err
	}
	if conf != nil {
		if err := raft.Bootstrap(store, *conf); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	n, err := c.newNode(m, store, snaps, tr)
	if err != nil {
		return err
	}
	m.node.Store(n)
	return nil
}

// newNode starts m's raft node on the given storage and transport.
func (c *cluster) newNode(m *member, store raft.Storage, snaps raft.SnapshotStore, tr raft.Transport) (*raft.Node, error) {
	m.sm = &stateMachine{}
	if c.o.stateBytes > 0 {
		m.sm.table = newPagedTable(c.o.stateBytes, c.o.slotSize)
	}
	n, err := raft.NewNode(raft.Config{
		ID: m.id, Storage: store, StateMachine: m.sm, Snapshots: snaps,
		SnapshotEntries: c.o.snapshotEntries, SnapshotTrailing: c.o.snapshotTrailing,
		LeaseReads: c.o.leaseReads, MaxClockDrift: c.o.maxClockDrift,
		Transport: tr, Logger: c.logger,
	})
	if err != nil {
		return nil, err
	}
	m.unsub = n.Subscribe(c.events)
	return n, nil
}

// transport builds m's transport.
func (c *cluster) transport(m *member) (raft.Transport, error) {
	if c.o.transport == "inmem" {
		return c.network.Join(m.id), nil
	}
	ln := m.ln
	if ln != nil {
		m.ln, m.closers = nil, nil // the transport closes it
	} else {
		var err error
		if ln, err = net.Listen("tcp", m.addr); err != nil {
			return nil, err
		}
	}
	peers := map[raft.NodeID]string{}
	for _, p := range c.members {
		if p.id != m.id {
			peers[p.id] = p.addr
		}
	}
	cfg := raft.TCPConfig{ID: m.id, ClusterID: 1, Listener: ln, Peers: peers, Logger: c.logger}
	if c.o.tap != nil {
		cfg.Listener = c.o.tap.listener(m.id, ln)
		cfg.Dial = c.o.tap.dialer(m.id)
	}
	t, err := raft.NewTCPTransport(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	m.tcp = t
	m.closers = append(m.closers, t.Close)
	return t, nil
}

// storage opens m's log and snapshot store: a fsync'ed WAL and snapshot
// files, or memory.
func (c *cluster) storage(m *member) (raft.Storage, raft.SnapshotStore, error) {
	if !c.o.durable {
		return raft.NewMemoryStorage(), raft.NewMemorySnapshotStore(), nil
	}
	w, err := wal.Open(filepath.Join(m.dir, "wal"), wal.Options{Logger: c.logger})
	if err != nil {
		return nil, nil, err
	}
	m.closers = append(m.closers, w.Close)
	snaps, err := snapstore.Open(filepath.Join(m.dir, "snapshots"), snapstore.Options{Logger: c.logger})
	if err != nil {
		return nil, nil, err
	}
	m.closers = append(m.closers, snaps.Close)
	return w, snaps, nil
}

// stopMember closes m's node, then its transport and storage, keeping its
// directory for a restart.
func (c *cluster) stopMember(m *member) error {
	n := m.node.Swap(nil)
	if n == nil {
		return nil
	}
	c.leader.CompareAndSwap(n, nil)
	m.unsub()
	err := n.Close()
	for _, cl := range m.closers {
		if e := cl(); e != nil && !errors.Is(e, wal.ErrClosed) {
			err = errors.Join(err, e)
		}
	}
	m.closers = nil
	return err
}

// candEvent is a node becoming (pre)candidate.
type candEvent struct {
	at time.Time
	e  raft.Event
}

// candidateEvents returns the (pre)candidate events since from.
func (c *cluster) candidateEvents(from time.Time) []candEvent {
	c.candMu.Lock()
	defer c.candMu.Unlock()
	var out []candEvent
	for _, ce := range c.candLog {
		if !ce.at.Before(from) {
			out = append(out, ce)
		}
	}
	return out
}

// countElections counts leader changes reported by any node.
func (c *cluster) countElections() {
	defer close(c.evDone)
	for e := range c.events {
		switch {
		case e.Type == raft.EventLeaderChanged && e.Leader != raft.None:
			c.elections.Add(1)
		case e.Type == raft.EventRoleChanged && (e.Role == raft.Candidate || e.Role == raft.PreCandidate):
			c.candidates.Add(1)
			c.candMu.Lock()
			c.candLog = append(c.candLog, candEvent{time.Now(), e})
			c.candMu.Unlock()
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

// nodes returns the running nodes.
func (c *cluster) nodes() []*raft.Node {
	out := make([]*raft.Node, 0, len(c.members))
	for _, m := range c.members {
		if n := m.node.Load(); n != nil {
			out = append(out, n)
		}
	}
	return out
}

// findLeader asks every node and caches the one that leads.
func (c *cluster) findLeader() *raft.Node {
	for _, n := range c.nodes() {
		if n.Status().Role == raft.Leader {
			c.leader.Store(n)
			return n
		}
	}
	return nil
}

// leaderMember returns the member whose node leads, or nil.
func (c *cluster) leaderMember() *member {
	l := c.leader.Load()
	if l == nil {
		l = c.findLeader()
	}
	for _, m := range c.members {
		if n := m.node.Load(); n != nil && n == l {
			return m
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
	for _, n := range c.nodes() {
		m := n.Status().Metrics
		d += m.SendDropped + m.SendErrors
	}
	return d
}

// tcpDropped sums what the running TCP transports gave up.
func (c *cluster) tcpDropped() uint64 {
	var d uint64
	for _, m := range c.members {
		if m.tcp != nil && m.node.Load() != nil {
			d += m.tcp.Stats().Dropped
		}
	}
	return d
}

// diskUse sums the sizes of the files under dir.
func diskUse(dir string) int64 {
	size, _ := diskUsage(dir)
	return size
}

// diskUsage returns the apparent size of the files under dir and the disk
// space allocated to them (preallocated WAL segments count in full).
func diskUsage(dir string) (size, allocated int64) {
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				size += info.Size()
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					allocated += st.Blocks * 512
				}
			}
		}
		return nil
	})
	return size, allocated
}

// close stops nodes first, then transports and logs, in creation order.
func (c *cluster) close() error {
	var errs []error
	var wg sync.WaitGroup
	for _, m := range c.members {
		if n := m.node.Load(); n != nil {
			m.unsub()
			wg.Go(func() { n.Close() })
		}
	}
	wg.Wait()
	for _, m := range c.members {
		for _, cl := range m.closers {
			if err := cl(); err != nil && !errors.Is(err, wal.ErrClosed) {
				errs = append(errs, err)
			}
		}
		m.closers = nil
	}
	close(c.events)
	<-c.evDone
	return errors.Join(errs...)
}
