package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	conf, at, err := latestConfiguration(s)
	if err != nil {
		return nil, err
	}
	c, err := newCore(coreConfig{
		id: cfg.ID, electionTicks: cfg.ElectionTicks,
		preVote: !cfg.DisablePreVote, checkQuorum: !cfg.DisableCheckQuorum,
		maxMsgBytes: def.MaxBytesPerMsg, maxMsgEntries: def.MaxEntriesPerMsg, maxInflight: def.MaxInflightMsgs,
		maxApplyBytes: cfg.MaxApplyBytes, rand: rand.New(cfg.Rand), logger: cfg.Logger,
		initialHS: hs, initialConfig: conf, initialConfigAt: at,
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
	ents := make([]Entry, len(cmds))
	for i, cmd := range cmds {
		ents[i] = Entry{Type: EntryNormal, Data: cmd}
	}
	return c.c.appendEntries(ents), c.c.term, nil
}

// ReadIndex asks for a read barrier; the answer comes in Ready.Reads.
func (c *Core) ReadIndex(id uint64) { c.c.readIndex(id) }

// Persisted reports storage durably holds the log up to (index, term).
func (c *Core) Persisted(index, term uint64) { c.c.persisted(index, term) }

// Applied reports the state machine applied every entry up to index.
func (c *Core) Applied(index uint64) { c.c.appliedTo(index) }

// Ready returns what the core wants done since the last call.
func (c *Core) Ready() Ready {
	rd := c.c.takeReady()
	out := Ready{
		HardState: rd.hardState, MustSync: rd.syncHS, Entries: rd.entries,
		Messages: rd.messages, AfterPersist: rd.afterPersist, Committed: rd.committed,
		ProposalsLost: rd.proposalsLost, Events: rd.peerEvents,
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

// Status returns the core's state (without metrics or peer details).
func (c *Core) Status() Status {
	k := c.c
	return Status{
		ID: k.id, Role: k.role, Term: k.term, Vote: k.vote, Leader: k.leader,
		Commit: k.log.committed, Applied: k.log.applied, LastIndex: k.log.lastIndex(),
		Config: k.config, Err: k.failed,
	}
}

// Term returns the term of the entry at index as the core sees it (storage
// plus entries not yet persisted), for invariant checks.
func (c *Core) Term(index uint64) (uint64, error) { return c.c.log.term(index) }

// Entries returns the core's view of the log in [lo, hi).
func (c *Core) Entries(lo, hi uint64) ([]Entry, error) { return c.c.log.entries(lo, hi, ^uint64(0)) }
