package simtest

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSim runs the simulator over seeds: a short fixed set by default, many
// with -sim.seeds=N, or one with -sim.seed=N (add -sim.trace for its event
// trace). Each run must break no invariant and its client history must be
// linearizable.
func TestSim(t *testing.T) {
	if beforeSim != nil {
		beforeSim(t)
	}
	type job struct {
		seed  uint64
		nodes int
	}
	var jobs []job
	sizes := []int{3, 5}
	if *flagNodes != 0 {
		sizes = []int{*flagNodes}
	}
	switch {
	case *flagSeed != 0:
		for _, n := range sizes {
			jobs = append(jobs, job{*flagSeed, n})
		}
	default:
		count := 12
		if *flagSeeds > 0 {
			count = *flagSeeds
		}
		for seed := 1; seed <= count; seed++ {
			for _, n := range sizes {
				jobs = append(jobs, job{uint64(seed), n})
			}
		}
	}
	var (
		mu           sync.Mutex
		steps        int64
		virtual      time.Duration
		snaps        SnapStats
		members      MemberStats
		failed, done atomic.Int64
		next         atomic.Int64
		wg           sync.WaitGroup
	)
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				j := jobs[i]
				opts := Options{Seed: j.seed, Nodes: j.nodes, TornWrites: true}
				if *flagTrace && *flagSeed != 0 {
					opts.Trace = os.Stdout
				}
				r := Run(opts)
				mu.Lock()
				steps += int64(r.Steps)
				virtual += r.Virtual
				snaps = snaps.Add(r.Snaps)
				members.Proposed += r.Members.Proposed
				members.Refused += r.Members.Refused
				members.Transfers += r.Members.Transfers
				mu.Unlock()
				done.Add(1)
				if r.Err != nil {
					failed.Add(1)
					t.Errorf("seed %d (%d nodes): %v at %v\nfaults: %s\nreplay: %s",
						r.Seed, r.Nodes, r.Err, r.ErrAt, FormatFaults(r.Faults), replayCommand(r))
					continue
				}
				checkLinearizable(t, r)
			}
		})
	}
	wg.Wait()
	real := time.Since(start)
	t.Logf("%d runs, %d failed; %d steps, %v simulated in %v: %.0f simulated s per real s, %.0f steps/s",
		done.Load(), failed.Load(), steps, virtual.Round(time.Second), real.Round(time.Millisecond),
		virtual.Seconds()/real.Seconds(), float64(steps)/real.Seconds())
	t.Logf("snapshots: %+v", snaps)
	t.Logf("membership changes: %+v", members)
}

func TestSimSameSeedReplaysIdentically(t *testing.T) {
	for _, n := range []int{3, 5} {
		opts := Options{Seed: 7, Nodes: n, TornWrites: true, Duration: 12 * time.Second}
		a, b := Run(opts), Run(opts)
		if a.Hash != b.Hash || a.Steps != b.Steps || len(a.History) != len(b.History) {
			t.Fatalf("%d nodes, seed 7 twice: hash %x/%x, steps %d/%d", n, a.Hash, b.Hash, a.Steps, b.Steps)
		}
		opts.Seed = 8
		c := Run(opts)
		if c.Hash == a.Hash {
			t.Fatalf("%d nodes: seeds 7 and 8 gave the same trace hash: the seed does not reach the run", n)
		}
	}
}

func TestSimWithoutFaultsMakesSteadyProgress(t *testing.T) {
	r := Run(Options{Seed: 1, Nodes: 3, NoFaults: true, Duration: 10 * time.Second})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	// Three closed-loop clients on a healthy cluster complete many ops.
	if r.Acked < 300 {
		t.Fatalf("only %d writes acknowledged in 10 s without faults", r.Acked)
	}
	checkLinearizable(t, r)
}
