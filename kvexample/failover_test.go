package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftline/raft"
)

// waitForNewLeader waits until a node other than old leads and the other
// connected nodes know its HTTP address.
func waitForNewLeader(t *testing.T, c *localCluster, old *kvNode) *kvNode {
	t.Helper()
	var leader *kvNode
	eventually(t, 10*time.Second, "a new leader", func() bool {
		for _, n := range c.nodes {
			if n == old || n.raft.Status().Role != raft.Leader {
				continue
			}
			for _, m := range c.nodes {
				if m == old {
					continue
				}
				if addr, ok := m.sm.HTTPAddr(n.id); !ok || addr != n.httpAddr || m.raft.Status().Leader != n.id {
					return false
				}
			}
			leader = n
			return true
		}
		return false
	})
	return leader
}

func TestRetriedWriteAfterLeaderChangeIsAppliedOnce(t *testing.T) {
	c, first := startTestCluster(t)
	session := []string{"X-Client-Id", "client-1", "X-Request-Seq", "1"}
	r := do(t, noRedirects, "POST", first.URL()+"/kv/log/append", "x", session...)
	if r.code != http.StatusOK || r.body != "x" {
		t.Fatalf("first attempt: %d %q", r.code, r.body)
	}

	// The leader fails (cut off the network); the client, not knowing
	// whether its write happened, retries it elsewhere with the same id
	// and seq.
	c.network.Isolate(first.id)
	second := waitForNewLeader(t, c, first)
	r = do(t, followRedirects, "POST", follower(c, first).URL()+"/kv/log/append", "x", session...)
	if r.code != http.StatusOK || r.body != "x" {
		t.Fatalf("retry at the new leader: %d %q, want 200 and the first answer x", r.code, r.body)
	}
	if r := do(t, noRedirects, "GET", second.URL()+"/kv/log", ""); r.body != "x" {
		t.Fatalf("value %q after the retry, want x (applied once)", r.body)
	}
	// A new request of the same client is executed as usual.
	session[3] = "2"
	if r := do(t, followRedirects, "POST", second.URL()+"/kv/log/append", "y", session...); r.body != "xy" {
		t.Fatalf("next request: %d %q, want xy", r.code, r.body)
	}

	// Once reconnected, the old leader catches up on the same state.
	c.network.Heal()
	eventually(t, 10*time.Second, "the old leader to catch up", func() bool {
		return do(t, noRedirects, "GET", first.URL()+"/kv/log?stale=1", "").body == "xy"
	})
}

func TestCutOffLeaderAnswersUnknownOutcomeThenNoLeader(t *testing.T) {
	c, leader := startTestCluster(t)
	c.network.Isolate(leader.id)
	// A write reaching the cut-off leader is appended but cannot commit:
	// the leader steps down (CheckQuorum) or the request times out, and
	// either way the client is told the outcome is unknown.
	r := do(t, noRedirects, "PUT", leader.URL()+"/kv/k", "v")
	if r.code != http.StatusServiceUnavailable && r.code != http.StatusGatewayTimeout {
		t.Fatalf("write to a cut-off leader: %d %q, want 503 or 504", r.code, r.body)
	}
	wantJSONError(t, r, r.code)
	if !strings.Contains(r.body, "may or may not") && !strings.Contains(r.body, "no leader") {
		t.Errorf("error %q does not say the outcome is unknown", r.body)
	}
	// Once it knows it is no longer leader, and knows of no other, it
	// answers 503 with Retry-After.
	eventually(t, 10*time.Second, "the cut-off leader to step down", func() bool {
		return leader.raft.Status().Leader == raft.None
	})
	r = do(t, noRedirects, "PUT", leader.URL()+"/kv/k", "v")
	wantJSONError(t, r, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	// The rest of the cluster carries on, and the lost write never applied.
	second := waitForNewLeader(t, c, leader)
	if r := do(t, noRedirects, "GET", second.URL()+"/kv/k", ""); r.code != http.StatusNotFound {
		t.Errorf("the unknown-outcome write is visible: %d %q", r.code, r.body)
	}
}
