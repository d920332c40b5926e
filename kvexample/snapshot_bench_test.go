package main

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
)

// These benchmarks measure what the snapshot design promises: Snapshot
// costs the same whatever the number of keys, and applies go on at close
// to their usual speed while a snapshot is being written.
//
//	go test -run X -bench 'Snapshot|ApplyPut' -benchtime 2000x ./kvexample/

// benchKeys are the store sizes the benchmarks run at.
var benchKeys = []int{1_000, 1_000_000}

// filledStateMachine returns a state machine holding n keys of 16 bytes,
// applied through Apply like any others.
func filledStateMachine(n int) *kvStateMachine {
	sm := newKVStateMachine(defaultSessionTTL)
	value := []byte("0123456789abcdef")
	for i := range n {
		sm.Apply(entry(uint64(i+1), command{Op: opPut, Key: fmt.Sprintf("key-%08d", i), Value: value}))
	}
	return sm
}

func BenchmarkSnapshot(b *testing.B) {
	for _, n := range benchKeys {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			sm := filledStateMachine(n)
			put := entry(0, command{Op: opPut, Key: "key-00000001", Value: []byte("x")})
			b.ResetTimer()
			for i := range b.N {
				snap, err := sm.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				snap.Release()
				// One apply between snapshots, as in real use: it pays for
				// the path copy the snapshot made necessary.
				b.StopTimer()
				put.Index = uint64(n + 1 + i)
				sm.Apply(put)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkApplyPut measures one put on a store of n keys, with no
// snapshot being written and with one being written concurrently.
func BenchmarkApplyPut(b *testing.B) {
	for _, n := range benchKeys {
		for _, writing := range []bool{false, true} {
			b.Run(fmt.Sprintf("keys=%d/writeTo=%v", n, writing), func(b *testing.B) {
				sm := filledStateMachine(n)
				var stop atomic.Bool
				var wg sync.WaitGroup
				if writing {
					snap, err := sm.Snapshot()
					if err != nil {
						b.Fatal(err)
					}
					defer snap.Release()
					// Keep a WriteTo running for the whole measurement.
					wg.Go(func() {
						for !stop.Load() {
							if _, err := snap.WriteTo(io.Discard); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				cmds := make([][]byte, 1024)
				for i := range cmds {
					cmds[i] = (&command{Op: opPut, Key: fmt.Sprintf("key-%08d", (i*7919)%n), Value: []byte("new value")}).encode()
				}
				b.ResetTimer()
				for i := range b.N {
					e := entry(0, command{})
					e.Index, e.Data = uint64(n+1+i), cmds[i%len(cmds)]
					sm.Apply(e)
				}
				b.StopTimer()
				stop.Store(true)
				wg.Wait()
			})
		}
	}
}

// BenchmarkWriteTo measures writing a whole snapshot of a million keys.
func BenchmarkWriteTo(b *testing.B) {
	sm := filledStateMachine(1_000_000)
	snap, err := sm.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	defer snap.Release()
	b.ResetTimer()
	for range b.N {
		n, err := snap.WriteTo(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(n)
	}
}

// BenchmarkRecordChange measures what every change costs the apply path
// for watches when nobody watches: recording it in the ring (full, so each
// record also evicts).
func BenchmarkRecordChange(b *testing.B) {
	var h history
	h.init(maxHistoryEvents, maxHistoryBytes)
	value := []byte("0123456789abcdef")
	for i := range 2 * maxHistoryEvents {
		h.record(uint64(i), "key", value, false)
	}
	b.ResetTimer()
	for i := range b.N {
		h.record(uint64(i), "key", value, false)
	}
}

// BenchmarkRestore measures restoring a snapshot of a million keys.
func BenchmarkRestore(b *testing.B) {
	snap := snapshotBytes(b, filledStateMachine(1_000_000))
	b.SetBytes(int64(len(snap)))
	b.ResetTimer()
	for range b.N {
		if err := newKVStateMachine(defaultSessionTTL).Restore(bytes.NewReader(snap)); err != nil {
			b.Fatal(err)
		}
	}
}
