package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/raftline/raft"
)

// applyAll applies cmds as entries 1..n and returns the results.
func applyAll(sm *kvStateMachine, cmds ...command) []result {
	out := make([]result, len(cmds))
	for i, c := range cmds {
		out[i] = sm.Apply(entry(sm.Applied()+1, c)).(result)
	}
	return out
}

// snapshotBytes returns the state machine's encoded snapshot.
func snapshotBytes(t testing.TB, sm *kvStateMachine) []byte {
	t.Helper()
	snap, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// randomCommands returns a seeded mix of every op over a few keys, locks
// and clients, with times that mostly move forward (and sometimes back, as
// a new leader's may), TTLs, fences, retries and stale sequence numbers.
func randomCommands(seed uint64, n int) []command {
	rng := rand.New(rand.NewPCG(seed, seed))
	cmds := make([]command, n)
	now := uint64(1_000_000)
	holders := []string{"h1", "h2", "h3"}
	for i := range cmds {
		c := command{Op: op(1 + rng.IntN(int(opLimit)-1)), Key: fmt.Sprintf("k%d", rng.IntN(5))}
		c.Value = []byte(fmt.Sprint(rng.IntN(3)))
		now += uint64(rng.IntN(400))
		if rng.IntN(10) > 0 {
			c.Time = now - uint64(rng.IntN(300))
		}
		switch c.Op {
		case opCAS:
			if rng.IntN(2) == 0 {
				c.Old, c.HasOld = []byte(fmt.Sprint(rng.IntN(3))), true
			}
		case opRegister:
			c.NodeID, c.HTTPAddr = uint64(rng.IntN(3)+1), fmt.Sprintf("h:%d", rng.IntN(3))
		case opRetire:
			c.NodeID = uint64(rng.IntN(300) + 1)
		case opPut:
			if rng.IntN(2) == 0 {
				c.TTL = uint64(1 + rng.IntN(2000))
			}
		case opIncr:
			c.Delta = int64(rng.IntN(11) - 5)
		case opAcquire, opRenew, opRelease:
			c.Key = fmt.Sprintf("L%d", rng.IntN(2))
			c.Holder = holders[rng.IntN(len(holders))]
			c.Token = uint64(rng.IntN(i + 1))
			if c.Op == opAcquire || rng.IntN(2) == 0 {
				c.TTL = uint64(1 + rng.IntN(3000))
			}
		}
		if c.Op.writesKey() && rng.IntN(4) == 0 {
			c.FenceLock, c.FenceToken = fmt.Sprintf("L%d", rng.IntN(2)), uint64(rng.IntN(i+1))
		}
		if c.Op != opRegister && c.Op != opTick && c.Op != opRetire && rng.IntN(2) == 0 {
			c.Client, c.Seq = fmt.Sprintf("c%d", rng.IntN(4)), uint64(rng.IntN(8)+1)
		}
		cmds[i] = c
	}
	return cmds
}

// stateDump is every piece of a state machine's replicated state, in a form
// cmp can compare; the derived indexes (expiry, session ages) included, so
// a restore that rebuilt them wrongly shows.
type stateDump struct {
	Applied, Now uint64
	Data         map[string]item
	Locks        map[string]lockState
	Expiry       []string
	Addrs        map[string]string
	Sessions     map[string]session
	SessionAges  []string
	SessionTTL   uint64
	Retired      []string
}

func dumpState(sm *kvStateMachine) stateDump {
	sm.mu.RLock()
	defer sm.mu.RUnlock()
	st := &sm.st
	d := stateDump{
		Applied: st.applied, Now: st.now, SessionTTL: st.sessions.ttl,
		Data: map[string]item{}, Locks: map[string]lockState{}, Addrs: map[string]string{}, Sessions: map[string]session{},
	}
	for k, v := range st.data.Ascend("") {
		d.Data[k] = v
	}
	for k, v := range st.locks.Ascend("") {
		d.Locks[k] = v
	}
	for k := range st.expiry.Ascend("") {
		d.Expiry = append(d.Expiry, k)
	}
	for k, v := range st.addrs.Ascend("") {
		d.Addrs[k] = v
	}
	for k, v := range st.sessions.byClient.Ascend("") {
		d.Sessions[k] = v
	}
	for k := range st.sessions.byAge.Ascend("") {
		d.SessionAges = append(d.SessionAges, k)
	}
	for k := range st.retired.Ascend("") {
		d.Retired = append(d.Retired, k)
	}
	return d
}

// stateDiff compares two dumps; "" when equal.
func stateDiff(a, b stateDump) string {
	return cmp.Diff(a, b, cmp.AllowUnexported(item{}, session{}, result{}), cmpopts.EquateEmpty())
}

func TestApplyIsDeterministic(t *testing.T) {
	// Two nodes applying the same log must give the same answers and
	// reach byte-identical state, sessions and their expiry included.
	cmds := randomCommands(42, 2000)
	a, b := newKVStateMachine(50), newKVStateMachine(50)
	ra, rb := applyAll(a, cmds...), applyAll(b, cmds...)
	if diff := cmp.Diff(ra, rb, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("results differ (-a +b):\n%s", diff)
	}
	if diff := stateDiff(dumpState(a), dumpState(b)); diff != "" {
		t.Fatalf("same log, different state (-a +b):\n%s", diff)
	}
	if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
		t.Fatal("same state, different snapshot bytes")
	}
}

func TestPutGetDeleteAndAppend(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	applyAll(sm, command{Op: opPut, Key: "a", Value: []byte("1")})
	if v, ok, _ := sm.Get("a"); !ok || string(v) != "1" {
		t.Fatalf("after put: %q %v", v, ok)
	}
	res := applyAll(sm,
		command{Op: opAppend, Key: "a", Value: []byte("2")},
		command{Op: opAppend, Key: "new", Value: []byte("x")},
		command{Op: opDelete, Key: "a"},
		command{Op: opDelete, Key: "never-there"})
	if string(res[0].Value) != "12" || string(res[1].Value) != "x" {
		t.Errorf("append results %q %q, want 12 and x", res[0].Value, res[1].Value)
	}
	if _, ok, _ := sm.Get("a"); ok {
		t.Error("a still present after delete")
	}
	if res[3].Code != resultOK {
		t.Errorf("deleting an absent key: %+v", res[3])
	}
}

func TestAppendPastMaxValueSizeChangesNothing(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	big := bytes.Repeat([]byte("v"), maxValueSize)
	res := applyAll(sm, command{Op: opPut, Key: "k", Value: big}, command{Op: opAppend, Key: "k", Value: []byte("!")})
	if res[1].Code != resultTooLarge {
		t.Fatalf("append past the limit: %+v", res[1].Code)
	}
	if v, _, _ := sm.Get("k"); len(v) != maxValueSize {
		t.Fatalf("value changed to %d bytes", len(v))
	}
}

func TestCompareAndSwapSemantics(t *testing.T) {
	some := func(s string) result { return result{Value: []byte(s), Found: true} }
	swapped := func(s string) result { r := some(s); r.Swapped = true; return r }
	sm := newKVStateMachine(defaultSessionTTL)
	steps := []struct {
		name string
		cmd  command
		want result
	}{
		{"old null on absent key swaps", command{Op: opCAS, Key: "k", Value: []byte("a")}, swapped("a")},
		{"old null on present key fails", command{Op: opCAS, Key: "k", Value: []byte("b")}, some("a")},
		{"matching old swaps", command{Op: opCAS, Key: "k", Old: []byte("a"), HasOld: true, Value: []byte("b")}, swapped("b")},
		{"mismatching old fails", command{Op: opCAS, Key: "k", Old: []byte("a"), HasOld: true, Value: []byte("c")}, some("b")},
		{"old on absent key fails with null", command{Op: opCAS, Key: "gone", Old: []byte(""), HasOld: true, Value: []byte("x")}, result{}},
		{"empty new value is present", command{Op: opCAS, Key: "e", Value: nil}, swapped("")},
		{"empty old matches empty value", command{Op: opCAS, Key: "e", Old: []byte{}, HasOld: true, Value: []byte("z")}, swapped("z")},
	}
	for _, s := range steps {
		got := applyAll(sm, s.cmd)[0]
		if diff := cmp.Diff(s.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestMalformedEntryIsAnsweredAndChangesNothing(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	applyAll(sm, command{Op: opPut, Key: "k", Value: []byte("v"), TTL: 5000, Time: 1000})
	before := dumpState(sm)
	res := sm.Apply(raft.Entry{Index: 2, Term: 1, Data: []byte("not a command")}).(result)
	if res.Code != resultMalformed {
		t.Fatalf("code %v, want resultMalformed", res.Code)
	}
	after := dumpState(sm)
	// Only the applied index may differ.
	before.Applied = after.Applied
	if diff := stateDiff(before, after); diff != "" {
		t.Fatalf("a malformed entry changed the state:\n%s", diff)
	}
}

func TestRecordedHTTPAddressesAreReadable(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	applyAll(sm, command{Op: opRegister, NodeID: 2, HTTPAddr: "127.0.0.1:8081"})
	if a, ok := sm.HTTPAddr(2); !ok || a != "127.0.0.1:8081" {
		t.Fatalf("HTTPAddr(2) = %q, %v", a, ok)
	}
	if _, ok := sm.HTTPAddr(3); ok {
		t.Fatal("HTTPAddr(3) known without a register command")
	}
}
