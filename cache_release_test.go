package raft

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
)

// releasingStorage records the floors the node hands a CacheReleaser.
type releasingStorage struct {
	*MemoryStorage
	mu     sync.Mutex
	floors []uint64
}

func (s *releasingStorage) ReleaseCached(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.floors = append(s.floors, index)
}

func (s *releasingStorage) last() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.floors) == 0 {
		return 0
	}
	return s.floors[len(s.floors)-1]
}

// proposeMany commits count commands through n from 16 proposers.
func proposeMany(t *testing.T, n *Node, count int) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < count; i += 16 {
				if _, err := n.Propose(context.Background(), []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A node tells a caching storage which entries it no longer needs: those
// applied and, on a leader, held by every peer, so a follower that stopped
// holds the leader's floor at the entries it still lacks.
func TestCacheFloorFollowsAppliedAndTheSlowestPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stores := map[NodeID]*releasingStorage{}
		c := newCluster(t, 3, func(cfg *Config) {
			if stores[cfg.ID] == nil {
				stores[cfg.ID] = &releasingStorage{MemoryStorage: cfg.Storage.(*MemoryStorage)}
			}
			cfg.Storage = stores[cfg.ID]
		})
		lead, ln := c.leaderNode()
		proposeMany(t, ln, 3000)
		synctest.Wait()
		for _, id := range c.ids {
			st := c.nodes[id].Status()
			floor := stores[id].last()
			if floor < cacheReleaseStep || floor > st.Applied+1 {
				t.Fatalf("node %d released its cache up to %d with %d applied", id, floor, st.Applied)
			}
		}
		stopped := others(c.ids, lead)[0]
		held := c.nodes[stopped].Status().LastIndex
		c.crash(stopped)
		proposeMany(t, ln, 3000)
		if floor := stores[lead].last(); floor > held+1 {
			t.Fatalf("the leader released entries up to %d; the stopped follower has only %d", floor, held)
		}
		other := others(c.ids, lead, stopped)[0]
		synctest.Wait()
		if floor, applied := stores[other].last(), c.nodes[other].Status().Applied; floor <= held+cacheReleaseStep || floor > applied+1 {
			t.Fatalf("the running follower released up to %d with %d applied (the stopped one had %d)", floor, applied, held)
		}
	})
}
