package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/raftline/raft"
)

// This file serves the cluster's membership: GET /cluster, and
// /cluster/add and /cluster/remove, which change it one server at a time
// through the library (raft.Node.AddVoter and the others).
//
// Two rules are the service's own, not the library's. One change at a
// time: a leader's handlers take s.changing, so a second request gets 409
// rather than a stale-configuration error half-way through the first. And
// a removed server's ID is never used again: the library forgets a server
// once it leaves the configuration, so the removal is first recorded in
// the replicated state (opRetire, part of every snapshot), and an add of a
// retired ID is refused on every leader to come. Recording it before
// removing means no server can be out of the configuration without its ID
// retired; a removal that fails after the record leaves a member that can
// only be removed, which retrying the removal does.

// clusterView is GET /cluster, and the answer to a membership change.
type clusterView struct {
	// Index is the log index of the configuration shown: the newest one
	// this node knows to be committed.
	Index  uint64 `json:"index"`
	Leader uint64 `json:"leader"`
	// Term, LastIndex, FirstIndex, CommitIndex and Health are this node's,
	// as in GET /status, so an operator reading /cluster in an incident
	// sees whose view it is.
	Term        uint64       `json:"term"`
	LastIndex   uint64       `json:"last_index"`
	FirstIndex  uint64       `json:"first_index"`
	CommitIndex uint64       `json:"commit_index"`
	Health      string       `json:"health"`
	Servers     []serverView `json:"servers"`
	// Removed lists the IDs of servers removed from the cluster, which no
	// server may use again.
	Removed []uint64 `json:"removed"`
}

// serverView is one member of the configuration.
type serverView struct {
	ID       uint64 `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// HTTPAddr is the server's HTTP API, once recorded (a leader records
	// its own; an add records the new server's; every node asks the
	// leader to record its own, removal.go).
	HTTPAddr string `json:"http_addr"`
	Role     string `json:"role"` // "voter" or "learner"
	// Progress is the leader's view of the server's replication, on the
	// leader only.
	Progress *progressView `json:"progress,omitempty"`
}

// progressView is raft.PeerStatus in the API's words.
type progressView struct {
	Match        uint64 `json:"match"`
	Next         uint64 `json:"next"`
	State        string `json:"state"` // "leader", "probe", "replicate" or "snapshot"
	Unreachable  bool   `json:"unreachable,omitempty"`
	SnapshotSent uint64 `json:"snapshot_sent,omitempty"`
	SnapshotSize uint64 `json:"snapshot_size,omitempty"`
	// Inflight counts appends sent and not yet answered; Lag is the
	// leader's last index minus Match; LastContactMS how long ago the
	// peer last answered, in milliseconds.
	Inflight      int    `json:"inflight"`
	Lag           uint64 `json:"lag"`
	LastContactMS int64  `json:"last_contact_ms"`
}

// progressOf is the leader's view of peer id, from its Status.
func progressOf(st raft.Status, id raft.NodeID) progressView {
	p := st.Peers[id]
	return progressView{
		Match: p.Match, Next: p.Next, State: p.State, Unreachable: p.Unreachable,
		SnapshotSent: p.SnapshotSent, SnapshotSize: p.SnapshotSize, Inflight: p.Inflight,
		Lag: st.LastIndex - min(p.Match, st.LastIndex), LastContactMS: st.Metrics.Peers[id].LastContact.Milliseconds(),
	}
}

// clusterView builds the view of the configuration this node has committed.
func (s *server) clusterView(ctx context.Context) (clusterView, error) {
	conf, index, err := s.raft.Configuration(ctx)
	if err != nil {
		return clusterView{}, err
	}
	st := s.raft.Status()
	v := clusterView{
		Index: index, Leader: uint64(st.Leader), Term: st.Term, LastIndex: st.LastIndex, FirstIndex: st.FirstIndex,
		CommitIndex: st.Commit, Health: s.health(ctx, st, time.Now()), Servers: []serverView{}, Removed: []uint64{},
	}
	for _, srv := range conf.Servers {
		sv := serverView{ID: uint64(srv.ID), RaftAddr: srv.Address, Role: srv.Suffrage.String()}
		sv.HTTPAddr, _ = s.sm.HTTPAddr(srv.ID)
		if st.Role == raft.Leader {
			if _, ok := st.Peers[srv.ID]; ok {
				p := progressOf(st, srv.ID)
				sv.Progress = &p
			} else if srv.ID == s.id {
				sv.Progress = &progressView{Match: st.LastIndex, Next: st.LastIndex + 1, State: "leader"}
			}
		}
		v.Servers = append(v.Servers, sv)
	}
	slices.SortFunc(v.Servers, func(a, b serverView) int { return cmpUint(a.ID, b.ID) })
	for _, id := range s.sm.RetiredIDs() {
		v.Removed = append(v.Removed, uint64(id))
	}
	return v, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// handleCluster serves GET /cluster, answered locally.
func (s *server) handleCluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	s.writeClusterView(ctx, w, r)
}

func (s *server) writeClusterView(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	v, err := s.clusterView(ctx)
	if err != nil {
		s.raftError(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// addRequest is POST /cluster/add.
type addRequest struct {
	ID       uint64 `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Learner  bool   `json:"learner"`
}

// handleAdd serves POST /cluster/add: a learner, or a voter (added as a
// learner, caught up, then promoted), answered once committed. Adding a
// member again with the same address and role changes nothing and
// answers 200, so a client may simply retry.
func (s *server) handleAdd(w http.ResponseWriter, r *http.Request) {
	var req addRequest
	if !decodeStrict(w, r, &req) || !s.checkAdd(w, req) || !s.mustLead(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.changeTimeout)
	defer cancel()
	id := raft.NodeID(req.ID)
	if s.sm.Retired(id) {
		writeError(w, http.StatusConflict, fmt.Sprintf("server %d was removed from this cluster, and IDs are never reused: give the new server a new --id", id))
		return
	}
	conf, index, err := s.raft.Configuration(ctx)
	if err != nil {
		s.membershipError(w, r, err)
		return
	}
	want := raft.Voter
	if req.Learner {
		want = raft.Learner
	}
	member, isMember := conf.Server(id)
	switch {
	case isMember && member.Address != req.RaftAddr:
		writeError(w, http.StatusConflict, fmt.Sprintf("server %d is already a member, at raft address %q: to move it, remove it and add it under a new ID", id, member.Address))
		return
	case isMember && member.Suffrage == raft.Voter && want == raft.Learner:
		writeError(w, http.StatusConflict, fmt.Sprintf("server %d is already a voter; /cluster/add does not demote", id))
		return
	}
	if isMember && member.Suffrage == want {
		// Nothing to change but, perhaps, the HTTP address on record.
		if s.recordHTTPAddr(ctx, w, r, id, req.HTTPAddr) {
			s.writeClusterView(ctx, w, r)
		}
		return
	}
	if !s.startChange(w, index) {
		return
	}
	defer s.changing.Unlock()
	if !s.recordHTTPAddr(ctx, w, r, id, req.HTTPAddr) {
		return
	}
	switch {
	case want == raft.Learner:
		_, err = s.raft.AddLearner(ctx, id, req.RaftAddr, index)
	case isMember: // a learner, to promote
		_, err = s.raft.Promote(ctx, id, index)
	default:
		_, err = s.raft.AddVoter(ctx, id, req.RaftAddr, index)
	}
	if err != nil {
		s.membershipError(w, r, err)
		return
	}
	s.writeClusterView(ctx, w, r)
}

// checkAdd checks an add request's fields, or answers 400.
func (s *server) checkAdd(w http.ResponseWriter, req addRequest) bool {
	var problem string
	switch {
	case req.ID == 0:
		problem = `"id" must be a positive integer`
	case req.RaftAddr == "" && s.network == nil:
		problem = `"raft_addr" is required: the address the new server's raft transport listens on`
	case req.RaftAddr != "" && checkHostPort(req.RaftAddr) != nil:
		problem = fmt.Sprintf(`"raft_addr" %q: want host:port`, req.RaftAddr)
	case req.HTTPAddr != "" && checkClientAddr(req.HTTPAddr) != nil:
		problem = fmt.Sprintf(`"http_addr" %q: %v`, req.HTTPAddr, checkClientAddr(req.HTTPAddr))
	default:
		return true
	}
	writeError(w, http.StatusBadRequest, "malformed add request: "+problem)
	return false
}

// removeRequest is POST /cluster/remove.
type removeRequest struct {
	ID uint64 `json:"id"`
}

// handleRemove serves POST /cluster/remove, the leader included (it leads
// until the change commits, then hands over). Removing a server that is
// not a member answers 200.
func (s *server) handleRemove(w http.ResponseWriter, r *http.Request) {
	var req removeRequest
	if !decodeStrict(w, r, &req) {
		return
	}
	if req.ID == 0 {
		writeError(w, http.StatusBadRequest, `malformed remove request: "id" must be a positive integer`)
		return
	}
	if !s.mustLead(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.changeTimeout)
	defer cancel()
	id := raft.NodeID(req.ID)
	conf, index, err := s.raft.Configuration(ctx)
	if err != nil {
		s.membershipError(w, r, err)
		return
	}
	if !conf.Has(id) {
		s.writeClusterView(ctx, w, r)
		return
	}
	if _, _, err := conf.Apply(raft.ConfChange{Type: raft.ConfRemove, ID: id}); err != nil {
		s.membershipError(w, r, err) // the last voter
		return
	}
	if id == s.id {
		s.handOverThenRedirect(ctx, w, r)
		return
	}
	if !s.startChange(w, index) {
		return
	}
	defer s.changing.Unlock()
	if !s.sm.Retired(id) {
		if _, ok := s.propose(w, r, command{Op: opRetire, NodeID: uint64(id)}); !ok {
			return
		}
	}
	if _, err := s.raft.RemoveServer(ctx, id, index); err != nil {
		s.membershipError(w, r, err)
		return
	}
	s.writeClusterView(ctx, w, r)
}

// handOverThenRedirect serves a leader's removal of itself: it hands
// leadership over first and sends the client to the new leader, which
// removes this node as a follower. The library could remove a leader
// directly (it steps down once the change commits), but then proposals it
// accepted after the change are cut off with an unknown outcome; a
// transfer refuses new ones and answers every one it accepted.
func (s *server) handOverThenRedirect(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	to, err := s.raft.TransferLeadership(ctx, raft.None)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("handing leadership over before removing this node failed: %v; retry", err))
		return
	}
	s.waitHTTPAddr(ctx, to)
	s.redirectToLeader(w, r, to)
}

// mustLead answers a request only the leader can serve with a redirect or
// a 503 on any other node, and returns false there.
func (s *server) mustLead(w http.ResponseWriter, r *http.Request) bool {
	st := s.raft.Status()
	if st.Role == raft.Leader {
		return true
	}
	s.redirectToLeader(w, r, s.leaderOrWait(r.Context(), st.Leader))
	return false
}

// startChange takes the one-change-at-a-time lock, or answers 409. A
// change committed-but-unapplied elsewhere (the configuration in force is
// newer than the committed one at index) counts as in progress too.
func (s *server) startChange(w http.ResponseWriter, index uint64) bool {
	if !s.changing.TryLock() {
		writeError(w, http.StatusConflict, "another membership change is in progress; retry once it is done")
		return false
	}
	if st := s.raft.Status(); st.ConfigIndex != index {
		s.changing.Unlock()
		writeError(w, http.StatusConflict, fmt.Sprintf("the configuration at index %d is not committed yet; retry once it is", st.ConfigIndex))
		return false
	}
	return true
}

// recordHTTPAddr records a server's HTTP address in the replicated state,
// unless it is empty or already recorded. On failure it has answered.
func (s *server) recordHTTPAddr(ctx context.Context, w http.ResponseWriter, r *http.Request, id raft.NodeID, addr string) bool {
	if old, ok := s.sm.HTTPAddr(id); addr == "" || (ok && old == addr) {
		return true
	}
	_, _, err := s.submit(ctx, command{Op: opRegister, NodeID: uint64(id), HTTPAddr: addr})
	if err != nil {
		s.raftError(w, r, err, true)
		return false
	}
	return true
}

// membershipError turns an error of a membership change into a response.
func (s *server) membershipError(w http.ResponseWriter, r *http.Request, err error) {
	retry := "; add and remove are idempotent: retry the request"
	switch {
	case errors.Is(err, raft.ErrConfigChangeInProgress), errors.Is(err, raft.ErrStaleConfiguration),
		errors.Is(err, raft.ErrUnknownServer), errors.Is(err, raft.ErrRemoveLastVoter):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, raft.ErrInvalidConfChange):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, raft.ErrNotCaughtUp):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, err.Error()+
			": the server stays a learner (is it running, and reachable at its raft address?)"+retry)
	case errors.Is(err, raft.ErrTransferInProgress):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "leadership is being handed over; retry shortly")
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "timed out waiting for the cluster; the change may or may not have happened"+retry)
	case errors.Is(err, raft.ErrOutcomeUnknown):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "leadership changed before the change committed; it may or may not have happened"+retry)
	default:
		s.raftError(w, r, err, false)
	}
}

// maxControlBody bounds the JSON body of a /cluster request.
const maxControlBody = 4096

// decodeStrict reads a small JSON object into v, refusing unknown fields
// and anything after the object, or answers 400/413 and returns false. An
// empty body counts as {}.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := readBody(w, r, maxControlBody, "request")
	if !ok {
		return false
	}
	if body = bytes.TrimSpace(body); len(body) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil || body[0] != '{' {
		if err == nil {
			err = errors.New("want a JSON object")
		}
		writeError(w, http.StatusBadRequest, "malformed request: "+err.Error())
		return false
	}
	return true
}
