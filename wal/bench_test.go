package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftline/raft"
)

// Benchmarks of durable writes, all on the same disk (b.TempDir):
//
//	go test -run '^$' -bench . -benchtime 2000x ./wal/
//
// BenchmarkSave models concurrent writers the way the node does: writers
// hand 128-byte entries to one group-commit loop (like the node's log
// appender), which turns everything queued into one Save.

const benchEntrySize = 128

// BenchmarkBareFsync is the floor: append 128 bytes to a file and fsync.
func BenchmarkBareFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "bare"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, benchEntrySize)
	lat := make([]time.Duration, 0, b.N)
	start := time.Now()
	for b.Loop() {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	report(b, len(lat), len(lat), time.Since(start), lat)
}

func BenchmarkSave(b *testing.B) {
	for _, writers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchSave(b, writers) })
	}
}

type benchReq struct{ done chan struct{} }

func benchSave(b *testing.B, writers int) {
	w, err := Open(b.TempDir(), Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	reqs := make(chan *benchReq, writers)
	var saves atomic.Int64
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() { // the group-commit loop, as in the node's appender
		defer close(loopDone)
		next := uint64(1)
		data := make([]byte, benchEntrySize)
		var batch []*benchReq
		var ents []raft.Entry
		for {
			select {
			case <-stop:
				return
			case r := <-reqs:
				batch = append(batch[:0], r)
			}
		drain:
			for {
				select {
				case r := <-reqs:
					batch = append(batch, r)
				default:
					break drain
				}
			}
			ents = ents[:0]
			for range batch {
				ents = append(ents, raft.Entry{Index: next, Term: 1, Data: data})
				next++
			}
			if err := w.Save(raft.HardState{}, ents); err != nil {
				panic(err)
			}
			saves.Add(1)
			for _, r := range batch {
				close(r.done)
			}
		}
	}()
	lat := make([]time.Duration, b.N)
	var ops atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := ops.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				r := &benchReq{done: make(chan struct{})}
				reqs <- r
				<-r.done
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	<-loopDone
	report(b, b.N, int(saves.Load()), elapsed, lat)
}

// report adds throughput and median latency to the benchmark's output.
func report(b *testing.B, ops, syncs int, elapsed time.Duration, lat []time.Duration) {
	s := elapsed.Seconds()
	slices.Sort(lat)
	b.ReportMetric(float64(ops)/s, "ops/s")
	b.ReportMetric(float64(syncs)/s, "fsyncs/s")
	b.ReportMetric(float64(ops*benchEntrySize)/s/1e6, "MB/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}

// BenchmarkSavePrealloc measures what preallocating the active segment in
// steps costs next to preallocating it whole (the first format's way):
// each step's growth makes the next fdatasync flush the file size too.
// One writer, entries of 128 bytes and of 64 KiB, one per Save:
//
//	go test -run '^$' -bench SavePrealloc -benchtime 3000x ./wal/
func BenchmarkSavePrealloc(b *testing.B) {
	for _, size := range []int{benchEntrySize, 64 << 10} {
		for _, step := range []int64{DefaultSegmentSize, preallocStep, 1 << 20, 64 << 10} {
			b.Run(fmt.Sprintf("entry=%d/step=%d", size, step), func(b *testing.B) {
				w, err := Open(b.TempDir(), Options{Logger: quietLogger(), preallocStep: step})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				data := make([]byte, size)
				lat := make([]time.Duration, 0, b.N)
				start := time.Now()
				for i := uint64(1); b.Loop(); i++ {
					t0 := time.Now()
					if err := w.Save(raft.HardState{}, []raft.Entry{{Index: i, Term: 1, Data: data}}); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				elapsed := time.Since(start)
				report(b, len(lat), len(lat), elapsed, lat)
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(len(lat)*(size+recordOverhead+entryFixed))/elapsed.Seconds()/1e6, "data-MB/s")
			})
		}
	}
}
