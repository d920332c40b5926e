package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/raftline/raft"
)

// threeVoters is the configuration of the health tests: voters 1, 2, 3.
var threeVoters = raft.Configuration{Servers: []raft.Server{{ID: 1}, {ID: 2}, {ID: 3}}}

func TestNodeThatHearsFromNoMajorityNamesTheSilentNodesAndForHowLong(t *testing.T) {
	now := time.Now()
	s := &server{id: 1, sm: newKVStateMachine(10), contact: &contactTracker{}, silentAfter: 500 * time.Millisecond}
	s.contact.heard(2, now.Add(-8*time.Second))
	s.contact.heard(3, now.Add(-9*time.Second))
	st := raft.Status{ID: 1, Role: raft.Candidate, Term: 9, Config: threeVoters}
	want := "no quorum: cannot reach nodes 2, 3 for 8.0 s"
	if got := s.health(context.Background(), st, now); !strings.HasPrefix(got, want) {
		t.Errorf("health %q, want it to start %q", got, want)
	}
}

func TestNodeThatHearsFromAMajorityWithoutLeaderSaysAnElectionIsUnderWay(t *testing.T) {
	now := time.Now()
	s := &server{id: 1, sm: newKVStateMachine(10), contact: &contactTracker{}, silentAfter: 500 * time.Millisecond}
	s.contact.heard(2, now.Add(-50*time.Millisecond)) // 3 never heard from
	st := raft.Status{ID: 1, Role: raft.Follower, Term: 9, Config: threeVoters}
	if got := s.health(context.Background(), st, now); !strings.Contains(got, "election is under way in term 9") {
		t.Errorf("health %q, want an election under way in term 9", got)
	}
}

func TestFollowerFarBehindItsLeaderSaysItIsCatchingUpAndByHowMuch(t *testing.T) {
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"state": "leader", "commit_index": 12134})
	}))
	defer leader.Close()
	s := &server{id: 2, sm: newKVStateMachine(10), contact: &contactTracker{}, silentAfter: 500 * time.Millisecond}
	applyAll(s.sm, command{Op: opRegister, NodeID: 1, HTTPAddr: strings.TrimPrefix(leader.URL, "http://")})
	st := raft.Status{ID: 2, Role: raft.Follower, Leader: 1, Term: 3, LastIndex: 100, Commit: 100, Applied: 100, Config: threeVoters}
	want := "catching up: 12,034 entries behind leader 1"
	if got := s.health(context.Background(), st, time.Now()); got != want {
		t.Errorf("health %q, want %q", got, want)
	}
	// A few entries behind is simply following.
	st.LastIndex, st.Commit, st.Applied = 12100, 12100, 12100
	s.leaderCommit = leaderCommitCache{}
	if got := s.health(context.Background(), st, time.Now()); got != "following node 1" {
		t.Errorf("34 entries behind: health %q, want %q", got, "following node 1")
	}
}

func TestIsolatedNodeExplainsItsMissingQuorumInStatusAndInThe503(t *testing.T) {
	c, leader := startTestCluster(t)
	f := follower(c, leader)
	c.network.Isolate(f.id)
	defer c.network.Heal()
	var st statusResponse
	eventually(t, 10*time.Second, "the isolated node to say it has no quorum", func() bool {
		r := do(t, noRedirects, "GET", f.URL()+"/status", "")
		return json.Unmarshal([]byte(r.body), &st) == nil && strings.HasPrefix(st.Health, "no quorum: cannot reach nodes ")
	})
	msg := wantJSONError(t, do(t, noRedirects, "PUT", f.URL()+"/kv/k", "v"), http.StatusServiceUnavailable)
	if !strings.Contains(msg, "no quorum: cannot reach nodes ") {
		t.Errorf("the isolated node's 503 says %q; want the reason its /status gives (%q)", msg, st.Health)
	}
}

func TestLeaderStatusAndClusterShowEachPeersProgress(t *testing.T) {
	c, leader := startTestCluster(t)
	wantStatus(t, do(t, followRedirects, "PUT", leader.URL()+"/kv/k", "v"), http.StatusOK)
	var st statusResponse
	eventually(t, 5*time.Second, "both peers to match the leader's log", func() bool {
		if json.Unmarshal([]byte(do(t, noRedirects, "GET", leader.URL()+"/status", "").body), &st) != nil || len(st.Peers) != 2 {
			return false
		}
		for _, p := range st.Peers {
			if p.Match != st.LastIndex || p.Next != st.LastIndex+1 || p.State != "replicate" || p.Lag != 0 {
				return false
			}
		}
		return true
	})
	for _, p := range st.Peers {
		if p.LastContactMS < 0 || p.LastContactMS > 1000 {
			t.Errorf("peer %d last heard from %d ms ago on a healthy cluster", p.ID, p.LastContactMS)
		}
	}
	var f statusResponse
	if err := json.Unmarshal([]byte(do(t, noRedirects, "GET", follower(c, leader).URL()+"/status", "").body), &f); err != nil || f.Peers != nil {
		t.Errorf("a follower's /status shows peers %v (%v), want none", f.Peers, err)
	}
	var v clusterView
	if err := json.Unmarshal([]byte(do(t, noRedirects, "GET", leader.URL()+"/cluster", "").body), &v); err != nil {
		t.Fatal(err)
	}
	if v.LastIndex == 0 || v.FirstIndex == 0 || !strings.HasPrefix(v.Health, "leader of term") {
		t.Errorf("/cluster on the leader: last %d, first %d, health %q", v.LastIndex, v.FirstIndex, v.Health)
	}
}
