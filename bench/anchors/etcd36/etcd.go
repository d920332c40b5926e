package main

// Adapter "etcd36": the same driver as ../etcd/etcd.go, written
// against go.etcd.io/raft/v3 v3.6.0 (gogoproto value types; the raft
// version etcd v3.6 servers use). v3.7.0 switched raftpb to protobuf-go
// pointer messages, so the two versions cannot share one file, and being
// one module path at two versions they cannot share one go.mod either.
//
// Adapter for go.etcd.io/raft/v3. The library has no transport and no
// storage, so this file is the minimal standard driver every etcd-raft user
// writes (modelled on etcd's contrib/raftexample):
//
//   - raft.StartNode with a raft.MemoryStorage and raft.Config{ElectionTick 10,
//     HeartbeatTick 1, MaxSizePerMsg 1 MiB, MaxInflightMsgs 256,
//     MaxUncommittedEntriesSize 1 GiB} (raftexample's values; everything else
//     default: no PreVote, no CheckQuorum, synchronous storage writes).
//   - one goroutine per node runs the loop: a ticker calls Tick() every
//     -etcd-tick (default 10ms); on each Ready it
//     (a) in durable mode appends the entries and HardState to an append-only
//     file (length + CRC32C framed protobuf records) and fsyncs once per Ready
//     when rd.MustSync (new entries or a term/vote change), as etcd's WAL.Save,
//     (b) appends entries / HardState to the MemoryStorage,
//     (c) sends rd.Messages via the transport,
//     (d) applies rd.CommittedEntries to the StateMachine and wakes the waiting
//     proposer (matched by an 8-byte request id prepended to the command),
//     (e) calls Advance().
//   - inmem transport: one buffered channel (4096) per node, a goroutine
//     feeding it to node.Step; messages are passed as pointers, not copied.
//     A full channel drops the message and reports the peer unreachable,
//     as etcd's rafthttp does.
//   - tcp transport: one persistent TCP connection per peer pair on
//     127.0.0.1, carrying uint32-length-prefixed proto.Marshal'ed
//     raftpb.Message frames; per connection one writer goroutine (fed by a
//     4096-deep channel, batching writes through a bufio.Writer) and one
//     reader goroutine calling node.Step.
//   - proposals go to the current leader's node.Propose; a node that loses
//     leadership fails its pending proposals.
//   - no snapshots or log compaction (the runs are seconds long; hashicorp
//     does not snapshot within them either).

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/raftline/raft/bench/anchors/driver"
)

var etcdTick = flag.Duration("etcd-tick", 10*time.Millisecond, "etcd adapter: Tick() interval (election timeout = 10 ticks, heartbeat = 1 tick)")

var (
	errLeaderChanged = errors.New("etcd: leadership changed, proposal may be lost")
	errStopped       = errors.New("etcd: node stopped")
	crcTable         = crc32.MakeTable(crc32.Castagnoli)
)

const etcdChanDepth = 4096 // rafthttp's streamBufSize

type etcdCluster struct {
	opts   driver.Options
	nodes  []*etcdNode
	byID   map[uint64]*etcdNode
	leader atomic.Pointer[etcdNode]
	reqID  atomic.Uint64
	tcp    *tcpMesh // nil for inmem
}

type etcdNode struct {
	id      uint64
	c       *etcdCluster
	node    raft.Node
	storage *raft.MemoryStorage
	sm      driver.StateMachine

	// durable mode
	wal    *os.File
	walBuf []byte

	// inmem transport inbox
	inbox chan raftpb.Message

	isLeader bool // only touched by the Ready loop

	mu      sync.Mutex
	waiters map[uint64]chan error
	stopped bool

	stopc chan struct{}
	donec chan struct{}
}

func newEtcd(opts driver.Options) (driver.Cluster, error) {
	if *etcdTick <= 0 {
		return nil, errors.New("-etcd-tick must be > 0")
	}
	c := &etcdCluster{opts: opts, byID: map[uint64]*etcdNode{}}
	peers := make([]raft.Peer, opts.Nodes)
	for i := range peers {
		peers[i] = raft.Peer{ID: uint64(i + 1)}
	}
	for i := 0; i < opts.Nodes; i++ {
		n := &etcdNode{
			id:      uint64(i + 1),
			c:       c,
			storage: raft.NewMemoryStorage(),
			waiters: map[uint64]chan error{},
			stopc:   make(chan struct{}),
			donec:   make(chan struct{}),
		}
		if opts.Durable {
			dir := filepath.Join(opts.Dir, fmt.Sprintf("node%d", n.id))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			f, err := os.OpenFile(filepath.Join(dir, "wal.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return nil, err
			}
			n.wal = f
		}
		c.nodes = append(c.nodes, n)
		c.byID[n.id] = n
	}

	switch opts.Transport {
	case "inmem":
		for _, n := range c.nodes {
			n.inbox = make(chan raftpb.Message, etcdChanDepth)
		}
	case "tcp":
		m, err := newTCPMesh(c)
		if err != nil {
			return nil, err
		}
		c.tcp = m
	}

	for _, n := range c.nodes {
		cfg := &raft.Config{
			ID:                        n.id,
			ElectionTick:              10,
			HeartbeatTick:             1,
			Storage:                   n.storage,
			MaxSizePerMsg:             1024 * 1024,
			MaxInflightMsgs:           256,
			MaxUncommittedEntriesSize: 1 << 30,
			Logger:                    discardLogger{},
		}
		n.node = raft.StartNode(cfg, peers)
	}
	for _, n := range c.nodes {
		if n.inbox != nil {
			go n.receiveInmem()
		}
		go n.run()
	}
	if c.tcp != nil {
		c.tcp.start()
	}

	// Wait for a leader, then push one proposal through end to end.
	deadline := time.Now().Add(30 * time.Second)
	for c.leader.Load() == nil {
		if time.Now().After(deadline) {
			c.Close()
			return nil, errors.New("no leader elected within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		err := c.Propose(ctx, []byte("warm"))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			c.Close()
			return nil, fmt.Errorf("first proposal: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c, nil
}

// Propose prepends an 8-byte request id, proposes on the leader and waits
// until the leader's Ready loop has applied the entry.
func (c *etcdCluster) Propose(ctx context.Context, cmd []byte) error {
	n := c.leader.Load()
	if n == nil {
		return driver.ErrNoLeader
	}
	id := c.reqID.Add(1)
	data := make([]byte, 8+len(cmd))
	binary.LittleEndian.PutUint64(data, id)
	copy(data[8:], cmd)

	ch := make(chan error, 1)
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return errStopped
	}
	n.waiters[id] = ch
	n.mu.Unlock()

	if err := n.node.Propose(ctx, data); err != nil {
		n.forget(id)
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		n.forget(id)
		return ctx.Err()
	}
}

func (c *etcdCluster) LeaderTerm() uint64 {
	n := c.leader.Load()
	if n == nil {
		return 0
	}
	return n.node.Status().Term
}

func (c *etcdCluster) Close() error {
	for _, n := range c.nodes {
		close(n.stopc)
	}
	for _, n := range c.nodes {
		<-n.donec
		n.node.Stop()
		n.failAll(errStopped, true)
		if n.wal != nil {
			n.wal.Close()
		}
	}
	if c.tcp != nil {
		c.tcp.close()
	}
	return nil
}

func (n *etcdNode) forget(id uint64) {
	n.mu.Lock()
	delete(n.waiters, id)
	n.mu.Unlock()
}

func (n *etcdNode) failAll(err error, stop bool) {
	n.mu.Lock()
	for id, ch := range n.waiters {
		ch <- err
		delete(n.waiters, id)
	}
	if stop {
		n.stopped = true
	}
	n.mu.Unlock()
}

// run is the standard etcd-raft driver loop.
func (n *etcdNode) run() {
	defer close(n.donec)
	ticker := time.NewTicker(*etcdTick)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			n.node.Tick()
		case rd := <-n.node.Ready():
			if rd.SoftState != nil {
				lead := rd.SoftState.RaftState == raft.StateLeader
				if lead && !n.isLeader {
					n.c.leader.Store(n)
				} else if !lead && n.isLeader {
					n.c.leader.CompareAndSwap(n, nil)
					n.failAll(errLeaderChanged, false)
				}
				n.isLeader = lead
			}
			// (a) persist: etcd WAL semantics, fsync once per Ready if MustSync.
			if n.wal != nil {
				if err := n.saveWAL(rd.HardState, rd.Entries, rd.MustSync); err != nil {
					// The disk failed: this node acknowledges nothing more,
					// and every waiting proposal gets the error.
					n.failAll(fmt.Errorf("etcd node %d: wal: %w", n.id, err), true)
					return
				}
			}
			// (b) MemoryStorage
			if !raft.IsEmptySnap(rd.Snapshot) {
				n.storage.ApplySnapshot(rd.Snapshot)
			}
			if !raft.IsEmptyHardState(rd.HardState) {
				n.storage.SetHardState(rd.HardState)
			}
			n.storage.Append(rd.Entries)
			// (c) send
			n.send(rd.Messages)
			// (d) apply
			n.apply(rd.CommittedEntries)
			// (e)
			n.node.Advance()
		case <-n.stopc:
			return
		}
	}
}

func (n *etcdNode) saveWAL(st raftpb.HardState, ents []raftpb.Entry, mustSync bool) error {
	if raft.IsEmptyHardState(st) && len(ents) == 0 {
		return nil
	}
	buf := n.walBuf[:0]
	rec := func(typ byte, m interface {
		Size() int
		MarshalTo([]byte) (int, error)
	}) error {
		start := len(buf)
		buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, typ) // len, crc, type
		sz := m.Size()
		buf = slices.Grow(buf, sz)[:len(buf)+sz]
		if _, err := m.MarshalTo(buf[len(buf)-sz:]); err != nil {
			return err
		}
		body := buf[start+8:]
		binary.LittleEndian.PutUint32(buf[start:], uint32(len(body)))
		binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(body, crcTable))
		return nil
	}
	for i := range ents {
		if err := rec(1, &ents[i]); err != nil {
			return err
		}
	}
	if !raft.IsEmptyHardState(st) {
		if err := rec(2, &st); err != nil {
			return err
		}
	}
	n.walBuf = buf
	if _, err := n.wal.Write(buf); err != nil {
		return err
	}
	if mustSync {
		return n.wal.Sync()
	}
	return nil
}

func (n *etcdNode) send(msgs []raftpb.Message) {
	for _, m := range msgs {
		to := m.To
		if n.c.tcp != nil {
			if !n.c.tcp.send(n.id, to, m) {
				n.node.ReportUnreachable(to)
			}
			continue
		}
		peer := n.c.byID[to]
		if peer == nil {
			continue
		}
		select {
		case peer.inbox <- m:
		default:
			n.node.ReportUnreachable(to)
		}
	}
}

func (n *etcdNode) receiveInmem() {
	for {
		select {
		case m := <-n.inbox:
			n.node.Step(context.Background(), m)
		case <-n.stopc:
			return
		}
	}
}

func (n *etcdNode) apply(ents []raftpb.Entry) {
	if len(ents) == 0 {
		return
	}
	var wake []chan error
	n.mu.Lock()
	for i := range ents {
		e := &ents[i]
		switch e.Type {
		case raftpb.EntryNormal:
			if len(e.Data) < 8 {
				continue // the leader's empty entry
			}
			n.sm.Apply(e.Data[8:])
			id := binary.LittleEndian.Uint64(e.Data)
			if ch, ok := n.waiters[id]; ok {
				delete(n.waiters, id)
				wake = append(wake, ch)
			}
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := cc.Unmarshal(e.Data); err != nil {
				panic(err) // invariant: this harness never proposes configuration changes; etcd wrote the entry itself
			}
			n.node.ApplyConfChange(cc)
		case raftpb.EntryConfChangeV2:
			var cc raftpb.ConfChangeV2
			if err := cc.Unmarshal(e.Data); err != nil {
				panic(err) // invariant: as above
			}
			n.node.ApplyConfChange(cc)
		}
	}
	n.mu.Unlock()
	for _, ch := range wake {
		ch <- nil
	}
}

// ---- TCP transport: one persistent connection per unordered peer pair ----

type tcpMesh struct {
	c     *etcdCluster
	lns   map[uint64]net.Listener
	links map[[2]uint64]*tcpLink // key {from, to}: the sending side of a connection
	conns []net.Conn
	wg    sync.WaitGroup
}

type tcpLink struct {
	conn net.Conn
	out  chan raftpb.Message
}

func newTCPMesh(c *etcdCluster) (*tcpMesh, error) {
	m := &tcpMesh{c: c, lns: map[uint64]net.Listener{}, links: map[[2]uint64]*tcpLink{}}
	for _, n := range c.nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		m.lns[n.id] = ln
	}
	// The lower id dials the higher id and announces itself with 8 bytes.
	type accepted struct {
		from uint64
		conn net.Conn
		err  error
	}
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a.id >= b.id {
				continue
			}
			acc := make(chan accepted, 1)
			go func(ln net.Listener) {
				conn, err := ln.Accept()
				if err != nil {
					acc <- accepted{err: err}
					return
				}
				var hdr [8]byte
				if _, err := io.ReadFull(conn, hdr[:]); err != nil {
					acc <- accepted{err: err}
					return
				}
				acc <- accepted{from: binary.LittleEndian.Uint64(hdr[:]), conn: conn}
			}(m.lns[b.id])
			conn, err := net.Dial("tcp", m.lns[b.id].Addr().String())
			if err != nil {
				return nil, err
			}
			var hdr [8]byte
			binary.LittleEndian.PutUint64(hdr[:], a.id)
			if _, err := conn.Write(hdr[:]); err != nil {
				return nil, err
			}
			r := <-acc
			if r.err != nil {
				return nil, r.err
			}
			if r.from != a.id {
				return nil, fmt.Errorf("handshake: got %d want %d", r.from, a.id)
			}
			m.conns = append(m.conns, conn, r.conn)
			m.links[[2]uint64{a.id, b.id}] = &tcpLink{conn: conn, out: make(chan raftpb.Message, etcdChanDepth)}
			m.links[[2]uint64{b.id, a.id}] = &tcpLink{conn: r.conn, out: make(chan raftpb.Message, etcdChanDepth)}
		}
	}
	for _, ln := range m.lns {
		ln.Close() // all connections exist; no more accepts needed
	}
	return m, nil
}

// start launches, for every connection end, a writer and a reader.
func (m *tcpMesh) start() {
	for key, l := range m.links {
		self := m.c.byID[key[0]]
		m.wg.Add(2)
		go func() { defer m.wg.Done(); l.writeLoop() }()
		go func() { defer m.wg.Done(); l.readLoop(self) }()
	}
}

func (m *tcpMesh) send(from, to uint64, msg raftpb.Message) bool {
	l := m.links[[2]uint64{from, to}]
	if l == nil {
		return false
	}
	select {
	case l.out <- msg:
		return true
	default:
		return false
	}
}

func (m *tcpMesh) close() {
	for _, cn := range m.conns {
		cn.Close()
	}
	for _, l := range m.links {
		close(l.out)
	}
	m.wg.Wait()
}

func (l *tcpLink) writeLoop() {
	w := bufio.NewWriterSize(l.conn, 64<<10)
	var buf []byte
	for msg := range l.out {
		for {
			sz := msg.Size()
			buf = slices.Grow(buf[:0], 4+sz)[:4+sz]
			if _, err := msg.MarshalTo(buf[4:]); err != nil {
				panic(err) // invariant: etcd's own messages always marshal
			}
			binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
			if _, err := w.Write(buf); err != nil {
				drain(l.out)
				return
			}
			// Batch: keep writing while more messages are queued.
			select {
			case next, ok := <-l.out:
				if !ok {
					w.Flush()
					return
				}
				msg = next
				continue
			default:
			}
			break
		}
		if err := w.Flush(); err != nil {
			drain(l.out)
			return
		}
	}
}

func drain(ch chan raftpb.Message) {
	for range ch {
	}
}

func (l *tcpLink) readLoop(self *etcdNode) {
	r := bufio.NewReaderSize(l.conn, 64<<10)
	var hdr [4]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if cap(buf) < int(size) {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		var msg raftpb.Message
		if err := msg.Unmarshal(buf); err != nil {
			return // a malformed frame from the network ends the connection, not the process
		}
		select {
		case <-self.stopc:
			return
		default:
		}
		self.node.Step(context.Background(), msg)
	}
}

// discardLogger silences etcd raft's default logger.
type discardLogger struct{}

func (discardLogger) Debug(...any)            {}
func (discardLogger) Debugf(string, ...any)   {}
func (discardLogger) Error(...any)            {}
func (discardLogger) Errorf(string, ...any)   {}
func (discardLogger) Info(...any)             {}
func (discardLogger) Infof(string, ...any)    {}
func (discardLogger) Warning(...any)          {}
func (discardLogger) Warningf(string, ...any) {}

// etcd raft's Logger contract: Fatal and Panic never return (etcd calls
// them on its own broken invariants), so they panic.
func (discardLogger) Fatal(v ...any)            { panic(fmt.Sprint(v...)) }     // invariant
func (discardLogger) Fatalf(f string, v ...any) { panic(fmt.Sprintf(f, v...)) } // invariant
func (discardLogger) Panic(v ...any)            { panic(fmt.Sprint(v...)) }     // invariant
func (discardLogger) Panicf(f string, v ...any) { panic(fmt.Sprintf(f, v...)) } // invariant
