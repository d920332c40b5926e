package simtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/raftline/raft"
)

// FaultKind is one kind of injected failure.
type FaultKind uint8

// The faults the simulator injects.
const (
	// FaultPartition splits the nodes into two sides (Sides[i] for node i+1).
	FaultPartition FaultKind = iota
	// FaultOneWay drops everything from node From to node To.
	FaultOneWay
	// FaultCrash crashes node From; it restarts from its disk when the
	// fault ends.
	FaultCrash
	// FaultDrop loses each message with probability Rate.
	FaultDrop
	// FaultDuplicate delivers each message twice with probability Rate.
	FaultDuplicate
	// FaultSlow holds back each reply (vote and append answers), with
	// probability Rate, by 0.2 to 3 s: long reordering, as in the teaching
	// suite. Answers outliving the request's term are how stale votes and
	// stale acknowledgements arrive.
	FaultSlow
	// FaultChurn keeps crashing nodes (the leader half the time) every
	// 20 to 300 ms and restarting them 5 to 200 ms later, as the Figure 8
	// tests do: data is lost when a leader or voter vanishes just after
	// appending or voting.
	FaultChurn
	// FaultCrashPoints crashes, with probability Rate, the node that just
	// handled an event, restarting it 1 to 50 ms later: every window
	// between acting and persisting gets hit in proportion to activity.
	FaultCrashPoints
	// FaultCrashAfterPromise crashes a node, with probability Rate, right
	// after it makes a promise others rely on (grants a vote, or as leader
	// advances its commit index), restarting it 0.1 to 5 ms later: the
	// moment a durability bug shows.
	FaultCrashAfterPromise
	// FaultIsolateAtMoment cuts a leader off from everyone, with
	// probability Rate, right after it appends or commits (see moments.go),
	// for 0.2 to 3 s; messages in flight on its links are lost. A leader
	// cut off just after appending leaves entries only it holds; one cut off
	// just after committing leaves its next entries on a minority: Figure
	// 8's setup.
	FaultIsolateAtMoment
	// FaultLagAtMoment holds back every message to a node, with
	// probability Rate, right after it campaigns, for 0.5 to 3 s (a stalled
	// receive queue): a candidate whose grants arrive after it has moved on
	// to a later term sees stale votes.
	FaultLagAtMoment
	// FaultPauseAtMoment stops a leader's process, with probability Rate,
	// right after it sends a heartbeat round, for 1 to 3 s: the answers
	// arrive while it sleeps, and must not renew its lease when it wakes.
	// Rate stays low, as a leader sends a round every tick.
	FaultPauseAtMoment
	// FaultPause stops node From's process (whoever leads when From is
	// 0) for the fault's duration while its clock runs on, as a long GC
	// pause or a stalled VM does: a leader waking up must know its lease
	// ran out.
	FaultPause

	faultKinds
)

var faultNames = [...]string{"partition", "one-way", "crash", "drop", "duplicate", "slow", "churn", "crash-points", "crash-after-promise",
	"isolate-at-moment", "lag-at-moment", "pause-at-moment", "pause"}

// Fault is one failure, active during [At, At+For).
type Fault struct {
	Kind     FaultKind
	At, For  time.Duration
	Sides    []int // FaultPartition; nil cuts off whoever leads at At
	From, To int   // node numbers (1-based) for FaultOneWay and FaultCrash; From 0 in a crash: whoever leads at At
	Rate     float64
}

// String formats the fault compactly, for schedules and traces.
func (f Fault) String() string {
	var what string
	switch f.Kind {
	case FaultPartition:
		what = fmt.Sprintf("partition%v", f.Sides)
		if f.Sides == nil {
			what = "isolate-leader"
		}
	case FaultOneWay:
		what = fmt.Sprintf("one-way %d->%d", f.From, f.To)
	case FaultCrash:
		what = fmt.Sprintf("crash %d", f.From)
		if f.From == 0 {
			what = "crash-leader"
		}
	case FaultPause:
		what = fmt.Sprintf("pause %d", f.From)
		if f.From == 0 {
			what = "pause-leader"
		}
	case FaultChurn:
		what = "churn"
	case FaultCrashPoints:
		what = fmt.Sprintf("crash-points %.3f", f.Rate)
	case FaultCrashAfterPromise:
		what = fmt.Sprintf("crash-after-promise %.2f", f.Rate)
	default:
		what = fmt.Sprintf("%s %.2f", faultNames[f.Kind], f.Rate)
	}
	return fmt.Sprintf("%s@%v+%v", what, f.At.Round(time.Millisecond), f.For.Round(time.Millisecond))
}

// FormatFaults prints a schedule on one line.
func FormatFaults(fs []Fault) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// GenerateFaults draws a random fault schedule ending by healAt.
func GenerateFaults(rng *rand.Rand, nodes int, healAt time.Duration) []Fault {
	n := 2 + rng.IntN(10)
	faults := make([]Fault, 0, n)
	for range n {
		f := Fault{Kind: FaultKind(rng.IntN(int(faultKinds)))}
		f.At = time.Duration(rng.Int64N(int64(healAt)))
		f.For = time.Duration(10*time.Millisecond) + time.Duration(rng.Int64N(int64(6*time.Second)))
		switch f.Kind {
		case FaultPartition:
			if rng.IntN(2) == 0 {
				f.Sides = make([]int, nodes)
				for i := range f.Sides {
					f.Sides[i] = rng.IntN(2)
				}
				if !slices.Contains(f.Sides, 1-f.Sides[0]) {
					f.Sides[rng.IntN(nodes)] ^= 1 // both sides non-empty
				}
			}
		case FaultOneWay:
			f.From, f.To = 1+rng.IntN(nodes), 1
			if nodes > 1 {
				f.To = 1 + (f.From+rng.IntN(nodes-1))%nodes // never From itself
			}
		case FaultCrash:
			// Half the crashes hit the leader, often only briefly: the
			// classic ways to lose data need a leader to vanish just after
			// appending or voting.
			if rng.IntN(2) == 0 {
				f.From = 1 + rng.IntN(nodes)
			}
			if rng.IntN(2) == 0 {
				f.For = time.Duration(rng.Int64N(int64(300 * time.Millisecond)))
			}
		case FaultCrashPoints:
			f.Rate = 0.002 + 0.02*rng.Float64()
		case FaultPause:
			if rng.IntN(2) == 0 {
				f.From = 1 + rng.IntN(nodes)
			}
			f.For = 200*time.Millisecond + time.Duration(rng.Int64N(int64(2800*time.Millisecond)))
		case FaultPauseAtMoment:
			f.At = time.Duration(rng.Int64N(int64(healAt / 3)))
			f.For = healAt/2 + time.Duration(rng.Int64N(int64(healAt/2)))
			f.Rate = 0.01 + 0.04*rng.Float64()
		case FaultIsolateAtMoment, FaultLagAtMoment:
			// They strike only at moments, so they run for most of the
			// faulty period at high rates: a bug may need several strikes
			// in a row (Figure 8 needs three).
			f.At = time.Duration(rng.Int64N(int64(healAt / 3)))
			f.For = healAt/2 + time.Duration(rng.Int64N(int64(healAt/2)))
			f.Rate = 0.3 + 0.6*rng.Float64()
		default:
			f.Rate = 0.05 + 0.45*rng.Float64()
		}
		faults = append(faults, clampFault(f, healAt))
	}
	slices.SortStableFunc(faults, func(a, b Fault) int { return int(a.At - b.At) })
	return faults
}

// clampFault keeps a fault inside [0, healAt].
func clampFault(f Fault, healAt time.Duration) Fault {
	f.At = min(max(f.At, 0), healAt)
	f.For = min(max(f.For, 0), healAt-f.At)
	return f
}

// netState is the network as the active faults shape it.
type netState struct {
	nodes    int
	cut      []bool // cut[from*nodes+to]
	dropRate float64
	dupRate  float64
	slowRate float64
	// crashRate is the chance a node crashes right after handling an event.
	crashRate float64
	// promiseCrashRate is the chance a node crashes right after a promise.
	promiseCrashRate float64
	// isolateRate and lagRate: the chances a critical moment isolates the
	// node or lags its inbound messages; pauseRate that a leader's process
	// stops right after a heartbeat round.
	isolateRate, lagRate, pauseRate float64
}

func newNetState(nodes int) netState {
	return netState{nodes: nodes, cut: make([]bool, nodes*nodes)}
}

// connected reports whether a message from node index from reaches to now:
// no partition or one-way cut between them and neither is isolated.
func (s *sim) connected(from, to int) bool {
	return !s.net.cut[from*s.net.nodes+to] && s.now >= s.isolatedUntil[from] && s.now >= s.isolatedUntil[to]
}

// recompute rebuilds the network from the active faults.
func (s *sim) recompute() {
	net := newNetState(s.slots)
	for i, f := range s.faults {
		if !s.active[i] {
			continue
		}
		switch f.Kind {
		case FaultPartition:
			for a := range net.nodes {
				for b := range net.nodes {
					if a < len(f.Sides) && b < len(f.Sides) && f.Sides[a] != f.Sides[b] {
						net.cut[a*net.nodes+b] = true
					}
				}
			}
		case FaultOneWay:
			if validNode(f.From, net.nodes) && validNode(f.To, net.nodes) {
				net.cut[(f.From-1)*net.nodes+f.To-1] = true
			}
		case FaultDrop:
			net.dropRate = max(net.dropRate, f.Rate)
		case FaultDuplicate:
			net.dupRate = max(net.dupRate, f.Rate)
		case FaultSlow:
			net.slowRate = max(net.slowRate, f.Rate)
		case FaultCrashPoints:
			net.crashRate = max(net.crashRate, f.Rate)
		case FaultCrashAfterPromise:
			net.promiseCrashRate = max(net.promiseCrashRate, f.Rate)
		case FaultIsolateAtMoment:
			net.isolateRate = max(net.isolateRate, f.Rate)
		case FaultLagAtMoment:
			net.lagRate = max(net.lagRate, f.Rate)
		case FaultPauseAtMoment:
			net.pauseRate = max(net.pauseRate, f.Rate)
		}
	}
	s.net = net
}

func validNode(n, nodes int) bool { return n >= 1 && n <= nodes }

func isReply(t raft.MessageType) bool {
	switch t {
	case raft.MsgVoteResp, raft.MsgPreVoteResp, raft.MsgAppResp, raft.MsgHeartbeatResp, raft.MsgSnapResp:
		return true
	}
	return false
}

// resolveLeaderTarget turns "whoever leads" into a node, when the fault
// starts: the running node with the highest term that believes it leads
// (node 1 if none does).
func (s *sim) resolveLeaderTarget(i int) {
	f := &s.faults[i]
	targets := ((f.Kind == FaultCrash || f.Kind == FaultPause) && f.From == 0) || (f.Kind == FaultPartition && f.Sides == nil)
	if !targets {
		return
	}
	leader, term := 1, uint64(0)
	for j, n := range s.nodes {
		if n.up {
			if st := n.core.Status(); st.Role == raft.Leader && st.Term >= term {
				leader, term = j+1, st.Term
			}
		}
	}
	if f.Kind == FaultCrash || f.Kind == FaultPause {
		f.From = leader
		return
	}
	f.Sides = make([]int, s.slots)
	f.Sides[leader-1] = 1
}

func (s *sim) startFault(i int) {
	if s.healed {
		return
	}
	s.resolveLeaderTarget(i)
	f := s.faults[i]
	s.active[i] = true
	if f.Kind == FaultCrash && validNode(f.From, s.slots) {
		s.crash(f.From - 1)
	}
	if f.Kind == FaultPause && validNode(f.From, s.slots) {
		s.pause(f.From-1, f.For)
		s.stickyReaders(f.From - 1)
	}
	if f.Kind == FaultPartition && s.faults[i].Sides != nil && len(s.faults[i].Sides) == s.slots {
		// Readers stick to whoever led, now maybe cut off.
		if leader := s.currentLeader(); leader >= 0 {
			s.stickyReaders(leader)
		}
	}
	if f.Kind == FaultChurn {
		s.schedule(s.between(20*time.Millisecond, 300*time.Millisecond), event{kind: evChurn, fault: i})
	}
	s.recompute()
}

// churn crashes a node while its churn fault lasts and schedules both the
// restart and the next crash.
func (s *sim) churn(e *event) {
	if !s.active[e.fault] {
		return
	}
	victim := s.rng.IntN(len(s.nodes))
	if s.rng.IntN(2) == 0 {
		f := Fault{Kind: FaultCrash}
		s.faults = append(s.faults, f) // resolve "the leader" the usual way
		s.active = append(s.active, false)
		s.resolveLeaderTarget(len(s.faults) - 1)
		victim = s.faults[len(s.faults)-1].From - 1
		s.faults, s.active = s.faults[:len(s.faults)-1], s.active[:len(s.active)-1]
	}
	if s.nodes[victim].up && !s.crashActive(victim+1) {
		s.crash(victim)
		s.schedule(s.between(time.Millisecond, 100*time.Millisecond), event{kind: evRestart, node: victim})
	}
	s.schedule(s.between(20*time.Millisecond, 300*time.Millisecond), event{kind: evChurn, fault: e.fault})
}

func (s *sim) endFault(i int) {
	if !s.active[i] {
		return
	}
	s.active[i] = false
	f := s.faults[i]
	s.recompute()
	if f.Kind == FaultCrash && validNode(f.From, s.slots) && !s.crashActive(f.From) {
		s.restart(f.From - 1)
	}
}

func (s *sim) crashActive(node int) bool {
	for i, f := range s.faults {
		if s.active[i] && f.Kind == FaultCrash && f.From == node {
			return true
		}
	}
	return false
}

// afterNodeEvent runs the faults that strike a node right after it handled
// an event: moment-reactive ones first, then crash points.
func (s *sim) afterNodeEvent(i int) {
	if !s.atMoment(i) {
		s.maybeCrashPoint(i)
	}
}

// maybeCrashPoint crashes node i after it handled an event, if crash points
// are active and the dice say so.
func (s *sim) maybeCrashPoint(i int) {
	if s.net.crashRate == 0 || !s.nodes[i].up || s.rng.Float64() >= s.net.crashRate || s.crashActive(i+1) {
		return
	}
	s.crash(i)
	s.schedule(s.between(time.Millisecond, 50*time.Millisecond), event{kind: evRestart, node: i})
}

// heal ends every fault and restarts every node: from here on the cluster
// must recover on its own.
func (s *sim) heal() {
	s.healed = true
	clear(s.active)
	clear(s.isolatedUntil)
	clear(s.lagUntil)
	s.recompute()
	s.decommissionRemoved()
	for i := range s.nodes {
		s.restart(i)
	}
}

// send puts a message on the simulated network.
func (s *sim) send(m raft.Message) {
	from, to := int(m.From)-1, int(m.To)-1
	if !validNode(int(m.To), s.slots) || !s.connected(from, to) {
		return
	}
	if s.net.dropRate > 0 && s.rng.Float64() < s.net.dropRate {
		return
	}
	copies := 1
	if s.net.dupRate > 0 && s.rng.Float64() < s.net.dupRate {
		copies = 2
	}
	for range copies {
		delay := s.between(time.Millisecond, 10*time.Millisecond)
		if s.net.slowRate > 0 && isReply(m.Type) && s.rng.Float64() < s.net.slowRate {
			delay = s.between(200*time.Millisecond, 3*time.Second)
		}
		if lag := time.Duration(s.lagUntil[to] - s.now); lag > 0 {
			delay += lag
		}
		s.schedule(delay, event{kind: evDeliver, node: to, msg: m})
	}
}
