package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"time"
)

// startReporter prints, every interval (0: never) after start, the nodes'
// disk use and the process' heap to stderr, and returns the function that
// stops it:
//
//	bench: report t=10s disk=… MB (allocated … MB; node1 wal … snapshots …, …) heap_objects=… MB heap_live=… MB rss=… MB log=[first/snapshot/last …]
//
// disk is the files' apparent size (what the bench's disk_mb reports),
// allocated what the file system holds for them (a WAL segment is
// preallocated 4 MiB at a time). t counts from the clients' start
// (warm-up included); log gives each node's first, snapshot and last
// index. heap_objects is the heap's live and
// not-yet-swept objects now (what heap_peak_mb samples), heap_live the
// heap the last GC found live, rss the process' resident memory.
func startReporter(c *cluster, dir string, every time.Duration, start time.Time) (stop func()) {
	if every <= 0 {
		return func() {}
	}
	stopc, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for k := 1; ; k++ {
			select {
			case <-stopc:
				return
			case <-time.After(time.Until(start.Add(time.Duration(k) * every))):
			}
			logf("report t=%v %s %s %s", time.Duration(k)*every, diskReport(c, dir), heapReport(), logReport(c))
		}
	}()
	return func() { close(stopc); <-done }
}

// diskReport describes the disk use under dir, per node and directory.
func diskReport(c *cluster, dir string) string {
	if !c.o.durable {
		return "disk=- (not durable)"
	}
	size, alloc := diskUsage(dir)
	var parts []string
	for _, m := range c.members {
		w, _ := diskUsage(filepath.Join(m.dir, "wal"))
		s, _ := diskUsage(filepath.Join(m.dir, "snapshots"))
		parts = append(parts, fmt.Sprintf("node%d wal %.1f snapshots %.1f", m.id, mb(w), mb(s)))
	}
	return fmt.Sprintf("disk=%.1f MB (allocated %.1f MB; %s)", mb(size), mb(alloc), strings.Join(parts, ", "))
}

// heapReport describes the heap now and at the last GC, and the RSS.
func heapReport() string {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(s)
	return fmt.Sprintf("heap_objects=%.1f MB heap_live=%.1f MB rss=%.1f MB",
		mb(int64(s[0].Value.Uint64())), mb(int64(s[1].Value.Uint64())), mb(rss()))
}

// logReport gives each node's first, snapshot and last log index.
func logReport(c *cluster) string {
	var parts []string
	for _, m := range c.members {
		if n := m.node.Load(); n != nil {
			st := n.Status()
			parts = append(parts, fmt.Sprintf("%d/%d/%d", st.FirstIndex, st.SnapshotIndex, st.LastIndex))
		} else {
			parts = append(parts, "down")
		}
	}
	return "log(first/snapshot/last)=[" + strings.Join(parts, " ") + "]"
}

// rss returns the process' resident set size in bytes (0 if unknown).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	fmt.Sscan(string(b), &size, &resident)
	return resident * int64(os.Getpagesize())
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// heapLive is the heap the last GC found live.
func heapLive() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}
