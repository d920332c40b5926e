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

// result is the harness' JSON line, field for field, plus fields that only
// some flags fill in (omitted otherwise, so the default line is the
// harness' own).
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
	// CPUusPerOp is the CPU time the whole process (every node and the
	// clients) used in the window per committed operation.
	CPUusPerOp float64 `json:"cpu_us_per_op"`
	// DiskMB is what the nodes' logs and snapshots hold on disk at the
	// end (durable runs); the harness ignores it.
	DiskMB float64 `json:"disk_mb,omitempty"`

	// With -reads: the read mode and fraction, and the reads' rate,
	// latency and errors. Ops, OpsPerSec, the percentiles and Errors then
	// count the writes (proposals) only.
	ReadMode     string  `json:"read_mode,omitempty"`
	ReadFraction float64 `json:"read_fraction,omitempty"`
	Reads        uint64  `json:"reads,omitempty"`
	ReadsPerSec  float64 `json:"reads_per_sec,omitempty"`
	ReadP50us    float64 `json:"read_p50_us,omitempty"`
	ReadP99us    float64 `json:"read_p99_us,omitempty"`
	ReadP999us   float64 `json:"read_p999_us,omitempty"`
	ReadMaxUs    float64 `json:"read_max_us,omitempty"`
	ReadErrors   uint64  `json:"read_errors,omitempty"`
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
	// reportEvery: print disk use and heap to stderr this often.
	reportEvery time.Duration
	// reads is the fraction of client operations that are reads, made as
	// readMode says.
	reads    float64
	readMode string
	// stateMB sizes the state machine's table (state.go); 0: none.
	stateMB int
	// scenario runs one of the scenarios of scenario.go instead of the
	// throughput measurement; entries, repeat, window and rate are theirs.
	scenario string
	entries  int
	repeat   int
	window   time.Duration
	rate     float64
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
	flag.DurationVar(&f.reportEvery, "report-every", 0, "print the nodes' disk use and the heap to stderr this often (0: never)")
	flag.Float64Var(&f.reads, "reads", 0, "fraction of operations that are linearizable reads (0 to 1)")
	flag.StringVar(&f.readMode, "read-mode", "leader", "how reads are made: leader (ReadIndex on the leader) | follower (ReadIndex on a follower) | lease (LeaseRead on the leader, Config.LeaseReads with MaxClockDrift 0.05)")
	flag.IntVar(&f.stateMB, "state-mb", 0, "give the state machine a copy-on-write table of this many MiB, filled by the commands, which snapshots hold (0: none)")
	flag.StringVar(&f.scenario, "scenario", "", "run a scenario instead: restart | catchup (see scenario.go)")
	flag.IntVar(&f.entries, "entries", 1_000_000, "scenarios: entries committed before the restart (restart) or while the follower is down (catchup)")
	flag.IntVar(&f.repeat, "repeat", 3, "scenarios: restarts (restart) or whole runs (catchup)")
	flag.DurationVar(&f.window, "window", 10*time.Second, "catchup: length of the baseline and catch-up windows")
	flag.Float64Var(&f.rate, "rate", 0, "catchup: writes per second in the measured windows (0: as fast as the clients go)")
	flag.Parse()
	switch {
	case f.nodes != 3 && f.nodes != 5:
		fatalf("-nodes must be 3 or 5")
	case f.transport != "inmem" && f.transport != "tcp":
		fatalf("-transport must be inmem or tcp")
	case f.clients < 1 || f.payload < 16:
		fatalf("-clients must be >= 1 and -payload >= 16")
	case f.reads < 0 || f.reads > 1:
		fatalf("-reads must be between 0 and 1")
	case f.readMode != "leader" && f.readMode != "follower" && f.readMode != "lease":
		fatalf("-read-mode must be leader, follower or lease")
	case f.scenario != "" && f.scenario != "restart" && f.scenario != "catchup":
		fatalf("-scenario must be restart or catchup")
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

	if f.scenario != "" {
		sampler.stop()
		code := runScenario(f, dir)
		os.RemoveAll(dir)
		os.Exit(code)
	}

	setup := time.Now()
	c, err := newCluster(clusterOptions(f, dir))
	if err != nil {
		os.RemoveAll(dir)
		fatalf("building cluster: %v", err)
	}
	logf("cluster up in %v (go %s, GOMAXPROCS %d)", time.Since(setup).Round(time.Millisecond), runtime.Version(), runtime.GOMAXPROCS(0))

	r := run(c, f, dir)
	heapPeak := sampler.stop()
	if f.durable {
		r.res.DiskMB = round1(float64(diskUse(dir)) / (1 << 20))
		logf("disk: %.1f MB of logs and snapshots at the end", r.res.DiskMB)
	}
	if err := c.close(); err != nil {
		logf("close: %v", err)
	}
	r.res.HeapPeakMB = round1(float64(heapPeak) / (1 << 20))
	if r.res.Ops > 0 {
		r.res.CPUusPerOp = round1(1e6 * (r.after.procCPU - r.before.procCPU) / float64(r.res.Ops))
	}
	r.report(f)
	out, _ := json.Marshal(r.res)
	fmt.Println(string(out))
}

// clusterOptions is the cluster the flags describe.
func clusterOptions(f flags, dir string) options {
	o := options{nodes: f.nodes, transport: f.transport, durable: f.durable, dir: dir,
		snapshotEntries: f.snapshotEntries, snapshotTrailing: f.snapshotTrailing}
	if f.reads > 0 && f.readMode == "lease" {
		o.leaseReads, o.maxClockDrift = true, 0.05
	}
	if f.stateMB > 0 {
		o.stateBytes, o.slotSize = f.stateMB<<20, f.payload
	}
	return o
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
	readErr             error
}

// run drives the clients through warm-up and the measured window.
func run(c *cluster, f flags, dir string) *runOutcome {
	var (
		h        hist
		rh       hist
		reads    atomic.Uint64
		readErrs atomic.Uint64
		readOnce sync.Once
		readErr  error
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

	stopReports := startReporter(c, dir, f.reportEvery, start)
	var wg sync.WaitGroup
	for i := range f.clients {
		id := uint64(i + 1)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(id, 42))
			// Reads draw from their own source, so the commands are the
			// same with and without them.
			readRng := rand.New(rand.NewPCG(id, 43))
			for seq := uint64(1); time.Now().Before(measEnd); seq++ {
				if f.reads > 0 && readRng.Float64() < f.reads {
					seq--
					octx, ocancel := context.WithTimeout(ctx, f.opTimeout)
					t0 := time.Now()
					err := c.read(octx, f.readMode, int(id))
					t1 := time.Now()
					ocancel()
					inWindow := !t1.Before(warmEnd) && t1.Before(measEnd)
					if err != nil {
						if inWindow {
							readErrs.Add(1)
						}
						readOnce.Do(func() { readErr = err })
						time.Sleep(time.Millisecond)
						continue
					}
					if inWindow {
						reads.Add(1)
						rh.record(t1.Sub(t0).Nanoseconds())
					}
					continue
				}
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
	stopReports()
	out.drops = c.dropped()
	out.warmErrs, out.firstErr, out.readErr = warmErrs.Load(), firstErr, readErr
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
	if f.reads > 0 {
		r := &out.res
		r.ReadMode, r.ReadFraction, r.Reads = f.readMode, f.reads, reads.Load()
		r.ReadsPerSec = round1(float64(r.Reads) / f.duration.Seconds())
		r.ReadP50us = round1(rh.quantile(0.50) / 1e3)
		r.ReadP99us = round1(rh.quantile(0.99) / 1e3)
		r.ReadP999us = round1(rh.quantile(0.999) / 1e3)
		r.ReadMaxUs = round1(float64(rh.max.Load()) / 1e3)
		r.ReadErrors = readErrs.Load()
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
	cpuPerOp := r.res.CPUusPerOp
	logf("window: %d GC cycles, GC ~%.1f%% of Go CPU, %.0f B and %.1f allocs per op (client's command included), process used %.2f CPU-s of %.1f (%.1f µs CPU per op)",
		a.cycles-b.cycles, 100*gcFrac, bytesPerOp, objsPerOp, a.procCPU-b.procCPU,
		f.duration.Seconds()*float64(runtime.GOMAXPROCS(0)), cpuPerOp)
	logf("leader term: %d at window start, %d at end; leader changes seen during window: %d; messages dropped: %d",
		r.termBefore, r.termEnd, r.elections, r.drops)
	if e := r.warmErrs + r.res.Errors; e > 0 {
		logf("errors: %d in warm-up, %d in window; first: %v", r.warmErrs, r.res.Errors, r.firstErr)
	}
	if f.reads > 0 {
		logf("reads (%s, %.0f%% of operations): %.0f/s, p50 %.0f µs, p99 %.0f µs; writes %.0f/s, p99 %.0f µs",
			f.readMode, 100*f.reads, r.res.ReadsPerSec, r.res.ReadP50us, r.res.ReadP99us, r.res.OpsPerSec, r.res.P99us)
		if r.readErr != nil {
			logf("read errors: %d in window; first: %v", r.res.ReadErrors, r.readErr)
		}
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
