// Package simtest is raftline's deterministic cluster simulator.
//
// Run drives N raft.Core state machines (the pure transition function, no
// goroutines) from one event loop on virtual time. Around them it simulates
// a network (per-message delay, drops, duplication, reordering, partitions
// of any shape, one-way links), a disk per node (writes not yet fsynced are
// lost on a crash, and optionally the last write is torn), crashes and
// restarts from what each disk holds, and clients running a small
// key-value workload. Besides faults at random times, moment-reactive
// faults strike right after a node does something others rely on (grants a
// vote, campaigns, appends or commits as leader): that is where the classic
// bugs show, and where random timing almost never lands (moments.go). All
// randomness comes from one seed, so a seed replays the identical run: the
// trace hash in Result proves it.
//
// After every step it checks Raft's invariants: at most one leader per
// term, every leader elected by a majority of votes cast in its own term,
// no node voting for two candidates in one term (across crashes), log
// matching, leader completeness, state machine safety, commit index never
// going back, applied ≤ commit, no acknowledged write lost; and
// once faults stop, that a leader emerges and clients make progress within
// a bounded virtual time. The tests in this package add a linearizability
// check of the client history (porcupine), property tests whose fault
// schedules rapid shrinks, an actor-level soak of real Nodes under
// testing/synctest, and a planted-bug check proving the simulator finds
// classic Raft bugs (go test -tags raftbugs).
package simtest
