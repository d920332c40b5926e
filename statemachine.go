package raft

import "io"

// StateMachine is the user's replicated state. The library calls it from a
// single goroutine of its own, in log order, exactly once per committed
// entry of type EntryNormal. It takes no lock around those calls: a state
// machine that is also read from other goroutines (after ReadIndex, say)
// guards its state with its own lock.
type StateMachine interface {
	// Apply applies a committed command and returns its result, which is
	// handed to the Propose call that proposed it (on the leader). Apply must
	// be deterministic: every node applies the same commands in the same
	// order and must reach the same state.
	//
	// The result is opaque to the library: an error returned is a result
	// like any other, handed to Propose as Result.Value with a nil error.
	// The entry is committed before Apply sees it, so nothing can undo it:
	// every node applies it, and must answer it the same way. Refuse
	// invalid commands before proposing them, or make the refusal a
	// deterministic result that changes nothing. A panic in Apply is not
	// recovered: it stops the process, and the node panics again when it
	// replays the entry after a restart, so decode commands defensively.
	Apply(entry Entry) any
	// Snapshot captures the state as of the last applied entry. It should be
	// quick (copy-on-write, an immutable view): applying continues while the
	// returned StateSnapshot is written out on another goroutine.
	Snapshot() (StateSnapshot, error)
	// Restore replaces the state with a snapshot previously written by a
	// StateSnapshot.
	Restore(r io.Reader) error
}
