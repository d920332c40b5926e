//go:build raftbugs

package raft

import (
	"fmt"
	"slices"
	"sync"
)

// With -tags raftbugs, classic Raft bugs can be planted one at a time so the
// simulator can prove it finds them. Never built into a normal binary.
var (
	bugStaleVotes               bool
	bugCommitOldTerm            bool
	bugVoteNotPersisted         bool
	bugNoPrevLogCheck           bool
	bugApplyPastCommit          bool
	bugTruncateOnStale          bool
	bugVoteWithoutLogCheck      bool
	bugCompactPastSnapshot      bool
	bugInstallOldSnapshot       bool
	bugSnapshotTermFromCommands bool
	bugConfigOnCommit           bool
	bugConcurrentConfChanges    bool
	bugLeaderStaysAfterRemoval  bool
	bugVoteFromNonVoter         bool
	bugLeaseFromAcks            bool
	bugLeaseIgnoresDrift        bool
	bugLeaseAcrossTransfer      bool
	bugFollowerReadsOwnCommit   bool
	bugReadWithoutQuorum        bool
)

const plantedBugsAvailable = true

var plantedBugs = map[string]*bool{
	"stale-vote-count":         &bugStaleVotes,
	"commit-previous-term":     &bugCommitOldTerm,
	"vote-not-persisted":       &bugVoteNotPersisted,
	"no-prev-log-check":        &bugNoPrevLogCheck,
	"apply-past-commit":        &bugApplyPastCommit,
	"truncate-on-stale-append": &bugTruncateOnStale,
	"vote-without-log-check":   &bugVoteWithoutLogCheck,

	"compact-past-snapshot":              &bugCompactPastSnapshot,
	"install-snapshot-older-than-commit": &bugInstallOldSnapshot,
	"snapshot-wrong-term":                &bugSnapshotTermFromCommands,

	"config-on-commit":           &bugConfigOnCommit,
	"concurrent-config-changes":  &bugConcurrentConfChanges,
	"leader-stays-after-removal": &bugLeaderStaysAfterRemoval,
	"vote-from-non-voter":        &bugVoteFromNonVoter,

	"lease-from-acks":              &bugLeaseFromAcks,
	"lease-ignores-drift":          &bugLeaseIgnoresDrift,
	"lease-across-transfer":        &bugLeaseAcrossTransfer,
	"follower-read-before-applied": &bugFollowerReadsOwnCommit,
	"read-without-quorum":          &bugReadWithoutQuorum,
}

// PlantedBugs lists the bugs PlantBug accepts.
func PlantedBugs() []string {
	var names []string
	for name := range plantedBugs {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// PlantBug turns one planted bug on ("" turns all off). Not safe to call
// while nodes run.
func PlantBug(name string) error {
	for _, b := range plantedBugs {
		*b = false
	}
	if name == "" {
		return nil
	}
	b, ok := plantedBugs[name]
	if !ok {
		return fmt.Errorf("raft: no planted bug %q", name)
	}
	*b = true
	return nil
}

var (
	bugHitsMu sync.Mutex
	bugHits   = map[string]int{}
)

// bugHit counts a planted bug's branch being taken, so a test can tell "not
// found" from "never triggered".
func bugHit(name string) {
	bugHitsMu.Lock()
	bugHits[name]++
	bugHitsMu.Unlock()
}

// PlantedBugHits returns how often each planted bug's branch ran, and resets
// the counts.
func PlantedBugHits() map[string]int {
	bugHitsMu.Lock()
	defer bugHitsMu.Unlock()
	out := bugHits
	bugHits = map[string]int{}
	return out
}
