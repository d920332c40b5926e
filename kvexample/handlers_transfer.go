package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/raftline/raft"
)

// This file serves POST /cluster/transfer: leadership handed to a named
// voter, or to the most caught-up one (raft.Node.TransferLeadership).

// transferRequest is POST /cluster/transfer; no id (or {}) lets the leader
// choose.
type transferRequest struct {
	ID uint64 `json:"id"`
}

// transferResponse names the leader once the transfer is done.
type transferResponse struct {
	Leader     uint64 `json:"leader"`
	LeaderHTTP string `json:"leader_http,omitempty"`
}

// handleTransfer serves POST /cluster/transfer, answered once the new
// leader has taken over. A transfer to the current leader answers 200 at
// once: what was asked for holds.
func (s *server) handleTransfer(w http.ResponseWriter, r *http.Request) {
	var req transferRequest
	if !decodeStrict(w, r, &req) || !s.mustLead(w, r) {
		return
	}
	to := raft.NodeID(req.ID)
	if to == s.id {
		s.writeLeader(w, s.id)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	leader, err := s.raft.TransferLeadership(ctx, to)
	var notLeader *raft.NotLeaderError
	switch {
	case err == nil:
		// The new leader records its HTTP address as its first act; wait
		// for it briefly, so the client learns where to go.
		s.waitHTTPAddr(ctx, leader)
		s.writeLeader(w, leader)
	case errors.As(err, &notLeader):
		s.redirectToLeader(w, r, notLeader.Leader)
	case errors.Is(err, raft.ErrUnknownServer):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("there is no server %d in the configuration", to))
	case errors.Is(err, raft.ErrInvalidTransfer):
		writeError(w, http.StatusConflict, fmt.Sprintf("cannot transfer leadership: %v (only another voter can lead)", err))
	case errors.Is(err, raft.ErrTransferInProgress):
		writeError(w, http.StatusConflict, "another leadership transfer is in progress; retry once it is done")
	case errors.Is(err, raft.ErrTransferAborted):
		writeError(w, http.StatusConflict, fmt.Sprintf("%v; node %d leads on", err, s.raft.Status().Leader))
	default:
		s.raftError(w, r, err, false)
	}
}

// waitHTTPAddr waits, until ctx ends or at most a second, for node id's
// HTTP address to be applied here.
func (s *server) waitHTTPAddr(ctx context.Context, id raft.NodeID) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		if _, ok := s.sm.HTTPAddr(id); ok {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// writeLeader answers a transfer with the leader's ID and address.
func (s *server) writeLeader(w http.ResponseWriter, leader raft.NodeID) {
	out := transferResponse{Leader: uint64(leader)}
	out.LeaderHTTP, _ = s.sm.HTTPAddr(leader)
	writeJSON(w, http.StatusOK, out)
}
