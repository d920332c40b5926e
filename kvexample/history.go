package main

import (
	"slices"
	"sort"
	"strings"
)

// This file keeps the recent changes to keys, which watches are served
// from.
//
// A watch asks for the first change after a log index. The client got
// that index from a read (X-Raft-Index), and between its read and its watch
// the key may have changed: if only watchers that are waiting when a change
// is applied heard of it, that change would be lost. So the node keeps the
// last changes in a bounded ring, whether or not anyone watches, and a
// watch looks there first. Recording one change is a store into a
// preallocated slot; matching changes to watchers and waking them happens
// only when there are watchers (watch.go).
//
// The ring belongs to this node: it is not replicated and not in
// snapshots. Every node applies the same entries, so every node records the
// same changes; a node restored from a snapshot simply has none before the
// snapshot's index, and a watch reaching further back is told so (410) and
// reads again.

// Bounds on the ring: how many changes, and how many bytes of values, it
// keeps. Values are shared with the store (they are never modified), so the
// byte bound is about the memory old values are kept alive for.
const (
	maxHistoryEvents = 16384
	maxHistoryBytes  = 64 << 20
)

// change is one change to a key: its new value, or its deletion.
type change struct {
	Index   uint64
	Key     string
	Value   []byte
	Deleted bool
}

// history is a ring of the latest changes, in log order.
type history struct {
	// ring grows by doubling up to maxEvents slots, so that a state
	// machine that sees few changes (a test's, a benchmark's) stays small.
	ring            []change
	maxEvents       int
	head, n         int // the oldest change is ring[head]; n are kept
	bytes, maxBytes int
	recorded        uint64 // changes ever recorded: positions for since
	gone            uint64 // every change after this index is kept
}

func (h *history) init(events, bytes int) {
	h.maxEvents, h.maxBytes = events, bytes
}

// record appends a change made by entry index.
func (h *history) record(index uint64, key string, value []byte, deleted bool) {
	if h.maxEvents == 0 {
		return // never initialized: keeps nothing
	}
	for h.n > 0 && (h.n == h.maxEvents || h.bytes+len(value) > h.maxBytes) {
		h.evict()
	}
	if h.n == len(h.ring) {
		h.grow()
	}
	h.ring[(h.head+h.n)%len(h.ring)] = change{Index: index, Key: key, Value: value, Deleted: deleted}
	h.n++
	h.bytes += len(value)
	h.recorded++
}

func (h *history) evict() {
	old := &h.ring[h.head]
	h.gone = max(h.gone, old.Index)
	h.bytes -= len(old.Value)
	*old = change{} // let the value be collected
	h.head = (h.head + 1) % len(h.ring)
	h.n--
}

// grow doubles the ring, oldest change first.
func (h *history) grow() {
	next := make([]change, min(max(16, 2*len(h.ring)), h.maxEvents))
	for i := range h.n {
		next[i] = *h.at(i)
	}
	h.ring, h.head = next, 0
}

// reset forgets every change: the state jumped to index (a restore).
func (h *history) reset(index uint64) {
	for h.n > 0 {
		h.evict()
	}
	h.gone = index
}

// at returns the i-th kept change, oldest first.
func (h *history) at(i int) *change { return &h.ring[(h.head+i)%len(h.ring)] }

// end returns a position that since turns into the changes recorded after
// it.
func (h *history) end() uint64 { return h.recorded }

// since calls fn for each kept change recorded after position mark.
func (h *history) since(mark uint64, fn func(*change)) {
	first := max(0, h.n-int(h.recorded-mark))
	for i := first; i < h.n; i++ {
		fn(h.at(i))
	}
}

// find returns the changes to key (or, if prefix, to keys under it) made by
// the first entry after index after that made any, one per key (the last,
// when an entry changed a key twice: an expiry then a put), sorted by key.
// gone is true when changes after after are no longer kept.
func (h *history) find(after uint64, key string, prefix bool) (found []change, gone bool) {
	if after < h.gone {
		return nil, true
	}
	matches := func(c *change) bool {
		if prefix {
			return strings.HasPrefix(c.Key, key)
		}
		return c.Key == key
	}
	i := sort.Search(h.n, func(i int) bool { return h.at(i).Index > after })
	for ; i < h.n && !matches(h.at(i)); i++ {
	}
	if i == h.n {
		return nil, false
	}
	index := h.at(i).Index
	pos := map[string]int{}
	for ; i < h.n && h.at(i).Index == index; i++ {
		if c := h.at(i); matches(c) {
			if j, seen := pos[c.Key]; seen {
				found[j] = *c
			} else {
				pos[c.Key] = len(found)
				found = append(found, *c)
			}
		}
	}
	slices.SortFunc(found, func(a, b change) int { return strings.Compare(a.Key, b.Key) })
	return found, false
}
