package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/raftline/raft"
)

func TestEveryReadKindIsServedByTheNodeAsked(t *testing.T) {
	c, leader := startTestCluster(t)
	f := follower(c, leader)
	for _, tc := range []struct {
		name, query string
		node        *kvNode
	}{
		{"default on a follower", "", f},
		{"linearizable on a follower", "?consistency=linearizable", f},
		{"lease on a follower", "?consistency=lease", f},
		{"lease on the leader", "?consistency=lease", leader},
		{"linearizable on the leader", "?consistency=linearizable", leader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each read starts after its write was acknowledged, so it
			// must see it: no redirect, no stale answer.
			value := "v-" + tc.name
			wantStatus(t, do(t, followRedirects, "PUT", leader.URL()+"/kv/k", value), http.StatusOK)
			r := do(t, noRedirects, "GET", tc.node.URL()+"/kv/k"+tc.query, "")
			if r.code != http.StatusOK || r.body != value {
				t.Fatalf("GET %s on node %d: %d %q, want 200 %q", tc.query, tc.node.id, r.code, r.body, value)
			}
		})
	}
	// Stale reads answer from what the node applied, eventually the same.
	for _, q := range []string{"?stale=1", "?consistency=stale", "?stale=true&consistency=stale"} {
		eventually(t, 5*time.Second, "a stale read to catch up", func() bool {
			r := do(t, noRedirects, "GET", f.URL()+"/kv/k"+q, "")
			return r.code == http.StatusOK && strings.HasPrefix(r.body, "v-")
		})
	}
}

func TestOnlyTheLeaderReportsALease(t *testing.T) {
	c, leader := startTestCluster(t)
	eventually(t, 5*time.Second, "the leader to hold a lease", func() bool {
		var st statusResponse
		return json.Unmarshal([]byte(do(t, noRedirects, "GET", leader.URL()+"/status", "").body), &st) == nil && st.Lease
	})
	var st statusResponse
	if err := json.Unmarshal([]byte(do(t, noRedirects, "GET", follower(c, leader).URL()+"/status", "").body), &st); err != nil || st.Lease {
		t.Fatalf("a follower's /status: lease %v (%v)", st.Lease, err)
	}
}

func TestFollowerRedirectsOnlyToALeaderHeardFromRecently(t *testing.T) {
	const silentAfter = 500 * time.Millisecond
	now := time.Now()
	cases := []struct {
		name     string
		leader   raft.NodeID
		heard    time.Duration // how long ago; 0: never
		addr     string
		wantCode int
		wantText string
	}{
		{"no leader", raft.None, 0, "", http.StatusServiceUnavailable, "knows of no leader"},
		{"a live leader", 1, 50 * time.Millisecond, "127.0.0.1:8080", http.StatusTemporaryRedirect, "node 1 is"},
		{"a silent leader", 1, 2 * time.Second, "127.0.0.1:8080", http.StatusServiceUnavailable, "has not heard from leader 1 for 2"},
		{"a leader not yet heard of", 1, 0, "127.0.0.1:8080", http.StatusTemporaryRedirect, "node 1 is"},
		{"a live leader, address unknown", 1, 50 * time.Millisecond, "", http.StatusServiceUnavailable, "HTTP address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &server{id: 2, sm: newKVStateMachine(10), contact: &contactTracker{}, silentAfter: silentAfter}
			if tc.addr != "" {
				applyAll(s.sm, command{Op: opRegister, NodeID: uint64(tc.leader), HTTPAddr: tc.addr})
			}
			if tc.heard != 0 {
				s.contact.heard(tc.leader, now.Add(-tc.heard))
			}
			w := httptest.NewRecorder()
			s.redirectToLeader(w, httptest.NewRequest("PUT", "/kv/k", nil), tc.leader)
			if w.Code != tc.wantCode || !strings.Contains(w.Body.String(), tc.wantText) {
				t.Fatalf("%d %s, want %d and %q", w.Code, w.Body, tc.wantCode, tc.wantText)
			}
			if w.Code == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

func TestFollowerCutOffFromTheLeaderStopsRedirectingToIt(t *testing.T) {
	// A long election timeout leaves a wide window between the follower
	// deciding the leader is silent (5 heartbeats: 1 s) and its own
	// election timeout (2 to 4 s), when it still names the leader.
	c, leader := startTestClusterWith(t, func(cfg *nodeConfig) { cfg.ElectionTimeout = 2 * time.Second })
	f := follower(c, leader)
	wantJSONError(t, do(t, noRedirects, "PUT", f.URL()+"/kv/k", "v"), http.StatusTemporaryRedirect)
	c.network.Block(leader.id, f.id)
	var r response
	eventually(t, 5*time.Second, "the follower to stop redirecting", func() bool {
		r = do(t, noRedirects, "PUT", f.URL()+"/kv/k", "v")
		return r.code != http.StatusTemporaryRedirect
	})
	msg := wantJSONError(t, r, http.StatusServiceUnavailable)
	if !strings.Contains(msg, "has not heard from leader") || r.header.Get("Retry-After") == "" {
		t.Fatalf("follower cut off from the leader answered %q (Retry-After %q)", msg, r.header.Get("Retry-After"))
	}
	// Reads too: no waiting for a read index that cannot come.
	start := time.Now()
	wantJSONError(t, do(t, noRedirects, "GET", f.URL()+"/kv/k", ""), http.StatusServiceUnavailable)
	if d := time.Since(start); d > time.Second {
		t.Errorf("a linearizable read on the cut-off follower took %v to fail", d)
	}
	// By now its own election may have begun: either way it says why.
	var st statusResponse
	if err := json.Unmarshal([]byte(do(t, noRedirects, "GET", f.URL()+"/status", "").body), &st); err != nil ||
		!(strings.Contains(st.Health, "silent") || strings.Contains(st.Health, "no leader known") || strings.Contains(st.Health, "no quorum")) {
		t.Errorf("the cut-off follower's health line: %q (%v)", st.Health, err)
	}
}
