package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftline/raft"
)

// These tests change the membership of a single-process cluster through
// the HTTP API; e2e_membership_test.go does it with real processes.

// startJoining starts node id on c's network with empty storage, joining
// through via, and stops it when the test ends.
func startJoining(t *testing.T, c *localCluster, id raft.NodeID, via *kvNode) (*kvNode, error) {
	t.Helper()
	n, err := startNode(nodeConfig{
		ID: id, HTTPAddr: "127.0.0.1:0", JoinVia: via.httpAddr, Network: c.network,
		ElectionTimeout: localElectionTimeout, RequestTimeout: 3 * time.Second, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.Close() })
	return n, nil
}

// clusterOf decodes a GET /cluster (or membership change) answer.
func clusterOf(t *testing.T, r response) clusterView {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	var v clusterView
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("%v in %q", err, r.body)
	}
	return v
}

// roles maps each server of v to its role.
func (v clusterView) roles() map[uint64]string {
	m := map[uint64]string{}
	for _, s := range v.Servers {
		m[s.ID] = s.Role
	}
	return m
}

func TestJoiningNodeIsAddedAsAVoterAndGetsTheData(t *testing.T) {
	c, leader := startTestCluster(t)
	wantStatus(t, do(t, followRedirects, "PUT", leader.URL()+"/kv/before", "join"), http.StatusOK)
	// Through a follower: it redirects the add to the leader.
	n4, err := startJoining(t, c, 4, follower(c, leader))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	view, err := n4.joinCluster(ctx, follower(c, leader).httpAddr, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := view.roles(); got[4] != "voter" || len(got) != 4 {
		t.Fatalf("after the join the cluster is %v, want node 4 a voter among 4", got)
	}
	eventually(t, 10*time.Second, "node 4 to apply the earlier write", func() bool {
		v, ok, _ := n4.sm.Get("before")
		return ok && string(v) == "join"
	})
	// The leader shows everyone's progress, and the HTTP address the add
	// recorded.
	v := clusterOf(t, do(t, noRedirects, "GET", leader.URL()+"/cluster", ""))
	for _, s := range v.Servers {
		if s.Progress == nil || s.Progress.Match == 0 {
			t.Errorf("leader's view of server %d has no progress: %+v", s.ID, s)
		}
		if s.ID == 4 && s.HTTPAddr != n4.httpAddr {
			t.Errorf("server 4's http_addr is %q, want %q", s.HTTPAddr, n4.httpAddr)
		}
	}
	// A follower shows its committed configuration, without progress.
	fv := clusterOf(t, do(t, noRedirects, "GET", follower(c, leader).URL()+"/cluster", ""))
	if fv.Index == 0 || fv.Servers[0].Progress != nil {
		t.Errorf("a follower's /cluster: %+v", fv)
	}
}

func TestAddAndRemoveAreIdempotentAndOneChangeRunsAtATime(t *testing.T) {
	_, leader := startTestCluster(t)
	url := leader.URL() + "/cluster/"
	// Learners commit without catching up, so no node 4 needs to run.
	first := clusterOf(t, do(t, noRedirects, "POST", url+"add", `{"id":4,"raft_addr":"h:4","learner":true}`))
	if first.roles()[4] != "learner" {
		t.Fatalf("after adding learner 4: %v", first.roles())
	}
	again := clusterOf(t, do(t, noRedirects, "POST", url+"add", `{"id":4,"raft_addr":"h:4","learner":true}`))
	if again.Index != first.Index {
		t.Errorf("adding learner 4 again made configuration %d (was %d), want no change", again.Index, first.Index)
	}
	for _, tc := range []struct{ name, body string }{
		{"another address", `{"id":4,"raft_addr":"h:5","learner":true}`},
		{"a voter as a learner", fmt.Sprintf(`{"id":%d,"raft_addr":"","learner":true}`, leader.id)},
	} {
		if msg := wantJSONError(t, do(t, noRedirects, "POST", url+"add", tc.body), http.StatusConflict); msg == "" {
			t.Errorf("%s: no reason given", tc.name)
		}
	}
	// A change while another runs is refused, not queued.
	leader.api.changing.Lock()
	wantJSONError(t, do(t, noRedirects, "POST", url+"add", `{"id":5,"raft_addr":"h:5","learner":true}`), http.StatusConflict)
	wantJSONError(t, do(t, noRedirects, "POST", url+"remove", `{"id":4}`), http.StatusConflict)
	leader.api.changing.Unlock()

	removed := clusterOf(t, do(t, noRedirects, "POST", url+"remove", `{"id":4}`))
	if _, ok := removed.roles()[4]; ok || !slices.Equal(removed.Removed, []uint64{4}) {
		t.Fatalf("after removing 4: servers %v, removed %v", removed.roles(), removed.Removed)
	}
	for _, id := range []int{4, 77} { // removed already, never a member
		if v := clusterOf(t, do(t, noRedirects, "POST", url+"remove", fmt.Sprintf(`{"id":%d}`, id))); v.Index != removed.Index {
			t.Errorf("removing non-member %d changed the configuration to %d", id, v.Index)
		}
	}
}

func TestARemovedIDIsNeverAddedAgainEvenUnderANewLeader(t *testing.T) {
	c, leader := startTestCluster(t)
	wantStatus(t, do(t, noRedirects, "POST", leader.URL()+"/cluster/add", `{"id":4,"raft_addr":"h:4","learner":true}`), http.StatusOK)
	wantStatus(t, do(t, noRedirects, "POST", leader.URL()+"/cluster/remove", `{"id":4}`), http.StatusOK)
	msg := wantJSONError(t, do(t, noRedirects, "POST", leader.URL()+"/cluster/add", `{"id":4,"raft_addr":"h:4","learner":true}`), http.StatusConflict)
	if !strings.Contains(msg, "never reused") {
		t.Errorf("re-adding 4: %q, want it to say IDs are never reused", msg)
	}
	next := follower(c, leader)
	r := do(t, noRedirects, "POST", leader.URL()+"/cluster/transfer", fmt.Sprintf(`{"id":%d}`, next.id))
	wantStatus(t, r, http.StatusOK)
	waitForNewLeader(t, c, leader)
	wantJSONError(t, do(t, followRedirects, "POST", next.URL()+"/cluster/add", `{"id":4,"raft_addr":"h:4","learner":true}`), http.StatusConflict)
	// A process started as node 4 to join is refused before it starts.
	if _, err := startJoining(t, c, 4, next); err == nil || !strings.Contains(err.Error(), "never reused") {
		t.Fatalf("joining as removed node 4: %v, want a refusal", err)
	}
}

func TestAVoterWithAnEmptyDataDirCannotJoinUnderItsOldID(t *testing.T) {
	c, leader := startTestCluster(t)
	voter := follower(c, leader).id
	if _, err := startJoining(t, c, voter, leader); err == nil || !strings.Contains(err.Error(), "already a voter") {
		t.Fatalf("joining as voter %d with empty storage: %v, want a refusal", voter, err)
	}
}

func TestTheLastVoterCannotBeRemoved(t *testing.T) {
	c, leader := startTestCluster(t)
	for _, n := range c.nodes {
		if n != leader {
			wantStatus(t, do(t, noRedirects, "POST", leader.URL()+"/cluster/remove", fmt.Sprintf(`{"id":%d}`, n.id)), http.StatusOK)
		}
	}
	r := do(t, noRedirects, "POST", leader.URL()+"/cluster/remove", fmt.Sprintf(`{"id":%d}`, leader.id))
	if msg := wantJSONError(t, r, http.StatusConflict); !strings.Contains(msg, "last voter") {
		t.Errorf("removing the last voter: %q", msg)
	}
	if leader.sm.Retired(leader.id) {
		t.Error("a refused removal retired the last voter's ID")
	}
}

func TestRemovedNodesLearnTheyWereRemoved(t *testing.T) {
	for _, tc := range []struct {
		name   string
		victim func(c *localCluster, leader *kvNode) *kvNode
	}{
		// The leader commits its own removal, then hands over.
		{"the leader", func(_ *localCluster, leader *kvNode) *kvNode { return leader }},
		// A follower is not sent the change: it finds out by asking.
		{"a follower", follower},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, leader := startTestCluster(t)
			victim := tc.victim(c, leader)
			// The leader hands over first, and sends the client on.
			r := do(t, followRedirects, "POST", leader.URL()+"/cluster/remove", fmt.Sprintf(`{"id":%d}`, victim.id))
			if _, ok := clusterOf(t, r).roles()[uint64(victim.id)]; ok {
				t.Fatalf("node %d still a member after its removal: %s", victim.id, r.body)
			}
			select {
			case <-victim.Removed():
			case <-time.After(10 * time.Second):
				t.Fatalf("node %d did not learn of its removal within 10s", victim.id)
			}
			for _, n := range c.nodes {
				if n == victim {
					continue
				}
				select {
				case <-n.Removed():
					t.Fatalf("node %d, still a member, believes it was removed", n.id)
				default:
				}
			}
			if tc.name == "the leader" {
				waitForNewLeader(t, c, victim)
			}
		})
	}
}
