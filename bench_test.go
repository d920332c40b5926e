package raft

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingSM is the benchmark's trivial state machine, the same work as the
// anchor harness: a counter and a copy of the last command.
type countingSM struct {
	mu    sync.Mutex
	count uint64
	last  []byte
}

func (s *countingSM) Apply(e Entry) any {
	s.mu.Lock()
	s.count++
	s.last = append(s.last[:0], e.Data...)
	s.mu.Unlock()
	return nil
}

func (s *countingSM) Snapshot() (StateSnapshot, error) { return nil, fmt.Errorf("unsupported") }
func (s *countingSM) Restore(io.Reader) error {
	return fmt.Errorf("unsupported")
}

// BenchmarkPropose3Nodes measures a 3-node cluster on the in-memory
// transport: each op is one 128-byte proposal, committed and applied on
// the leader, with N proposers in a closed loop.
func BenchmarkPropose3Nodes(b *testing.B) {
	for _, proposers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("proposers=%d", proposers), func(b *testing.B) {
			leader, closeAll := startBenchCluster(b, 3)
			defer closeAll()
			cmd := make([]byte, 128)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range proposers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := leader.Propose(context.Background(), cmd); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		})
	}
}

// startBenchCluster starts n nodes on real time and returns the leader.
func startBenchCluster(b *testing.B, n int) (*Node, func()) {
	net := NewNetwork(1)
	var conf Configuration
	for i := 1; i <= n; i++ {
		conf.Servers = append(conf.Servers, Server{ID: NodeID(i)})
	}
	nodes := make([]*Node, 0, n)
	closeAll := func() {
		for _, nd := range nodes {
			nd.Close()
		}
	}
	for i := 1; i <= n; i++ {
		s := NewMemoryStorage()
		if err := Bootstrap(s, conf); err != nil {
			b.Fatal(err)
		}
		nd, err := NewNode(Config{
			ID: NodeID(i), Storage: s, StateMachine: &countingSM{}, Transport: net.Join(NodeID(i)),
			ElectionTimeout: 200 * time.Millisecond, Logger: discardLogger(),
		})
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, nd := range nodes {
			if nd.Status().Role == Leader {
				// Wait for the no-op to commit so the first op is not an election.
				if _, err := nd.ReadIndex(context.Background()); err == nil {
					return nd, closeAll
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	closeAll()
	b.Fatal("no leader")
	return nil, nil
}
