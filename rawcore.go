package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Core is the pure Raft state machine that Node runs on its state-owner
// goroutine, exported for simulators and for users who want their own
// driver (as etcd's RawNode). It does no I/O and reads no clock: feed it
// events, then call Ready and carry out what it returns. It is not safe for
// concurrent use.
//
// A driver must keep two rules (Node does): when Ready.MustSync is set,
// HardState (and Entries) are durable before any of Messages leave; and
// AfterPersist messages leave only once Entries are durable, after which the
// driver calls Persisted with the last entry's index and term.
//
// Snapshots add these (snapshot_transfer.go explains the protocol):
//
//   - Taking one: the driver captures its state machine after applying up
//     to some index, describing it with a SnapshotMeta it kept current
//     with SnapshotMeta.Advance for every applied entry, writes it to its
//     SnapshotStore, and once that is durable calls SnapshotTaken. The
//     core answers with Ready.Compact, which the driver carries out
//     (Storage.Compact) after persisting the same Ready's Entries.
//   - Sending one: a MsgSnap in Messages has a Chunk with Data nil; the
//     driver reads Chunk.Length bytes at Chunk.Offset of the snapshot
//     Chunk.Meta from its store into a copy of the chunk, with Checksum,
//     then sends it. If it cannot (the store no longer has it), it calls
//     SnapshotSendFailed.
//   - Receiving one: each of Ready.SnapshotWrites is written, in order, to
//     the snapshot being received (Offset 0 starts a new one, dropping any
//     partial one), and its Ack sent once written. After the Last one, the
//     driver checks the snapshot's size and checksum, commits it to its
//     store and calls SnapshotReceived (with the error, if any step
//     failed, also for an earlier chunk).
//   - Installing one: when Ready.Snapshot is set, the driver makes storage
//     start after it (Storage.InstallSnapshot) before saving the Ready's
//     HardState and Entries, and restores the state machine from it before
//     applying the Ready's Committed entries; then calls Applied.
//   - Restarting: the driver restores the state machine from its newest
//     good snapshot and passes its meta as CoreConfig.Snapshot.
type Core struct {
	c *core
}

// CoreConfig configures a Core. Zero values take Node's defaults.
type CoreConfig struct {
	ID NodeID
	// ElectionTicks is the election timeout in TickElection calls; timeouts
	// are randomized in [ElectionTicks, 2*ElectionTicks). Default 10.
	ElectionTicks      int
	DisablePreVote     bool
	DisableCheckQuorum bool
	MaxInflightMsgs    int
	MaxEntriesPerMsg   int
	MaxBytesPerMsg     uint64
	// MaxApplyBytes bounds the committed entries one Ready carries.
	MaxApplyBytes uint64
	// Snapshot is the snapshot the driver restored the state machine from
	// (zero for none); the log must hold, or start right after, its last
	// entry.
	Snapshot SnapshotMeta
	// SnapshotTrailing, SnapshotChunkSize and MaxSnapshotInflight are as
	// in Config (zero: no trailing entries, 1 MiB chunks, 4 in flight).
	SnapshotTrailing    uint64
	SnapshotChunkSize   uint64
	MaxSnapshotInflight int
	// LeaseReads, ElectionTimeout and MaxClockDrift are as in Config; the
	// lease is measured on the clock the driver gives with SetClock, and
	// ElectionTimeout is ElectionTicks ticks of that clock.
	LeaseReads      bool
	ElectionTimeout time.Duration
	MaxClockDrift   float64
	// Rand drives election timeouts; set it for reproducible runs.
	// Default: a source seeded with ID.
	Rand   rand.Source
	Logger *slog.Logger
}

// Ready is what a Core wants done; see the rules on Core.
type Ready struct {
	// HardState is set (non-zero) when it must be written with Entries.
	HardState HardState
	// MustSync: term or vote changed; persist before sending Messages.
	MustSync bool
	// Entries to append to storage, replacing any suffix from their first
	// index.
	Entries []Entry
	// Messages may leave as soon as MustSync is honoured.
	Messages []Message
	// AfterPersist may leave only once Entries are durable.
	AfterPersist []Message
	// Committed entries to apply, in order; report with Applied. Only
	// entries reported Persisted are included.
	Committed []Entry
	// Reads are ReadIndex answers.
	Reads []ReadState
	// ProposalsLost: the node stopped leading; proposals not yet committed
	// have an unknown outcome.
	ProposalsLost bool
	// Events are role, leader and peer reachability changes.
	Events []Event
	// Snapshot, when set, is a snapshot received from the leader, now the
	// base of the log: storage must start after it and the state machine
	// be restored from it (see Core).
	Snapshot *SnapshotMeta
	// Compact, when non-zero, is how far the log may be compacted once
	// this Ready's Entries are persisted.
	Compact uint64
	// SnapshotWrites are chunks of an incoming snapshot to write in order.
	SnapshotWrites []SnapshotWrite
	// TransferAborted: a leadership transfer ended without a new leader.
	TransferAborted bool
	// ConfigChanged: the configuration in force changed (Status.Config);
	// a driver updates its transport's addresses.
	ConfigChanged bool
}

// ReadState answers Core.ReadIndex: the read may be served once the state
// machine has applied Index, unless Lost (this node does not lead).
type ReadState struct {
	ID    uint64
	Index uint64
	Lost  bool
}

// ErrCoreNotLeader is returned by Core.Propose on a node that does not lead.
var ErrCoreNotLeader = errors.New("raft: core is not the leader")

// NewCore builds a Core from what storage holds.
func NewCore(cfg CoreConfig, s Storage) (*Core, error) {
	if cfg.ID == None {
		return nil, errors.New("raft: CoreConfig.ID must be non-zero")
	}
	def := Config{MaxInflightMsgs: cfg.MaxInflightMsgs, MaxEntriesPerMsg: cfg.MaxEntriesPerMsg, MaxBytesPerMsg: cfg.MaxBytesPerMsg}
	def.setDefaults()
	if cfg.ElectionTicks <= 0 {
		cfg.ElectionTicks = electionTickResolution
	}
	if cfg.MaxApplyBytes == 0 {
		cfg.MaxApplyBytes = 4 << 20
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.NewPCG(uint64(cfg.ID), 0)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hs, err := s.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: reading hard state: %w", err)
	}
	if cfg.MaxSnapshotInflight == 0 {
		cfg.MaxSnapshotInflight = 4
	}
	c, err := newCore(coreConfig{
		id: cfg.ID, electionTicks: cfg.ElectionTicks,
		preVote: !cfg.DisablePreVote, checkQuorum: !cfg.DisableCheckQuorum,
		maxMsgBytes: def.MaxBytesPerMsg, maxMsgEntries: def.MaxEntriesPerMsg, maxInflight: def.MaxInflightMsgs,
		maxApplyBytes: cfg.MaxApplyBytes, rand: rand.New(cfg.Rand), logger: cfg.Logger,
		initialHS:       hs,
		initialSnapshot: cfg.Snapshot, snapshotTrailing: cfg.SnapshotTrailing,
		snapshotChunk: cfg.SnapshotChunkSize, snapshotInflight: cfg.MaxSnapshotInflight,
		leaseReads: cfg.LeaseReads, electionTimeout: int64(cfg.ElectionTimeout), maxClockDrift: cfg.MaxClockDrift,
	}, s)
	if err != nil {
		return nil, err
	}
	return &Core{c: c}, nil
}

// Step feeds a message from the network.
func (c *Core) Step(m Message) {
	if m.To != c.c.id || !m.Type.Valid() {
		return
	}
	c.c.step(m)
}

// TickElection advances the election clock by one tick.
func (c *Core) TickElection() { c.c.tickElection() }

// TickHeartbeat is a heartbeat interval passing; a leader sends heartbeats.
func (c *Core) TickHeartbeat() { c.c.tickHeartbeat() }

// Propose appends commands as new entries of the current term. It returns
// the first entry's index and the term, or ErrCoreNotLeader.
func (c *Core) Propose(cmds ...[]byte) (first, term uint64, err error) {
	if c.c.role != Leader || c.c.failed != nil {
		return 0, 0, ErrCoreNotLeader
	}
	if c.c.handingOver() {
		return 0, 0, ErrTransferInProgress
	}
	ents := make([]Entry, len(cmds))
	for i, cmd := range cmds {
		ents[i] = Entry{Type: EntryNormal, Data: cmd}
	}
	return c.c.appendEntries(ents), c.c.term, nil
}

// ReadIndex asks for a read barrier; the answer comes in Ready.Reads. On a
// follower it asks the leader (MsgReadIndex).
func (c *Core) ReadIndex(id uint64) { c.c.readIndex(id) }

// LeaseRead is ReadIndex answered at once when the leader holds a lease.
func (c *Core) LeaseRead(id uint64) { c.c.leaseRead(id) }

// SetClock gives the core the driver's monotonic clock reading, which lease
// reads measure with; call it before feeding each event.
func (c *Core) SetClock(now time.Duration) { c.c.now = int64(now) }

// TransferLeadership starts handing leadership to to (None: the most
// caught-up voter) and returns the target. The outcome shows in Ready:
// Events with the new leader, or TransferAborted.
func (c *Core) TransferLeadership(to NodeID) (NodeID, error) { return c.c.transferLeadership(to) }

// AbortTransfer gives up a leadership transfer in progress.
func (c *Core) AbortTransfer() { c.c.abortTransfer() }

// Persisted reports storage durably holds the log up to (index, term).
func (c *Core) Persisted(index, term uint64) { c.c.persisted(index, term) }

// Applied reports the state machine applied every entry up to index. It
// updates Status and lets reads waiting for that index go; it is not
// needed for the log to advance.
func (c *Core) Applied(index uint64) { c.c.appliedTo(index) }

// SnapshotTaken reports that a snapshot of the state machine is durable in
// the driver's store.
func (c *Core) SnapshotTaken(meta SnapshotMeta) { c.c.snapshotTaken(meta) }

// SnapshotReceived reports that the snapshot whose last chunk the driver
// wrote is verified and durable in its store (err nil), or that writing or
// verifying it failed.
func (c *Core) SnapshotReceived(meta SnapshotMeta, err error) { c.c.snapshotReceived(meta, err) }

// SnapshotSendFailed reports that the driver could not read the chunk of a
// MsgSnap to peer to from its store.
func (c *Core) SnapshotSendFailed(to NodeID, meta SnapshotMeta) { c.c.snapshotSendFailed(to, meta) }

// HasReady reports whether Ready has anything to do. A driver loops
// "Ready, carry it out, report back (Persisted, Applied, ...)" until
// HasReady is false: one report can make more work (entries persisted
// let a leader commit, applied entries let held reads go), and committed
// entries beyond MaxApplyBytes come in later Readys.
func (c *Core) HasReady() bool { return c.c.hasReady() }

// Ready returns what the core wants done since the last call.
func (c *Core) Ready() Ready {
	rd := c.c.takeReady()
	out := Ready{
		HardState: rd.hardState, MustSync: rd.syncHS, Entries: rd.entries,
		Messages: rd.messages, AfterPersist: rd.afterPersist, Committed: rd.committed,
		ProposalsLost: rd.proposalsLost, Events: rd.peerEvents,
		Snapshot: rd.snapshot, Compact: rd.compact, SnapshotWrites: rd.snapWrites,
		TransferAborted: rd.transferAborted, ConfigChanged: rd.configChanged,
	}
	for _, r := range rd.reads {
		out.Reads = append(out.Reads, ReadState{ID: r.id, Index: r.index, Lost: r.lost})
	}
	if rd.roleChanged {
		out.Events = append(out.Events, Event{Type: EventRoleChanged, Node: c.c.id, Term: c.c.term, Role: c.c.role})
	}
	if rd.leaderChange {
		out.Events = append(out.Events, Event{Type: EventLeaderChanged, Node: c.c.id, Term: c.c.term, Leader: c.c.leader})
	}
	return out
}

// Status returns the core's state (without metrics).
func (c *Core) Status() Status {
	k := c.c
	st := Status{
		ID: k.id, Role: k.role, Term: k.term, Vote: k.vote, Leader: k.leader,
		Commit: k.log.committed, Applied: k.log.applied, LastIndex: k.log.lastIndex(),
		FirstIndex: k.log.firstIndex(), SnapshotIndex: k.snap.Index,
		Config: k.config, ConfigIndex: k.configAt, Err: k.failed,
		Lease: k.leaseValid(), RefusesVotes: k.role != Leader && (k.inLease() || k.restartVoteHold()),
	}
	if k.transfer != nil {
		st.Transferring = k.transfer.target
	}
	if k.role == Leader {
		st.Peers = k.peerStatus()
	}
	return st
}

// ProposeConfChange appends a membership change (see Node.AddVoter and the
// others). It returns the configuration entry's index, or the current
// configuration's when the change changes nothing; errors are
// ErrCoreNotLeader and those of the Node methods.
func (c *Core) ProposeConfChange(cc ConfChange) (uint64, error) { return c.c.proposeConfChange(cc) }

// Term returns the term of the entry at index as the core sees it (storage
// plus entries not yet persisted), for invariant checks.
func (c *Core) Term(index uint64) (uint64, error) { return c.c.log.term(index) }

// Entries returns the core's view of the log in [lo, hi).
func (c *Core) Entries(lo, hi uint64) ([]Entry, error) { return c.c.log.entries(lo, hi, ^uint64(0)) }
