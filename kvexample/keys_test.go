package main

import (
	"math"
	"strconv"
	"testing"
)

// step is one command applied to a state machine, and what a test expects
// of it.
type step struct {
	name string
	cmd  command
	code resultCode
	// value is the expected result value; "-" skips the check.
	value string
}

// runSteps applies the steps in order, checking each one's result code and
// value.
func runSteps(t *testing.T, sm *kvStateMachine, steps []step) {
	t.Helper()
	for _, s := range steps {
		res := applyAll(sm, s.cmd)[0]
		if res.Code != s.code || (s.value != "-" && string(res.Value) != s.value) {
			t.Fatalf("%s: code %d value %q, want code %d value %q", s.name, res.Code, res.Value, s.code, s.value)
		}
	}
}

func incr(key string, delta int64) command { return command{Op: opIncr, Key: key, Delta: delta} }

func TestIncrementAddsToADecimalIntegerAndRefusesAnythingElse(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	runSteps(t, sm, []step{
		{"absent key counts as 0", incr("n", 1), resultOK, "1"},
		{"default-sized steps", incr("n", 1), resultOK, "2"},
		{"negative delta", incr("n", -5), resultOK, "-3"},
		{"zero delta reads", incr("n", 0), resultOK, "-3"},
		{"put a number", command{Op: opPut, Key: "n", Value: []byte("+0041")}, resultOK, "-"},
		{"any decimal integer parses", incr("n", 1), resultOK, "42"},
		{"put text", command{Op: opPut, Key: "s", Value: []byte("abc")}, resultOK, "-"},
		{"text is refused", incr("s", 1), resultNotInteger, "abc"},
		{"empty is not a number", command{Op: opPut, Key: "e", Value: []byte{}}, resultOK, "-"},
		{"empty is refused", incr("e", 1), resultNotInteger, ""},
		{"spaces are not a number", command{Op: opPut, Key: "sp", Value: []byte(" 1")}, resultOK, "-"},
		{"spaces are refused", incr("sp", 1), resultNotInteger, " 1"},
		{"put the maximum", command{Op: opPut, Key: "max", Value: []byte(strconv.FormatInt(math.MaxInt64, 10))}, resultOK, "-"},
		{"overflow is refused", incr("max", 1), resultOverflow, "9223372036854775807"},
		{"the maximum plus nothing", incr("max", 0), resultOK, "9223372036854775807"},
		{"down from the minimum", incr("min", math.MinInt64), resultOK, "-9223372036854775808"},
		{"underflow is refused", incr("min", -1), resultOverflow, "-9223372036854775808"},
	})
	if v, _, _ := sm.Get("s"); string(v) != "abc" {
		t.Fatalf("a refused incr changed the value to %q", v)
	}
}

func TestKeysExpireAtExactLogTimes(t *testing.T) {
	// A key put at log time 1000 with a TTL of 500 ms exists while the
	// log's clock reads 1499 and is gone when it reads 1500, whatever any
	// node's own clock says.
	tick := func(at uint64) command { return command{Op: opTick, Time: at} }
	cases := []struct {
		name   string
		then   []command
		exists bool
	}{
		{"just before", []command{tick(1499)}, true},
		{"exactly at", []command{tick(1500)}, false},
		{"after", []command{tick(9999)}, false},
		{"no time in the entry", []command{{Op: opPut, Key: "other"}}, true},
		{"a clock that goes back", []command{tick(1499), tick(800)}, true},
		{"put without ttl makes it permanent", []command{{Op: opPut, Key: "k", Value: []byte("w")}, tick(5000)}, true},
		{"a longer ttl moves the expiry", []command{{Op: opPut, Key: "k", TTL: 1000, Time: 1200}, tick(1500)}, true},
		{"the moved expiry", []command{{Op: opPut, Key: "k", TTL: 1000, Time: 1200}, tick(2200)}, false},
		{"append keeps the ttl", []command{{Op: opAppend, Key: "k", Value: []byte("+")}, tick(1500)}, false},
		{"incr keeps the ttl", []command{{Op: opPut, Key: "k", Value: []byte("1"), TTL: 500, Time: 1000}, incr("k", 1), tick(1500)}, false},
		{"cas keeps the ttl", []command{{Op: opCAS, Key: "k", Old: []byte("v"), HasOld: true, Value: []byte("x")}, tick(1500)}, false},
		{"delete then tick", []command{{Op: opDelete, Key: "k"}, tick(1500)}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sm := newKVStateMachine(defaultSessionTTL)
			applyAll(sm, command{Op: opPut, Key: "k", Value: []byte("v"), TTL: 500, Time: 1000})
			applyAll(sm, c.then...)
			if _, ok, _ := sm.Get("k"); ok != c.exists {
				t.Fatalf("after %d commands the key exists=%v, want %v", len(c.then), ok, c.exists)
			}
			if d := dumpState(sm); len(d.Expiry) != 0 && !c.exists {
				t.Fatalf("expiry index still lists %q after the key went", d.Expiry)
			}
		})
	}
}

func TestExpiryIsRecordedAsADeletion(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	applyAll(sm, command{Op: opPut, Key: "a", Value: []byte("1"), TTL: 10, Time: 100},
		command{Op: opPut, Key: "b", Value: []byte("2"), TTL: 10, Time: 100},
		command{Op: opTick, Time: 110})
	found, _ := sm.changes.find(2, "", true)
	if len(found) != 2 || !found[0].Deleted || !found[1].Deleted || found[0].Index != 3 {
		t.Fatalf("changes after index 2: %+v, want a and b deleted at index 3", found)
	}
}
