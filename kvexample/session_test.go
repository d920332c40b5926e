package main

import (
	"testing"
)

func appendAs(client string, seq uint64, suffix string) command {
	return command{Op: opAppend, Key: "k", Value: []byte(suffix), Client: client, Seq: seq}
}

func TestRetriedRequestIsAppliedOnceAndGetsTheFirstAnswer(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	res := applyAll(sm, appendAs("c", 1, "x"), appendAs("c", 1, "x"))
	if string(res[0].Value) != "x" || string(res[1].Value) != "x" {
		t.Fatalf("answers %q and %q, want x twice", res[0].Value, res[1].Value)
	}
	if v, _ := sm.Get("k"); string(v) != "x" {
		t.Fatalf("value %q, want x", v)
	}
}

func TestNewerSeqIsExecutedAndOlderSeqIsRejected(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	res := applyAll(sm, appendAs("c", 1, "a"), appendAs("c", 5, "b"), appendAs("c", 3, "c"), appendAs("other", 1, "d"))
	if res[2].Code != resultStaleSeq {
		t.Errorf("older seq: code %v, want resultStaleSeq", res[2].Code)
	}
	if v, _ := sm.Get("k"); string(v) != "abd" {
		t.Fatalf("value %q, want abd (the stale request not executed)", v)
	}
}

func TestSessionsExpireAfterTTLEntriesOfTheLog(t *testing.T) {
	const ttl = 3
	sm := newKVStateMachine(ttl)
	filler := command{Op: opPut, Key: "f", Value: []byte("-")}
	applyAll(sm, appendAs("old", 1, "x"), appendAs("kept", 1, "y")) // entries 1, 2
	applyAll(sm, filler)                                            // 3
	applyAll(sm, appendAs("kept", 2, "z"))                          // 4: "old" (last at 1) expires here, "kept" is touched
	if sm.Sessions() != 1 {
		t.Fatalf("%d sessions at entry 4, want 1 (\"old\" untouched for %d entries)", sm.Sessions(), ttl)
	}
	// The retry of an expired session's request is indistinguishable from
	// a new client's first request, so it executes again: the reason the
	// TTL is long in production.
	res := applyAll(sm, appendAs("old", 1, "x")) // 5
	if string(res[0].Value) != "xyzx" {
		t.Fatalf("after expiry the retry executes: value %q, want xyzx", res[0].Value)
	}
	// "kept" was touched at 4, so it is still there at 6 and dedups.
	res = applyAll(sm, appendAs("kept", 2, "z")) // 6
	if string(res[0].Value) != "xyz" {
		t.Fatalf("live session answered %q, want its first answer xyz", res[0].Value)
	}
}

func TestSessionExpiryFollowsLogIndexesNotApplyCalls(t *testing.T) {
	// Entries the state machine never sees (no-ops, configuration changes)
	// still count: expiry is measured in log indexes, which every node
	// agrees on whatever it skipped.
	sm := newKVStateMachine(10)
	sm.Apply(entry(1, appendAs("c", 1, "x")))
	sm.Apply(entry(11, command{Op: opPut, Key: "f"}))
	if sm.Sessions() != 0 {
		t.Fatalf("%d sessions at index 11, want 0 (ttl 10 from index 1)", sm.Sessions())
	}
}
