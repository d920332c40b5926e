package raft

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Bootstrap writes the initial configuration into empty storage, as entry 1
// of term 1. Every initial voter is bootstrapped with the same configuration
// before its first NewNode; a node added later starts with empty storage.
func Bootstrap(s Storage, conf Configuration) error {
	if err := conf.Validate(); err != nil {
		return err
	}
	hs, err := s.InitialState()
	if err != nil {
		return err
	}
	last, err := s.LastIndex()
	if err != nil {
		return err
	}
	if !hs.IsZero() || last > 0 {
		return ErrAlreadyBootstrapped
	}
	return s.Save(HardState{Term: 1}, []Entry{{Index: 1, Term: 1, Type: EntryConfig, Data: EncodeConfiguration(conf)}})
}

// Result is what a committed proposal produced.
type Result struct {
	// Index and Term locate the entry in the log.
	Index uint64
	Term  uint64
	// Value is what StateMachine.Apply returned for it.
	Value any
}

// Status is a point-in-time view of a node.
type Status struct {
	ID        NodeID
	Role      Role
	Term      uint64
	Vote      NodeID
	Leader    NodeID
	Commit    uint64
	Applied   uint64
	LastIndex uint64
	// FirstIndex is the first entry still in the log (the ones before it
	// were compacted behind a snapshot); SnapshotIndex is the last entry
	// the newest snapshot holds (0 for none).
	FirstIndex    uint64
	SnapshotIndex uint64
	// Config is the configuration in force (the latest in the log,
	// committed or not) and ConfigIndex the index of its entry.
	Config      Configuration
	ConfigIndex uint64
	// Peers is the leader's replication state per peer; empty elsewhere.
	Peers map[NodeID]PeerStatus
	// Lease: this leader holds a read lease now (Config.LeaseReads);
	// Transferring: the node it is handing leadership to.
	Lease        bool
	Transferring NodeID
	// RefusesVotes: this node would refuse a vote request now, because it
	// heard from its leader within an election timeout (with CheckQuorum)
	// or restarted less than one ago (with lease reads): the promise a
	// leader's lease rests on.
	RefusesVotes bool
	// Err is set once the node stopped because its storage failed.
	Err     error
	Metrics Metrics
}

// PeerStatus is the leader's view of one peer.
type PeerStatus struct {
	Match       uint64
	Next        uint64
	State       string // "probe", "replicate" or "snapshot"
	Inflight    int
	Unreachable bool
	// Learner: the peer receives the log but does not vote.
	Learner bool
	// SnapshotSent and SnapshotSize: in state "snapshot", how many bytes
	// of the snapshot the peer confirmed holding, out of how many.
	SnapshotSent uint64
	SnapshotSize uint64
}

// Node is a member of a raft cluster. Create it with NewNode; it runs until
// Close. All methods are safe for concurrent use.
type Node struct {
	cfg  Config
	core *core // owned by the run goroutine

	// Channels between the actors; sizes follow the design: a full channel
	// is backpressure, never a deadlock (reports back to the owner are
	// coalesced notifications).
	propc         chan *proposal
	readc         chan *readWaiter
	electionTicks chan struct{}
	heartbeats    chan struct{}    // heartbeat timer → owner, 10
	logEntries    chan *writeBatch // owner → appender, 64
	applyCh       chan applyBatch  // owner → applier, 128
	// progress: the appender persisted or the applier applied more (a
	// coalesced wake-up; the owner reads both). ctrlc: the rare requests
	// (Status, configuration changes, transfers, queries, the snapshot
	// actors' reports), run on the owner. Few channels keep the owner's
	// blocking select cheap: a select locks every channel in it twice per
	// wake-up, which with fourteen was 43% of the CPU of a one-client
	// in-memory cluster.
	progress chan struct{}
	ctrlc    chan func()
	// cacheReleaser is Storage when it keeps a cache of entries, and
	// cacheReleased the floor it was last given (owner goroutine).
	cacheReleaser CacheReleaser
	cacheReleased uint64

	// Snapshot actors (snapshot_node.go): views to write, chunks to send
	// and to write, their reports, and Snapshot calls for the applier.
	snapJobs       chan snapJob
	snapSends      chan Message
	snapWrites     chan SnapshotWrite
	snapRequests   chan *snapRequest
	snapWriterIdle chan struct{}
	// ownerDone is closed once the owner goroutine has stopped, after it
	// finished the proposals it held.
	ownerDone chan struct{}
	// snapshotBusy is set while a snapshot is written; durableSnapshot is
	// the newest snapshot's index.
	snapshotBusy      atomic.Bool
	durableSnapshot   atomic.Uint64
	snapshotsTaken    atomic.Uint64
	snapshotsReceived atomic.Uint64
	compactions       atomic.Uint64
	m                 nodeMetrics

	persistMu   sync.Mutex
	persistedAt logPosition // latest durable log end, from the appender
	persistErr  error
	applied     atomic.Uint64

	sendersMu sync.RWMutex
	senders   map[NodeID]*peerSender
	// direct, when the transport never blocks, replaces the senders.
	direct directSender
	// inlineSave: Storage is a MemoryStorage, whose Save neither blocks
	// nor fails slowly, so the owner saves itself instead of handing the
	// write to the appender and waiting for its report.
	inlineSave bool

	subs subscribers

	sendDropped  atomic.Uint64
	sendErrors   atomic.Uint64
	recvRejected atomic.Uint64

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	final     Status // the status at shutdown

	// Owner-goroutine state.
	pending      []*proposal
	readWaiters  map[uint64]*readWaiter
	readsApplied []*readWaiter // confirmed, waiting for applied ≥ index
	nextReadID   uint64
	propBatch    []*proposal
	// failureReported: EventFailed went out.
	failureReported bool
	// peerAddrs are the peers (and addresses) of the configuration the
	// senders and the transport were last set up for.
	peerAddrs map[NodeID]string
	// transfers are TransferLeadership calls waiting for their outcome.
	transfers []*transferRequest
	// started is when the node started; the core's clock counts from it.
	// stampedAt is when the owner last read the clock (stampNow).
	started, stampedAt time.Time
	// rounds counts the owner's rounds, for sampling its busy time.
	rounds uint64
}

// logPosition is a (index, term) pair naming the end of a durable log.
type logPosition struct{ index, term uint64 }

// NewNode starts a node from what its Storage and Snapshots hold: it
// restores the newest good snapshot and replays the log after it. Storage
// must have been bootstrapped (see Bootstrap), or the node must be joining
// an existing cluster (Config.Join): then it waits, without campaigning,
// for a leader to add it. Empty storage without Join is ErrNotBootstrapped;
// a bootstrap configuration that leaves the node out is
// ErrNotInConfiguration.
func NewNode(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	hs, err := cfg.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: reading hard state: %w", err)
	}
	restored, err := recoverSnapshot(&cfg)
	if err != nil {
		return nil, err
	}
	rc, err := newCore(coreConfig{
		id:            cfg.ID,
		electionTicks: electionTickResolution,
		preVote:       !cfg.DisablePreVote,
		checkQuorum:   !cfg.DisableCheckQuorum,
		maxMsgBytes:   cfg.MaxBytesPerMsg,
		maxMsgEntries: cfg.MaxEntriesPerMsg,
		maxInflight:   cfg.MaxInflightMsgs,
		maxApplyBytes: 4 << 20,
		rand:          rand.New(cfg.Rand),
		logger:        cfg.Logger,
		initialHS:     hs,

		initialSnapshot:  restored,
		snapshotTrailing: uint64(cfg.SnapshotTrailing),
		snapshotChunk:    uint64(cfg.SnapshotChunkSize),
		snapshotInflight: cfg.MaxSnapshotInflight,

		leaseReads:      cfg.LeaseReads,
		electionTimeout: int64(cfg.ElectionTimeout),
		maxClockDrift:   cfg.MaxClockDrift,
	}, cfg.Storage)
	if err != nil {
		return nil, fmt.Errorf("raft: opening log: %w", err)
	}
	if err := checkMembership(&cfg, rc); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:           cfg,
		core:          rc,
		propc:         make(chan *proposal, cfg.MaxProposalBatch),
		readc:         make(chan *readWaiter, 256),
		electionTicks: make(chan struct{}, 1),
		heartbeats:    make(chan struct{}, 10),
		logEntries:    make(chan *writeBatch, 64),
		applyCh:       make(chan applyBatch, 128),
		progress:      make(chan struct{}, 1),
		ctrlc:         make(chan func(), 4),

		snapJobs:       make(chan snapJob, 1),
		snapSends:      make(chan Message, 64),
		snapWrites:     make(chan SnapshotWrite, 16),
		snapRequests:   make(chan *snapRequest),
		snapWriterIdle: make(chan struct{}, 1),
		ownerDone:      make(chan struct{}),

		senders:     make(map[NodeID]*peerSender),
		started:     cfg.Clock.Now(),
		readWaiters: make(map[uint64]*readWaiter),
		ctx:         ctx,
		cancel:      cancel,
	}
	n.direct, _ = cfg.Transport.(directSender)
	n.cacheReleaser, _ = cfg.Storage.(CacheReleaser)
	_, n.inlineSave = cfg.Storage.(*MemoryStorage)
	n.applied.Store(rc.log.applied)
	n.durableSnapshot.Store(restored.Index)
	n.m.snapshotBytes.Store(uint64(max(restored.Size, 0)))
	n.persistedAt = logPosition{index: rc.log.stableIndex(), term: rc.log.lastTerm()}
	n.adoptPeers()
	n.start(restored)
	return n, nil
}

// start launches the actors. Each stops when ctx is cancelled.
func (n *Node) start(restored SnapshotMeta) {
	done := n.ctx.Done()
	n.wg.Add(8)
	go func() { defer n.wg.Done(); n.runSnapshotWriter() }()
	go func() { defer n.wg.Done(); n.runSnapshotSender() }()
	go func() { defer n.wg.Done(); n.runSnapshotReceiver() }()
	go func() { defer n.wg.Done(); defer close(n.ownerDone); n.run() }()
	go func() {
		defer n.wg.Done()
		electionTimer(n.cfg.Clock, n.cfg.ElectionTimeout/electionTickResolution, n.electionTicks, done)
	}()
	go func() { defer n.wg.Done(); heartbeatTimer(n.cfg.Clock, n.cfg.HeartbeatInterval, n.heartbeats, done) }()
	go func() { defer n.wg.Done(); n.runAppender() }()
	go func() { defer n.wg.Done(); n.runApplier(restored) }()
}

// checkMembership refuses to start a node that could never take part:
// empty storage without the intent to join, or a bootstrap configuration
// that leaves the node out.
func checkMembership(cfg *Config, c *core) error {
	switch {
	case len(c.config.Servers) == 0 && !cfg.Join:
		return fmt.Errorf("%w (node %d)", ErrNotBootstrapped, cfg.ID)
	case len(c.config.Servers) == 0:
		cfg.Logger.Info("raft: storage is empty; waiting for a leader to add this node", "id", cfg.ID)
	case c.configAt == 1 && c.log.lastIndex() == 1 && !c.config.Has(cfg.ID):
		return fmt.Errorf("%w: node %d is not in the bootstrap configuration %v", ErrNotInConfiguration, cfg.ID, c.config.Voters())
	}
	return nil
}

// ensureSender starts the sender actor for a peer if it has none.
func (n *Node) ensureSender(id NodeID) {
	if id == n.cfg.ID || n.direct != nil {
		return
	}
	n.sendersMu.Lock()
	defer n.sendersMu.Unlock()
	if _, ok := n.senders[id]; ok {
		return
	}
	s := newPeerSender(id, n.cfg.MaxInflightMsgs+16)
	n.senders[id] = s
	s.start(n.ctx, n.cfg.Transport, &n.wg, func(NodeID, error) { n.sendErrors.Add(1) })
}

// stopSender stops the sender actor of a peer no longer in the
// configuration.
func (n *Node) stopSender(id NodeID) {
	n.sendersMu.Lock()
	defer n.sendersMu.Unlock()
	if s, ok := n.senders[id]; ok {
		s.stop()
		delete(n.senders, id)
	}
}

// proposal is one Propose call travelling from the caller to the applier.
type proposal struct {
	cmd    []byte
	index  uint64
	term   uint64
	result any
	err    error
	done   chan struct{}
	// m counts the outcome (nil for membership changes); accepted: it was
	// appended; start is when the leader's owner took it, on its round's
	// clock (core.now), as hashicorp/raft's commitTime starts when the
	// leader dispatches: no clock read per proposal.
	m        *nodeMetrics
	accepted bool
	start    int64
}

// monotonic is the time since the node started, in nanoseconds, on the
// same clock as core.now, for the latency metrics. With the real clock it
// is time.Since, which reads one clock where time.Now reads two.
func (n *Node) monotonic() int64 {
	if _, real := n.cfg.Clock.(realClock); real {
		return int64(time.Since(n.started))
	}
	return int64(n.cfg.Clock.Now().Sub(n.started))
}

// outcome is what Propose returns for a finished proposal.
func (p *proposal) outcome() (Result, error) {
	if p.err != nil {
		return Result{}, p.err
	}
	return Result{Index: p.index, Term: p.term, Value: p.result}, nil
}

func (p *proposal) finish(err error) {
	if p.m != nil {
		switch {
		case err == nil:
			p.m.proposalsCommitted.Add(1)
		case p.accepted:
			p.m.proposalsFailed.Add(1)
		default:
			p.m.proposalsDropped.Add(1)
		}
	}
	p.err = err
	close(p.done)
}

// Propose replicates cmd and returns once it is committed and applied on
// this node, with what the StateMachine returned. cmd must not be modified
// afterwards. Errors: *NotLeaderError (ErrNotLeader) on a non-leader;
// ErrTransferInProgress while the leader hands over; ErrOutcomeUnknown when
// leadership was lost, or ctx ended, after the entry was appended (it may
// still commit); ErrStorageFailed (also ErrOutcomeUnknown) when this
// node's storage failed; ErrClosed when the node closed before taking the
// proposal (nothing was submitted: retry it elsewhere), also wrapped with
// ErrOutcomeUnknown when it closed after appending it; ErrProposalTooLarge.
// A ctx that is already done fails at once: nothing is submitted.
func (n *Node) Propose(ctx context.Context, cmd []byte) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if len(cmd) > n.cfg.MaxEntrySize {
		n.m.proposalsDropped.Add(1)
		return Result{}, ErrProposalTooLarge
	}
	p := &proposal{cmd: cmd, done: make(chan struct{}), m: &n.m}
	// Room in propc is the common case, and a one-case select with a
	// default locks nothing else; a proposal queued on a closed node is
	// never taken, and the wait below reports ErrClosed for it.
	select {
	case n.propc <- p:
	default:
		select {
		case n.propc <- p:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-n.ctx.Done():
			return Result{}, ErrClosed
		}
	}
	select {
	case <-p.done:
		return p.outcome()
	case <-ctx.Done():
		return Result{}, fmt.Errorf("%w: the context ended after the proposal was submitted, and it may still commit: %w", ErrOutcomeUnknown, ctx.Err())
	case <-n.ctx.Done():
		// Whether the owner took the proposal decides what closing means
		// for it; it has stopped once ownerDone is closed.
		<-n.ownerDone
		select {
		case <-p.done:
			return p.outcome()
		default:
		}
		if p.accepted {
			return Result{}, errClosedAfterAppend
		}
		return Result{}, ErrClosed
	}
}

// errClosedAfterAppend: the node closed with the proposal in its log but
// not yet applied here.
var errClosedAfterAppend = fmt.Errorf("%w: the node closed after appending the proposal: %w", ErrOutcomeUnknown, ErrClosed)

// readWaiter is one ReadIndex or LeaseRead call.
type readWaiter struct {
	id    uint64
	lease bool
	index uint64
	err   error
	done  chan struct{}
}

// ReadIndex is a linearizable read barrier: it returns once this node's
// state machine has applied everything committed before the call, as
// confirmed by the leader. On the leader that takes a heartbeat round
// acknowledged by a majority (shared by every read waiting); on a
// follower, one message each way to its leader (shared likewise). A read
// of the state machine made after it returns sees every write
// acknowledged before ReadIndex was called. It returns the index the
// state machine reached. Errors: a *NotLeaderError (ErrNotLeader) when
// this node knows no leader, or lost it before the read was confirmed;
// ErrStorageFailed; ErrClosed; ctx's error. A failed read changed nothing and may simply be
// retried.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	return n.readBarrier(ctx, false)
}

// readBarrier is ReadIndex, or LeaseRead with lease set.
func (n *Node) readBarrier(ctx context.Context, lease bool) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	w := &readWaiter{lease: lease, done: make(chan struct{})}
	select {
	case n.readc <- w:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.ctx.Done():
		return 0, ErrClosed
	}
	select {
	case <-w.done:
		return w.index, w.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.ctx.Done():
		return 0, ErrClosed
	}
}

// Status returns a snapshot of the node's state.
func (n *Node) Status() Status {
	reply := make(chan Status, 1)
	select {
	case n.ctrlc <- func() { reply <- n.status() }:
	case <-n.ctx.Done():
		n.wg.Wait()
		return n.final
	}
	select {
	case st := <-reply:
		return st
	case <-n.ctx.Done(): // closed with the request still queued
		n.wg.Wait()
		return n.final
	}
}

// Subscribe delivers the node's events to ch until the returned function
// is called. Delivery never blocks the node: when ch is full the event is
// dropped and counted in Metrics.EventsDropped, so give ch a buffer.
func (n *Node) Subscribe(ch chan<- Event) (unsubscribe func()) {
	return n.subs.add(ch)
}

// ID returns the node's ID.
func (n *Node) ID() NodeID { return n.cfg.ID }

// Close stops the node and waits for all its goroutines. Pending calls fail
// with ErrClosed. It does not close the Transport or the Storage, which the
// caller owns. Close is idempotent.
//
// With Config.CloseTransferTimeout set, a leader first hands leadership to
// the most caught-up voter (waiting at most that long), so a rolling
// restart costs clients no election timeout.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if d := n.cfg.CloseTransferTimeout; d > 0 && n.ctx.Err() == nil && n.Status().Role == Leader {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			if to, err := n.TransferLeadership(ctx, None); err != nil {
				n.cfg.Logger.Warn("raft: no leadership hand-over before closing", "id", n.cfg.ID, "err", err)
			} else {
				n.cfg.Logger.Info("raft: handed leadership over before closing", "id", n.cfg.ID, "to", to)
			}
			cancel()
		}
		n.cancel()
	})
	n.wg.Wait()
	return nil
}
