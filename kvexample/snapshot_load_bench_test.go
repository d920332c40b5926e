package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftline/raft"
)

// BenchmarkSnapshotUnderLoad measures what a snapshot of a big state costs
// the proposals running meanwhile (issue 11): a 3-node kvexample cluster,
// built by startNode as the multi-process mode builds each node (TCP on
// loopback, WAL and snapshot files on disk, lease reads on, the log clock
// ticking), is filled with -kvbench.keys keys, then closed-loop proposers
// (-kvbench.clients, on the leader's raft.Node directly, no HTTP) overwrite
// random keys for -kvbench.window after a 2 s warm-up. Sub-benchmarks:
//
//   - snapshots=off: SnapshotEntries -1, no snapshot at all;
//   - snapshots=one: SnapshotEntries -1, and a third into the window every
//     node takes one snapshot (Node.Snapshot, all three at once);
//   - snapshots=auto: the library's default policy (every 8192 entries),
//     from the fill on.
//
// It reports proposal latency over the whole window, over the proposals
// that ran while a snapshot was being taken (one), and per second. It is a
// measurement, not a test: run it by hand, once.
//
//	go test -run X -bench SnapshotUnderLoad -benchtime 1x -timeout 60m ./kvexample/
var (
	kvbenchKeys    = flag.Int("kvbench.keys", 1_000_000, "BenchmarkSnapshotUnderLoad: keys in the store")
	kvbenchClients = flag.Int("kvbench.clients", 16, "BenchmarkSnapshotUnderLoad: concurrent proposers in the window")
	kvbenchWindow  = flag.Duration("kvbench.window", 15*time.Second, "BenchmarkSnapshotUnderLoad: measured window")
)

func BenchmarkSnapshotUnderLoad(b *testing.B) {
	for _, mode := range []string{"off", "one", "auto"} {
		b.Run("snapshots="+mode, func(b *testing.B) {
			benchSnapshotUnderLoad(b, mode)
		})
	}
}

// opSample is one proposal: when it started and how long it took.
type opSample struct {
	start time.Time
	took  time.Duration
}

func benchSnapshotUnderLoad(b *testing.B, mode string) {
	snapshotEntries := -1
	if mode == "auto" {
		snapshotEntries = 0 // the library's default
	}
	nodes, dir := startBenchKVCluster(b, snapshotEntries)
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	leader := waitBenchLeader(b, nodes)
	value := []byte("0123456789abcdef")
	put := func(ctx context.Context, key int) error {
		cmd := (&command{Op: opPut, Key: fmt.Sprintf("key-%08d", key), Value: value}).encode()
		_, err := leader.raft.Propose(ctx, cmd)
		return err
	}

	// Fill: every key once, 256 proposers.
	fillStart := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= *kvbenchKeys {
					return
				}
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := put(ctx, k)
					cancel()
					if err == nil {
						break
					}
					b.Logf("fill: key %d: %v", k, err)
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	b.Logf("filled %d keys in %v (%.0f/s)", *kvbenchKeys, time.Since(fillStart).Round(time.Millisecond), float64(*kvbenchKeys)/time.Since(fillStart).Seconds())
	for _, n := range nodes {
		for n.sm.Applied() < leader.sm.Applied() {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if got := leader.sm.st.data.Len(); got < *kvbenchKeys {
		b.Fatalf("store holds %d keys, want %d", got, *kvbenchKeys)
	}

	// The window.
	var (
		mu      sync.Mutex
		samples []opSample
		errs    atomic.Int64
		stop    atomic.Bool
	)
	warm := 2 * time.Second
	start := time.Now()
	winStart, winEnd := start.Add(warm), start.Add(warm+*kvbenchWindow)
	for i := range *kvbenchClients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			var mine []opSample
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				err := put(ctx, rng.IntN(*kvbenchKeys))
				took := time.Since(t0)
				cancel()
				if err != nil {
					errs.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				if !t0.Before(winStart) && t0.Before(winEnd) {
					mine = append(mine, opSample{t0, took})
				}
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		})
	}
	var snapFrom, snapTo time.Time
	var snapTook [3]time.Duration
	if mode == "one" {
		time.Sleep(time.Until(winStart.Add(*kvbenchWindow / 3)))
		snapFrom = time.Now()
		var swg sync.WaitGroup
		for i, n := range nodes {
			swg.Go(func() {
				t0 := time.Now()
				idx, err := n.raft.Snapshot(context.Background())
				snapTook[i] = time.Since(t0)
				if err != nil {
					b.Errorf("node %d: Snapshot: %v", n.id, err)
					return
				}
				b.Logf("node %d: snapshot at index %d durable in %v", n.id, idx, snapTook[i].Round(time.Millisecond))
			})
		}
		swg.Wait()
		snapTo = time.Now()
	}
	time.Sleep(time.Until(winEnd))
	stop.Store(true)
	wg.Wait()

	all := latencies(samples, time.Time{}, time.Time{})
	b.ReportMetric(float64(len(all))/kvbenchWindow.Seconds(), "ops/s")
	b.ReportMetric(quantileMs(all, 0.50), "p50_ms")
	b.ReportMetric(quantileMs(all, 0.99), "p99_ms")
	b.ReportMetric(quantileMs(all, 1), "max_ms")
	b.Logf("%s: %d proposals in %v (%.0f/s), %d errors; p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms",
		mode, len(all), *kvbenchWindow, float64(len(all))/kvbenchWindow.Seconds(), errs.Load(),
		quantileMs(all, 0.5), quantileMs(all, 0.99), quantileMs(all, 0.999), quantileMs(all, 1))
	if mode == "one" {
		// Proposals started while any node's snapshot was being taken.
		during := latencies(samples, snapFrom, snapTo)
		b.ReportMetric(quantileMs(during, 0.99), "snap_p99_ms")
		b.ReportMetric(float64(snapTo.Sub(snapFrom).Milliseconds()), "snap_ms")
		b.Logf("during the snapshots (%v, nodes %v): %d proposals, p50 %.2f ms, p99 %.2f ms, max %.2f ms",
			snapTo.Sub(snapFrom).Round(time.Millisecond), snapTook, len(during), quantileMs(during, 0.5), quantileMs(during, 0.99), quantileMs(during, 1))
	}
	var perSec []string
	for t := winStart; t.Before(winEnd); t = t.Add(time.Second) {
		s := latencies(samples, t, t.Add(time.Second))
		perSec = append(perSec, fmt.Sprintf("%.1f", quantileMs(s, 0.99)))
	}
	b.Logf("p99 per second (ms): %v", perSec)
	for _, n := range nodes {
		st := n.raft.Status()
		snaps := filesSize(filepath.Join(dir, fmt.Sprintf("node%d", n.id), snapshotDir))
		b.Logf("node %d: snapshots taken %d, snapshot index %d, log %d..%d, snapshot files %.1f MB", n.id, st.Metrics.SnapshotsTaken, st.SnapshotIndex, st.FirstIndex, st.LastIndex, float64(snaps)/(1<<20))
	}
}

// latencies returns the durations of the samples started in [from, to)
// (zero bounds: no bound), sorted.
func latencies(samples []opSample, from, to time.Time) []time.Duration {
	var out []time.Duration
	for _, s := range samples {
		if (from.IsZero() || !s.start.Before(from)) && (to.IsZero() || s.start.Before(to)) {
			out = append(out, s.took)
		}
	}
	slices.Sort(out)
	return out
}

func quantileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	if q >= 1 {
		i = len(sorted) - 1
	}
	return float64(sorted[i].Microseconds()) / 1e3
}

// startBenchKVCluster starts three kvexample nodes on loopback TCP with
// their data in a temporary directory.
func startBenchKVCluster(b *testing.B, snapshotEntries int) ([]*kvNode, string) {
	dir := b.TempDir()
	var conf raft.Configuration
	lns := make([]net.Listener, 3)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		lns[i] = ln
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(i + 1), Address: ln.Addr().String()})
	}
	var nodes []*kvNode
	for i, ln := range lns {
		n, err := startNode(nodeConfig{
			ID: raft.NodeID(i + 1), HTTPAddr: "127.0.0.1:0", RaftAddr: ln.Addr().String(), RaftListener: ln,
			ClusterID: 1, Peers: conf, DataDir: filepath.Join(dir, fmt.Sprintf("node%d", i+1)),
			ElectionTimeout: time.Second, RequestTimeout: 5 * time.Second,
			SnapshotEntries: snapshotEntries, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			for _, n := range nodes {
				n.Close()
			}
			for _, l := range lns[i+1:] {
				l.Close()
			}
			b.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	return nodes, dir
}

// filesSize sums the sizes of the files under dir.
func filesSize(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

// waitBenchLeader waits for a leader that has committed an entry of its
// term.
func waitBenchLeader(b *testing.B, nodes []*kvNode) *kvNode {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.raft.Status().Role == raft.Leader {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := n.raft.ReadIndex(ctx)
				cancel()
				if err == nil {
					return n
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal("no leader within 30s")
	return nil
}
