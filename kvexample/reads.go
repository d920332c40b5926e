package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/raftline/raft"
)

// This file holds the three kinds of read the API offers, chosen with
// ?consistency= (or the older ?stale=1):
//
//   - linearizable (the default): raft.Node.ReadIndex. On the leader it
//     costs a heartbeat round; a follower asks the leader for its commit
//     index (one message each way, shared by every read waiting) and then
//     serves the read itself once it has applied that far.
//   - lease: raft.Node.LeaseRead. A leader holding a read lease answers at
//     once, without the heartbeat round; the lease rests on the nodes'
//     clocks drifting apart by no more than --max-clock-drift. Elsewhere
//     it is a linearizable read.
//   - stale: whatever this node has applied, at no cost; it may be behind.
//
// Every read handler calls readBarrier first, which answers errors itself.

// readKind is what a read asks for.
type readKind uint8

const (
	readLinearizable readKind = iota
	readLease
	readStale
)

// readKindParam reads ?consistency= and ?stale=, or answers 400.
func readKindParam(w http.ResponseWriter, r *http.Request) (readKind, bool) {
	q := r.URL.Query()
	kind := readLinearizable
	switch c := q.Get("consistency"); c {
	case "", "linearizable":
	case "lease":
		kind = readLease
	case "stale":
		kind = readStale
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("consistency=%q: want linearizable, lease or stale", c))
		return 0, false
	}
	if !q.Has("stale") {
		return kind, true
	}
	switch stale := q.Get("stale"); {
	case stale != "1" && stale != "true":
		writeError(w, http.StatusBadRequest, fmt.Sprintf("stale=%q: want stale=1 (or consistency=stale)", stale))
		return 0, false
	case q.Has("consistency") && kind != readStale:
		writeError(w, http.StatusBadRequest, "stale=1 contradicts consistency="+q.Get("consistency"))
		return 0, false
	}
	return readStale, true
}

// readBarrier makes the next read of the state machine as consistent as
// the request asks. On failure it has written the error response and
// returns false.
func (s *server) readBarrier(w http.ResponseWriter, r *http.Request) bool {
	kind, ok := readKindParam(w, r)
	if !ok {
		return false
	}
	if kind == readStale {
		return true
	}
	// A follower whose leader went silent would wait the whole request
	// timeout for an answer that is not coming.
	if st := s.raft.Status(); st.Role != raft.Leader {
		if _, silent := s.leaderSilence(st.Leader, time.Now()); silent {
			s.redirectToLeader(w, r, st.Leader)
			return false
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	var err error
	if kind == readLease {
		_, err = s.raft.LeaseRead(ctx)
	} else {
		_, err = s.raft.ReadIndex(ctx)
	}
	if err != nil {
		s.raftError(w, r, err, false)
		return false
	}
	return true
}
