package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/raftline/raft"
)

// This file notices that this node was removed from the cluster, so that
// its process can exit (main.go) rather than linger.
//
// The library says so with EventRemoved once the node sees a committed
// configuration without itself (watchEvents). A removed leader always
// does: it commits the change. A removed follower usually does not: the
// leader stops replicating to it as soon as the change is in the leader's
// log, so the follower never learns that the change committed. It just
// stops hearing from the leader, and its elections go nowhere (the others
// ignore it). So a node that has had no leader for a while asks the
// members it knows (their HTTP addresses, from the replicated state) for
// GET /cluster, and takes itself for removed when one answers with a
// committed configuration without it and its ID among the removed ones:
// both facts come from committed entries, and a removed ID never comes
// back.

// removalProbeAfter is how many election timeouts without a leader make a
// node ask the others whether it was removed: an ordinary election is over
// well before.
const removalProbeAfter = 2

// watchMembership checks, every election timeout, whether a node without
// a leader was removed, until ctx ends or it was.
func (n *kvNode) watchMembership(ctx context.Context, electionTimeout time.Duration) {
	t := time.NewTicker(electionTimeout)
	defer t.Stop()
	leaderless := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.removed:
			return
		case <-t.C:
		}
		st := n.raft.Status()
		_, silent := n.api.leaderSilence(st.Leader, time.Now())
		if st.Role == raft.Leader || (st.Leader != raft.None && !silent) {
			leaderless = 0
			continue
		}
		if leaderless++; leaderless >= removalProbeAfter && len(st.Config.Servers) > 0 {
			n.probeRemoval(ctx, electionTimeout)
		}
	}
}

// probeRemoval asks the other nodes whose HTTP address is known whether
// this node is still a member, and marks it removed if one says it is not.
func (n *kvNode) probeRemoval(ctx context.Context, timeout time.Duration) {
	addrs := n.sm.HTTPAddrs()
	for _, id := range slices.Sorted(maps.Keys(addrs)) {
		if id == n.id || addrs[id] == n.httpAddr {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		code, body, err := clusterRequest(pctx, http.MethodGet, "http://"+addrs[id]+"/cluster", nil)
		cancel()
		var view clusterView
		if err != nil || code != http.StatusOK || json.Unmarshal(body, &view) != nil {
			continue
		}
		if view.leftOut(n.id) {
			n.markRemoved(fmt.Sprintf("node %d's committed configuration (index %d) leaves it out", id, view.Index))
			return
		}
	}
}

// leftOut reports whether the view proves id was removed: not a member,
// and retired.
func (v clusterView) leftOut(id raft.NodeID) bool {
	if !slices.Contains(v.Removed, uint64(id)) {
		return false
	}
	for _, s := range v.Servers {
		if s.ID == uint64(id) {
			return false
		}
	}
	return true
}
