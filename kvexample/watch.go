package main

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
)

// This file lets HTTP handlers wait for the state machine: a watch waits
// for a change to a key or under a prefix, and an acquire with wait_ms
// waits for a lock to be freed. A waiter registers, the applier wakes it
// when an entry touches what it waits for, and it looks again.
//
// Lock order: kvStateMachine.mu, then watchHub.mu. A waiter checks the
// state and registers while holding mu (read-locked), so no entry can be
// applied between its check and its registration, and none is missed.

// waitKind says what a waiter waits for.
type waitKind uint8

const (
	waitKey waitKind = iota
	waitPrefix
	waitLock
)

// waiter is one handler waiting; ch is closed to wake it.
type waiter struct {
	kind waitKind
	name string // the key, prefix or lock
	ch   chan struct{}
}

// watchHub holds the waiters, indexed so that a change wakes only those
// that wait for it.
type watchHub struct {
	mu       sync.Mutex
	count    atomic.Int64
	byName   map[waitKind]map[string]map[*waiter]struct{} // keys and locks
	prefixes map[*waiter]struct{}
}

// active reports whether anyone waits: the applier's only cost when nobody
// does.
func (h *watchHub) active() bool { return h.count.Load() > 0 }

func (h *watchHub) add(kind waitKind, name string) *waiter {
	w := &waiter{kind: kind, name: name, ch: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if kind == waitPrefix {
		if h.prefixes == nil {
			h.prefixes = make(map[*waiter]struct{})
		}
		h.prefixes[w] = struct{}{}
	} else {
		if h.byName == nil {
			h.byName = make(map[waitKind]map[string]map[*waiter]struct{})
		}
		names := h.byName[kind]
		if names == nil {
			names = make(map[string]map[*waiter]struct{})
			h.byName[kind] = names
		}
		if names[name] == nil {
			names[name] = make(map[*waiter]struct{})
		}
		names[name][w] = struct{}{}
	}
	h.count.Add(1)
	return w
}

// remove unregisters w, if it is still registered. The caller holds h.mu.
func (h *watchHub) removeLocked(w *waiter) bool {
	if w.kind == waitPrefix {
		if _, ok := h.prefixes[w]; !ok {
			return false
		}
		delete(h.prefixes, w)
	} else {
		set := h.byName[w.kind][w.name]
		if _, ok := set[w]; !ok {
			return false
		}
		delete(set, w)
		if len(set) == 0 {
			delete(h.byName[w.kind], w.name)
		}
	}
	h.count.Add(-1)
	return true
}

// remove unregisters a waiter that gave up.
func (h *watchHub) remove(w *waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(w)
}

func (h *watchHub) wakeLocked(w *waiter) {
	if h.removeLocked(w) {
		close(w.ch)
	}
}

// notify wakes the waiters of the changes and freed locks of one entry.
func (h *watchHub) notify(changes func(func(*change)), freedLocks []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	changes(func(c *change) {
		for w := range h.byName[waitKey][c.Key] {
			h.wakeLocked(w)
		}
		for w := range h.prefixes {
			if strings.HasPrefix(c.Key, w.name) {
				h.wakeLocked(w)
			}
		}
	})
	for _, name := range freedLocks {
		for w := range h.byName[waitLock][name] {
			h.wakeLocked(w)
		}
	}
}

// wakeAll wakes every waiter: the state was replaced (a restore).
func (h *watchHub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.prefixes {
		h.wakeLocked(w)
	}
	for _, names := range h.byName {
		for _, set := range names {
			for w := range set {
				h.wakeLocked(w)
			}
		}
	}
}

// watchResult is the outcome of a watch.
type watchResult struct {
	// Changes are those of the first entry after the watch's index that
	// changed what it watches, one per key; nil if none came in time.
	Changes []change
	// Gone: the changes after the watch's index are no longer kept.
	Gone bool
	// Applied is the last applied index when the watch looked: with no
	// change, nothing it watches changed up to there.
	Applied uint64
}

// Watch waits until an entry after index after changes key (or, if prefix,
// a key under it), or ctx ends.
func (s *kvStateMachine) Watch(ctx context.Context, key string, prefix bool, after uint64) watchResult {
	kind := waitKey
	if prefix {
		kind = waitPrefix
	}
	for {
		s.mu.RLock()
		found, gone := s.changes.find(after, key, prefix)
		res := watchResult{Changes: found, Gone: gone, Applied: s.st.applied}
		if gone || len(found) > 0 || ctx.Err() != nil {
			s.mu.RUnlock()
			return res
		}
		w := s.watchers.add(kind, key)
		s.mu.RUnlock()
		select {
		case <-w.ch:
		case <-ctx.Done():
			// Look once more: a change may have come with the deadline.
			s.watchers.remove(w)
		}
	}
}

// WaitLockFreed waits until lock name is no longer held with token, or ctx
// ends; it reports whether the lock was freed (or changed hands).
func (s *kvStateMachine) WaitLockFreed(ctx context.Context, name string, token uint64) bool {
	for {
		s.mu.RLock()
		l, held := s.st.locks.Get(name)
		if !held || l.Token != token {
			s.mu.RUnlock()
			return true
		}
		w := s.watchers.add(waitLock, name)
		s.mu.RUnlock()
		select {
		case <-w.ch:
		case <-ctx.Done():
			s.watchers.remove(w)
			return false
		}
	}
}
