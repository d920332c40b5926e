package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
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
func snapshotBytes(t *testing.T, sm *kvStateMachine) []byte {
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

// randomCommands returns a seeded mix of every op over a few keys and
// clients, including retries and stale sequence numbers.
func randomCommands(seed uint64, n int) []command {
	rng := rand.New(rand.NewPCG(seed, seed))
	cmds := make([]command, n)
	for i := range cmds {
		c := command{Op: op(1 + rng.IntN(int(opLimit)-1)), Key: fmt.Sprintf("k%d", rng.IntN(5))}
		c.Value = []byte(fmt.Sprint(rng.IntN(3)))
		if c.Op == opCAS && rng.IntN(2) == 0 {
			c.Old, c.HasOld = []byte(fmt.Sprint(rng.IntN(3))), true
		}
		if c.Op == opRegister {
			c.NodeID, c.HTTPAddr = uint64(rng.IntN(3)+1), fmt.Sprintf("h:%d", rng.IntN(3))
		}
		if c.Op != opRegister && rng.IntN(2) == 0 {
			c.Client, c.Seq = fmt.Sprintf("c%d", rng.IntN(4)), uint64(rng.IntN(8)+1)
		}
		cmds[i] = c
	}
	return cmds
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
	if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
		t.Fatal("same log, different state")
	}
}

func TestPutGetDeleteAndAppend(t *testing.T) {
	sm := newKVStateMachine(defaultSessionTTL)
	applyAll(sm, command{Op: opPut, Key: "a", Value: []byte("1")})
	if v, ok := sm.Get("a"); !ok || string(v) != "1" {
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
	if _, ok := sm.Get("a"); ok {
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
	if v, _ := sm.Get("k"); len(v) != maxValueSize {
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
	applyAll(sm, command{Op: opPut, Key: "k", Value: []byte("v")})
	before := snapshotBytes(t, sm)
	res := sm.Apply(raft.Entry{Index: 2, Term: 1, Data: []byte("not a command")}).(result)
	if res.Code != resultMalformed {
		t.Fatalf("code %v, want resultMalformed", res.Code)
	}
	after := snapshotBytes(t, sm)
	// Only the applied index (encoded second) may differ.
	if !bytes.Equal(before[2:], after[2:]) {
		t.Fatal("a malformed entry changed the state")
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

func TestSnapshotRestoresTheSameState(t *testing.T) {
	src := newKVStateMachine(10)
	applyAll(src, randomCommands(7, 300)...)
	snap := snapshotBytes(t, src)
	dst := newKVStateMachine(10)
	applyAll(dst, command{Op: opPut, Key: "stale", Value: []byte("gone after restore")})
	if err := dst.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, dst), snap) {
		t.Fatal("restored state differs from the snapshot")
	}
	// Both must go on identically, sessions (and their expiry) included.
	more := randomCommands(8, 300)
	if diff := cmp.Diff(applyAll(src, more...), applyAll(dst, more...), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("results after restore differ (-src +dst):\n%s", diff)
	}
}

func TestRestoreRejectsCorruptSnapshotsAndKeepsState(t *testing.T) {
	src := newKVStateMachine(10)
	applyAll(src, randomCommands(9, 50)...)
	snap := snapshotBytes(t, src)
	dst := newKVStateMachine(10)
	applyAll(dst, command{Op: opPut, Key: "mine", Value: []byte("kept")})
	before := snapshotBytes(t, dst)
	for _, bad := range [][]byte{nil, {2}, snap[:len(snap)/2], append(bytes.Clone(snap), 0)} {
		if err := dst.Restore(bytes.NewReader(bad)); !errors.Is(err, errMalformed) {
			t.Errorf("restoring %d corrupt bytes: err %v, want errMalformed", len(bad), err)
		}
	}
	if !bytes.Equal(snapshotBytes(t, dst), before) {
		t.Fatal("a failed restore changed the state")
	}
	if err := dst.Restore(strings.NewReader("\x01\x00\xff\xff\xff\xff\x0f")); !errors.Is(err, errMalformed) {
		t.Errorf("huge item count: err %v, want errMalformed", err)
	}
}
