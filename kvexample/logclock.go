package main

import (
	"context"
	"errors"
	"time"

	"github.com/raftline/raft"
)

// This file is the log's clock: how TTLs and leases measure time so that
// every node agrees on when they end.
//
// A state machine must not read its own clock: nodes apply an entry at
// different moments (and a restarted node replays it much later), so they
// would disagree on whether a lease had ended, and then on who holds the
// lock. Instead the leader stamps every command it proposes with its clock
// (server.submit), and the state machine's time is the largest stamp it has
// applied (kvState.advance). Every node sees the same stamps in the same
// order, so every node expires the same keys and leases at the same entry.
//
// Time only moves when an entry is applied, so while anything can expire
// the leader also appends an empty "tick" entry whenever the log's clock
// falls tickEvery behind its own (runLogClock): expiry happens without
// writes, at most about tickEvery plus a commit late.
//
// Leaders change, and their clocks differ. The log's clock never goes
// back: a new leader whose clock is behind stamps times that do not move
// it, and it stands still until that leader's clock catches up, so leases
// last longer in real time. A new leader whose clock is ahead moves it
// forward at once, so leases end early in real time: a holder that counts
// its lease on its own clock can believe it still holds a lock the store
// has already given to someone else. Neither can make two holders: the
// state machine grants a lock only when, at that point of the log, its
// lease has ended on the log's clock, and each point of the log has one
// time and one holder. What skew (or a paused holder) can do is make a
// holder's belief wrong, which is why locks come with fencing tokens
// (locks.go): the store refuses a write whose token is no longer current,
// whatever its writer believes.

// tickEvery is how far the log's clock may fall behind the leader's before
// the leader appends a tick, and how often it looks.
const tickEvery = 250 * time.Millisecond

// runLogClock appends tick entries while rn leads and sm has something that
// can expire, until ctx ends. Only the leader's ticks can commit, and ticks
// from a node that just lost leadership are harmless: a stamp never moves
// the clock back.
func runLogClock(ctx context.Context, rn *raft.Node, sm *kvStateMachine, clock func() time.Time) {
	t := time.NewTicker(tickEvery / 2)
	defer t.Stop()
	tick := command{Op: opTick}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, timers := sm.LogTime()
		if !timers || stamp(clock) < now+uint64(tickEvery/time.Millisecond) || rn.Status().Role != raft.Leader {
			continue
		}
		tick.Time = stamp(clock)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := rn.Propose(pctx, tick.encode())
		cancel()
		if errors.Is(err, raft.ErrClosed) {
			return
		}
	}
}
