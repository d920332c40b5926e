package main

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func acquire(holder string, ttl, at uint64) command {
	return command{Op: opAcquire, Key: "L", Holder: holder, TTL: ttl, Time: at}
}

func renew(holder string, token, at uint64) command {
	return command{Op: opRenew, Key: "L", Holder: holder, Token: token, Time: at}
}

func release(holder string, token uint64) command {
	return command{Op: opRelease, Key: "L", Holder: holder, Token: token}
}

func fencedPut(value string, token uint64) command {
	return command{Op: opPut, Key: "file", Value: []byte(value), FenceLock: "L", FenceToken: token}
}

func TestLockLifecycle(t *testing.T) {
	// Entry i of the log is steps[i-1]; a grant's token is its index.
	steps := []struct {
		name   string
		cmd    command
		code   resultCode
		holder string // the lock's holder after the step, "" if free
		token  uint64 // the lock's token after the step
	}{
		{"free lock is granted", acquire("a", 1000, 100), resultOK, "a", 1},
		{"held lock is refused", acquire("b", 1000, 200), resultLockHeld, "a", 1},
		{"renew by a non-holder is refused", renew("b", 1, 300), resultNotHolder, "a", 1},
		{"renew with a wrong token is refused", renew("a", 2, 300), resultNotHolder, "a", 1},
		{"release by a non-holder is refused", release("b", 1), resultNotHolder, "a", 1},
		{"the holder renews: the lease now ends at 1400", renew("a", 1, 400), resultOK, "a", 1},
		{"still held just before the end", acquire("b", 1000, 1399), resultLockHeld, "a", 1},
		{"the holder acquiring again keeps its token", acquire("a", 1000, 1399), resultOK, "a", 1},
		{"ends exactly at 2399, not before", acquire("b", 1000, 2398), resultLockHeld, "a", 1},
		{"expired at its end: the next acquirer gets a higher token", acquire("b", 500, 2399), resultOK, "b", 10},
		{"the old holder's renew is refused", renew("a", 1, 2400), resultNotHolder, "b", 10},
		{"the old holder's release is refused", release("a", 1), resultNotHolder, "b", 10},
		{"the holder releases", release("b", 10), resultOK, "", 0},
		{"release of a free lock is refused", release("b", 10), resultNotHolder, "", 0},
		{"a released lock is granted at once", acquire("a", 100, 2401), resultOK, "a", 15},
	}
	sm := newKVStateMachine(defaultSessionTTL)
	for i, s := range steps {
		res := applyAll(sm, s.cmd)[0]
		l, held, _ := sm.Lock("L")
		if res.Code != s.code || l.Holder != s.holder || l.Token != s.token || held != (s.holder != "") {
			t.Fatalf("entry %d, %s: code %d, lock %+v; want code %d, holder %q token %d",
				i+1, s.name, res.Code, l, s.code, s.holder, s.token)
		}
		if res.Code == resultOK && s.cmd.Op != opRelease && res.Lock != l {
			t.Fatalf("%s: answered %+v, but the lock is %+v", s.name, res.Lock, l)
		}
	}
}

func TestFencedWritesNeedTheCurrentToken(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	runSteps(t, sm, []step{
		{"no lock yet: refused", fencedPut("x", 1), resultFenced, "-"},
		{"a acquires (token 2)", acquire("a", 1000, 100), resultOK, "-"},
		{"a writes with its token", fencedPut("by a", 2), resultOK, "-"},
		{"a made-up token is refused", fencedPut("forged", 3), resultFenced, "-"},
		{"a's lease ends, b acquires (token 5)", acquire("b", 1000, 1100), resultOK, "-"},
		{"a, waking up, writes with its old token: refused", fencedPut("by a, late", 2), resultFenced, "-"},
		{"b writes with its token", fencedPut("by b", 5), resultOK, "-"},
		{"every write op is fenced", command{Op: opAppend, Key: "file", Value: []byte("!"), FenceLock: "L", FenceToken: 2}, resultFenced, "-"},
		{"delete too", command{Op: opDelete, Key: "file", FenceLock: "L", FenceToken: 2}, resultFenced, "-"},
		{"b's lease ends on the log's clock", command{Op: opTick, Time: 2100}, resultOK, "-"},
		{"then even b's token is refused", fencedPut("by b, late", 5), resultFenced, "-"},
	})
	if v, _, _ := sm.Get("file"); string(v) != "by b" {
		t.Fatalf("the fenced resource holds %q, want the last write with a current token, %q", v, "by b")
	}
}

func TestFencingTokensOfALockOnlyGrow(t *testing.T) {
	// Random acquires, renews, releases and clock steps by three holders:
	// every grant to a new holder has a larger token than any before, and
	// a lock is never granted while its lease runs.
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		sm := newKVStateMachine(defaultSessionTTL)
		var lastToken, now uint64
		for i := range 500 {
			holder := fmt.Sprintf("h%d", rng.IntN(3))
			now += uint64(rng.IntN(300))
			before, held, _ := sm.Lock("L")
			var c command
			switch rng.IntN(3) {
			case 0:
				c = acquire(holder, uint64(1+rng.IntN(1000)), now)
			case 1:
				c = renew(holder, before.Token, now)
			default:
				c = release(holder, before.Token)
			}
			res := applyAll(sm, c)[0]
			if c.Op != opAcquire || res.Code != resultOK {
				continue
			}
			switch {
			case held && before.Expires > now && before.Holder != holder:
				t.Fatalf("seed %d step %d: granted to %s while %s's lease ran to %d (now %d)", seed, i, holder, before.Holder, before.Expires, now)
			case res.Lock.Token < lastToken || (res.Lock.Token == lastToken && (!held || before.Holder != holder)):
				t.Fatalf("seed %d step %d: token %d after %d", seed, i, res.Lock.Token, lastToken)
			}
			lastToken = res.Lock.Token
		}
	}
}
