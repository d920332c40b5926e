package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/raftline/raft"
)

// This file serves GET /status: one node's own view, answered locally,
// with a line that says in plain words what state the node is in.

// statusResponse is GET /status. The first seven fields are the API
// contract's example; the rest are its extensions.
type statusResponse struct {
	ID           uint64   `json:"id"`
	State        string   `json:"state"`
	Term         uint64   `json:"term"`
	Leader       uint64   `json:"leader"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	Voters       []uint64 `json:"voters"`
	// LeaderHTTP is the leader's HTTP address, when this node knows it.
	LeaderHTTP string `json:"leader_http,omitempty"`
	// LastIndex is the last entry in the log, FirstIndex the first one
	// still in it (those before were compacted behind a snapshot), and
	// SnapshotIndex the last entry the newest snapshot holds (0: none).
	LastIndex     uint64   `json:"last_index"`
	FirstIndex    uint64   `json:"first_index"`
	SnapshotIndex uint64   `json:"snapshot_index"`
	Learners      []uint64 `json:"learners"`
	// Lease is true while this node leads with a read lease: lease reads
	// are then served without a heartbeat round.
	Lease bool `json:"lease"`
	// Transferring is the node a leader is handing leadership to.
	Transferring uint64 `json:"transferring,omitempty"`
	// Peers is the leader's replication state per peer; absent elsewhere.
	Peers  []peerProgress `json:"peers,omitempty"`
	Health string         `json:"health"`
}

// peerProgress is the leader's view of one peer, in /status.
type peerProgress struct {
	ID uint64 `json:"id"`
	progressView
}

// handleStatus serves GET /status.
func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := s.raft.Status()
	out := statusResponse{
		ID: uint64(st.ID), State: st.Role.String(), Term: st.Term, Leader: uint64(st.Leader),
		CommitIndex: st.Commit, AppliedIndex: st.Applied, Voters: []uint64{}, Learners: []uint64{},
		LastIndex: st.LastIndex, FirstIndex: st.FirstIndex, SnapshotIndex: st.SnapshotIndex,
		Lease: st.Lease, Transferring: uint64(st.Transferring),
	}
	for _, srv := range st.Config.Servers {
		if srv.Suffrage == raft.Voter {
			out.Voters = append(out.Voters, uint64(srv.ID))
		} else {
			out.Learners = append(out.Learners, uint64(srv.ID))
		}
	}
	slices.Sort(out.Voters)
	slices.Sort(out.Learners)
	if st.Leader != raft.None {
		out.LeaderHTTP, _ = s.sm.HTTPAddr(st.Leader)
	}
	for _, id := range slices.Sorted(maps.Keys(st.Peers)) {
		out.Peers = append(out.Peers, peerProgress{ID: uint64(id), progressView: progressOf(st, id)})
	}
	out.Health = s.health(r.Context(), st, time.Now())
	writeJSON(w, http.StatusOK, out)
}

// health describes the node's state in a sentence.
func (s *server) health(ctx context.Context, st raft.Status, now time.Time) string {
	switch {
	case st.Err != nil:
		return "stopped: " + st.Err.Error() + "; restart the node once the cause is fixed"
	case s.isRemoved():
		return "removed from the cluster; this node is stopping"
	case len(st.Config.Servers) == 0:
		return "waiting to be added to a cluster (started with an empty --data to join one)"
	case st.Role == raft.Leader:
		return leaderHealth(st)
	case st.Leader == raft.None:
		return s.noLeaderReason(st, now)
	}
	if silent, ok := s.leaderSilence(st.Leader, now); ok {
		return fmt.Sprintf("following node %d, but it has been silent for %v: it is probably down, and an election will follow",
			st.Leader, silent.Round(time.Millisecond))
	}
	msg := fmt.Sprintf("following node %d", st.Leader)
	if behind := s.leaderLead(ctx, st); behind >= catchingUpEntries {
		msg = fmt.Sprintf("catching up: %s entries behind leader %d", thousands(behind), st.Leader)
	}
	if behind := st.Commit - min(st.Applied, st.Commit); behind > 0 {
		msg += fmt.Sprintf("; applying, %d committed entries behind", behind)
	}
	if srv, ok := st.Config.Server(st.ID); ok && srv.Suffrage == raft.Learner {
		msg += " as a learner (it does not vote)"
	}
	return msg
}

// leaderHealth describes a leader's view of its peers.
func leaderHealth(st raft.Status) string {
	var unreachable, snapshot, behind []string
	for _, id := range slices.Sorted(maps.Keys(st.Peers)) {
		p := st.Peers[id]
		switch {
		case p.Unreachable:
			unreachable = append(unreachable, fmt.Sprintf("%d (silent for %s)", id, seconds(st.Metrics.Peers[id].LastContact)))
		case p.State == "snapshot":
			snapshot = append(snapshot, fmt.Sprintf("%d (%d of %d bytes)", id, p.SnapshotSent, p.SnapshotSize))
		case p.Match < st.LastIndex:
			behind = append(behind, fmt.Sprintf("node %d by %s entries", id, thousands(st.LastIndex-p.Match)))
		}
	}
	msg := fmt.Sprintf("leader of term %d", st.Term)
	if st.Transferring != raft.None {
		msg += fmt.Sprintf(", handing leadership over to node %d", st.Transferring)
	}
	if len(unreachable) == 1 {
		msg += "; cannot reach node " + unreachable[0]
	} else if len(unreachable) > 1 {
		msg += "; cannot reach nodes " + strings.Join(unreachable, ", ")
	}
	if len(snapshot) > 0 {
		msg += "; sending a snapshot to " + strings.Join(snapshot, ", ")
	}
	if len(behind) > 0 {
		msg += "; behind: " + strings.Join(behind, ", ")
	}
	if len(unreachable)+len(snapshot)+len(behind) == 0 {
		msg += "; every peer is up to date"
	}
	return msg
}
