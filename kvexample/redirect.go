package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/raftline/raft"
)

// This file turns raft's errors into the API's answers, and sends a
// client that needs the leader to it: with a 307 to a leader this node has
// heard from recently, or a 503 saying why not.

// raftError turns an error from Propose or a read barrier into a response.
// For a write, timeouts and lost leadership leave the outcome unknown, and
// the answer says so: the client must not assume the write did not happen.
func (s *server) raftError(w http.ResponseWriter, r *http.Request, err error, write bool) {
	var notLeader *raft.NotLeaderError
	unknown := ""
	if write {
		unknown = "; the write may or may not have happened"
	}
	switch {
	case errors.As(err, &notLeader):
		s.redirectToLeader(w, r, s.leaderOrWait(r.Context(), notLeader.Leader))
	case errors.Is(err, raft.ErrTransferInProgress):
		// Refused, so certainly not made: once the new leader is known the
		// client may as well send it there.
		s.redirectToLeader(w, r, s.leaderOrWait(r.Context(), s.leaderAfterTransfer(r.Context())))
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "timed out waiting for the cluster"+unknown)
	case errors.Is(err, raft.ErrOutcomeUnknown):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "leadership changed before the write committed"+unknown)
	case errors.Is(err, raft.ErrProposalTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "command too large")
	default: // node closing, storage failed, client gone
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, err.Error()+unknown)
	}
}

// redirectToLeader answers a request that needs the leader: 307 to the
// leader's HTTP address when this node knows it (from the replicated
// state) and has heard from the leader recently, else 503 with
// Retry-After and the reason — an election is probably under way.
func (s *server) redirectToLeader(w http.ResponseWriter, r *http.Request, leader raft.NodeID) {
	var reason string
	switch {
	case leader == s.id && s.raft != nil && s.raft.Status().Role == raft.Leader:
		// Elected while the request waited: the client may send it again,
		// here, to the address it used.
		w.Header().Set("Location", "http://"+r.Host+r.URL.RequestURI())
		writeError(w, http.StatusTemporaryRedirect, fmt.Sprintf("node %d has just become the leader; send the request again", s.id))
		return
	case leader == raft.None || leader == s.id:
		// The same words as the health line of /status, so a client's
		// error and an operator's dashboard tell one story.
		reason = fmt.Sprintf("node %d is not the leader and knows of no leader", s.id)
		if s.raft != nil {
			reason += "; " + s.noLeaderReason(s.raft.Status(), time.Now())
		}
	default:
		addr, known := s.sm.HTTPAddr(leader)
		silent, isSilent := s.leaderSilence(leader, time.Now())
		switch {
		case isSilent:
			reason = fmt.Sprintf("node %d is not the leader, and has not heard from leader %d for %v: it is probably down, and an election will follow",
				s.id, leader, silent.Round(time.Millisecond))
		case !known:
			reason = fmt.Sprintf("node %d is not the leader, and does not know leader %d's HTTP address yet", s.id, leader)
		default:
			w.Header().Set("Location", "http://"+addr+r.URL.RequestURI())
			writeError(w, http.StatusTemporaryRedirect, fmt.Sprintf("node %d is not the leader; node %d is", s.id, leader))
			return
		}
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, reason+"; retry shortly")
}

// leaderOrWait returns leader if a client can be sent there (another node,
// whose HTTP address is known), else waits for one (awaitLeader).
func (s *server) leaderOrWait(ctx context.Context, leader raft.NodeID) raft.NodeID {
	if _, known := s.sm.HTTPAddr(leader); known && leader != s.id {
		return leader
	}
	if next := s.awaitLeader(ctx); next != raft.None {
		return next
	}
	return leader // for the 503's reason
}

// awaitLeader waits up to s.silentAfter for a leader a client can be sent
// to, and returns it (None if none came): another node whose address is
// known, or this one. A leadership transfer, or an election after a leader
// stopped, leaves followers without a leader for a moment; a client sent
// on a little later is better served than one told to retry.
func (s *server) awaitLeader(ctx context.Context) raft.NodeID {
	deadline := time.Now().Add(s.silentAfter)
	for {
		st := s.raft.Status()
		if st.Role == raft.Leader {
			return s.id
		}
		if st.Leader != raft.None && st.Leader != s.id {
			if _, ok := s.sm.HTTPAddr(st.Leader); ok {
				return st.Leader
			}
		}
		if !time.Now().Before(deadline) {
			return raft.None
		}
		select {
		case <-ctx.Done():
			return raft.None
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// leaderSilence returns how long leader has been silent, and true, when
// that is longer than s.silentAfter: too long to send clients there.
func (s *server) leaderSilence(leader raft.NodeID, now time.Time) (time.Duration, bool) {
	if s.contact == nil || s.silentAfter <= 0 || leader == s.id {
		return 0, false
	}
	d, heard := s.contact.since(leader, now)
	if !heard {
		// A node learns of a leader from its messages, so this one has
		// just been restarted (or the tracker has): give it time.
		return 0, false
	}
	return d, d > s.silentAfter
}

// leaderAfterTransfer waits, up to an election timeout (a transfer ends
// by then), until another node leads, and returns it (None if none).
func (s *server) leaderAfterTransfer(ctx context.Context) raft.NodeID {
	deadline := time.Now().Add(2 * s.silentAfter)
	for {
		st := s.raft.Status()
		if st.Leader != raft.None && st.Leader != s.id {
			return st.Leader
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return raft.None
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}
