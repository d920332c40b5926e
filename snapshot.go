package raft

import "io"

// This file holds the snapshot contract between the library and the user's
// StateMachine. Taking a snapshot is split in two so it never stops the
// world (the pattern of Go's incremental map growth): StateMachine.Snapshot
// captures a cheap point-in-time view on the applier goroutine, and the
// view is written out on another goroutine while applying goes on.
// Compaction of the log behind a snapshot (Storage.Compact) and the chunked,
// resumable InstallSnapshot RPC (MsgSnap) build on this contract.

// StateSnapshot is a point-in-time view of a StateMachine.
type StateSnapshot interface {
	// WriteTo writes the snapshot; it may run concurrently with Apply.
	WriteTo(w io.Writer) (int64, error)
	// Release frees the view; it is called once writing is done.
	Release()
}
