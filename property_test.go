package raft

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"
)

// The property test: whatever sequence of proposals, partitions and heals
// rapid draws, once the network heals every node applies the same
// sequence, every acknowledged proposal is in it exactly once at the index
// it was acknowledged with, and no term ever has two leaders.
//
// rapid cannot run inside a synctest bubble (it calls t.Deadline), so the
// schedule is drawn outside and each case runs in a bubble of its own,
// reporting failure back as an error rapid can shrink.

type opKind int

const (
	opPropose opKind = iota
	opPartition
	opHeal
	opSleep
)

type op struct {
	kind  opKind
	node  int    // opPropose: which node is asked
	sides []int  // opPartition: side of each node
	sleep int    // opSleep: milliseconds
	label string // for the shrunk schedule's printout
}

func (o op) String() string { return o.label }

func drawOp(n int) *rapid.Generator[op] {
	return rapid.Custom(func(t *rapid.T) op {
		switch kind := opKind(rapid.IntRange(0, 3).Draw(t, "kind")); kind {
		case opPropose:
			node := rapid.IntRange(0, n-1).Draw(t, "node")
			return op{kind: kind, node: node, label: fmt.Sprintf("propose@%d", node+1)}
		case opPartition:
			sides := rapid.SliceOfN(rapid.IntRange(0, 1), n, n).Draw(t, "sides")
			return op{kind: kind, sides: sides, label: fmt.Sprintf("partition%v", sides)}
		case opHeal:
			return op{kind: kind, label: "heal"}
		default:
			ms := rapid.IntRange(10, 3000).Draw(t, "ms")
			return op{kind: opSleep, sleep: ms, label: fmt.Sprintf("sleep%dms", ms)}
		}
	})
}

func TestPropertyHealedClusterConvergesAndLosesNothing(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.SampledFrom([]int{3, 5}).Draw(rt, "nodes")
		ops := rapid.SliceOfN(drawOp(n), 1, 25).Draw(rt, "ops")
		var err error
		synctest.Test(t, func(t *testing.T) {
			tb := &errTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				runSchedule(tb, n, ops)
			}()
			<-done
			err = tb.err
		})
		if err != nil {
			rt.Fatalf("schedule %v on %d nodes: %v", ops, n, err)
		}
	})
}

// errTB turns Fatal into an error the caller can hand to rapid.
type errTB struct {
	testing.TB
	mu  sync.Mutex
	err error
}

func (e *errTB) Fatalf(format string, args ...any) {
	e.mu.Lock()
	if e.err == nil {
		e.err = fmt.Errorf(format, args...)
	}
	e.mu.Unlock()
	runtime.Goexit()
}

func (e *errTB) Fatal(args ...any) { e.Fatalf("%s", fmt.Sprint(args...)) }
func (e *errTB) Helper()           {}

func runSchedule(t *errTB, n int, ops []op) {
	c := newCluster(t, n, nil)
	defer c.closeAll()
	leaders := watchLeaders(c)
	acked := map[uint64]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, o := range ops {
		switch o.kind {
		case opPropose:
			node := c.nodes[c.ids[o.node]]
			cmd := fmt.Sprint("cmd", i)
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				if res, err := node.Propose(ctx, []byte(cmd)); err == nil {
					mu.Lock()
					acked[res.Index] = cmd
					mu.Unlock()
				}
			})
		case opPartition:
			var a, b []NodeID
			for j, side := range o.sides {
				if side == 0 {
					a = append(a, c.ids[j])
				} else {
					b = append(b, c.ids[j])
				}
			}
			c.net.Partition(a, b)
		case opHeal:
			c.net.Heal()
		case opSleep:
			time.Sleep(time.Duration(o.sleep) * time.Millisecond)
		}
	}
	wg.Wait()
	c.net.Heal()
	last := c.one("final", n)
	want := c.sms[c.ids[0]].commands()
	for _, id := range c.ids[1:] {
		c.waitCommitted(last, n)
		if got := c.sms[id].commands(); !slices.Equal(got, want) {
			t.Fatalf("node %d applied %v, node 1 applied %v", id, got, want)
		}
	}
	seen := map[string]int{}
	for _, cmd := range want {
		seen[cmd]++
	}
	for index, cmd := range acked {
		if seen[cmd] != 1 {
			t.Fatalf("acknowledged %q applied %d times", cmd, seen[cmd])
		}
		if got, _ := c.sms[c.ids[0]].at(index); got != cmd {
			t.Fatalf("acknowledged %q at index %d, applied %q there", cmd, index, got)
		}
	}
	if err := leaders.check(); err != nil {
		t.Fatal(err)
	}
}

// leaderLog records every node's claims to lead a term.
type leaderLog struct {
	mu    sync.Mutex
	terms map[uint64]map[NodeID]bool
}

func (l *leaderLog) check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for term, ids := range l.terms {
		if len(ids) > 1 {
			return fmt.Errorf("term %d had %d leaders", term, len(ids))
		}
	}
	return nil
}

// watchLeaders subscribes to every node's role changes.
func watchLeaders(c *testCluster) *leaderLog {
	l := &leaderLog{terms: map[uint64]map[NodeID]bool{}}
	for _, id := range c.ids {
		ch := make(chan Event, 64)
		unsubscribe := c.nodes[id].Subscribe(ch)
		ctx, cancel := context.WithCancel(context.Background())
		c.t.Cleanup(func() { unsubscribe(); cancel() })
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case e := <-ch:
					if e.Type == EventRoleChanged && e.Role == Leader {
						l.mu.Lock()
						if l.terms[e.Term] == nil {
							l.terms[e.Term] = map[NodeID]bool{}
						}
						l.terms[e.Term][e.Node] = true
						l.mu.Unlock()
					}
				}
			}
		}()
	}
	return l
}
