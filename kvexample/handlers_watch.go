package main

import (
	"fmt"
	"net/http"
	"time"
)

// This file serves the reads of many keys: listing a prefix, and watching
// a key or a prefix for its next change.

// Bounds of a listing: keys per page, and bytes of values per page (a page
// holds at least one key, whatever its size).
const (
	defaultListLimit = 100
	maxListLimit     = 1000
	maxListBytes     = 4 << 20
)

// Bounds of a watch's wait.
const (
	defaultWatchWait = 30 * time.Second
	maxWatchWait     = 5 * time.Minute
)

// listEntry is one key of a listing. Values are JSON strings, as in a CAS
// answer.
type listEntry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// listResponse is the answer of GET /kv?prefix=P. Next is the start of the
// next page, null on the last one.
type listResponse struct {
	Items []listEntry `json:"items"`
	Next  *string     `json:"next"`
}

// handleList serves GET /kv?prefix=P&limit=N&start=K: the keys under P from
// K on, in order, read like a single key (see reads.go).
// With ?watch=1 it watches the prefix instead.
func (s *server) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("watch") {
		s.handleWatch(w, r, q.Get("prefix"), true)
		return
	}
	limit, ok := uintParam(w, r, "limit", defaultListLimit)
	if !ok {
		return
	}
	if limit == 0 || limit > maxListLimit {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("limit=%d: want 1 to %d", limit, maxListLimit))
		return
	}
	if !s.readBarrier(w, r) {
		return
	}
	items, next, index := s.sm.List(q.Get("prefix"), q.Get("start"), int(limit), maxListBytes)
	out := listResponse{Items: make([]listEntry, len(items))}
	for i, it := range items {
		out.Items[i] = listEntry{Key: it.Key, Value: string(it.Value)}
	}
	if next != "" {
		out.Next = &next
	}
	setIndex(w, index)
	writeJSON(w, http.StatusOK, out)
}

// watchResponse is the answer of a watch: the first change after the
// watch's index. A prefix watch also lists in Changes every key under the
// prefix that the same entry changed (several TTLs can end at once); the
// top-level fields are the first of them.
type watchResponse struct {
	Key     string         `json:"key"`
	Value   *string        `json:"value"` // null: the key was deleted
	Index   uint64         `json:"index"`
	Changes []watchedEvent `json:"changes,omitempty"`
}

type watchedEvent struct {
	Key   string  `json:"key"`
	Value *string `json:"value"`
}

// handleWatch serves ?watch=1&after=I&wait=S on a key or a prefix: it
// waits up to S seconds for the first entry after index I that changes the
// key (or a key under the prefix). Without after, it waits for the next
// change from now.
func (s *server) handleWatch(w http.ResponseWriter, r *http.Request, name string, prefix bool) {
	q := r.URL.Query()
	if v := q.Get("watch"); v != "1" && v != "true" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("watch=%q: want watch=1", v))
		return
	}
	after, ok := uintParam(w, r, "after", 0)
	if !ok {
		return
	}
	wait := defaultWatchWait
	if q.Has("wait") {
		if wait, ok = secondsParam(w, q.Get("wait"), "wait", maxWatchWait); !ok {
			return
		}
	}
	if !s.readBarrier(w, r) {
		return
	}
	if !q.Has("after") {
		after = s.sm.Applied()
	}
	ctx, cancel := s.waitContext(r, time.Now().Add(wait))
	defer cancel()
	res := s.sm.Watch(ctx, name, prefix, after)
	switch {
	case res.Gone:
		setIndex(w, res.Applied)
		writeError(w, http.StatusGone, fmt.Sprintf(
			"this node no longer keeps the changes after index %d; read again and watch from the read's X-Raft-Index", after))
	case len(res.Changes) == 0:
		// Nothing changed up to this index: watch again with the same
		// after (or this index).
		setIndex(w, res.Applied)
		w.WriteHeader(http.StatusNoContent)
	default:
		first := res.Changes[0]
		out := watchResponse{Key: first.Key, Value: changedValue(first), Index: first.Index}
		if prefix {
			for _, c := range res.Changes {
				out.Changes = append(out.Changes, watchedEvent{Key: c.Key, Value: changedValue(c)})
			}
		}
		setIndex(w, first.Index)
		writeJSON(w, http.StatusOK, out)
	}
}

func changedValue(c change) *string {
	if c.Deleted {
		return nil
	}
	v := string(c.Value)
	return &v
}
