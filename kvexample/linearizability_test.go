package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anishathalye/porcupine"
)

// This file checks the coordination operations the way a client sees them,
// under faults: four clients increment a counter, take and give back a lock
// with short leases, and put and read a key with a TTL, on a 3-node cluster
// whose network is partitioned, healed and made lossy at random, and whose
// nodes' clocks disagree by up to 600 ms. Porcupine then checks each
// object's history against its sequential model (linmodels_test.go): a
// counter that counts every increment once, a lock that is never granted
// while a lease runs on the log's clock and whose tokens only grow, and a
// key that is gone exactly when its TTL has passed on the log's clock.

// linearizabilityRun is how long clients issue operations (virtual time:
// the run is inside a synctest bubble) while faults strike.
const linearizabilityRun = 20 * time.Second

func TestCoordinationIsLinearizableUnderFaults(t *testing.T) {
	seeds := 4
	if testing.Short() {
		seeds = 1
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { checkCoordination(t, uint64(seed)) })
		})
	}
}

// histories collects every client's completed operations, per object.
type histories struct {
	mu                 sync.Mutex
	counter, lock, ttl []porcupine.Operation
}

func (h *histories) add(list *[]porcupine.Operation, op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	*list = append(*list, op)
}

func checkCoordination(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	c, err := newSimCluster(seed, 3, rng)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Keys nobody writes again: a replica restored from a snapshot has them
	// only if the snapshot carried them.
	for i := range 20 {
		if _, ok := c.write(context.Background(), command{Op: opPut, Key: fmt.Sprintf("fixed/%02d", i), Value: []byte{byte(i)}}, rng); !ok {
			t.Fatal("the cluster never took a write")
		}
	}
	var h histories
	var wg sync.WaitGroup
	faults, stopFaults := context.WithTimeout(context.Background(), linearizabilityRun)
	defer stopFaults()
	wg.Go(func() { c.injectFaults(faults, rand.New(rand.NewPCG(seed, 2))) })
	// Once the faults stop, an operation in flight must finish: the healed
	// cluster has a minute to answer it.
	ops, stopOps := context.WithTimeout(context.Background(), linearizabilityRun+time.Minute)
	defer stopOps()
	for id := range 4 {
		cl := &simClient{c: c, id: id, name: fmt.Sprintf("c%d", id), rng: rand.New(rand.NewPCG(seed, uint64(10+id))), h: &h}
		wg.Go(func() { cl.run(t, ops, time.Now().Add(linearizabilityRun)) })
	}
	wg.Wait()
	// Every replica, restored from snapshots or not, ends in the same state.
	if !c.converged(time.Now().Add(time.Minute)) {
		t.Fatal("the nodes never applied the same log once the faults stopped")
	}
	want := dumpState(c.nodes[0].sm)
	for _, n := range c.nodes[1:] {
		if diff := stateDiff(want, dumpState(n.sm)); diff != "" {
			t.Errorf("node %d's state differs from node 1's (-1 +%d):\n%s", n.id, n.id, diff)
		}
	}
	term, taken, received := c.stats()
	t.Logf("%d counter, %d lock and %d TTL operations; %d write attempts retried; term %d; %d snapshots taken, %d installed",
		len(h.counter), len(h.lock), len(h.ttl), c.failed.Load(), term, taken, received)
	for _, check := range []struct {
		name  string
		model porcupine.Model
		ops   []porcupine.Operation
	}{{"counter", counterModel, h.counter}, {"lock", lockModel, h.lock}, {"ttl", ttlModel, h.ttl}} {
		if len(check.ops) < 20 {
			t.Errorf("%s: only %d operations completed", check.name, len(check.ops))
		}
		res, info := porcupine.CheckOperationsVerbose(check.model, check.ops, time.Minute)
		switch res {
		case porcupine.Illegal:
			path := filepath.Join(os.TempDir(), fmt.Sprintf("kvexample-%s-seed%d.html", check.name, seed))
			if err := porcupine.VisualizePath(check.model, info, path); err != nil {
				t.Logf("writing the visualization: %v", err)
			}
			t.Errorf("%s history (seed %d) is not linearizable; visualization: %s", check.name, seed, path)
		case porcupine.Unknown:
			t.Logf("%s: the check timed out on %d operations", check.name, len(check.ops))
		}
	}
}

// simClient issues random operations, one at a time, each retried until
// answered (writes under its session, so at most once).
type simClient struct {
	c     *simCluster
	id    int
	name  string
	rng   *rand.Rand
	h     *histories
	seq   uint64
	token uint64 // the token of this client's last grant
}

func (cl *simClient) run(t *testing.T, ctx context.Context, until time.Time) {
	for time.Now().Before(until) {
		time.Sleep(time.Duration(cl.rng.IntN(100)) * time.Millisecond)
		call := time.Now().UnixNano()
		list, in, out, ok := cl.step(ctx)
		if !ok {
			t.Errorf("client %s: an operation was never answered, even after the network healed", cl.name)
			return
		}
		cl.h.add(list, porcupine.Operation{ClientId: cl.id, Input: in, Output: out, Call: call, Return: time.Now().UnixNano()})
	}
}

// step runs one random operation and returns the history it belongs to.
func (cl *simClient) step(ctx context.Context) (list *[]porcupine.Operation, in, out any, ok bool) {
	switch r := cl.rng.IntN(20); {
	case r < 5:
		delta := int64(cl.rng.IntN(9) - 3)
		res, ok := cl.write(ctx, command{Op: opIncr, Key: "n", Delta: delta})
		return &cl.h.counter, counterIn{Delta: delta}, parseCounter(res.Value, res.Code == resultOK), ok
	case r < 7:
		v, ok := read(ctx, cl.c, cl.rng, func(st *kvState) int64 {
			it, found := st.data.Get("n")
			return parseCounter(it.value, found)
		})
		return &cl.h.counter, counterIn{Read: true}, v, ok
	case r < 14:
		return cl.lockStep(ctx, r)
	case r < 17:
		value := fmt.Sprintf("%s-%d", cl.name, cl.seq)
		ttl := uint64(100 + cl.rng.IntN(900))
		res, ok := cl.write(ctx, command{Op: opPut, Key: "t", Value: []byte(value), TTL: ttl})
		return &cl.h.ttl, ttlIn{Value: value, TTL: ttl}, ttlOut{Now: res.Now}, ok
	default:
		v, ok := read(ctx, cl.c, cl.rng, func(st *kvState) ttlOut {
			it, found := st.data.Get("t")
			return ttlOut{Value: string(it.value), Exists: found, Now: st.now}
		})
		return &cl.h.ttl, ttlIn{Read: true}, v, ok
	}
}

func (cl *simClient) lockStep(ctx context.Context, r int) (list *[]porcupine.Operation, in, out any, ok bool) {
	lin := lockIn{Holder: cl.name, Token: cl.token}
	var cmd command
	switch r {
	case 7, 8, 9:
		lin.Op, lin.TTL, lin.Token = "acquire", uint64(100+cl.rng.IntN(1400)), 0
		cmd = command{Op: opAcquire, TTL: lin.TTL}
	case 10, 11:
		lin.Op = "release"
		cmd = command{Op: opRelease, Token: cl.token}
	case 12:
		lin.Op, lin.TTL = "renew", uint64(cl.rng.IntN(2)*(100+cl.rng.IntN(1400)))
		cmd = command{Op: opRenew, Token: cl.token, TTL: lin.TTL}
	default:
		lin.Op = "read"
		v, ok := read(ctx, cl.c, cl.rng, func(st *kvState) lockOut {
			l, _ := st.locks.Get("L")
			return lockOut{Lock: l, Now: st.now}
		})
		return &cl.h.lock, lin, v, ok
	}
	cmd.Key, cmd.Holder = "L", cl.name
	res, ok := cl.write(ctx, cmd)
	if lin.Op == "acquire" && res.Code == resultOK {
		cl.token = res.Lock.Token
	}
	return &cl.h.lock, lin, lockOut{Code: res.Code, Lock: res.Lock, Now: res.Now}, ok
}

// write runs cmd under the client's session.
func (cl *simClient) write(ctx context.Context, cmd command) (result, bool) {
	cl.seq++
	cmd.Client, cmd.Seq = cl.name, cl.seq
	return cl.c.write(ctx, cmd, cl.rng)
}
