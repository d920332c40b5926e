//go:build unix

package wal

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/raftline/raft"
)

// BenchmarkOpen measures what recovery costs: time per Open, bytes
// allocated during it (B/op), heap the open WAL keeps (retained-B) and the
// disk the directory occupies (disk-B, allocated blocks, so preallocation
// counts). Default options, as a node uses them:
//
//	go test -run '^$' -bench Open -benchtime 5x ./wal/
func BenchmarkOpen(b *testing.B) {
	cases := []struct {
		name    string
		entries int
		batch   int    // entries per Save
		keep    uint64 // entries left after compaction; 0 for none
	}{
		{"log=30KB", 240, 1, 0},
		{"entries=1M", 1_000_000, 1000, 0},
		{"entries=1M/compacted-to-10k", 1_000_000, 1000, 10_000},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			buildBenchWAL(b, dir, c.entries, c.batch, c.keep)
			b.ReportAllocs()
			b.ResetTimer()
			var retained uint64
			for i := 0; b.Loop(); i++ {
				var before runtime.MemStats
				if i == 0 {
					runtime.GC()
					runtime.ReadMemStats(&before)
				}
				w, err := Open(dir, Options{Logger: quietLogger()})
				if err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					b.StopTimer()
					var after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&after)
					retained = after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc)
					b.StartTimer()
				}
				w.Close()
			}
			b.ReportMetric(float64(retained), "retained-B")
			b.ReportMetric(float64(diskUsage(b, dir)), "disk-B")
		})
	}
}

// buildBenchWAL writes n 128-byte entries in Saves of batch entries, then
// compacts all but the last keep (when keep is non-zero).
func buildBenchWAL(b *testing.B, dir string, n, batch int, keep uint64) {
	b.Helper()
	w, err := Open(dir, Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	data := make([]byte, benchEntrySize)
	ents := make([]raft.Entry, 0, batch)
	for i := 1; i <= n; {
		ents = ents[:0]
		for ; len(ents) < batch && i <= n; i++ {
			ents = append(ents, raft.Entry{Index: uint64(i), Term: 1, Data: data})
		}
		if err := w.Save(raft.HardState{Term: 1, Vote: 1, Commit: uint64(i - 1)}, ents); err != nil {
			b.Fatal(err)
		}
	}
	if keep > 0 {
		if err := w.Compact(uint64(n) - keep); err != nil {
			b.Fatal(err)
		}
	}
}

// diskUsage returns the bytes of disk blocks the files in dir occupy.
func diskUsage(b *testing.B, dir string) int64 {
	b.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, name := range names {
		st, err := os.Stat(name)
		if err != nil {
			b.Fatal(err)
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			total += sys.Blocks * 512
		} else {
			total += st.Size()
		}
	}
	return total
}
