package main

import (
	"math"
	"math/bits"
	"runtime/metrics"
	"sync/atomic"
	"syscall"
	"time"
)

// hist is a lock-free log-linear latency histogram in nanoseconds, the same
// as the anchor harness': 128 linear sub-buckets per power of two, so a
// percentile is within 0.8% of the true value and recording allocates
// nothing.
const subBits = 7

type hist struct {
	counts [64 << subBits]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(max(v, 0))
	}
	s := bits.Len64(uint64(v)) - 1 - subBits
	m := uint64(v) >> uint(s)
	return (s+1)<<subBits + int(m-(1<<subBits))
}

// bucketMid returns the midpoint of the value range of bucket i.
func bucketMid(i int) float64 {
	if i < 1<<subBits {
		return float64(i)
	}
	s := i>>subBits - 1
	m := uint64(i&(1<<subBits-1)) + 1<<subBits
	lo := m << uint(s)
	hi := (m+1)<<uint(s) - 1
	return (float64(lo) + float64(hi)) / 2
}

func (h *hist) record(ns int64) {
	h.counts[bucketOf(ns)].Add(1)
	h.n.Add(1)
	for {
		cur := h.max.Load()
		if ns <= cur || h.max.CompareAndSwap(cur, ns) {
			return
		}
	}
}

// quantile returns the q-quantile in nanoseconds (0 if empty).
func (h *hist) quantile(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(n))), 1)
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= rank {
			return min(bucketMid(i), float64(h.max.Load()))
		}
	}
	return float64(h.max.Load())
}

// gcSnap holds runtime counters read without stopping the world.
type gcSnap struct {
	cycles     uint64
	allocBytes uint64
	allocObjs  uint64
	cpuGC      float64
	cpuTotal   float64
	procCPU    float64
}

func readGC() gcSnap {
	s := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/allocs:objects"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/cpu/classes/idle:cpu-seconds"},
	}
	metrics.Read(s)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return gcSnap{
		cycles:     s[0].Value.Uint64(),
		allocBytes: s[1].Value.Uint64(),
		allocObjs:  s[2].Value.Uint64(),
		cpuGC:      s[3].Value.Float64(),
		cpuTotal:   s[4].Value.Float64() - s[5].Value.Float64(),
		procCPU:    tv(ru.Utime) + tv(ru.Stime),
	}
}

// heapSampler records the peak of the Go heap (bytes in heap objects, the
// harness' measure) every interval.
type heapSampler struct {
	stopc chan struct{}
	donec chan struct{}
	peak  uint64
}

func startHeapSampler(every time.Duration) *heapSampler {
	hs := &heapSampler{stopc: make(chan struct{}), donec: make(chan struct{})}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(s)
		hs.peak = max(hs.peak, s[0].Value.Uint64())
	}
	go func() {
		defer close(hs.donec)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			read()
			select {
			case <-t.C:
			case <-hs.stopc:
				read()
				return
			}
		}
	}()
	return hs
}

func (hs *heapSampler) stop() uint64 {
	close(hs.stopc)
	<-hs.donec
	return hs.peak
}
