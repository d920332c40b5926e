package simtest

import (
	"time"

	"github.com/raftline/raft"
)

// Clocks and pauses. Every node's clock runs at its own rate, within the
// drift bound the run's nodes are configured with (Tuning.Drift): its
// ticks come that much faster or slower, and lease reads measure with it.
// A pause fault stops a node's process (as a long GC pause or a stalled
// VM does) while its clock keeps running: everything addressed to it waits
// until it resumes, and the ticks it slept through are lost, as a ticker's
// are.

// nodeClock is a node's clock: local = offset + rate × virtual time.
type nodeClock struct {
	rate   float64
	offset time.Duration
}

// drawClocks gives every slot a rate within the run's drift bound: any
// two rates differ by a factor of at most 1/(1-drift), the rate at which
// one node's clock may outrun another's.
func (s *sim) drawClocks() {
	s.clocks = make([]nodeClock, s.slots)
	for i := range s.clocks {
		// Half the clocks sit at an edge of the bound, where a lease
		// that ignores drift outlives a follower's promise.
		f := s.rng.Float64()
		if s.rng.IntN(2) == 0 {
			f = float64(s.rng.IntN(2))
		}
		s.clocks[i] = nodeClock{
			rate:   1 - s.tuning.Drift/2 + s.tuning.Drift*f/2,
			offset: time.Duration(s.rng.Int64N(int64(time.Hour))),
		}
	}
	s.pausedUntil = make([]int64, s.slots)
	s.resumeAt = map[resumeKey]int64{}
}

// local is node i's clock reading now.
func (s *sim) local(i int) time.Duration {
	c := s.clocks[i]
	return c.offset + time.Duration(c.rate*float64(s.now))
}

// localInterval is how much virtual time d of node i's clock takes.
func (s *sim) localInterval(i int, d time.Duration) time.Duration {
	return time.Duration(float64(d) / s.clocks[i].rate)
}

// stamp gives node i's core its clock before it handles an event.
func (s *sim) stamp(i int) {
	if n := s.nodes[i]; n.up {
		n.core.SetClock(s.local(i))
	}
}

// paused reports whether node i's process is stopped now.
func (s *sim) paused(i int) bool { return s.now < s.pausedUntil[i] }

// resumeKey names a stream of events into a node that must stay in order:
// one peer's messages (one connection), one client's requests, the disk.
type resumeKey struct {
	node   int
	source int
}

// deferIfPaused requeues an event for a paused node at its resumption and
// reports whether it did. What piled up is taken in an order of its own
// when the process resumes, as its goroutines (one per connection) race,
// though each stream keeps its order: a leader waking from a pause may
// serve a client's read before it reads the message that deposes it, which
// is exactly when a lease must already have run out. Ticks are not
// requeued: the paused process misses them (tick drops them and schedules
// the next one).
func (s *sim) deferIfPaused(e *event) bool {
	if !s.paused(e.node) {
		return false
	}
	key := resumeKey{node: e.node, source: -1} // the disk
	switch e.kind {
	case evDeliver:
		key.source = int(e.msg.From)
	case evClientRequest:
		key.source = 1000 + e.client
	}
	at := s.pausedUntil[e.node] + int64(s.between(0, 5*time.Millisecond))
	at = max(at, s.resumeAt[key])
	s.resumeAt[key] = at
	s.schedule(time.Duration(at-s.now), *e)
	return true
}

// pause stops node i's process for d.
func (s *sim) pause(i int, d time.Duration) {
	s.pausedUntil[i] = max(s.pausedUntil[i], s.now+int64(d))
	s.tracef("pause node %d for %v", i+1, d.Round(time.Millisecond))
}

// tuneLeases draws the run's lease and clock settings.
func (s *sim) tuneLeases() {
	s.tuning.Drift = []float64{0.02, 0.3, 0.45, 0.45}[s.rng.IntN(4)]
	s.tuning.Lease = s.rng.IntN(4) != 0
}

// leaseFaults adds, to the generated schedules of runs with lease reads,
// the faults under which a lease is tested: a leader cut off right
// after it appends or commits (it keeps serving lease reads from its own
// state while the rest elect another), and a paused leader.
func (s *sim) leaseFaults(healAt time.Duration) {
	if !s.tuning.Lease || s.tuning.NoCheckQuorum {
		return
	}
	at := time.Duration(s.rng.Int64N(int64(healAt / 3)))
	s.faults = append(s.faults,
		Fault{Kind: FaultIsolateAtMoment, At: at, For: healAt - at, Rate: 0.3 + 0.5*s.rng.Float64()},
		Fault{Kind: FaultPauseAtMoment, At: at, For: healAt - at, Rate: 0.02 + 0.05*s.rng.Float64()})
}

// leaseConfig is the lease part of a node's core configuration.
func (s *sim) leaseConfig(cfg *raft.CoreConfig) {
	cfg.LeaseReads = s.tuning.Lease && !s.tuning.NoCheckQuorum
	cfg.ElectionTimeout = electionTicks * tickEvery
	cfg.MaxClockDrift = s.tuning.Drift
}
