package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftline/raft"
)

// This file is the HTTP side of a node: routing, and turning raft's errors
// into the status codes of the API contract (docs/tutorial.md walks
// through it). The handlers for each endpoint are in handlers.go.

// Limits from the API contract.
const (
	maxKeySize      = 1024
	maxClientIDSize = 256
	// maxCASBody bounds a CAS request's JSON. Two values of up to 1 MiB,
	// each possibly escaped (\u00XX is 6 bytes per byte), fit in it; the
	// decoded values are then checked against maxValueSize.
	maxCASBody = 12*maxValueSize + 4096
)

// server serves one node's HTTP API.
type server struct {
	id   raft.NodeID
	raft *raft.Node
	sm   *kvStateMachine
	// log is the node's raft log, read for the /ui page's cards.
	log raft.Storage
	// network is the in-memory network in single-process mode; nil
	// otherwise. lab, in that mode, serves the teaching-only /debug
	// endpoints (lab.go).
	network *raft.Network
	lab     *lab
	// ui serves the /ui page (ui.go), and metrics GET /metrics
	// (metrics.go); nil in tests that build a bare server.
	ui      *uiHandler
	metrics *nodeMetrics
	// timeout bounds how long a request waits for raft (commit, read
	// barrier).
	timeout time.Duration
	// clock stamps the commands this node proposes as leader: the log's
	// clock (logclock.go).
	clock func() time.Time
	// stopping ends when the HTTP server shuts down: watches and lock
	// waits, which could otherwise hold a shutdown for their whole wait,
	// answer at once.
	stopping context.Context
	// changeTimeout bounds a membership change, which may wait for a new
	// server to catch up; changing serializes them (handlers_cluster.go).
	changeTimeout time.Duration
	changing      sync.Mutex
	// contact says when this node last heard from each peer, and
	// silentAfter how long a leader may be silent before this node stops
	// redirecting clients to it (transport.go).
	contact     *contactTracker
	silentAfter time.Duration
	// leaderCommit caches the leader's commit index, for a follower's
	// health line (health.go).
	leaderCommit leaderCommitCache
	// removed is closed once this node knows it was removed from the
	// cluster; nil in tests that build a bare server.
	removed <-chan struct{}
}

// isRemoved reports whether this node knows it was removed.
func (s *server) isRemoved() bool {
	select {
	case <-s.removed:
		return true
	default:
		return false
	}
}

// waitContext is the context a handler waits for the state machine under:
// it ends at deadline, when the client goes, or when the server stops.
func (s *server) waitContext(r *http.Request, deadline time.Time) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	if s.stopping == nil {
		return ctx, cancel
	}
	stop := context.AfterFunc(s.stopping, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// routes returns the node's HTTP handler. /kv and /locks, whose names may
// contain "/", are routed in routes.go; the rest by a ServeMux.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("GET /cluster", s.handleCluster)
	mux.HandleFunc("POST /cluster/add", s.handleAdd)
	mux.HandleFunc("POST /cluster/remove", s.handleRemove)
	mux.HandleFunc("POST /cluster/transfer", s.handleTransfer)
	mux.HandleFunc("GET /ui/node", s.handleNodeView)
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics.handler())
	}
	if s.lab != nil {
		s.lab.routes(mux, s.id)
	}
	if s.ui != nil {
		s.ui.routes(mux, s.stopping)
	}
	rest := jsonErrors(mux)
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.EscapedPath(); {
		case p == "/kv" || strings.HasPrefix(p, "/kv/"):
			s.handleKV(w, r, p)
		case strings.HasPrefix(p, "/locks/"):
			s.handleLocks(w, r, p)
		default:
			rest.ServeHTTP(w, r)
		}
	})
	if s.metrics != nil {
		h = s.metrics.instrument(h)
	}
	return h
}

// jsonErrors makes the mux's own answers (404 for an unknown path, 405 for
// a known path with the wrong method) JSON errors like every other error of
// the API, keeping their headers (Allow, Location).
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{header: make(http.Header)}
		mux.ServeHTTP(rec, r)
		for _, h := range []string{"Allow", "Location"} {
			if v := rec.header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		msg := strings.ToLower(http.StatusText(rec.code))
		if rec.code == http.StatusMethodNotAllowed {
			msg += "; allowed: " + rec.header.Get("Allow")
		}
		writeError(w, rec.code, msg)
	})
}

// statusRecorder captures the status and headers a handler writes and
// discards its body.
type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
}
func (s *statusRecorder) Write(b []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(b), nil
}

// writeError answers with the API's error format, {"error": "..."}.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do
}

// checkName checks the size of a key or lock name, or answers 400/413 and
// returns false.
func checkName(w http.ResponseWriter, name, what string) bool {
	switch {
	case name == "":
		writeError(w, http.StatusBadRequest, fmt.Sprintf("empty %s: %ss are 1 to %d bytes", what, what, maxKeySize))
		return false
	case len(name) > maxKeySize:
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("%s of %d bytes: %ss are 1 to %d bytes", what, len(name), what, maxKeySize))
		return false
	}
	return true
}

// readBody reads a request body of at most limit bytes, or answers 413/400
// and returns false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, what string) ([]byte, bool) {
	if r.ContentLength > limit {
		drainRejected(r.Body)
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s larger than %d bytes", what, limit))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		drainRejected(r.Body)
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s larger than %d bytes", what, limit))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return nil, false
	}
	return body, true
}

// maxDrain bounds how much of a rejected body is read and thrown away.
const maxDrain = 4 << 20

// drainRejected reads (a bounded amount of) a body we refused: net/http
// itself drains only 256 KiB before closing, and a client still sending the
// rest of a large value would see a connection reset instead of our 413.
func drainRejected(body io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
}

// sessionHeaders reads the optional exactly-once headers into cmd, or
// answers 400 and returns false. Both headers or neither must be given.
func sessionHeaders(w http.ResponseWriter, r *http.Request, cmd *command) bool {
	client, seqText := r.Header.Get("X-Client-Id"), r.Header.Get("X-Request-Seq")
	if client == "" && seqText == "" {
		return true
	}
	if client == "" || seqText == "" {
		writeError(w, http.StatusBadRequest, "X-Client-Id and X-Request-Seq must be given together")
		return false
	}
	if len(client) > maxClientIDSize {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("X-Client-Id longer than %d bytes", maxClientIDSize))
		return false
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil || seq == 0 {
		writeError(w, http.StatusBadRequest, "X-Request-Seq must be a positive integer")
		return false
	}
	cmd.Client, cmd.Seq = client, seq
	return true
}

// submit stamps cmd with this node's clock and replicates it through raft.
// It returns what the state machine answered and the entry's index once the
// command is committed and applied.
func (s *server) submit(ctx context.Context, cmd command) (result, uint64, error) {
	cmd.Time = stamp(s.clock)
	res, err := s.raft.Propose(ctx, cmd.encode())
	if err != nil {
		return result{}, 0, err
	}
	out, _ := res.Value.(result) // Apply always returns a result
	return out, res.Index, nil
}

// propose submits cmd and returns the state machine's answer. On failure it
// has already written the error response and returns false; either way,
// once the command applied, the response carries its index (X-Raft-Index).
func (s *server) propose(w http.ResponseWriter, r *http.Request, cmd command) (result, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	res, index, err := s.submit(ctx, cmd)
	if err != nil {
		s.raftError(w, r, err, true)
		return result{}, false
	}
	setIndex(w, index)
	if res.Code != resultOK {
		writeResultError(w, res)
		return result{}, false
	}
	return res, true
}

// setIndex records the log index a response reflects.
func setIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set("X-Raft-Index", strconv.FormatUint(index, 10))
}

// writeResultError answers a command the state machine refused.
func writeResultError(w http.ResponseWriter, res result) {
	switch res.Code {
	case resultStaleSeq:
		writeError(w, http.StatusConflict, "X-Request-Seq is older than this client's latest request; it was not executed")
	case resultSeqReused:
		writeError(w, http.StatusConflict, "X-Request-Seq was already used by this client for a different request; it was not executed")
	case resultTooLarge:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the value would exceed %d bytes; nothing changed", maxValueSize))
	case resultNotInteger:
		writeError(w, http.StatusConflict, fmt.Sprintf("the value %.64q is not a decimal integer; nothing changed", res.Value))
	case resultOverflow:
		writeError(w, http.StatusConflict, fmt.Sprintf("%s plus the delta does not fit in a signed 64-bit integer; nothing changed", res.Value))
	case resultLockHeld:
		writeError(w, http.StatusConflict, fmt.Sprintf("lock held by %q (token %d) until log time %d ms", res.Lock.Holder, res.Lock.Token, res.Lock.Expires))
	case resultNotHolder:
		msg := "the lock is free (released, or its lease expired)"
		if res.Lock.Holder != "" {
			msg = fmt.Sprintf("the lock is held by %q with token %d", res.Lock.Holder, res.Lock.Token)
		}
		writeError(w, http.StatusConflict, "not the holder: "+msg)
	case resultFenced:
		msg := "the lock is free (released, or its lease expired)"
		if res.Lock.Holder != "" {
			msg = fmt.Sprintf("its current token is %d", res.Lock.Token)
		}
		writeError(w, http.StatusConflict, "X-Fence token is not the lock's current one: "+msg+"; nothing changed")
	default:
		writeError(w, http.StatusInternalServerError, "the state machine could not decode the command")
	}
}
