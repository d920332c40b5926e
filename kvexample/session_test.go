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
	if v, _, _ := sm.Get("k"); string(v) != "x" {
		t.Fatalf("value %q, want x", v)
	}
}

func TestNewerSeqIsExecutedAndOlderSeqIsRejected(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	res := applyAll(sm, appendAs("c", 1, "a"), appendAs("c", 5, "b"), appendAs("c", 3, "c"), appendAs("other", 1, "d"))
	if res[2].Code != resultStaleSeq {
		t.Errorf("older seq: code %v, want resultStaleSeq", res[2].Code)
	}
	if v, _, _ := sm.Get("k"); string(v) != "abd" {
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

func TestSessionAnswersDependOnTheRequestNotOnItsTime(t *testing.T) {
	put := func(value string, at uint64) command {
		return command{Op: opPut, Key: "k", Value: []byte(value), Client: "c", Seq: 1, Time: at}
	}
	cases := []struct {
		name  string
		retry command
		code  resultCode
	}{
		{"the same request stamped later is a retry", put("v", 2000), resultOK},
		{"another value under the same seq is refused", put("w", 1000), resultSeqReused},
		{"another key under the same seq is refused", command{Op: opPut, Key: "j", Value: []byte("v"), Client: "c", Seq: 1}, resultSeqReused},
		{"another op under the same seq is refused", command{Op: opDelete, Key: "k", Client: "c", Seq: 1}, resultSeqReused},
		{"a fence makes another request", command{Op: opPut, Key: "k", Value: []byte("v"), Client: "c", Seq: 1, FenceLock: "L", FenceToken: 1}, resultSeqReused},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sm := newKVStateMachine(defaultSessionTTL)
			applyAll(sm, put("v", 1000))
			if res := applyAll(sm, c.retry)[0]; res.Code != c.code {
				t.Fatalf("code %d, want %d", res.Code, c.code)
			}
			if v, _, _ := sm.Get("k"); string(v) != "v" || len(dumpState(sm).Data) != 1 {
				t.Fatalf("the retry changed the store: k=%q, %d keys", v, len(dumpState(sm).Data))
			}
		})
	}
}

func TestARefusedAcquireIsNotRememberedSoItsRetryCanSucceed(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	acq := command{Op: opAcquire, Key: "L", Holder: "b", TTL: 100, Client: "b", Seq: 1, Time: 50}
	res := applyAll(sm,
		command{Op: opAcquire, Key: "L", Holder: "a", TTL: 100, Time: 10},
		acq,
		command{Op: opRelease, Key: "L", Holder: "a", Token: 1})
	if res[1].Code != resultLockHeld {
		t.Fatalf("acquire of a held lock: code %d", res[1].Code)
	}
	first := applyAll(sm, acq)[0]
	if first.Code != resultOK || first.Lock.Token != 4 {
		t.Fatalf("the same acquire once the lock is free: %+v, want granted with token 4", first)
	}
	// Now granted, it is remembered like any answer.
	if again := applyAll(sm, acq)[0]; again.Code != resultOK || again.Lock != first.Lock {
		t.Fatalf("retry of the granted acquire: %+v, want the first answer %+v", again, first)
	}
}
