package main

import (
	"net/http"
	"net/url"
	"strings"
)

// This file routes /kv and /locks, where names may contain "/".
//
// http.ServeMux cannot do it: a {key} wildcard stops at a "/", a {key...}
// one cannot be followed by /append, and the mux rewrites paths with "//"
// or "/../" in them. So these two trees are routed here, on the escaped
// path, by one rule: a POST names an operation in its last path segment
// (/kv/users/42/incr increments key users/42), every other method takes the
// whole rest of the path as the name (GET /kv/users/42/incr reads the key
// users/42/incr). A "/" escaped as %2F is part of the name either way.

// keyOps are the operations a POST may name on a key, and lockOps on a
// lock.
var (
	keyOps  = []string{"append", "cas", "incr"}
	lockOps = []string{"acquire", "renew", "release"}
)

// handleKV serves /kv and everything under it.
func (s *server) handleKV(w http.ResponseWriter, r *http.Request, escaped string) {
	if escaped == "/kv" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		s.handleList(w, r)
		return
	}
	rest := strings.TrimPrefix(escaped, "/kv/")
	name, opName, hasOp := splitOp(rest, keyOps)
	if r.Method == http.MethodPost && hasOp {
		key, ok := pathName(w, name, "key")
		if !ok {
			return
		}
		switch opName {
		case "append":
			s.handleAppend(w, r, key)
		case "cas":
			s.handleCAS(w, r, key)
		case "incr":
			s.handleIncr(w, r, key)
		}
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
	default:
		allowed := "GET, HEAD, PUT, DELETE"
		if hasOp {
			allowed += ", POST"
		}
		if r.Method == http.MethodPost && !hasOp {
			// The likeliest mistake: say where POST goes.
			w.Header().Set("Allow", allowed)
			writeError(w, http.StatusMethodNotAllowed, "method not allowed; allowed: "+allowed+
				"; POST goes to /kv/{key}/append, /kv/{key}/cas or /kv/{key}/incr")
			return
		}
		methodNotAllowed(w, allowed)
		return
	}
	key, ok := pathName(w, rest, "key")
	if !ok {
		return
	}
	switch r.Method {
	case http.MethodPut:
		s.handlePut(w, r, key)
	case http.MethodDelete:
		s.handleDelete(w, r, key)
	default:
		s.handleGet(w, r, key)
	}
}

// handleLocks serves everything under /locks/.
func (s *server) handleLocks(w http.ResponseWriter, r *http.Request, escaped string) {
	rest := strings.TrimPrefix(escaped, "/locks/")
	name, opName, hasOp := splitOp(rest, lockOps)
	if r.Method == http.MethodPost && hasOp {
		lock, ok := pathName(w, name, "lock name")
		if ok {
			s.handleLockOp(w, r, lock, opName)
		}
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		allowed := "GET, HEAD"
		if hasOp {
			allowed += ", POST"
		}
		methodNotAllowed(w, allowed)
		return
	}
	if lock, ok := pathName(w, rest, "lock name"); ok {
		s.handleLockGet(w, r, lock)
	}
}

// splitOp splits "name/op" when op is one of ops and name is not empty.
func splitOp(rest string, ops []string) (name, op string, ok bool) {
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return "", "", false
	}
	for _, o := range ops {
		if rest[i+1:] == o {
			return rest[:i], o, true
		}
	}
	return "", "", false
}

// pathName unescapes a key or lock name from the path and checks its size,
// or answers 400/413 and returns false.
func pathName(w http.ResponseWriter, escaped, what string) (string, bool) {
	name, err := url.PathUnescape(escaped)
	if err != nil {
		// net/http refuses bad escapes before routing; this is a backstop.
		writeError(w, http.StatusBadRequest, "bad escape in the "+what)
		return "", false
	}
	return name, checkName(w, name, what)
}

// methodNotAllowed answers 405 with every method the path allows.
func methodNotAllowed(w http.ResponseWriter, allowed string) {
	w.Header().Set("Allow", allowed)
	writeError(w, http.StatusMethodNotAllowed, "method not allowed; allowed: "+allowed)
}
