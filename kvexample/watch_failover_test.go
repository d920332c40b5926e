package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// watchedChange is one change a watcher was told of.
type watchedChange struct {
	index uint64
	value string
}

// watchOutcome is what a watcher saw, and how often it had to give up on
// a node and ask another.
type watchOutcome struct {
	seen     []watchedChange
	switches int
}

// watchKey follows key's changes after index from, starting at node first
// of c (redirects followed, another node tried when one fails), until it
// sees the value last or the deadline passes. It runs on its own goroutine
// and reports on the channel.
func watchKey(c *localCluster, first int, key string, from uint64, last string, deadline time.Time) <-chan watchOutcome {
	out := make(chan watchOutcome, 1)
	go func() {
		var seen []watchedChange
		after, switches := from, 0
		for node := first; time.Now().Before(deadline); {
			url := fmt.Sprintf("%s/kv/%s?watch=1&wait=1&after=%d", c.nodes[node].URL(), key, after)
			resp, err := followRedirects.Get(url)
			if err != nil {
				node, switches = (node+1)%len(c.nodes), switches+1
				continue
			}
			var w watchResponse
			decodeErr := json.NewDecoder(resp.Body).Decode(&w)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusNoContent:
				// Nothing new up to X-Raft-Index: keep watching from after.
			case resp.StatusCode == http.StatusOK && decodeErr == nil && w.Value != nil:
				seen = append(seen, watchedChange{w.Index, *w.Value})
				after = w.Index
				if *w.Value == last {
					out <- watchOutcome{seen, switches}
					return
				}
			default: // no leader here, a timeout: ask another node
				node, switches = (node+1)%len(c.nodes), switches+1
				time.Sleep(50 * time.Millisecond)
			}
		}
		out <- watchOutcome{seen, switches}
	}()
	return out
}

// putUntilAcknowledged writes key=value under a session, retrying through
// every node until one answers 200, and returns the answer's index.
func putUntilAcknowledged(t *testing.T, c *localCluster, key, value string, seq int) uint64 {
	t.Helper()
	session := []string{"X-Client-Id", "writer", "X-Request-Seq", strconv.Itoa(seq)}
	deadline := time.Now().Add(20 * time.Second)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		req, _ := http.NewRequest("PUT", c.nodes[attempt%len(c.nodes)].URL()+"/kv/"+key, strings.NewReader(value))
		for i := 0; i < len(session); i += 2 {
			req.Header.Set(session[i], session[i+1])
		}
		resp, err := followRedirects.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				i, _ := strconv.ParseUint(resp.Header.Get("X-Raft-Index"), 10, 64)
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("PUT %s=%s was never acknowledged", key, value)
	return 0
}

func TestAWatcherSeesEveryChangeInOrderAcrossALeaderFailure(t *testing.T) {
	c, leader := startTestCluster(t)
	r := do(t, noRedirects, "GET", leader.URL()+"/kv/w", "")
	from := raftIndex(t, r)
	const writes = 30
	// The watcher starts on the leader, so the failure strikes the node it
	// is waiting on.
	watched := watchKey(c, int(leader.id-1), "w", from, fmt.Sprint("v", writes-1), time.Now().Add(60*time.Second))

	acked := make([]uint64, writes)
	for i := range writes {
		if i == writes/2 {
			// The leader fails mid-stream, cut off with the watcher perhaps
			// still waiting on it.
			c.network.Isolate(leader.id)
			t.Logf("after %d writes: node %d (the leader) cut off", i, leader.id)
		}
		acked[i] = putUntilAcknowledged(t, c, "w", fmt.Sprint("v", i), i+1)
	}
	outcome := <-watched
	seen := outcome.seen
	c.network.Heal()

	// Every change, in order, each exactly once, at or before the index
	// its write was acknowledged at (a retry's answer carries the retry's
	// own, later index).
	if len(seen) != writes {
		t.Fatalf("the watcher saw %d changes, want %d: %v", len(seen), writes, seen)
	}
	for i, s := range seen {
		if s.value != fmt.Sprint("v", i) || s.index > acked[i] || (i > 0 && s.index <= seen[i-1].index) {
			t.Fatalf("change %d seen as %+v (write acknowledged at %d, previous change at %+v)", i, s, acked[i], seen[max(i-1, 0)])
		}
	}
	// No gap: a node's own record of the key's changes after from is
	// exactly what the watcher saw.
	second := waitForNewLeader(t, c, leader)
	var recorded []watchedChange
	second.sm.mu.RLock()
	for after := from; ; {
		found, gone := second.sm.changes.find(after, "w", false)
		if gone || len(found) == 0 {
			break
		}
		recorded = append(recorded, watchedChange{found[0].Index, string(found[0].Value)})
		after = found[0].Index
	}
	second.sm.mu.RUnlock()
	if fmt.Sprint(recorded) != fmt.Sprint(seen) {
		t.Fatalf("node %d recorded the changes\n%v\nthe watcher saw\n%v", second.id, recorded, seen)
	}
	t.Logf("the watcher saw all %d changes, indexes %d to %d, across the failover to node %d (it moved to another node %d times)",
		len(seen), seen[0].index, seen[len(seen)-1].index, second.id, outcome.switches)
}
