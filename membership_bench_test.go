package raft

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// BenchmarkMembershipChangesUnderLoad measures, in virtual time (synctest),
// how long growing a 3-node cluster to 5 and removing the leader take while
// a client writes, and how many of its writes fail. Run with
//
//	go test -run X -bench MembershipChanges -benchtime 5x .
func BenchmarkMembershipChangesUnderLoad(b *testing.B) {
	var grow, remove time.Duration
	var growFailed, removeFailed, writes int64
	for range b.N {
		synctest.Test(&testing.T{}, func(t *testing.T) {
			c := newCluster(b, 3, nil)
			c.net.SetDelay(time.Millisecond, 2*time.Millisecond)
			c.one("first", 3)
			var failed, done atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					// Refusals are retried at the next leader; an unknown
					// outcome or no leader for long counts as a failure.
					if err := c.proposeWithRetry([]byte("w")); err != nil {
						failed.Add(1)
					}
					done.Add(1)
					time.Sleep(5 * time.Millisecond)
				}
			})
			c.join(4)
			c.join(5)
			_, ln := c.leaderNode()
			start, f0 := time.Now(), failed.Load()
			for _, id := range []NodeID{4, 5} {
				if _, err := ln.AddVoter(context.Background(), id, "", 0); err != nil {
					b.Fatal(err)
				}
			}
			grow += time.Since(start)
			growFailed += failed.Load() - f0
			start, f0 = time.Now(), failed.Load()
			if _, err := ln.RemoveServer(context.Background(), ln.ID(), 0); err != nil {
				b.Fatal(err)
			}
			waitFor(b, electionTimeout, "new leader", func() bool {
				for _, n := range c.running() {
					if n != ln && n.Status().Role == Leader {
						return true
					}
				}
				return false
			})
			remove += time.Since(start)
			removeFailed += failed.Load() - f0
			close(stop)
			wg.Wait()
			writes += done.Load()
			c.closeAll()
		})
	}
	b.ReportMetric(grow.Seconds()*1e3/float64(b.N), "grow-3-to-5-ms")
	b.ReportMetric(remove.Seconds()*1e3/float64(b.N), "remove-leader-ms")
	b.ReportMetric(float64(growFailed)/float64(b.N), "failed-writes-grow")
	b.ReportMetric(float64(removeFailed)/float64(b.N), "failed-writes-remove")
	b.ReportMetric(float64(writes)/float64(b.N), "writes")
}
