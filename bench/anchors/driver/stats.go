package driver

import (
	"math"
	"math/bits"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// hist is a lock-free log-linear latency histogram in nanoseconds, the same
// as ./bench's and the anchor harness': 128 linear sub-buckets per power of
// two, so a percentile is within 0.8% of the true value and recording
// allocates nothing.
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

// gcSnap holds runtime and machine counters read without stopping the world.
type gcSnap struct {
	cycles     uint64
	allocBytes uint64
	allocObjs  uint64
	cpuGC      float64
	cpuTotal   float64
	procCPU    float64         // user+system CPU seconds of this process
	hostBusy   float64         // busy CPU seconds of the machine (/proc/stat), -1 if unknown
	hostSteal  float64         // CPU seconds stolen by the hypervisor
	others     map[int]float64 // CPU seconds of every other user-space process, by pid
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
	busy, steal := readProcStat()
	return gcSnap{
		cycles:     s[0].Value.Uint64(),
		allocBytes: s[1].Value.Uint64(),
		allocObjs:  s[2].Value.Uint64(),
		cpuGC:      s[3].Value.Float64(),
		cpuTotal:   s[4].Value.Float64() - s[5].Value.Float64(),
		procCPU:    tv(ru.Utime) + tv(ru.Stime),
		hostBusy:   busy,
		hostSteal:  steal,
		others:     otherProcsCPU(),
	}
}

// readProcStat returns busy (user+nice+system+irq+softirq) and steal CPU
// seconds of the whole machine, assuming USER_HZ = 100.
func readProcStat() (busy, steal float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return -1, 0
	}
	v := func(i int) float64 {
		x, _ := strconv.ParseFloat(f[i], 64)
		return x / 100
	}
	return v(1) + v(2) + v(3) + v(6) + v(7), v(8)
}

// otherProcsCPU returns user+system CPU seconds of every user-space process
// but this one (kernel threads, which also do this process's disk and
// network work, are left out), assuming USER_HZ = 100.
func otherProcsCPU() map[int]float64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	m := map[int]float64{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
		if len(f) < 13 {
			continue
		}
		if flags, _ := strconv.ParseUint(f[6], 10, 64); flags&0x00200000 != 0 { // PF_KTHREAD
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		m[pid] = (ut + st) / 100
	}
	return m
}

func othersDelta(before, after map[int]float64) float64 {
	d := 0.0
	for pid, a := range after {
		d += a - before[pid] // a process born during the window counts fully
	}
	return max(d, 0)
}

// heapSampler records the peak of the Go heap (bytes in heap objects, live
// or not yet swept: what MemStats.HeapAlloc reports) every interval.
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
