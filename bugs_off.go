//go:build !raftbugs

package raft

// Planted bugs are compiled out of every normal build: these constants are
// false, and the branches they guard vanish. Only `-tags raftbugs` (see
// bugs_on.go), used by simtest to prove it can find real Raft bugs, turns
// them into switches.
const (
	bugStaleVotes               = false
	bugCommitOldTerm            = false
	bugVoteNotPersisted         = false
	bugNoPrevLogCheck           = false
	bugApplyPastCommit          = false
	bugTruncateOnStale          = false
	bugVoteWithoutLogCheck      = false
	bugCompactPastSnapshot      = false
	bugInstallOldSnapshot       = false
	bugSnapshotTermFromCommands = false
	bugConfigOnCommit           = false
	bugConcurrentConfChanges    = false
	bugLeaderStaysAfterRemoval  = false
	bugVoteFromNonVoter         = false
	bugLeaseFromAcks            = false
	bugLeaseIgnoresDrift        = false
	bugLeaseAcrossTransfer      = false
	bugFollowerReadsOwnCommit   = false
	bugReadWithoutQuorum        = false
	plantedBugsAvailable        = false
)

// bugHit is a no-op outside raftbugs builds.
func bugHit(string) {}
