package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftline/raft"
)

func TestTransferHandsLeadershipOverAndNamesTheNewLeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		body func(target raft.NodeID) string
	}{
		{"to a named voter", func(target raft.NodeID) string { return fmt.Sprintf(`{"id":%d}`, target) }},
		{"to the most caught-up voter", func(raft.NodeID) string { return `{}` }},
		{"with no body", func(raft.NodeID) string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, leader := startTestCluster(t)
			target := follower(c, leader)
			r := do(t, noRedirects, "POST", leader.URL()+"/cluster/transfer", tc.body(target.id))
			wantStatus(t, r, http.StatusOK)
			var out transferResponse
			if err := json.Unmarshal([]byte(r.body), &out); err != nil {
				t.Fatal(err)
			}
			if out.Leader == uint64(leader.id) || out.Leader == 0 || (tc.name == "to a named voter" && out.Leader != uint64(target.id)) {
				t.Fatalf("transfer from %d answered %s", leader.id, r.body)
			}
			next := waitForNewLeader(t, c, leader)
			if uint64(next.id) != out.Leader || out.LeaderHTTP != next.httpAddr {
				t.Fatalf("transfer answered %s, but node %d (%s) leads", r.body, next.id, next.httpAddr)
			}
			// The old leader is a follower now, and sends writes on.
			wantJSONError(t, do(t, noRedirects, "PUT", leader.URL()+"/kv/k", "v"), http.StatusTemporaryRedirect)
		})
	}
}

func TestTransferRequestsThatCannotBeDone(t *testing.T) {
	c, leader := startTestCluster(t)
	f := follower(c, leader)
	// To the leader itself: already done.
	r := do(t, noRedirects, "POST", leader.URL()+"/cluster/transfer", fmt.Sprintf(`{"id":%d}`, leader.id))
	wantStatus(t, r, http.StatusOK)
	if st := leader.raft.Status(); st.Role != raft.Leader {
		t.Fatalf("a transfer to the leader itself changed its role to %v", st.Role)
	}
	// Asked of a follower: sent to the leader.
	wantJSONError(t, do(t, noRedirects, "POST", f.URL()+"/cluster/transfer", `{}`), http.StatusTemporaryRedirect)
	// To a learner, which cannot lead.
	wantStatus(t, do(t, noRedirects, "POST", leader.URL()+"/cluster/add", `{"id":9,"raft_addr":"h:9","learner":true}`), http.StatusOK)
	wantJSONError(t, do(t, noRedirects, "POST", leader.URL()+"/cluster/transfer", `{"id":9}`), http.StatusConflict)
	// To a voter that cannot be reached: aborted after an election
	// timeout, and the leader leads on.
	c.network.Isolate(f.id)
	start := time.Now()
	wantJSONError(t, do(t, noRedirects, "POST", leader.URL()+"/cluster/transfer", fmt.Sprintf(`{"id":%d}`, f.id)), http.StatusConflict)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the aborted transfer took %v to answer", d)
	}
	c.network.Heal()
	wantStatus(t, do(t, followRedirects, "PUT", leader.URL()+"/kv/after", "abort"), http.StatusOK)
}
