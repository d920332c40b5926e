// Command bench measures raftline the way the anchor harness
// (../shared/anchor-bench) measures hashicorp/raft and etcd raft: N voters
// in one process, closed-loop clients each proposing a fresh command and
// waiting until it is committed and applied on the leader, a warm-up, then
// a measured window. It prints exactly one JSON line on stdout in the
// harness' format; diagnostics go to stderr. bench/anchors/driver runs the
// same workload against the anchor libraries (bench/compare.sh,
// docs/benchmarks.md): keep the two in step.
//
//	go run ./bench -nodes 3 -transport tcp -durable -clients 16 -duration 5s
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// result is the harness' JSON line, field for field.
type result struct {
	Lib        string  `json:"lib"`
	Nodes      int     `json:"nodes"`
	Transport  string  `json:"transport"`
	Durable    bool    `json:"durable"`
	Clients    int     `json:"clients"`
	Payload    int     `json:"payload"`
	Ops        uint64  `json:"ops"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	MaxUs      float64 `json:"max_us"`
	HeapPeakMB float64 `json:"heap_peak_mb"`
	Errors     uint64  `json:"errors"`
	// DiskMB is what the nodes' logs and snapshots hold on disk at the
	// end (durable runs); the harness ignores it.
	DiskMB float64 `json:"disk_mb,omitempty"`
}

// flags are the command line.
type flags struct {
	nodes      int
	transport  string
	durable    bool
	clients    int
	payload    int
	duration   time.Duration
	warmup     time.Duration
	opTimeout  time.Duration
	cpuprofile string
	memprofile string
	// snapshotEntries and snapshotTrailing: the library's snapshot policy.
	snapshotEntries, snapshotTrailing int
}

func parseFlags() flags {
	var f flags
	flag.IntVar(&f.nodes, "nodes", 3, "voters in the cluster (3 or 5), all in this process")
	flag.StringVar(&f.transport, "transport", "inmem", "inmem (in-memory Network) | tcp (127.0.0.1)")
	flag.BoolVar(&f.durable, "durable", false, "WAL on disk with fsync (false: MemoryStorage)")
	flag.IntVar(&f.clients, "clients", 1, "concurrent closed-loop clients")
	flag.IntVar(&f.payload, "payload", 128, "bytes per command")
	flag.DurationVar(&f.duration, "duration", 5*time.Second, "measured time (after warm-up)")
	flag.DurationVar(&f.warmup, "warmup", time.Second, "warm-up before measuring")
	flag.DurationVar(&f.opTimeout, "op-timeout", 10*time.Second, "deadline of each proposal")
	flag.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured window to this file")
	flag.StringVar(&f.memprofile, "memprofile", "", "write an allocation profile at the end to this file")
	flag.IntVar(&f.snapshotEntries, "snapshot-entries", 0, "snapshot every N applied entries (0: the library's default, negative: never)")
	flag.IntVar(&f.snapshotTrailing, "snapshot-trailing", 0, "entries kept in the log behind a snapshot (0: the library's default, negative: none)")
	flag.Parse()
	switch {
	case f.nodes != 3 && f.nodes != 5:
		fatalf("-nodes must be 3 or 5")
	case f.transport != "inmem" && f.transport != "tcp":
		fatalf("-transport must be inmem or tcp")
	case f.clients < 1 || f.payload < 16:
		fatalf("-clients must be >= 1 and -payload >= 16")
	}
	return f
}

func main() {
	f := parseFlags()
	sampler := startHeapSampler(10 * time.Millisecond)
	dir, err := os.MkdirTemp("", "raftline-bench-*")
	if err != nil {
		fatalf("tempdir: %v", err)
	}
	defer os.RemoveAll(dir)

	setup := time.Now()
	c, err := newCluster(options{nodes: f.nodes, transport: f.transport, durable: f.durable, dir: dir,
		snapshotEntries: f.snapshotEntries, snapshotTrailing: f.snapshotTrailing})
	if err != nil {
		os.RemoveAll(dir)
		fatalf("building cluster: %v", err)
	}
	logf("cluster up in %v (go %s, GOMAXPROCS %d)", time.Since(setup).Round(time.Millisecond), runtime.Version(), runtime.GOMAXPROCS(0))

	r := run(c, f)
	heapPeak := sampler.stop()
	if f.durable {
		r.res.DiskMB = round1(float64(diskUse(dir)) / (1 << 20))
		logf("disk: %.1f MB of logs and snapshots at the end", r.res.DiskMB)
	}
	if err := c.close(); err != nil {
		logf("close: %v", err)
	}
	r.res.HeapPeakMB = round1(float64(heapPeak) / (1 << 20))
	r.report(f)
	out, _ := json.Marshal(r.res)
	fmt.Println(string(out))
}

// runOutcome is a run's result and the diagnostics around it.
type runOutcome struct {
	res                 result
	before, after       gcSnap
	termBefore, termEnd uint64
	elections           uint64
	drops               uint64
	warmErrs            uint64
	firstErr            error
}

// run drives the clients through warm-up and the measured window.
func run(c *cluster, f flags) *runOutcome {
	var (
		h        hist
		ops      atomic.Uint64
		errs     atomic.Uint64
		warmErrs atomic.Uint64
		errOnce  sync.Once
		firstErr error
		out      runOutcome
	)
	start := time.Now()
	warmEnd := start.Add(f.warmup)
	measEnd := warmEnd.Add(f.duration)
	ctx, cancel := context.WithDeadline(context.Background(), measEnd.Add(f.opTimeout+5*time.Second))
	defer cancel()

	var electionsBefore uint64
	var stopProfile func()
	beforeTaken := make(chan struct{})
	go func() { // the "before" snapshot exactly at the start of the window
		defer close(beforeTaken)
		time.Sleep(time.Until(warmEnd))
		stopProfile = startCPUProfile(f.cpuprofile)
		out.before = readGC()
		out.termBefore = c.term()
		electionsBefore = c.elections.Load()
	}()

	var wg sync.WaitGroup
	for i := range f.clients {
		id := uint64(i + 1)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(id, 42))
			for seq := uint64(1); time.Now().Before(measEnd); seq++ {
				// A fresh command per proposal, as an application builds
				// one per request: client id, sequence, random filler.
				cmd := make([]byte, f.payload)
				binary.LittleEndian.PutUint64(cmd[0:], id)
				binary.LittleEndian.PutUint64(cmd[8:], seq)
				for j := 16; j+8 <= len(cmd); j += 8 {
					binary.LittleEndian.PutUint64(cmd[j:], rng.Uint64())
				}
				octx, ocancel := context.WithTimeout(ctx, f.opTimeout)
				t0 := time.Now()
				err := c.propose(octx, cmd)
				t1 := time.Now()
				ocancel()
				inWindow := !t1.Before(warmEnd) && t1.Before(measEnd)
				if err != nil {
					if inWindow {
						errs.Add(1)
					} else if t1.Before(warmEnd) {
						warmErrs.Add(1)
					}
					errOnce.Do(func() { firstErr = err })
					time.Sleep(time.Millisecond) // don't spin on a failing cluster
					continue
				}
				if inWindow {
					ops.Add(1)
					h.record(t1.Sub(t0).Nanoseconds())
				}
			}
		})
	}
	time.Sleep(time.Until(measEnd))
	<-beforeTaken
	out.after = readGC()
	stopProfile()
	out.termEnd = c.term()
	out.elections = c.elections.Load() - electionsBefore
	wg.Wait()
	out.drops = c.dropped()
	out.warmErrs, out.firstErr = warmErrs.Load(), firstErr
	writeMemProfile(f.memprofile)

	n := ops.Load()
	out.res = result{
		Lib: "raftline", Nodes: f.nodes, Transport: f.transport, Durable: f.durable,
		Clients: f.clients, Payload: f.payload, Ops: n,
		OpsPerSec: round1(float64(n) / f.duration.Seconds()),
		P50us:     round1(h.quantile(0.50) / 1e3),
		P99us:     round1(h.quantile(0.99) / 1e3),
		P999us:    round1(h.quantile(0.999) / 1e3),
		MaxUs:     round1(float64(h.max.Load()) / 1e3),
		Errors:    errs.Load(),
	}
	return &out
}

// report writes the diagnostics to stderr.
func (r *runOutcome) report(f flags) {
	b, a := r.before, r.after
	gcFrac := 0.0
	if d := a.cpuTotal - b.cpuTotal; d > 0 {
		gcFrac = (a.cpuGC - b.cpuGC) / d
	}
	bytesPerOp, objsPerOp := 0.0, 0.0
	if n := float64(r.res.Ops); n > 0 {
		bytesPerOp = float64(a.allocBytes-b.allocBytes) / n
		objsPerOp = float64(a.allocObjs-b.allocObjs) / n
	}
	cpuPerOp := 0.0
	if r.res.Ops > 0 {
		cpuPerOp = 1e6 * (a.procCPU - b.procCPU) / float64(r.res.Ops)
	}
	logf("window: %d GC cycles, GC ~%.1f%% of Go CPU, %.0f B and %.1f allocs per op (client's command included), process used %.2f CPU-s of %.1f (%.1f µs CPU per op)",
		a.cycles-b.cycles, 100*gcFrac, bytesPerOp, objsPerOp, a.procCPU-b.procCPU,
		f.duration.Seconds()*float64(runtime.GOMAXPROCS(0)), cpuPerOp)
	logf("leader term: %d at window start, %d at end; leader changes seen during window: %d; messages dropped: %d",
		r.termBefore, r.termEnd, r.elections, r.drops)
	if e := r.warmErrs + r.res.Errors; e > 0 {
		logf("errors: %d in warm-up, %d in window; first: %v", r.warmErrs, r.res.Errors, r.firstErr)
	}
}

// startCPUProfile starts profiling to path ("" for none) and returns the
// function that stops it.
func startCPUProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	fh, err := os.Create(path)
	if err != nil {
		logf("cpuprofile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(fh); err != nil {
		logf("cpuprofile: %v", err)
		fh.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		fh.Close()
	}
}

func writeMemProfile(path string) {
	if path == "" {
		return
	}
	fh, err := os.Create(path)
	if err != nil {
		logf("memprofile: %v", err)
		return
	}
	defer fh.Close()
	if err := pprof.Lookup("allocs").WriteTo(fh, 0); err != nil {
		logf("memprofile: %v", err)
	}
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func fatalf(format string, args ...any) {
	logf(format, args...)
	os.Exit(1)
}
