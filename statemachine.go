package raft

import "io"

// StateMachine is the user's replicated state. The library calls it from a
// single applier goroutine, in log order, exactly once per committed entry
// of type EntryNormal.
type StateMachine interface {
	// Apply applies a committed command and returns its result, which is
	// handed to the Propose call that proposed it (on the leader). Apply must
	// be deterministic: every node applies the same commands in the same
	// order and must reach the same state.
	Apply(entry Entry) any
	// Snapshot captures the state as of the last applied entry. It should be
	// quick (copy-on-write, an immutable view): applying continues while the
	// returned StateSnapshot is written out on another goroutine.
	Snapshot() (StateSnapshot, error)
	// Restore replaces the state with a snapshot previously written by a
	// StateSnapshot.
	Restore(r io.Reader) error
}
