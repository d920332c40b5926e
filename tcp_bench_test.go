package raft

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkClusterPropose measures a 3-node cluster with MemoryStorage over
// loopback TCP and, for comparison, over the in-memory Network: proposals
// per second and the p50/p99 latency of one Propose, with 1, 16 and 256
// concurrent proposers. Each run builds its own cluster, so pin b.N:
//
//	go test -run '^$' -bench BenchmarkClusterPropose -benchtime 3000x .
func BenchmarkClusterPropose(b *testing.B) {
	for _, transport := range []string{"tcp", "mem"} {
		for _, proposers := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("%s/proposers=%d", transport, proposers), func(b *testing.B) {
				var c *liveCluster
				if transport == "tcp" {
					c = newTCPCluster(b, 3, nil)
				} else {
					c = newMemCluster(b, 3)
				}
				leader := c.nodes[c.waitLeader()]
				c.propose("warm-up", 3)
				benchPropose(b, leader, proposers)
				// Drops explain latency tails: a dropped append costs a
				// reject and a probe round trip.
				var drops uint64
				for _, id := range c.ids {
					drops += c.nodes[id].Status().Metrics.SendDropped
					if tr := c.trans[id]; tr != nil {
						drops += tr.Stats().Dropped
					}
				}
				b.ReportMetric(float64(drops), "drops")
			})
		}
	}
}

// benchPropose runs b.N proposals on leader from the given number of
// goroutines and reports throughput and latency percentiles.
func benchPropose(b *testing.B, leader *Node, proposers int) {
	cmd := make([]byte, 64)
	lat := make([][]time.Duration, proposers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for p := range proposers {
		n := b.N / proposers
		if p < b.N%proposers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[p] = make([]time.Duration, 0, n)
			for range n {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := leader.Propose(ctx, cmd)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				lat[p] = append(lat[p], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(q float64) float64 {
		return float64(all[min(len(all)-1, int(q*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
