package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// This file serves the locks: acquire (optionally waiting for a busy lock),
// renew, release and read. locks.go has what they do to the state, and
// docs/tutorial.md how a client uses them safely.

// Bounds of lock requests.
const (
	maxLockBody = 4096
	maxLockWait = time.Minute
)

// lockRequest is the JSON body of acquire, renew and release. Pointers tell
// a missing field from a zero one.
type lockRequest struct {
	Holder *string `json:"holder"`
	TTLMs  *uint64 `json:"ttl_ms"`
	WaitMs *uint64 `json:"wait_ms"`
	Token  *uint64 `json:"token"`
}

// lockResponse describes a held lock. The lease ends when the log's clock
// (Unix milliseconds, see logclock.go) reaches ExpiresAtMs, that is TTLMs
// after the entry at ExpiresIndex (the grant or the last renewal), unless
// it is renewed.
type lockResponse struct {
	Holder       string `json:"holder"`
	Token        uint64 `json:"token"`
	TTLMs        uint64 `json:"ttl_ms"`
	ExpiresAtMs  uint64 `json:"expires_at_ms"`
	ExpiresIndex uint64 `json:"expires_index"`
}

func newLockResponse(l lockState) lockResponse {
	return lockResponse{Holder: l.Holder, Token: l.Token, TTLMs: l.TTL, ExpiresAtMs: l.Expires, ExpiresIndex: l.SetIndex}
}

// handleLockOp serves POST /locks/{name}/acquire, /renew and /release.
func (s *server) handleLockOp(w http.ResponseWriter, r *http.Request, name, opName string) {
	body, ok := readBody(w, r, maxLockBody, "lock request")
	if !ok {
		return
	}
	cmd := command{Key: name}
	wait, err := parseLockRequest(body, opName, &cmd)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !sessionHeaders(w, r, &cmd) {
		return
	}
	if cmd.Op != opAcquire || wait == 0 {
		if res, ok := s.propose(w, r, cmd); ok {
			writeJSON(w, http.StatusOK, newLockResponse(res.Lock))
		}
		return
	}
	s.acquireWaiting(w, r, cmd, wait)
}

// acquireWaiting acquires, and while the lock is held by another, waits on
// this node's state machine for it to be freed (released, or its lease
// ended on the log's clock) and tries again, until wait has passed.
func (s *server) acquireWaiting(w http.ResponseWriter, r *http.Request, cmd command, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
		res, index, err := s.submit(ctx, cmd)
		cancel()
		if err != nil {
			s.raftError(w, r, err, true)
			return
		}
		if res.Code == resultLockHeld {
			wctx, cancel := s.waitContext(r, deadline)
			freed := s.sm.WaitLockFreed(wctx, cmd.Key, res.Lock.Token)
			cancel()
			if freed {
				continue
			}
		}
		setIndex(w, index)
		if res.Code != resultOK {
			writeResultError(w, res)
			return
		}
		writeJSON(w, http.StatusOK, newLockResponse(res.Lock))
		return
	}
}

// parseLockRequest reads a lock request strictly, filling cmd, and returns
// how long an acquire may wait.
func parseLockRequest(body []byte, opName string, cmd *command) (time.Duration, error) {
	var req lockRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return 0, fmt.Errorf("malformed %s request: %v", opName, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, fmt.Errorf("malformed %s request: data after the JSON object", opName)
	}
	if req.Holder == nil || *req.Holder == "" || len(*req.Holder) > maxClientIDSize {
		return 0, fmt.Errorf(`%s needs "holder", a string of 1 to %d bytes`, opName, maxClientIDSize)
	}
	cmd.Holder = *req.Holder
	if req.TTLMs != nil && (*req.TTLMs == 0 || *req.TTLMs > maxTTLMillis) {
		return 0, fmt.Errorf(`"ttl_ms" must be 1 to %d`, uint64(maxTTLMillis))
	}
	if req.TTLMs != nil {
		cmd.TTL = *req.TTLMs
	}
	switch opName {
	case "acquire":
		cmd.Op = opAcquire
		if req.TTLMs == nil || req.Token != nil {
			return 0, errors.New(`acquire takes "holder", "ttl_ms" and optionally "wait_ms"`)
		}
		if req.WaitMs == nil {
			return 0, nil
		}
		if *req.WaitMs > uint64(maxLockWait.Milliseconds()) {
			return 0, fmt.Errorf(`"wait_ms" must be at most %d`, maxLockWait.Milliseconds())
		}
		return time.Duration(*req.WaitMs) * time.Millisecond, nil
	case "renew":
		cmd.Op = opRenew
	default:
		cmd.Op = opRelease
		if req.TTLMs != nil {
			return 0, errors.New(`release takes "holder" and a positive "token"`)
		}
	}
	if req.Token == nil || *req.Token == 0 || req.WaitMs != nil {
		if cmd.Op == opRenew {
			return 0, errors.New(`renew takes "holder", a positive "token" and optionally "ttl_ms"`)
		}
		return 0, errors.New(`release takes "holder" and a positive "token"`)
	}
	cmd.Token = *req.Token
	return 0, nil
}

// handleLockGet serves GET /locks/{name}: the lock's holder, token and
// lease, read like a key (see reads.go); 404 when free.
func (s *server) handleLockGet(w http.ResponseWriter, r *http.Request, name string) {
	if !s.readBarrier(w, r) {
		return
	}
	l, held, index := s.sm.Lock(name)
	setIndex(w, index)
	if !held {
		writeError(w, http.StatusNotFound, "lock is free")
		return
	}
	writeJSON(w, http.StatusOK, newLockResponse(l))
}
