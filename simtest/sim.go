package simtest

import (
	"container/heap"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"time"

	"github.com/raftline/raft"
)

// Timing of the simulated cluster, as in the scenario suite: 100 ms ticks,
// a 1 s election timeout, heartbeats every tick.
const (
	tickEvery     = 100 * time.Millisecond
	electionTicks = 10
	clientTimeout = 3 * time.Second
	// livenessBound is how long after the faults stop a leader and client
	// progress must appear.
	livenessBound = 10 * time.Second
)

// Options configures one simulated run.
type Options struct {
	Seed  uint64
	Nodes int // default 3
	// Duration is the run's virtual length (default 30 s); faults stop at
	// HealAt (default Duration − 12 s) and liveness is checked after.
	Duration time.Duration
	HealAt   time.Duration
	// Faults is the fault schedule; nil draws one from Seed.
	Faults []Fault
	// NoFaults runs without any fault (Faults and the seed's are ignored).
	NoFaults bool
	Clients  int // default 3
	Keys     int // default 3
	// TornWrites lets a crash persist part of the write in flight.
	TornWrites bool
	// Trace, if set, receives one line per event.
	Trace io.Writer
	// MaxSteps stops a runaway run (default 5 million).
	MaxSteps int
	// Tuning, if set, replaces the per-run configuration the seed draws.
	Tuning *Tuning
	// Spares are slots beyond Nodes that start empty, waiting to be added
	// by membership changes; 0 lets the seed draw 0 to 2, negative means
	// none.
	Spares int
	// NoMembership turns the operator's membership changes off.
	NoMembership bool
}

// Tuning is the configuration of a run's nodes. Each run draws one from its
// seed because every supported configuration must be safe: one-entry
// appends expose bugs that large batches hide, and without PreVote split
// votes (and stale votes) are common.
type Tuning struct {
	Batch, Window            int // entries per append, appends in flight
	NoPreVote, NoCheckQuorum bool
	// SnapEvery: a node snapshots every SnapEvery applied entries and
	// keeps SnapTrailing entries behind; snapshots travel in SnapChunk-byte
	// chunks, SnapInflight at a time.
	SnapEvery    int
	SnapTrailing uint64
	SnapChunk    uint64
	SnapInflight int
	// Drift bounds how much faster one node's clock runs than another's,
	// and Lease turns lease reads on (with CheckQuorum).
	Drift float64
	Lease bool
}

func (o *Options) setDefaults() {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Duration == 0 {
		o.Duration = 30 * time.Second
	}
	if o.HealAt == 0 {
		o.HealAt = max(o.Duration-livenessBound-2*time.Second, o.Duration/2)
	}
	if o.Clients == 0 {
		o.Clients = 3
	}
	if o.Keys == 0 {
		o.Keys = 3
	}
	if o.MaxSteps == 0 {
		o.MaxSteps = 5_000_000
	}
}

// Result is what a run did and found.
type Result struct {
	Seed    uint64
	Nodes   int
	Faults  []Fault
	Tuning  Tuning
	Steps   int
	Virtual time.Duration
	// Hash summarizes the whole event trace: equal seeds give equal hashes.
	Hash uint64
	// History is every client operation, for the linearizability check.
	History []Op
	// Acked counts writes acknowledged to clients.
	Acked int
	// Err is the first invariant violation, or nil.
	Err error
	// ErrAt is the virtual time of Err.
	ErrAt time.Duration
	// Snaps counts what the run did with snapshots, Members with
	// membership changes; Slots is Nodes plus the spares.
	Snaps   SnapStats
	Members MemberStats
	Slots   int
}

// SnapStats counts snapshot activity in a run, to show the simulator
// exercises it.
type SnapStats struct {
	Taken, Installed, Compactions, Restored, Fallbacks, Torn, ChunksSent int
}

// Add sums two runs' counts.
func (a SnapStats) Add(b SnapStats) SnapStats {
	return SnapStats{a.Taken + b.Taken, a.Installed + b.Installed, a.Compactions + b.Compactions,
		a.Restored + b.Restored, a.Fallbacks + b.Fallbacks, a.Torn + b.Torn, a.ChunksSent + b.ChunksSent}
}

// sim is one run's whole world. Everything happens on one goroutine.
type sim struct {
	opts    Options
	rng     *rand.Rand
	now     int64
	seq     uint64
	queue   eventQueue
	nodes   []*simNode
	clients []*simClient
	net     netState
	// isolatedUntil and lagUntil: per node, until when a moment-reactive
	// fault cuts it off or holds back its inbound messages.
	isolatedUntil, lagUntil []int64
	faults                  []Fault
	active                  []bool
	check                   checker
	history                 []Op
	steps                   int
	hash                    uint64
	err                     error
	errAt                   int64
	healed                  bool
	tuning                  Tuning
	snapStats               SnapStats
	memberStats             MemberStats
	// slots is how many nodes the run has: Nodes initial voters, then
	// spares.
	slots int
	// clocks are the nodes' clocks; pausedUntil when each paused process
	// resumes (clocks.go).
	clocks      []nodeClock
	pausedUntil []int64
	resumeAt    map[resumeKey]int64
}

type eventKind uint8

const (
	evDeliver eventKind = iota
	evTickElection
	evTickHeartbeat
	evDiskDone
	evFaultStart
	evFaultEnd
	evHeal
	evLiveness
	evClientIssue
	evClientRequest
	evClientReply
	evClientTimeout
	evChurn
	evRestart
	evMembership
)

var eventNames = [...]string{"deliver", "tick-election", "tick-heartbeat", "disk-done", "fault-start",
	"fault-end", "heal", "liveness", "client-issue", "client-request", "client-reply", "client-timeout", "churn", "restart", "membership"}

type event struct {
	at      int64
	seq     uint64
	kind    eventKind
	node    int // index into nodes
	inc     int // node incarnation the event belongs to
	msg     raft.Message
	fault   int
	client  int
	attempt int
	reply   reply
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// schedule queues e to happen after d.
func (s *sim) schedule(d time.Duration, e event) {
	s.seq++
	e.at, e.seq = s.now+int64(d), s.seq
	heap.Push(&s.queue, e)
}

// between draws a duration uniformly from [lo, hi].
func (s *sim) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

// Run simulates one cluster from opts and returns what happened.
func Run(opts Options) Result {
	opts.setDefaults()
	s := &sim{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0xa0761d6478bd642f))}
	s.check.sim = s
	s.tuning = Tuning{
		Batch:     []int{1, 1, 4, 64}[s.rng.IntN(4)],
		Window:    []int{1, 8, 64}[s.rng.IntN(3)],
		NoPreVote: s.rng.IntN(3) == 0, NoCheckQuorum: s.rng.IntN(3) == 0,
		SnapEvery:    []int{3, 5, 10, 25, 60}[s.rng.IntN(5)],
		SnapTrailing: []uint64{0, 0, 2, 5, 20}[s.rng.IntN(5)],
		SnapChunk:    []uint64{8, 16, 64, 1 << 20}[s.rng.IntN(4)],
		SnapInflight: []int{1, 2, 4}[s.rng.IntN(3)],
	}
	s.tuneLeases()
	if opts.Tuning != nil {
		s.tuning = *opts.Tuning
	}
	spares := s.rng.IntN(3)
	if opts.Spares != 0 {
		spares = max(opts.Spares, 0)
	}
	s.slots = opts.Nodes + spares
	switch {
	case opts.NoFaults:
	case opts.Faults != nil:
		s.faults = opts.Faults
	default:
		s.faults = GenerateFaults(s.rng, s.slots, opts.HealAt)
		s.leaseFaults(opts.HealAt)
	}
	s.start()
	s.loop()
	s.finish()
	return Result{
		Seed: opts.Seed, Nodes: opts.Nodes, Faults: s.faults, Tuning: s.tuning, Steps: s.steps,
		Virtual: time.Duration(s.now), Hash: s.hash, History: s.history,
		Acked: len(s.check.acked), Err: s.err, ErrAt: time.Duration(s.errAt), Snaps: s.snapStats,
		Members: s.memberStats, Slots: s.slots,
	}
}

func (s *sim) start() {
	s.drawClocks()
	s.net = newNetState(s.slots)
	s.isolatedUntil = make([]int64, s.slots)
	s.lagUntil = make([]int64, s.slots)
	s.active = make([]bool, len(s.faults))
	s.bootstrap()
	for i, f := range s.faults {
		s.schedule(f.At, event{kind: evFaultStart, fault: i})
		s.schedule(f.At+f.For, event{kind: evFaultEnd, fault: i})
	}
	s.schedule(s.opts.HealAt, event{kind: evHeal})
	s.scheduleMembership()
	s.schedule(s.opts.HealAt+livenessBound, event{kind: evLiveness})
	for i := range s.opts.Clients {
		s.clients = append(s.clients, &simClient{id: i, target: s.rng.IntN(s.slots)})
		s.schedule(s.between(0, 50*time.Millisecond), event{kind: evClientIssue, client: i})
	}
}

func (s *sim) loop() {
	end := int64(s.opts.Duration)
	for s.queue.Len() > 0 && s.err == nil {
		e := heap.Pop(&s.queue).(event)
		if e.at > end {
			break
		}
		s.now = e.at
		s.steps++
		if s.steps > s.opts.MaxSteps {
			s.fail(fmt.Errorf("run exceeded %d steps", s.opts.MaxSteps))
			break
		}
		s.record(&e)
		s.dispatch(&e)
		if s.err == nil {
			s.check.afterStep()
		}
	}
	s.now = max(s.now, min(end, s.now))
}

func (s *sim) dispatch(e *event) {
	switch e.kind {
	case evDeliver, evDiskDone, evClientRequest:
		if s.deferIfPaused(e) {
			return
		}
		s.stamp(e.node)
	case evTickElection, evTickHeartbeat:
		s.stamp(e.node)
	}
	switch e.kind {
	case evDeliver:
		s.deliver(e)
		s.afterNodeEvent(e.node)
	case evTickElection, evTickHeartbeat:
		s.tick(e)
		s.afterNodeEvent(e.node)
	case evDiskDone:
		s.diskDone(e)
		s.afterNodeEvent(e.node)
	case evFaultStart:
		s.startFault(e.fault)
	case evFaultEnd:
		s.endFault(e.fault)
	case evHeal:
		s.heal()
	case evLiveness:
		s.check.liveness()
	case evClientIssue:
		s.clientIssue(e)
	case evClientRequest:
		s.clientRequest(e)
	case evClientReply:
		s.clientReply(e)
	case evClientTimeout:
		s.clientTimeout(e)
	case evChurn:
		s.churn(e)
	case evRestart:
		if !s.crashActive(e.node + 1) {
			s.restart(e.node)
		}
	case evMembership:
		s.membership()
	}
}

// fail records the first invariant violation; the run stops there.
func (s *sim) fail(err error) {
	if s.err == nil {
		s.err, s.errAt = err, s.now
		s.tracef("VIOLATION %v", err)
	}
}

// record folds the event into the trace hash and, if tracing, prints it.
func (s *sim) record(e *event) {
	h := fnv.New64a()
	var buf [64]byte
	b := buf[:0]
	b = appendU64(b, uint64(e.at), uint64(e.kind), uint64(e.node), uint64(e.client), uint64(e.attempt))
	if e.kind == evDeliver {
		m := &e.msg
		b = appendU64(b, uint64(m.Type), uint64(m.From), uint64(m.To), m.Term, m.Index, m.LogTerm, m.Commit, uint64(len(m.Entries)))
	}
	h.Write(b)
	s.hash = s.hash*31 + h.Sum64()
	if s.opts.Trace != nil {
		line := fmt.Sprintf("%12.6f %-14s", time.Duration(e.at).Seconds(), eventNames[e.kind])
		switch e.kind {
		case evDeliver:
			line += " " + e.msg.String()
		case evTickElection, evTickHeartbeat, evDiskDone:
			line += fmt.Sprintf(" node %d", e.node+1)
		case evFaultStart, evFaultEnd:
			line += " " + s.faults[e.fault].String()
		case evClientIssue, evClientRequest, evClientReply, evClientTimeout:
			line += fmt.Sprintf(" client %d attempt %d node %d", e.client, e.attempt, e.node+1)
		}
		fmt.Fprintln(s.opts.Trace, line)
	}
}

func (s *sim) tracef(format string, args ...any) {
	if s.opts.Trace != nil {
		fmt.Fprintf(s.opts.Trace, "%12.6f ", time.Duration(s.now).Seconds())
		fmt.Fprintf(s.opts.Trace, format+"\n", args...)
	}
}

func appendU64(b []byte, vs ...uint64) []byte {
	for _, v := range vs {
		b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
	}
	return b
}

// finish runs the end-of-run checks.
func (s *sim) finish() {
	if s.err != nil {
		return
	}
	s.check.final()
	for _, c := range s.clients {
		if c.busy && c.op.Input.Kind != OpGet {
			c.op.Unknown = true
			s.history = append(s.history, c.op)
		}
	}
}
