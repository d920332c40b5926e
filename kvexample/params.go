package main

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file parses the request parameters several endpoints share:
// headers of writes, TTLs, and the numbers in query strings. Each answers
// 400 itself and returns false on bad input, so that handlers read as a
// list of checks.

// writeHeaders reads the headers any write may carry: the exactly-once
// session (X-Client-Id, X-Request-Seq) and the fence (X-Fence).
func writeHeaders(w http.ResponseWriter, r *http.Request, cmd *command) bool {
	return sessionHeaders(w, r, cmd) && fenceHeader(w, r, cmd)
}

// fenceHeader reads X-Fence: {lock}:{token}. The token follows the last
// colon, so lock names may contain colons.
func fenceHeader(w http.ResponseWriter, r *http.Request, cmd *command) bool {
	h := r.Header.Get("X-Fence")
	if h == "" {
		return true
	}
	i := strings.LastIndexByte(h, ':')
	token, err := strconv.ParseUint(h[i+1:], 10, 64)
	if i <= 0 || err != nil || token == 0 || i > maxKeySize {
		writeError(w, http.StatusBadRequest, "X-Fence must be {lock}:{token}, with a lock name of 1 to 1024 bytes and a positive token")
		return false
	}
	cmd.FenceLock, cmd.FenceToken = h[:i], token
	return true
}

// ttlParam reads ?ttl=SECONDS (fractions allowed) as milliseconds; 0 when
// there is none.
func ttlParam(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	q := r.URL.Query()
	if !q.Has("ttl") {
		return 0, true
	}
	d, ok := secondsParam(w, q.Get("ttl"), "ttl", maxTTLMillis*time.Millisecond)
	return uint64(d / time.Millisecond), ok
}

// secondsParam parses a positive number of seconds of at most limit,
// rounded up to a whole millisecond.
func secondsParam(w http.ResponseWriter, text, name string, limit time.Duration) (time.Duration, bool) {
	secs, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(secs) || secs <= 0 || secs > limit.Seconds() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s=%q: want a positive number of seconds, at most %v", name, text, limit))
		return 0, false
	}
	return time.Duration(math.Ceil(secs*1000)) * time.Millisecond, true
}

// uintParam parses an optional non-negative integer query parameter.
func uintParam(w http.ResponseWriter, r *http.Request, name string, def uint64) (uint64, bool) {
	q := r.URL.Query()
	if !q.Has(name) {
		return def, true
	}
	v, err := strconv.ParseUint(q.Get(name), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s=%q: want a non-negative integer", name, q.Get(name)))
		return 0, false
	}
	return v, true
}

// stamp returns clock's time for a command, in the log's unit (Unix
// milliseconds), or 0, which means no time, for a clock before 1970 or
// absurdly far ahead.
func stamp(clock func() time.Time) uint64 {
	ms := clock().UnixMilli()
	if ms <= 0 || ms > maxTimeMillis {
		return 0
	}
	return uint64(ms)
}
