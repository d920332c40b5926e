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
	// ErrNotBootstrapped: NewNode found empty storage and was not told to
	// join an existing cluster (Config.Join).
	ErrNotBootstrapped = errors.New("raft: storage is empty; call Bootstrap on every initial voter, or set Config.Join to wait to be added")

	// ErrConfigChangeInProgress: a membership change was asked for while
	// another is uncommitted, or before a new leader committed an entry of
	// its own term. Retry once it commits.
	ErrConfigChangeInProgress = errors.New("raft: a configuration change is in progress")
	// ErrStaleConfiguration: the change named a configuration index
	// (PrevIndex) that is no longer the one in force.
	ErrStaleConfiguration = errors.New("raft: the configuration changed since the given index")
	// ErrUnknownServer: the change names a server that is not a member.
	ErrUnknownServer = errors.New("raft: no such server in the configuration")
	// ErrRemoveLastVoter: the change would leave no voter.
	ErrRemoveLastVoter = errors.New("raft: cannot remove or demote the last voter")
	// ErrInvalidConfChange: the change is malformed (no ID, unknown type,
	// a duplicate address, a voter added back as a learner).
	ErrInvalidConfChange = errors.New("raft: invalid configuration change")
	// ErrNotInConfiguration: the node's bootstrap configuration leaves it
	// out, so it could never take part.
	ErrNotInConfiguration = errors.New("raft: node is not in the configuration")
	// ErrNotCaughtUp: AddVoter's new server did not catch up with the
	// leader; it stays a learner, and the call may be retried.
	ErrNotCaughtUp = errors.New("raft: new server did not catch up with the leader")
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
