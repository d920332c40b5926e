package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// describe renders changes as "index:key=value" (or "index:key deleted").
func describe(cs []change) string {
	var b bytes.Buffer
	for _, c := range cs {
		if c.Deleted {
			fmt.Fprintf(&b, "%d:%s deleted ", c.Index, c.Key)
		} else {
			fmt.Fprintf(&b, "%d:%s=%s ", c.Index, c.Key, c.Value)
		}
	}
	return b.String()
}

func TestHistoryFindsTheFirstChangeAfterAnIndex(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	applyAll(sm,
		command{Op: opPut, Key: "users/1", Value: []byte("a")},                  // 1
		command{Op: opPut, Key: "other", Value: []byte("x")},                    // 2
		command{Op: opDelete, Key: "never-there"},                               // 3: no change
		command{Op: opPut, Key: "users/2", Value: []byte("b"), TTL: 5, Time: 1}, // 4
		command{Op: opPut, Key: "users/3", Value: []byte("c"), TTL: 5, Time: 1}, // 5
		// 6: the clock passes both TTLs, then the put of users/2 runs.
		command{Op: opPut, Key: "users/2", Value: []byte("again"), Time: 10},
		command{Op: opDelete, Key: "users/1"}, // 7
	)
	cases := []struct {
		after  uint64
		key    string
		prefix bool
		want   string
	}{
		{0, "users/1", false, "1:users/1=a "},
		{1, "users/1", false, "7:users/1 deleted "},
		{7, "users/1", false, ""},
		{2, "never-there", false, ""},
		{4, "users/2", false, "6:users/2=again "}, // the expiry then the put: one change
		{0, "users/", true, "1:users/1=a "},
		{4, "users/", true, "5:users/3=c "},
		{5, "users/", true, "6:users/2=again 6:users/3 deleted "},
		{1, "o", true, "2:other=x "},
	}
	for _, c := range cases {
		found, gone := sm.changes.find(c.after, c.key, c.prefix)
		if got := describe(found); got != c.want || gone {
			t.Errorf("find(after %d, %q, prefix %v) = %q gone=%v, want %q", c.after, c.key, c.prefix, got, gone, c.want)
		}
	}
}

func TestHistoryKnowsWhatItNoLongerKeeps(t *testing.T) {
	var h history
	h.init(4, 10)
	for i := range uint64(6) {
		h.record(i+1, "k", []byte("v"), false)
	}
	if _, gone := h.find(1, "k", false); !gone {
		t.Error("changes after 1 were evicted (ring of 4 holds 3..6), but find does not say so")
	}
	if found, gone := h.find(2, "k", false); gone || len(found) != 1 || found[0].Index != 3 {
		t.Errorf("find(after 2) = %v gone=%v, want the change at 3", found, gone)
	}
	h.record(7, "big", make([]byte, 9), false) // the byte bound evicts 3, 4, 5
	if _, gone := h.find(4, "k", false); !gone {
		t.Error("a 9-byte value in a ring of 10 bytes holding 4 must evict the changes at 3 to 5")
	}
	if found, gone := h.find(5, "k", false); gone || len(found) != 1 || found[0].Index != 6 {
		t.Errorf("find(after 5) = %v gone=%v, want the change at 6", found, gone)
	}
	h.reset(20)
	if _, gone := h.find(19, "k", false); !gone {
		t.Error("after a reset to 20, changes after 19 are unknown")
	}
	if found, gone := h.find(20, "k", false); gone || found != nil {
		t.Errorf("after a reset to 20, changes after 20: %v gone=%v, want none yet", found, gone)
	}
}

func TestWatchWaitsForTheChangeAndThenLeavesNoWaiter(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	applyAll(sm, command{Op: opPut, Key: "k", Value: []byte("0")})
	got := make(chan watchResult)
	go func() { got <- sm.Watch(context.Background(), "k", false, 1) }()
	// Changes to other keys do not answer the watch.
	for !sm.watchers.active() {
		time.Sleep(time.Millisecond)
	}
	applyAll(sm, command{Op: opPut, Key: "other", Value: []byte("x")})
	select {
	case r := <-got:
		t.Fatalf("the watch answered %+v after a change to another key", r)
	case <-time.After(50 * time.Millisecond):
	}
	applyAll(sm, command{Op: opPut, Key: "k", Value: []byte("1")})
	if r := <-got; describe(r.Changes) != "3:k=1 " {
		t.Fatalf("watch answered %q, want the change at 3", describe(r.Changes))
	}
	if sm.watchers.active() {
		t.Fatal("a waiter is still registered after its watch answered")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if r := sm.Watch(ctx, "k", false, 3); r.Changes != nil || r.Gone || r.Applied != 3 {
		t.Fatalf("a watch that times out: %+v, want no change as of index 3", r)
	}
	if sm.watchers.active() {
		t.Fatal("a waiter is still registered after its watch timed out")
	}
}

func TestRestoreTellsWaitingWatchesTheirHistoryIsGone(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	applyAll(sm, command{Op: opPut, Key: "k", Value: []byte("0")})
	got := make(chan watchResult)
	go func() { got <- sm.Watch(context.Background(), "k", false, 1) }()
	for !sm.watchers.active() {
		time.Sleep(time.Millisecond)
	}
	if err := sm.Restore(bytes.NewReader(snapshotBytes(t, busyStateMachine(3)))); err != nil {
		t.Fatal(err)
	}
	if r := <-got; !r.Gone {
		t.Fatalf("watch after a restore answered %+v, want gone", r)
	}
}

func TestALockWaiterWakesWhenTheLockIsFreed(t *testing.T) {
	for _, how := range []string{"released", "expired"} {
		t.Run(how, func(t *testing.T) {
			sm := newKVStateMachine(defaultSessionTTL)
			applyAll(sm, acquire("a", 100, 1000))
			freed := make(chan bool)
			go func() { freed <- sm.WaitLockFreed(context.Background(), "L", 1) }()
			for !sm.watchers.active() {
				time.Sleep(time.Millisecond)
			}
			applyAll(sm, renew("a", 1, 1050)) // a renewal frees nothing
			if how == "released" {
				applyAll(sm, release("a", 1))
			} else {
				applyAll(sm, command{Op: opTick, Time: 1150})
			}
			if !<-freed {
				t.Fatal("the waiter was not told the lock is free")
			}
		})
	}
}

func TestAWaitingWatchAnswersAtOnceWhenTheServerStops(t *testing.T) {
	stopping, stop := context.WithCancel(context.Background())
	s := &server{sm: newKVStateMachine(defaultSessionTTL), stopping: stopping}
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.routes().ServeHTTP(rec, httptest.NewRequest("GET", "/kv/k?watch=1&stale=1&wait=60", nil))
	}()
	for !s.sm.watchers.active() {
		time.Sleep(time.Millisecond)
	}
	stop()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a 60 s watch still waits after the server began to stop")
	}
	if rec.Code != http.StatusNoContent || rec.Header().Get("X-Raft-Index") != "0" {
		t.Fatalf("answered %d %v, want 204 with the index it checked up to", rec.Code, rec.Header())
	}
}
