package simtest

import "time"

// Critical moments: the instants right after a node does something others
// will rely on. Random faults rarely land there (a vote is granted in
// microseconds of a run that lasts seconds), so the moment-reactive faults
// strike exactly then, which is where the classic Raft bugs show.
type moment uint8

const (
	// momentVote: the node granted a vote.
	momentVote moment = 1 << iota
	// momentCampaign: the node asked for votes in a new term.
	momentCampaign
	// momentAppend: as leader, the node appended entries (its no-op on
	// taking office, or client commands).
	momentAppend
	// momentCommit: as leader, the node advanced its commit index.
	momentCommit
	// momentSnapshot: a snapshot became durable on the node, was installed
	// in its state machine, or its log was compacted behind one.
	momentSnapshot
	// momentHeartbeat: as leader, the node sent a heartbeat round; the
	// answers are in flight.
	momentHeartbeat
)

// The moments each reactive fault strikes at. A crash matters where losing
// what was not yet durable breaks a promise; isolating a leader right after
// it appends or commits strands entries on a minority (Figure 8's setup);
// lagging a candidate's inbox makes its grants arrive after it moved on.
const (
	promises      = momentVote | momentCommit | momentSnapshot
	leaderMoments = momentAppend | momentCommit
)

// noteMoment records that node n just reached moment m.
func (n *simNode) noteMoment(m moment) { n.moments |= m }

// atMoment runs the moment-reactive faults for node i after it handled an
// event, and reports whether one of them crashed it.
func (s *sim) atMoment(i int) bool {
	n := s.nodes[i]
	ms := n.moments
	n.moments = 0
	if ms == 0 || !n.up {
		return false
	}
	if ms&promises != 0 && s.net.promiseCrashRate > 0 && !s.crashActive(i+1) && s.rng.Float64() < s.net.promiseCrashRate {
		s.crash(i)
		s.schedule(s.between(100*time.Microsecond, 5*time.Millisecond), event{kind: evRestart, node: i})
		return true
	}
	if ms&leaderMoments != 0 && s.net.isolateRate > 0 && s.rng.Float64() < s.net.isolateRate {
		d := s.between(200*time.Millisecond, 3*time.Second)
		s.isolatedUntil[i] = max(s.isolatedUntil[i], s.now+int64(d))
		s.tracef("isolate node %d for %v", n.id, d.Round(time.Millisecond))
		s.stickyReaders(i)
	}
	if ms&momentHeartbeat != 0 && s.net.pauseRate > 0 && !s.paused(i) && s.rng.Float64() < s.net.pauseRate {
		// A GC pause right after a heartbeat round: the answers wait for
		// the process, which must not take them for a fresh lease.
		s.pause(i, s.between(time.Second, 3*time.Second))
		s.stickyReaders(i)
	}
	if ms&momentCampaign != 0 && s.net.lagRate > 0 && s.rng.Float64() < s.net.lagRate {
		d := s.between(500*time.Millisecond, 3*time.Second)
		s.lagUntil[i] = max(s.lagUntil[i], s.now+int64(d))
		s.tracef("lag messages to node %d for %v", n.id, d.Round(time.Millisecond))
	}
	return false
}
