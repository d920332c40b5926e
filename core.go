package raft

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"
)

// Role is a node's part in the protocol.
type Role uint8

const (
	// Follower: answers the leader and votes.
	Follower Role = iota
	// PreCandidate: asking whether it could win before disturbing anyone's
	// term (PreVote).
	PreCandidate
	// Candidate: campaigning for votes in a new term.
	Candidate
	// Leader: accepts proposals and replicates the log.
	Leader
)

var roleNames = [...]string{"follower", "pre-candidate", "candidate", "leader"}

// String returns the role's name as /status shows it.
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// coreConfig is what the pure state machine needs from Config.
type coreConfig struct {
	id NodeID
	// electionTicks is the election timeout in election ticks; a follower
	// times out after a random number of ticks in [electionTicks, 2*electionTicks).
	electionTicks int
	preVote       bool
	checkQuorum   bool
	maxMsgBytes   uint64
	maxMsgEntries int
	maxInflight   int
	maxApplyBytes uint64
	rand          *rand.Rand
	logger        *slog.Logger
	initialHS     HardState
	// initialSnapshot is the snapshot the state machine was restored from
	// (zero for none).
	initialSnapshot SnapshotMeta
	// snapshotTrailing is how many entries compaction keeps behind a
	// snapshot; snapshotChunk and snapshotInflight size InstallSnapshot's
	// chunks and window.
	snapshotTrailing uint64
	snapshotChunk    uint64
	snapshotInflight int
	// leaseReads turns lease reads on; electionTimeout (nanoseconds of the
	// driver's clock) and maxClockDrift size the lease (lease.go).
	leaseReads      bool
	electionTimeout int64
	maxClockDrift   float64
}

// core is Raft's state transition function. It owns term, vote, role, the
// log's indexes and the commit index. It does no I/O and reads no clock:
// the node's goroutines feed it events (step, tickElection, tickHeartbeat,
// propose, persisted, appliedTo, readIndex) and collect what it wants done
// with takeReady. Driving it from one goroutine, or from a simulator, gives
// the same result for the same events.
type core struct {
	cfg coreConfig
	id  NodeID

	term   uint64
	vote   NodeID
	role   Role
	leader NodeID

	log *raftLog

	config   Configuration
	configAt uint64 // index of the entry holding config (0: bootstrap state)
	// prevConfig is the configuration config replaced: the one in force
	// again should config's (uncommitted) entry be overwritten.
	prevConfig   Configuration
	prevConfigAt uint64
	// pendingConfig is only used by a planted bug (config-on-commit).
	pendingConfig   Configuration
	pendingConfigAt uint64
	// removed: a committed configuration left this node out (reported).
	removed bool
	// campaignTransfer marks the vote requests of a campaign the leader
	// asked for (MsgTimeoutNow).
	campaignTransfer bool
	// transfer is the leadership transfer in progress (leader only).
	transfer *leaderTransfer
	// now is the driver's monotonic clock reading (SetClock), which lease
	// reads measure with; timeoutNowAt is when this node last sent
	// MsgTimeoutNow (timeoutNowSent: ever).
	now            int64
	timeoutNowAt   int64
	timeoutNowSent bool
	// rounds remember when recent heartbeat rounds left; leaseSeq is the
	// newest round a quorum answered and leaseFrom when it left; a lease
	// needs leaseSeq ≥ leaseMinSeq (a round of this term and configuration).
	rounds                [roundsKept]sentRound
	leaseSeq, leaseMinSeq uint64
	leaseFrom             int64
	// metrics are the core's counters; leaderContact is when a follower
	// last heard from its leader; rejectLog paces the warnings for
	// refused messages.
	metrics       coreMetrics
	lastLeader    NodeID
	leaderContact int64
	rejectLog     rateLimiter
	// ticksSinceStart counts election ticks since the core was built.
	ticksSinceStart int
	// leaderSilence counts election ticks since a leader last spoke to
	// this node (electionTicks: long enough, or never). Unlike
	// electionElapsed and the leader, a new term does not reset it: the
	// promise a follower gave its leader (no vote for anyone else within
	// an election timeout, which lease reads rest on) must outlive a
	// higher term learned from any message but a leader's.
	leaderSilence int
	voter         bool // whether this node votes in config
	peers         []*progress
	self          progress // the leader's own match (its durable log)
	// leaving are servers the configuration in force removed, which a
	// leader keeps replicating to until they learn the removal committed
	// (membership.go); they count in no quorum.
	leaving []*progress

	votes map[NodeID]bool

	electionElapsed   int
	randomizedTimeout int

	// reads are ReadIndex requests waiting for a quorum of heartbeats.
	reads   readQueue
	readSeq uint64

	// snap is the newest snapshot this node holds (taken or installed),
	// prevSnapIndex the one before it; compacted is how far the log was
	// last asked to be compacted; recv is the snapshot being received.
	snap          SnapshotMeta
	prevSnapIndex uint64
	compacted     uint64
	recv          *snapRecv

	// failed is set by a storage error or broken invariant: the core then
	// stops taking part rather than risk acknowledging lost data.
	failed error
	// rejected counts peers' messages refused as impossible (malformed, or
	// contradicting what is committed); Metrics.RecvRejected includes it.
	rejected uint64

	out ready
	// persistedHS is the hard state storage is known to hold (or is about
	// to, once the owner has flushed the last ready).
	persistedHS HardState
	scratch     []uint64
}

// ready is everything the core wants done after a batch of events. The
// owner must make hardState durable before sending messages when term or
// vote changed, persist entries in order, send afterPersist only once those
// entries are durable, and apply committed entries in order.
type ready struct {
	hardState    HardState
	syncHS       bool // term or vote changed: persist before any message leaves
	entries      []Entry
	messages     []Message
	afterPersist []Message
	committed    []Entry
	reads        []readDone
	roleChanged  bool
	leaderChange bool
	peerEvents   []Event
	// proposalsLost marks that pending proposals above commit can no
	// longer be acknowledged by this node (it stopped being leader).
	proposalsLost bool
	// snapshot, when set, was received from the leader and is now the base
	// of the log: storage must start after it (before entries are saved)
	// and the state machine be restored from it (before committed entries
	// are applied).
	snapshot *SnapshotMeta
	// compact, when non-zero, is how far storage may compact the log, once
	// what the ready persists is saved.
	compact uint64
	// snapWrites are chunks of an incoming snapshot to write, in order.
	snapWrites []SnapshotWrite
	// configChanged: the configuration in force changed; the owner
	// updates its senders and the transport's addresses.
	configChanged bool
	// transferAborted: a leadership transfer ended without a new leader.
	transferAborted bool
}

func (rd *ready) empty() bool {
	return !rd.syncHS && len(rd.entries) == 0 && len(rd.messages) == 0 &&
		len(rd.afterPersist) == 0 && len(rd.committed) == 0 && len(rd.reads) == 0 &&
		!rd.roleChanged && !rd.leaderChange && len(rd.peerEvents) == 0 && !rd.proposalsLost &&
		rd.snapshot == nil && rd.compact == 0 && len(rd.snapWrites) == 0 && !rd.configChanged && !rd.transferAborted
}

func newCore(cfg coreConfig, storage Storage) (*core, error) {
	lg, err := newRaftLog(storage, cfg.initialHS.Commit, cfg.initialSnapshot.Index)
	if err != nil {
		return nil, err
	}
	if cfg.snapshotChunk == 0 {
		cfg.snapshotChunk = DefaultSnapshotChunkSize
	}
	cfg.snapshotInflight = max(cfg.snapshotInflight, 1)
	latest, prev, err := latestConfigurations(storage, cfg.initialSnapshot)
	if err != nil {
		return nil, err
	}
	c := &core{
		cfg:           cfg,
		id:            cfg.id,
		term:          cfg.initialHS.Term,
		vote:          cfg.initialHS.Vote,
		log:           lg,
		persistedHS:   cfg.initialHS,
		leaderSilence: cfg.electionTicks, // no promise given yet (a restart has restartVoteHold)
		snap:          cfg.initialSnapshot,
		compacted:     lg.firstIndex() - 1,
	}
	c.applyConfig(prev.conf, prev.index)
	c.prevConfig, c.prevConfigAt = c.config, c.configAt
	c.applyConfig(latest.conf, latest.index)
	c.becomeFollower(c.term, None)
	c.out = ready{}
	return c, nil
}

// Status-facing accessors.

func (c *core) hardState() HardState {
	return HardState{Term: c.term, Vote: c.vote, Commit: c.log.committed}
}

// applyConfig makes conf the configuration in force.
func (c *core) applyConfig(conf Configuration, at uint64) {
	c.config, c.configAt = conf, at
	c.voter = false
	old := c.peers
	c.peers = c.peers[:0:0]
	for _, s := range conf.Servers {
		if s.ID == c.id {
			c.voter = s.Suffrage == Voter
			continue
		}
		pr := c.findIn(old, s.ID)
		if pr == nil {
			pr = c.findIn(c.leaving, s.ID) // back before it left
		}
		if pr == nil {
			pr = &progress{id: s.ID, next: c.log.lastIndex() + 1, inflight: newInflights(c.cfg.maxInflight),
				rpcLatency: &histogram{}, lastContact: c.now}
		}
		pr.learner = s.Suffrage == Learner
		c.peers = append(c.peers, pr)
	}
	slices.SortFunc(c.peers, func(a, b *progress) int { return cmpID(a.id, b.id) })
	c.trackLeaving(old)
}

func cmpID(a, b NodeID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (c *core) findIn(list []*progress, id NodeID) *progress {
	for _, p := range list {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (c *core) peer(id NodeID) *progress { return c.findIn(c.peers, id) }

// quorum is the number of voters that make a majority.
func (c *core) quorum() int {
	n := 0
	if c.voter {
		n++
	}
	for _, p := range c.peers {
		if !p.learner {
			n++
		}
	}
	return n/2 + 1
}

func (c *core) resetTerm(term uint64) {
	if c.term != term {
		c.term = term
		c.vote = None
	}
	c.leader = None
	c.electionElapsed = 0
	c.randomizedTimeout = c.cfg.electionTicks + c.cfg.rand.IntN(c.cfg.electionTicks)
	c.votes = nil
	c.reads.failAll(c)
	c.resetLease()
}

func (c *core) setRole(r Role) {
	if c.role == Leader && r != Leader {
		c.out.proposalsLost = true
		c.transfer = nil // it ends with this leader's term
		c.leaving = nil
	}
	if c.role != r {
		c.out.roleChanged = true
	}
	c.role = r
}

func (c *core) setLeader(id NodeID) {
	if c.leader != id {
		c.out.leaderChange = true
	}
	if id != None && id != c.lastLeader {
		c.metrics.leaderChanges++ // a new leader, not a lost one
		c.lastLeader = id
	}
	c.leader = id
}

func (c *core) becomeFollower(term uint64, leader NodeID) {
	c.resetTerm(term)
	c.setRole(Follower)
	c.setLeader(leader)
}

// send queues m for the network.
func (c *core) send(m Message) {
	m.From = c.id
	if m.Term == 0 {
		m.Term = c.term
	}
	c.out.messages = append(c.out.messages, m)
}

// sendAfterPersist queues m to leave only once the entries queued so far
// are durable (an append acknowledgement).
func (c *core) sendAfterPersist(m Message) {
	m.From = c.id
	m.Term = c.term
	c.out.afterPersist = append(c.out.afterPersist, m)
}

// fail stops the core after an unrecoverable storage or invariant error.
func (c *core) fail(err error) {
	if c.failed != nil {
		return
	}
	c.failed = err
	c.cfg.logger.Error("raft: node stopped taking part", "err", err)
	if c.role != Follower || c.leader != None {
		c.becomeFollower(c.term, None)
	}
}

// step handles one message from the network.
func (c *core) step(m Message) {
	if c.failed != nil || m.From == None || m.From == c.id {
		return
	}
	if err := m.check(); err != nil {
		c.reject(m, err)
		return
	}
	switch {
	case m.Term > c.term:
		if (m.Type == MsgVote || m.Type == MsgPreVote) && c.holdsVote(m) {
			// Leader stickiness: we heard from a live leader within the
			// election timeout, so this candidate cannot win and must not
			// bump our term (a rejoining partitioned node stays harmless).
			return
		}
		switch {
		case m.Type == MsgPreVote:
			// A pre-vote never changes our term.
		case m.Type == MsgPreVoteResp && !m.Reject:
			// Granted for the term we would campaign in; counted below.
		case m.Type == MsgApp || m.Type == MsgHeartbeat || m.Type == MsgSnap:
			c.becomeFollower(m.Term, m.From)
		case m.Type == MsgVote && c.role == Follower:
			// A follower's timer restarts only when it grants the vote
			// (Raft §5.2): one refusing a candidate whose log is behind
			// must still time out, or a stale candidate campaigning in
			// ever higher terms keeps the one that could win from trying.
			elapsed, timeout := c.electionElapsed, c.randomizedTimeout
			c.becomeFollower(m.Term, None)
			c.electionElapsed, c.randomizedTimeout = elapsed, timeout
		default:
			c.becomeFollower(m.Term, None)
		}
	case m.Term < c.term:
		if bugStaleVotes && m.Type == MsgVoteResp && c.role == Candidate {
			bugHit("stale-vote-count")
			c.stepCandidate(m) // planted bug: a vote from an old term counts
			return
		}
		c.stepStale(m)
		return
	}

	switch m.Type {
	case MsgVote, MsgPreVote:
		c.handleVoteRequest(m)
		return
	}
	switch c.role {
	case Leader:
		c.stepLeader(m)
	case Candidate, PreCandidate:
		c.stepCandidate(m)
	default:
		c.stepFollower(m)
	}
}

// heardFromLeader restarts a follower's election timer on a message from
// the leader, and notes when.
func (c *core) heardFromLeader(from NodeID) {
	c.electionElapsed = 0
	c.leaderSilence = 0
	c.setLeader(from)
	c.leaderContact = c.now
}

// rateLimiter lets a warning through at most once per interval and counts
// what it held back, so a peer flooding bad messages does not flood the
// log too (the counts are in Metrics).
type rateLimiter struct {
	last       int64
	suppressed uint64
	started    bool
}

// rateLimitInterval is how often a repeated warning is logged.
const rateLimitInterval = int64(10 * time.Second)

// allow reports whether to log now, and how many were held back since.
func (r *rateLimiter) allow(now int64) (uint64, bool) {
	if r.started && now-r.last < rateLimitInterval {
		r.suppressed++
		return 0, false
	}
	n := r.suppressed
	r.started, r.last, r.suppressed = true, now, 0
	return n, true
}

// reject drops a peer's message that no correct peer could send. It costs
// the node nothing: the sender is faulty, and a correct leader's next
// append or heartbeat carries what this one should have.
func (c *core) reject(m Message, err error) {
	c.rejected++
	if m.Type.Valid() {
		c.metrics.refused[m.Type]++
	}
	if suppressed, ok := c.rejectLog.allow(c.now); ok {
		c.cfg.logger.Warn("raft: refused a message from a peer", "id", c.id, "from", m.From, "type", m.Type, "err", err,
			"refused since the last warning", suppressed)
	}
}

// stepStale answers a message from an older term where that helps the sender
// catch up, and otherwise drops it.
func (c *core) stepStale(m Message) {
	switch m.Type {
	case MsgApp, MsgHeartbeat:
		// A deposed leader learns our term and steps down. (Without
		// CheckQuorum and PreVote a node could instead be stuck behind a
		// leader that keeps its old term, so always answer.)
		c.send(Message{Type: MsgAppResp, To: m.From})
	case MsgPreVote:
		c.send(Message{Type: MsgPreVoteResp, To: m.From, Reject: true})
	}
}

func (c *core) stepFollower(m Message) {
	switch m.Type {
	case MsgApp:
		c.heardFromLeader(m.From)
		c.handleAppend(m)
	case MsgHeartbeat:
		c.heardFromLeader(m.From)
		c.handleHeartbeat(m)
		c.resendForwardedRead()
	case MsgSnap:
		// Each chunk is a sign of the leader's life, like an append.
		c.heardFromLeader(m.From)
		c.handleSnapshot(m)
	case MsgTimeoutNow:
		c.handleTimeoutNow(m)
	case MsgReadIndexResp:
		c.handleReadIndexResp(m)
	}
}

// hasReady reports whether takeReady would return anything. It opens a
// pending read round, as takeReady would.
func (c *core) hasReady() bool {
	c.startReads()
	hs := c.hardState()
	return !c.out.empty() || c.log.inProgress < c.log.lastIndex() ||
		c.log.applying < min(c.log.committed, c.log.stableIndex()) || hs != c.persistedHS
}

// takeReady returns what the core wants done since the last call.
func (c *core) takeReady() ready {
	c.startReads()
	if ents := c.log.toPersist(); len(ents) > 0 {
		c.out.entries = ents
	}
	if c.log.applying < c.log.committed || bugApplyPastCommit {
		ents, err := c.log.nextToApply(c.cfg.maxApplyBytes)
		if err != nil {
			c.fail(fmt.Errorf("raft: reading committed entries: %w", err))
		}
		c.out.committed = ents
	}
	hs := c.hardState()
	if hs.Term != c.persistedHS.Term || hs.Vote != c.persistedHS.Vote {
		if bugVoteNotPersisted {
			bugHit("vote-not-persisted")
		} else {
			c.out.syncHS = true
		}
	}
	if hs != c.persistedHS {
		c.out.hardState = hs
		c.persistedHS = hs
	}
	rd := c.out
	c.out = ready{}
	return rd
}

// recycle returns the message slices of a ready the owner has finished
// with (every message copied onward), so later rounds append into the same
// arrays instead of allocating: one fewer allocation per round on the hot
// path. afterPersist may be nil when its messages are still queued.
func (c *core) recycle(messages, afterPersist []Message) {
	if c.out.messages == nil && cap(messages) > 0 && cap(messages) <= maxRecycledMessages {
		clear(messages)
		c.out.messages = messages[:0]
	}
	if c.out.afterPersist == nil && cap(afterPersist) > 0 && cap(afterPersist) <= maxRecycledMessages {
		clear(afterPersist)
		c.out.afterPersist = afterPersist[:0]
	}
}

// maxRecycledMessages keeps a burst's large arrays from being held forever.
const maxRecycledMessages = 1024

// persisted reports that storage holds the log up to (index, term).
func (c *core) persisted(index, term uint64) {
	if !c.log.stableTo(index, term) {
		return
	}
	if c.role == Leader {
		c.self.acked(index)
		c.maybeCommit()
	}
}

// appliedTo reports that the applier applied every entry up to index.
func (c *core) appliedTo(index uint64) {
	if index > c.log.applied {
		c.log.applied = index
	}
}
