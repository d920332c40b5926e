package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// This file has one handler per endpoint of the API. Each follows the same
// shape: validate the request (cheap, and the same answer on every node),
// then either propose a command to raft (writes) or read the local state
// machine (reads), then answer.

// handleGet serves GET /kv/{key}: a read as consistent as
// ?consistency= asks (reads.go); with ?watch=1, a watch
// (handlers_watch.go).
func (s *server) handleGet(w http.ResponseWriter, r *http.Request, key string) {
	if r.URL.Query().Has("watch") {
		s.handleWatch(w, r, key, false)
		return
	}
	if !s.readBarrier(w, r) {
		return
	}
	value, found, index := s.sm.Get(key)
	// An absent key is an answer too: a client can watch for its creation
	// from this index.
	setIndex(w, index)
	if !found {
		writeError(w, http.StatusNotFound, "key not found")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(value)
}

// handlePut serves PUT /kv/{key}: the body becomes the value, and ?ttl=S
// makes the key expire S seconds of log time later.
func (s *server) handlePut(w http.ResponseWriter, r *http.Request, key string) {
	cmd := command{Op: opPut, Key: key}
	var ok bool
	if cmd.TTL, ok = ttlParam(w, r); !ok {
		return
	}
	if cmd.Value, ok = readBody(w, r, maxValueSize, "value"); !ok || !writeHeaders(w, r, &cmd) {
		return
	}
	if _, ok := s.propose(w, r, cmd); ok {
		w.WriteHeader(http.StatusOK)
	}
}

// handleDelete serves DELETE /kv/{key}; deleting an absent key succeeds.
func (s *server) handleDelete(w http.ResponseWriter, r *http.Request, key string) {
	cmd := command{Op: opDelete, Key: key}
	if !writeHeaders(w, r, &cmd) {
		return
	}
	if _, ok := s.propose(w, r, cmd); ok {
		w.WriteHeader(http.StatusOK)
	}
}

// handleAppend serves POST /kv/{key}/append: the body is appended to the
// value (an absent key counts as empty) and the new value is returned.
func (s *server) handleAppend(w http.ResponseWriter, r *http.Request, key string) {
	cmd := command{Op: opAppend, Key: key}
	var ok bool
	if cmd.Value, ok = readBody(w, r, maxValueSize, "suffix"); !ok || !writeHeaders(w, r, &cmd) {
		return
	}
	if res, ok := s.propose(w, r, cmd); ok {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(res.Value)
	}
}

// maxIncrBody bounds an incr's body: a signed 64-bit integer and some
// whitespace.
const maxIncrBody = 64

// handleIncr serves POST /kv/{key}/incr: the body, a signed decimal
// integer (1 if empty), is added to the value, and the sum returned.
func (s *server) handleIncr(w http.ResponseWriter, r *http.Request, key string) {
	cmd := command{Op: opIncr, Key: key, Delta: 1}
	body, ok := readBody(w, r, maxIncrBody, "incr delta")
	if !ok {
		return
	}
	if text := strings.TrimSpace(string(body)); text != "" {
		delta, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("incr delta %q: want a signed decimal integer (or an empty body for 1)", text))
			return
		}
		cmd.Delta = delta
	}
	if !writeHeaders(w, r, &cmd) {
		return
	}
	if res, ok := s.propose(w, r, cmd); ok {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(res.Value)
	}
}

// casResponse is the JSON answer of a CAS. Value is null when the key is
// absent after the operation.
type casResponse struct {
	OK    bool    `json:"ok"`
	Value *string `json:"value"`
}

// handleCAS serves POST /kv/{key}/cas with {"old": "a"|null, "new": "b"}.
func (s *server) handleCAS(w http.ResponseWriter, r *http.Request, key string) {
	cmd := command{Op: opCAS, Key: key}
	body, ok := readBody(w, r, maxCASBody, "CAS request")
	if !ok {
		return
	}
	code, err := parseCAS(body, &cmd)
	if err != nil {
		writeError(w, code, err.Error())
		return
	}
	if !writeHeaders(w, r, &cmd) {
		return
	}
	res, ok := s.propose(w, r, cmd)
	if !ok {
		return
	}
	out := casResponse{OK: res.Swapped}
	if res.Found {
		v := string(res.Value)
		out.Value = &v
	}
	writeJSON(w, http.StatusOK, out)
}

// parseCAS reads {"old": "a"|null, "new": "b"} strictly: both fields are
// required, nothing else is allowed, and "old": null (must be absent) is
// told apart from "old": "" (must be present and empty). It returns the
// status code to answer with on error.
func parseCAS(body []byte, cmd *command) (int, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return http.StatusBadRequest, fmt.Errorf(`malformed CAS request: want {"old": "a"|null, "new": "b"}`)
	}
	if _, err := dec.Token(); err != io.EOF {
		return http.StatusBadRequest, fmt.Errorf("malformed CAS request: data after the JSON object")
	}
	for name := range fields {
		if name != "old" && name != "new" {
			return http.StatusBadRequest, fmt.Errorf("malformed CAS request: unknown field %q", name)
		}
	}
	oldRaw, hasOld := fields["old"]
	newRaw, hasNew := fields["new"]
	if !hasOld || !hasNew {
		return http.StatusBadRequest, fmt.Errorf(`malformed CAS request: "old" and "new" are both required`)
	}
	var newValue string
	if err := json.Unmarshal(newRaw, &newValue); err != nil || bytes.Equal(newRaw, []byte("null")) {
		return http.StatusBadRequest, fmt.Errorf(`malformed CAS request: "new" must be a string`)
	}
	if !bytes.Equal(oldRaw, []byte("null")) {
		var oldValue string
		if err := json.Unmarshal(oldRaw, &oldValue); err != nil {
			return http.StatusBadRequest, fmt.Errorf(`malformed CAS request: "old" must be a string or null`)
		}
		cmd.Old, cmd.HasOld = []byte(oldValue), true
	}
	if len(newValue) > maxValueSize || len(cmd.Old) > maxValueSize {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("CAS value larger than %d bytes", maxValueSize)
	}
	cmd.Value = []byte(newValue)
	return 0, nil
}
