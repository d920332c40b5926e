package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Config configures a Node. ID, Storage, StateMachine and Transport are
// required; every other field has a default suited to a LAN.
type Config struct {
	// ID is this node's non-zero identity in the cluster configuration.
	ID NodeID
	// Group is stamped on every message this node sends, and a message of
	// another group is refused. It reserves the wire for running many raft
	// groups over one transport, which the transports do not do yet: for
	// now, give each group its own transport.
	Group uint64

	Storage      Storage
	StateMachine StateMachine
	Transport    Transport
	// Snapshots keeps the node's snapshots (package snapstore for files).
	// Required with durable Storage; with a MemoryStorage it defaults to a
	// MemorySnapshotStore.
	Snapshots SnapshotStore

	// SnapshotEntries: a snapshot is taken once this many entries were
	// applied since the last one. Default 8192; negative turns automatic
	// snapshots off (Node.Snapshot still takes them).
	SnapshotEntries int
	// SnapshotBytes: a snapshot is also taken once the entries applied
	// since the last one carry this many bytes of commands. Default 0: off.
	SnapshotBytes int64
	// SnapshotSizeRatio holds an automatic snapshot back until the
	// commands applied since the last snapshot amount to at least
	// 1/SnapshotSizeRatio of that snapshot's size, so that a large state
	// is not rewritten for every few thousand small writes: snapshots then
	// write at most about SnapshotSizeRatio bytes per byte of commands,
	// and the log kept beside a snapshot stays a fraction of it. Default
	// 4; negative turns the guard off (the thresholds alone decide).
	SnapshotSizeRatio int
	// SnapshotInterval is the least time between two automatic snapshots,
	// so that a busy cluster does not spend its disk rewriting the state
	// machine many times a second: at 100k writes/s, 8192 entries come
	// every 80 ms, and each snapshot costs a few fsyncs. It yields once the
	// entries (or bytes) applied since the last snapshot reach
	// SnapshotIntervalOverrun times the threshold. Default 1s with durable
	// Storage; none with a MemoryStorage, whose log is in the heap (where
	// frequent compaction pays) and whose snapshots cost no disk. Negative:
	// none.
	SnapshotInterval time.Duration
	// SnapshotTrailing is how many entries compaction keeps behind a
	// snapshot, so a follower a little behind catches up by appends
	// instead of a whole snapshot. Default 10240; negative keeps none.
	// The log is never compacted past the previous snapshot either, so a
	// corrupt newest snapshot can fall back on the one before it.
	SnapshotTrailing int
	// SnapshotChunkSize is the size of one InstallSnapshot chunk (default
	// 1 MiB, at most 32 MiB) and MaxSnapshotInflight how many chunks may
	// be in flight to one follower (default 4).
	SnapshotChunkSize   int
	MaxSnapshotInflight int

	// ElectionTimeout is the base election timeout T; followers wait a
	// random time in [T, 2T) without hearing from a leader before
	// campaigning. Default 1s.
	ElectionTimeout time.Duration
	// HeartbeatInterval is how often a leader sends heartbeats. It must be
	// well under ElectionTimeout. Default ElectionTimeout/10.
	HeartbeatInterval time.Duration

	// Join says this node starts with empty storage and waits, as a
	// learner-to-be, for a leader to add it (see Node.AddVoter). Without
	// it, NewNode on empty storage fails with ErrNotBootstrapped.
	Join bool

	// DisablePreVote turns off the PreVote round (on by default), which
	// keeps a node that cannot win from disrupting the cluster's term.
	DisablePreVote bool
	// DisableCheckQuorum turns off CheckQuorum and leader stickiness (on by
	// default): a leader that cannot reach a majority stops leading, and
	// followers that hear from a live leader ignore vote requests.
	DisableCheckQuorum bool

	// LeaseReads lets a leader serve LeaseRead without a heartbeat round
	// while it holds a lease (lease.go). It needs CheckQuorum, and
	// MaxClockDrift: the largest rate at which one node's clock may run
	// ahead of another's (0.05 is 5%), which the lease shrinks by. Every
	// node of a cluster using lease reads must set it, since followers
	// keep the lease's promise (a restarted node votes for no one for an
	// election timeout). The lease is only as safe as that bound.
	LeaseReads    bool
	MaxClockDrift float64
	// CloseTransferTimeout, if set, makes Close on a leader hand
	// leadership over first, waiting at most this long.
	CloseTransferTimeout time.Duration

	// MaxInflightMsgs bounds the appends in flight to one peer (the
	// pipelining window). Default 256.
	MaxInflightMsgs int
	// MaxEntriesPerMsg and MaxBytesPerMsg bound one append. Defaults 1024
	// entries and 1 MiB.
	MaxEntriesPerMsg int
	MaxBytesPerMsg   uint64
	// MaxEntrySize rejects larger proposals with ErrProposalTooLarge.
	// Default 8 MiB.
	MaxEntrySize int
	// MaxProposalBatch bounds how many queued proposals become one append.
	// Default 1024.
	MaxProposalBatch int

	// Clock defaults to package time (which testing/synctest fakes).
	Clock Clock
	// Rand seeds election timeouts. Default: seeded from the clock and ID.
	Rand rand.Source
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = c.ElectionTimeout / 10
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = 256
	}
	if c.MaxEntriesPerMsg == 0 {
		c.MaxEntriesPerMsg = 1024
	}
	if c.MaxBytesPerMsg == 0 {
		c.MaxBytesPerMsg = 1 << 20
	}
	if c.MaxEntrySize == 0 {
		c.MaxEntrySize = 8 << 20
	}
	if c.MaxProposalBatch == 0 {
		c.MaxProposalBatch = 1024
	}
	if c.Snapshots == nil {
		if _, ok := c.Storage.(*MemoryStorage); ok {
			c.Snapshots = NewMemorySnapshotStore()
		}
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = DefaultSnapshotEntries
	}
	if c.SnapshotSizeRatio == 0 {
		c.SnapshotSizeRatio = DefaultSnapshotSizeRatio
	}
	if _, inMemory := c.Storage.(*MemoryStorage); c.SnapshotInterval == 0 && !inMemory {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	switch {
	case c.SnapshotTrailing == 0:
		c.SnapshotTrailing = DefaultSnapshotTrailing
	case c.SnapshotTrailing < 0:
		c.SnapshotTrailing = 0
	}
	if c.SnapshotChunkSize == 0 {
		c.SnapshotChunkSize = DefaultSnapshotChunkSize
	}
	if c.MaxSnapshotInflight == 0 {
		c.MaxSnapshotInflight = 4
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Rand == nil {
		c.Rand = rand.NewPCG(uint64(c.Clock.Now().UnixNano()), uint64(c.ID))
	}
}

// validate reports the first problem with a defaulted config.
func (c *Config) validate() error {
	switch {
	case c.ID == None:
		return errors.New("raft: Config.ID must be non-zero")
	case c.Storage == nil:
		return errors.New("raft: Config.Storage is required")
	case c.StateMachine == nil:
		return errors.New("raft: Config.StateMachine is required")
	case c.Transport == nil:
		return errors.New("raft: Config.Transport is required")
	case c.ElectionTimeout < electionTickResolution*time.Millisecond:
		return errors.New("raft: Config.ElectionTimeout must be at least 10ms")
	case c.HeartbeatInterval <= 0 || c.HeartbeatInterval*2 > c.ElectionTimeout:
		return errors.New("raft: Config.HeartbeatInterval must be positive and at most half of ElectionTimeout")
	case c.MaxInflightMsgs < 1 || c.MaxEntriesPerMsg < 1 || c.MaxProposalBatch < 1:
		return errors.New("raft: Config limits must be positive")
	case c.Snapshots == nil:
		return errors.New("raft: Config.Snapshots is required with durable storage (snapstore.Open keeps snapshots in files), or the log could never be compacted")
	case c.SnapshotBytes < 0:
		return errors.New("raft: Config.SnapshotBytes must not be negative (0 turns the byte threshold off)")
	case c.SnapshotEntries > 0 && c.SnapshotEntries < minSnapshotEntries:
		return fmt.Errorf("raft: Config.SnapshotEntries %d would rewrite the whole state machine every few writes; use at least %d (or a negative value to snapshot only on demand)", c.SnapshotEntries, minSnapshotEntries)
	case c.SnapshotEntries > 0 && c.SnapshotTrailing > maxTrailingPerInterval*c.SnapshotEntries:
		return fmt.Errorf("raft: Config.SnapshotTrailing %d keeps more than %d snapshot intervals (of %d entries) of log behind each snapshot, so compaction would bound little; lower it or raise SnapshotEntries", c.SnapshotTrailing, maxTrailingPerInterval, c.SnapshotEntries)
	case c.SnapshotChunkSize < 1<<10 || c.SnapshotChunkSize > maxSnapshotChunkSize:
		return fmt.Errorf("raft: Config.SnapshotChunkSize must be between 1 KiB and %d MiB", maxSnapshotChunkSize>>20)
	case c.MaxSnapshotInflight < 1:
		return errors.New("raft: Config.MaxSnapshotInflight must be positive")
	case c.LeaseReads && c.DisableCheckQuorum:
		return errors.New("raft: Config.LeaseReads needs CheckQuorum: followers' promise not to vote while they hear from the leader is what the lease rests on")
	case c.LeaseReads && (c.MaxClockDrift <= 0 || c.MaxClockDrift >= 0.5):
		return errors.New("raft: Config.LeaseReads needs MaxClockDrift, the clock drift rate the lease assumes, above 0 and below 0.5 (e.g. 0.05)")
	}
	return nil
}

// Snapshot policy defaults, in the range hashicorp/raft and etcd use.
const (
	DefaultSnapshotEntries  = 8192
	DefaultSnapshotTrailing = 10240
	// DefaultSnapshotSizeRatio bounds how much snapshots write per byte of
	// commands (see Config.SnapshotSizeRatio).
	DefaultSnapshotSizeRatio = 4
	// DefaultSnapshotInterval is the least time between automatic
	// snapshots with durable storage (see Config.SnapshotInterval).
	DefaultSnapshotInterval = time.Second
	// SnapshotIntervalOverrun is how many thresholds' worth of entries (or
	// bytes) may pile up before an automatic snapshot is taken in spite of
	// Config.SnapshotInterval.
	SnapshotIntervalOverrun = 8
	// DefaultSnapshotChunkSize is the size of one InstallSnapshot chunk.
	DefaultSnapshotChunkSize = 1 << 20
	// maxSnapshotChunkSize keeps a chunk well inside the TCP transport's
	// default frame limit.
	maxSnapshotChunkSize = 32 << 20
	// minSnapshotEntries and maxTrailingPerInterval bound the policy
	// pair: snapshots every few entries cost a full state-machine write
	// per write, and trailing entries many intervals long make compaction
	// pointless.
	minSnapshotEntries     = 8
	maxTrailingPerInterval = 100
)
