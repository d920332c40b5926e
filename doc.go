// Package raft is raftline: a Raft consensus library whose runs replay from
// a seed.
//
// # Using it
//
// Implement StateMachine, choose a Storage (MemoryStorage, or the durable
// WAL in package wal), a SnapshotStore (package snapstore; a
// MemoryStorage gets a MemorySnapshotStore by default) and a Transport
// (the in-memory Network, or the TCP transport), call Bootstrap once on
// each initial voter's storage, then NewNode. Propose replicates a command
// and returns the state machine's result once it is committed and
// applied; ReadIndex is a linearizable read barrier; Status and Subscribe
// show what the node sees; Close stops it.
//
// Snapshots bound a node's log, disk and restart time: every
// Config.SnapshotEntries applied entries (held back while the commands
// since the last snapshot are small next to it, Config.SnapshotSizeRatio,
// and with durable storage spaced by Config.SnapshotInterval),
// or on Node.Snapshot, the state machine's view is written to the SnapshotStore while applying goes on,
// and the log is compacted behind it. A restart restores the newest good
// snapshot and replays only the entries after it; a follower that needs
// entries the leader compacted receives the snapshot in chunks
// (snapshot.go, snapshot_transfer.go).
//
// Membership changes one server at a time through the log: AddLearner,
// AddVoter (which catches the new server up before it votes), Promote,
// Demote and RemoveServer, the leader included, each with the index of
// the configuration the caller saw (Configuration) so two operators cannot
// race. A new server starts with empty storage and Config.Join, and waits
// to be added (membership.go, membership_node.go).
//
// # How the pieces fit
//
// One goroutine, the state owner (node.go), owns every piece of Raft state:
// term, vote, role, log indexes and commit index. It holds a core
// (core.go), a pure state-transition function with no goroutines, I/O or
// clock: events go in (a message, an election tick, a heartbeat tick, a
// batch of proposals, "persisted up to i", "applied up to i", a read
// request) and a ready comes out (hard state and entries to persist,
// messages to send, committed entries to apply, reads to release). A test or
// simulator can drive the core with the same events and gets the same
// result, which is how runs replay exactly.
//
// Around the owner, actors do time and I/O and report back by channel:
//
//   - the election timer (election.go) and heartbeat timer (heartbeat.go)
//     turn time into ticks; heartbeat rounds arrive over the heartbeats
//     channel (capacity 10);
//   - the log appender (appender.go) drains the logEntries channel
//     (capacity 64) and turns everything queued into one Storage.Save, so
//     concurrent proposals share a write and an fsync (group commit); with
//     a MemoryStorage, whose Save is a cheap in-memory append, the owner
//     saves inline instead and reports to itself, keeping the same order:
//     durable before any message of the ready leaves;
//   - one sender per peer (replication.go) delivers messages on two lanes,
//     so heartbeats and votes never wait behind a large append; the
//     in-memory Network and the TCP transport never block a sender and
//     keep such lanes themselves, so with them the owner (and the
//     appender, for acknowledgements) hands messages to the transport
//     directly, saving a goroutine hand-off per message;
//   - the applier (apply.go) drains applyCh (capacity 128), applies entries
//     in order, hands each proposal its result, restores snapshots the
//     leader sent and captures the state machine's snapshots;
//   - the snapshot writer, sender and receiver (snapshot_node.go) write a
//     captured view to the SnapshotStore, read chunks to send, and write
//     the chunks a follower receives, so no snapshot I/O ever runs on the
//     owner.
//
// The owner waits for the appender when a new term or vote must be durable
// before its messages leave, and otherwise only when the appender's or the
// applier's queue is full (backpressure from the disk or the state
// machine); their reports back are coalesced notifications that never
// wait. The
// repository's docs/design.md has every channel, its size and why, and
// the ordering rules.
//
// # What the core implements
//
// Leader election with randomized timeouts and PreVote; log replication
// with the consistency check and fast backtracking by conflicting term;
// commitment only by counting entries of the current term, with a no-op
// appended by each new leader; CheckQuorum and leader stickiness, so a
// partitioned node rejoining cannot disrupt a healthy cluster; pipelined
// appends with a bounded in-flight window per peer; the leader writing its
// log in parallel with sending it (Raft thesis §10.2.1); ReadIndex reads
// confirmed by one heartbeat round for any number of concurrent readers.
//
// Safety relies on two rules the owner enforces for the core: a changed
// term or vote is durable before any message leaves, and an append is
// acknowledged only after its entries are durable.
//
// A peer's message is trusted only as far as Raft needs: one no correct
// peer could send (an append whose entries skip indexes or whose terms go
// back, a vote whose log is ahead of its term, an acknowledgement of
// entries the leader never sent) is refused, logged and counted in
// Metrics.RecvRejected, and the node goes on; it never panics or stops on
// a peer's word (FuzzCoreSurvivesHostileMessages).
package raft
