package raft

import (
	"errors"
	"fmt"
)

// Errors a caller can act on. Compare with errors.Is.
var (
	// ErrNotLeader: the request needs the leader and this node is not it.
	// The error is a *NotLeaderError naming the leader when one is known.
	ErrNotLeader = errors.New("raft: not the leader")
	// ErrClosed: the node was closed before the request finished.
	ErrClosed = errors.New("raft: node closed")
	// ErrOutcomeUnknown: the entry was appended but this node lost
	// leadership before it committed; it may or may not be applied later.
	ErrOutcomeUnknown = errors.New("raft: leadership lost, proposal outcome unknown")
	// ErrProposalTooLarge: the command exceeds Config.MaxEntrySize.
	ErrProposalTooLarge = errors.New("raft: proposal larger than MaxEntrySize")
	// ErrStorageFailed: the node's storage failed; the node no longer
	// accepts writes (it never acknowledges what it could not persist).
	ErrStorageFailed = errors.New("raft: storage failed")
	// ErrAlreadyBootstrapped: Bootstrap found existing state.
	ErrAlreadyBootstrapped = errors.New("raft: storage already holds state")
	// ErrNotBootstrapped: NewNode found no configuration in storage.
	ErrNotBootstrapped = errors.New("raft: storage holds no configuration; call Bootstrap first")
)

// NotLeaderError is returned when a request reaches a follower or candidate.
// errors.Is(err, ErrNotLeader) is true for it.
type NotLeaderError struct {
	// Leader is the current leader's ID, or None when unknown.
	Leader NodeID
}

// Error implements error.
func (e *NotLeaderError) Error() string {
	if e.Leader == None {
		return "raft: not the leader (leader unknown)"
	}
	return fmt.Sprintf("raft: not the leader (leader is %d)", e.Leader)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
