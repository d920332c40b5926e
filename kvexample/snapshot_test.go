package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// busyStateMachine returns a state machine that holds every kind of state:
// keys with and without TTLs, held locks, sessions, HTTP addresses.
func busyStateMachine(seed uint64) *kvStateMachine {
	sm := newKVStateMachine(40)
	applyAll(sm, randomCommands(seed, 400)...)
	applyAll(sm,
		command{Op: opRegister, NodeID: 2, HTTPAddr: "127.0.0.1:8081"},
		command{Op: opRetire, NodeID: 4}, command{Op: opRetire, NodeID: 300},
		command{Op: opPut, Key: "users/1", Value: []byte("ann"), TTL: 60_000, Time: 1},
		command{Op: opAcquire, Key: "L-long", Holder: "h", TTL: 60_000, Client: "snap", Seq: 1})
	return sm
}

func TestSnapshotRestoresEveryPieceOfTheState(t *testing.T) {
	src := busyStateMachine(7)
	want := dumpState(src)
	if len(want.Data) == 0 || len(want.Locks) == 0 || len(want.Expiry) == 0 || len(want.Addrs) == 0 || len(want.Sessions) == 0 || len(want.Retired) == 0 {
		t.Fatalf("the source state lacks a kind of state: %+v", want)
	}
	snap := snapshotBytes(t, src)
	dst := newKVStateMachine(40)
	applyAll(dst, command{Op: opPut, Key: "stale", Value: []byte("gone after restore")})
	if err := dst.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if diff := stateDiff(want, dumpState(dst)); diff != "" {
		t.Fatalf("restored state differs (-snapshot +restored):\n%s", diff)
	}
	if !bytes.Equal(snapshotBytes(t, dst), snap) {
		t.Fatal("the restored state writes a different snapshot")
	}
	// Both must go on identically: sessions, leases and TTLs expire at the
	// same entries.
	more := randomCommands(8, 400)
	if diff := cmp.Diff(applyAll(src, more...), applyAll(dst, more...), cmp.AllowUnexported(result{}), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("results after restore differ (-src +dst):\n%s", diff)
	}
}

func TestEqualStatesWriteEqualSnapshots(t *testing.T) {
	// The same keys inserted in another order make another tree shape:
	// the bytes must not depend on it.
	a, b := newKVStateMachine(10), newKVStateMachine(10)
	var forward, backward []command
	for i := range 100 {
		forward = append(forward, command{Op: opPut, Key: fmt.Sprintf("k%03d", i), Value: []byte{byte(i)}})
		backward = append(backward, command{Op: opPut, Key: fmt.Sprintf("k%03d", 99-i), Value: []byte{byte(99 - i)}})
	}
	applyAll(a, forward...)
	applyAll(b, backward...)
	if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
		t.Fatal("equal states, different snapshot bytes")
	}
}

func TestAppliesDuringWriteToAreInTheLiveStateNotInTheSnapshot(t *testing.T) {
	sm := newKVStateMachine(10)
	for i := range 1000 {
		applyAll(sm, command{Op: opPut, Key: fmt.Sprintf("k%04d", i), Value: []byte("old")})
	}
	before := dumpState(sm)
	snap, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	// WriteTo runs on its own goroutine, through a pipe that the test
	// drains only after applying more: the applies happen while it runs.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := snap.WriteTo(pw)
		pw.CloseWithError(err)
		done <- err
	}()
	for i := range 1000 {
		applyAll(sm, command{Op: opPut, Key: fmt.Sprintf("k%04d", i), Value: []byte("new")},
			command{Op: opDelete, Key: fmt.Sprintf("k%04d", (i+500)%1000)})
	}
	applyAll(sm, command{Op: opPut, Key: "added", Value: []byte("after")})
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, pr); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	restored := newKVStateMachine(10)
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if diff := stateDiff(before, dumpState(restored)); diff != "" {
		t.Fatalf("the snapshot saw applies made after it was taken:\n%s", diff)
	}
	if v, ok, _ := sm.Get("added"); !ok || string(v) != "after" {
		t.Fatalf("live state lost an apply made during WriteTo: %q %v", v, ok)
	}
}

func TestRestoreRejectsCorruptSnapshotsAndKeepsState(t *testing.T) {
	snap := snapshotBytes(t, busyStateMachine(9))
	dst := newKVStateMachine(40)
	applyAll(dst, command{Op: opPut, Key: "mine", Value: []byte("kept")})
	before := dumpState(dst)
	flipped := bytes.Clone(snap)
	flipped[len(flipped)/2] ^= 0x10
	cases := map[string][]byte{
		"empty":           nil,
		"version 1":       append([]byte{1}, snap[1:]...),
		"unknown version": append([]byte{9}, snap[1:]...),
		"bit flip":        flipped,
		"trailing byte":   append(bytes.Clone(snap), 0),
		"huge count":      {snapshotVersion, 5, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge field":      {snapshotVersion, 5, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"overlong int":    {snapshotVersion, 0x85, 0x00, 0},
	}
	for n := 0; n < len(snap); n += max(1, len(snap)/200) {
		cases[fmt.Sprintf("cut at %d", n)] = snap[:n]
	}
	for name, bad := range cases {
		if err := dst.Restore(bytes.NewReader(bad)); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err %v, want errMalformed", name, err)
		}
	}
	if diff := stateDiff(before, dumpState(dst)); diff != "" {
		t.Fatalf("a failed restore changed the state:\n%s", diff)
	}
}

func TestRestoreRejectsWhatWriteToNeverWrites(t *testing.T) {
	// Hand-made snapshots with a valid checksum: only the checks on the
	// content can refuse them.
	build := func(body ...[]byte) []byte {
		var buf bytes.Buffer
		for _, b := range body {
			buf.Write(b)
		}
		return binary.BigEndian.AppendUint32(buf.Bytes(), crc32.Checksum(buf.Bytes(), castagnoli))
	}
	header := []byte{snapshotVersion, 10, 100} // applied 10, now 100
	empty := []byte{0}
	item := func(k string, expires byte) []byte { return []byte{1, byte(len(k)), k[0], 1, 'v', expires} }
	cases := map[string][]byte{
		"keys out of order":    build(header, []byte{2, 1, 'b', 0, 0, 1, 'a', 0, 0}, empty, empty, empty, empty),
		"duplicate key":        build(header, []byte{2, 1, 'a', 0, 0, 1, 'a', 0, 0}, empty, empty, empty, empty),
		"key past expiry":      build(header, item("a", 50), empty, empty, empty, empty),
		"lease past expiry":    build(header, empty, []byte{1, 1, 'L', 1, 'h', 5, 1, 50, 5}, empty, empty, empty),
		"token from later":     build(header, empty, []byte{1, 1, 'L', 1, 'h', 11, 1, 200, 5}, empty, empty, empty),
		"session too new":      build(header, empty, empty, empty, append([]byte{1, 1, 'c', 1, 11}, make([]byte, 16+3+1+1+4)...), empty),
		"retired out of order": build(header, empty, empty, empty, empty, []byte{2, 5, 4}),
		"retired twice":        build(header, empty, empty, empty, empty, []byte{2, 4, 4}),
		"retired node 0":       build(header, empty, empty, empty, empty, []byte{1, 0}),
		"no retired section":   build(header, empty, empty, empty, empty),
	}
	if err := newKVStateMachine(10).Restore(bytes.NewReader(build(header, empty, empty, empty, empty, empty))); err != nil {
		t.Fatalf("an empty state with a valid checksum: %v", err)
	}
	for name, bad := range cases {
		if err := newKVStateMachine(10).Restore(bytes.NewReader(bad)); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err %v, want errMalformed", name, err)
		}
	}
}

func TestVersion2SnapshotRestoresWithNoRetiredIDs(t *testing.T) {
	// What a node that ran before membership changes wrote: the same
	// sections, without the retired IDs.
	src := busyStateMachine(3)
	applyAll(src, command{Op: opPut, Key: "old", Value: []byte("format")})
	v3 := snapshotBytes(t, src)
	retired := src.RetiredIDs()
	tail := binary.AppendUvarint(nil, uint64(len(retired)))
	for _, id := range retired {
		tail = binary.AppendUvarint(tail, uint64(id))
	}
	body := v3[:len(v3)-4-len(tail)]
	if !bytes.HasSuffix(v3[:len(v3)-4], tail) {
		t.Fatal("the retired IDs are not the last section before the checksum")
	}
	v2 := append([]byte{snapshotVersionV2}, body[1:]...)
	v2 = binary.BigEndian.AppendUint32(v2, crc32.Checksum(v2, castagnoli))

	dst := newKVStateMachine(40)
	if err := dst.Restore(bytes.NewReader(v2)); err != nil {
		t.Fatalf("restoring a version 2 snapshot: %v", err)
	}
	want := dumpState(src)
	want.Retired = nil
	if diff := stateDiff(want, dumpState(dst)); diff != "" {
		t.Fatalf("restored state differs (-want +got):\n%s", diff)
	}
}

// FuzzRestore checks that no input makes Restore panic, that a refused
// snapshot leaves the state alone, and that an accepted one is canonical:
// written out again, it gives the same bytes.
func FuzzRestore(f *testing.F) {
	f.Add(snapshotBytes(f, busyStateMachine(1)))
	f.Add(snapshotBytes(f, newKVStateMachine(10)))
	f.Add([]byte{snapshotVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		sm := newKVStateMachine(40)
		applyAll(sm, command{Op: opPut, Key: "mine", Value: []byte("kept")})
		before := dumpState(sm)
		if err := sm.Restore(bytes.NewReader(b)); err != nil {
			if diff := stateDiff(before, dumpState(sm)); diff != "" {
				t.Fatalf("refused snapshot (%v) changed the state:\n%s", err, diff)
			}
			return
		}
		if again := snapshotBytes(t, sm); !bytes.Equal(again, b) {
			t.Fatalf("restore then snapshot changed %x into %x", b, again)
		}
	})
}

func TestRestoreOfATruncatedLargeFieldFailsAfterReadingWhatIsThere(t *testing.T) {
	// A snapshot that claims a 16 MiB value and then ends fails on the
	// short read (a longer claim fails before any allocation).
	r := &countingReader{r: strings.NewReader(string([]byte{snapshotVersion, 1, 1, 1, 1, 'k', 0x80, 0x80, 0x80, 0x08}))}
	if err := newKVStateMachine(10).Restore(r); !errors.Is(err, errMalformed) {
		t.Fatalf("err %v, want errMalformed", err)
	}
	if r.n > 16 {
		t.Fatalf("read %d bytes of a 10-byte stream", r.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

// Read reads from r, counting what it returns.
func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
