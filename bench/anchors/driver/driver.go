// Package driver is the workload of raftline's `go run ./bench`, written
// once for the anchor libraries: N voters in one process, closed-loop
// clients each proposing a fresh command and waiting until it is committed
// and applied on the leader, a 1 s warm-up, then a measured window. Main
// prints exactly one JSON line on stdout, field for field the line of
// ./bench; diagnostics go to stderr.
//
// The workload is a copy of bench/main.go's run (the root module cannot
// share code with this one without depending on it). Keep the two in step:
// the command, the clients' loop, the window and the histogram must match.
//
// An adapter (one per library) provides a Constructor; a command registers
// its adapters and calls Main.
package driver

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Cluster is an in-process Raft cluster of Options.Nodes voters.
type Cluster interface {
	// Propose replicates cmd through Raft and returns nil only after the
	// command is committed AND applied to the leader's state machine. It
	// is called concurrently from many goroutines. The driver allocates a
	// fresh cmd per call and never modifies it afterwards, so the adapter
	// may keep it. ctx carries a deadline; the adapter gives up (returns an
	// error) once it expires.
	Propose(ctx context.Context, cmd []byte) error
	// Close shuts every node down and releases ports and files.
	Close() error
}

// TermReporter is optional: the driver logs the leader's term before and
// after the window (stderr), which makes elections during a run visible.
type TermReporter interface {
	LeaderTerm() uint64
}

// Options describes the cluster to build. A Constructor returns only when
// a leader has been elected and the cluster accepts proposals.
type Options struct {
	Nodes     int    // voters (3 or 5), all in this process
	Transport string // "inmem": the library's in-memory transport; "tcp": real TCP on 127.0.0.1
	Durable   bool   // log and hard state on disk under Dir, fsync before acknowledging
	Dir       string // per-run temp directory, removed by the driver afterwards
	Payload   int    // bytes per command (informational)
}

// Constructor builds a cluster.
type Constructor func(Options) (Cluster, error)

// ErrNoLeader is returned by adapters when no leader is known.
var ErrNoLeader = errors.New("no leader")

// Result is the JSON line, field for field the one of ./bench and of the
// anchor harness.
type Result struct {
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
}

// Main parses the command line (-lib picks one of adapters), runs the
// workload and prints the JSON line. Adapters may define their own flags
// before Main is called.
func Main(adapters map[string]Constructor) {
	var names []string
	for n := range adapters {
		names = append(names, n)
	}
	sort.Strings(names)
	lib := flag.String("lib", names[0], "library adapter: "+strings.Join(names, "|"))
	nodes := flag.Int("nodes", 3, "voters in the cluster (3 or 5), all in this process")
	transport := flag.String("transport", "inmem", "inmem (library's in-memory transport) | tcp (127.0.0.1)")
	durable := flag.Bool("durable", false, "log on disk with fsync before acknowledging (false: in-memory log)")
	clients := flag.Int("clients", 1, "concurrent closed-loop clients")
	payload := flag.Int("payload", 128, "bytes per command")
	duration := flag.Duration("duration", 5*time.Second, "measured time (after warm-up)")
	warmup := flag.Duration("warmup", time.Second, "warm-up before measuring")
	opTimeout := flag.Duration("op-timeout", 10*time.Second, "deadline of each proposal")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured window to this file")
	flag.Parse()

	ctor, ok := adapters[*lib]
	switch {
	case !ok:
		fatalf("unknown -lib %q (have %s)", *lib, strings.Join(names, ", "))
	case *nodes != 3 && *nodes != 5:
		fatalf("-nodes must be 3 or 5")
	case *transport != "inmem" && *transport != "tcp":
		fatalf("-transport must be inmem or tcp")
	case *clients < 1 || *payload < 16:
		fatalf("-clients must be >= 1 and -payload >= 16")
	}

	// The heap sampler runs for the whole life of the cluster.
	sampler := startHeapSampler(10 * time.Millisecond)
	dir, err := os.MkdirTemp("", "anchors-"+*lib+"-*")
	if err != nil {
		fatalf("tempdir: %v", err)
	}
	defer os.RemoveAll(dir)

	opts := Options{Nodes: *nodes, Transport: *transport, Durable: *durable, Dir: dir, Payload: *payload}
	setup := time.Now()
	c, err := ctor(opts)
	if err != nil {
		os.RemoveAll(dir)
		fatalf("%s: building cluster: %v", *lib, err)
	}
	Logf("cluster up in %v (go %s, GOMAXPROCS %d)", time.Since(setup).Round(time.Millisecond), runtime.Version(), runtime.GOMAXPROCS(0))

	w := workload{clients: *clients, payload: *payload, warmup: *warmup, duration: *duration,
		opTimeout: *opTimeout, cpuprofile: *cpuprofile}
	out := w.run(c)
	heapPeak := sampler.stop()
	if err := c.Close(); err != nil {
		Logf("close: %v", err)
	}

	n := out.ops
	res := Result{
		Lib: *lib, Nodes: *nodes, Transport: *transport, Durable: *durable,
		Clients: *clients, Payload: *payload, Ops: n,
		OpsPerSec:  round1(float64(n) / duration.Seconds()),
		P50us:      round1(out.h.quantile(0.50) / 1e3),
		P99us:      round1(out.h.quantile(0.99) / 1e3),
		P999us:     round1(out.h.quantile(0.999) / 1e3),
		MaxUs:      round1(float64(out.h.max.Load()) / 1e3),
		HeapPeakMB: round1(float64(heapPeak) / (1 << 20)),
		Errors:     out.errs,
	}
	if n > 0 {
		res.CPUusPerOp = round1(1e6 * (out.after.procCPU - out.before.procCPU) / float64(n))
	}
	out.report(*duration)
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
}

type workload struct {
	clients, payload            int
	warmup, duration, opTimeout time.Duration
	cpuprofile                  string
}

type outcome struct {
	h                     *hist
	ops, errs, warmErrs   uint64
	firstErr              error
	before, after         gcSnap
	termBefore, termAfter uint64
	hasTerm               bool
}

// run drives the clients through warm-up and the measured window.
func (w workload) run(c Cluster) *outcome {
	var (
		h        = new(hist)
		ops      atomic.Uint64
		errs     atomic.Uint64 // errors that completed inside the window
		warmErrs atomic.Uint64
		errOnce  sync.Once
		firstErr error
		out      = &outcome{h: h}
	)
	start := time.Now()
	warmEnd := start.Add(w.warmup)
	measEnd := warmEnd.Add(w.duration)
	ctx, cancel := context.WithDeadline(context.Background(), measEnd.Add(w.opTimeout+5*time.Second))
	defer cancel()

	tr, hasTerm := c.(TermReporter)
	out.hasTerm = hasTerm
	var stopProfile func()
	beforeTaken := make(chan struct{})
	go func() { // the "before" snapshot exactly at the start of the window
		defer close(beforeTaken)
		time.Sleep(time.Until(warmEnd))
		stopProfile = startCPUProfile(w.cpuprofile)
		out.before = readGC()
		if hasTerm {
			out.termBefore = tr.LeaderTerm()
		}
	}()

	var wg sync.WaitGroup
	for i := range w.clients {
		id := uint64(i + 1)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(id, 42))
			for seq := uint64(1); time.Now().Before(measEnd); seq++ {
				// A fresh command per proposal, as an application builds
				// one per request: client id, sequence, random filler.
				cmd := make([]byte, w.payload)
				binary.LittleEndian.PutUint64(cmd[0:], id)
				binary.LittleEndian.PutUint64(cmd[8:], seq)
				for j := 16; j+8 <= len(cmd); j += 8 {
					binary.LittleEndian.PutUint64(cmd[j:], rng.Uint64())
				}
				octx, ocancel := context.WithTimeout(ctx, w.opTimeout)
				t0 := time.Now()
				err := c.Propose(octx, cmd)
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
	if hasTerm {
		out.termAfter = tr.LeaderTerm()
	}
	wg.Wait()
	out.ops, out.errs, out.warmErrs, out.firstErr = ops.Load(), errs.Load(), warmErrs.Load(), firstErr
	return out
}

// report writes the diagnostics to stderr.
func (o *outcome) report(window time.Duration) {
	b, a := o.before, o.after
	gcFrac := 0.0
	if d := a.cpuTotal - b.cpuTotal; d > 0 {
		gcFrac = (a.cpuGC - b.cpuGC) / d
	}
	bytesPerOp, objsPerOp, cpuPerOp := 0.0, 0.0, 0.0
	if n := float64(o.ops); n > 0 {
		bytesPerOp = float64(a.allocBytes-b.allocBytes) / n
		objsPerOp = float64(a.allocObjs-b.allocObjs) / n
		cpuPerOp = 1e6 * (a.procCPU - b.procCPU) / n
	}
	Logf("window: %d GC cycles, GC ~%.1f%% of Go CPU, %.0f B and %.1f allocs per op (client's command included), process used %.2f CPU-s of %.1f (%.1f µs CPU per op)",
		a.cycles-b.cycles, 100*gcFrac, bytesPerOp, objsPerOp, a.procCPU-b.procCPU,
		window.Seconds()*float64(runtime.GOMAXPROCS(0)), cpuPerOp)
	if b.hostBusy >= 0 {
		others := othersDelta(b.others, a.others)
		kernel := max((a.hostBusy-b.hostBusy)-(a.procCPU-b.procCPU)-others, 0)
		Logf("machine: other processes used %.2f CPU-s (noise if > ~0.2), kernel threads/irq %.2f CPU-s, steal %.2f CPU-s during the window",
			others, kernel, a.hostSteal-b.hostSteal)
	}
	if o.hasTerm {
		Logf("leader term: %d at window start, %d at end (elections during window: %v)", o.termBefore, o.termAfter, o.termAfter != o.termBefore)
	}
	if e := o.warmErrs + o.errs; e > 0 {
		Logf("errors: %d in warm-up, %d in window; first: %v", o.warmErrs, o.errs, o.firstErr)
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
		Logf("cpuprofile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(fh); err != nil {
		Logf("cpuprofile: %v", err)
		fh.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		fh.Close()
	}
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// Logf writes one diagnostic line to stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "anchors: "+format+"\n", args...)
}

func fatalf(format string, args ...any) {
	Logf(format, args...)
	os.Exit(1)
}
