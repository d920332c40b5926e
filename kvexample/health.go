package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftline/raft"
)

// This file finds the words for what a node without a leader, or a
// follower far behind one, is waiting for: the health line of /status and
// /cluster, and the reason in a 503.

// catchingUpEntries is how far behind its leader's commit index a follower
// must be to say it is catching up rather than following: under a steady
// write load a follower is always a few entries behind.
const catchingUpEntries = 100

// noLeaderReason says why this node has no leader: it cannot hear from
// enough voters to elect one (and for how long), or an election is under
// way among those it hears from.
func (s *server) noLeaderReason(st raft.Status, now time.Time) string {
	voters := st.Config.Voters()
	var silent []string
	heard, quiet := 0, time.Duration(-1)
	for _, id := range voters {
		if id == s.id {
			heard++
			continue
		}
		d, ok := s.contactSince(id, now)
		if ok && d < s.electionTimeout() {
			heard++
			continue
		}
		silent = append(silent, strconv.FormatUint(uint64(id), 10))
		if ok && (quiet < 0 || d < quiet) {
			quiet = d // all of them have been silent for the shortest silence
		}
	}
	if len(voters) > 0 && heard <= len(voters)/2 {
		nodes := "node " + silent[0]
		if len(silent) > 1 {
			nodes = "nodes " + strings.Join(silent, ", ")
		}
		how := "since this node started"
		if quiet >= 0 {
			how = "for " + seconds(quiet)
		}
		return fmt.Sprintf("no quorum: cannot reach %s %s, so no leader can be elected (term %d)", nodes, how, st.Term)
	}
	return fmt.Sprintf("no leader known: an election is under way in term %d among the voters it can reach", st.Term)
}

// electionTimeout is the silence after which a peer counts as unreachable:
// the same timeout after which a follower gives up on its leader.
func (s *server) electionTimeout() time.Duration { return 2 * s.silentAfter }

// contactSince is how long ago this node last heard from id.
func (s *server) contactSince(id raft.NodeID, now time.Time) (time.Duration, bool) {
	if s.contact == nil {
		return 0, false
	}
	return s.contact.since(id, now)
}

// leaderLead returns how many committed entries the leader has that this
// follower does not: the leader's commit index minus this node's last
// index. A follower cannot tell from raft's messages alone (a heartbeat's
// commit index is capped at what the follower holds), so it asks the
// leader's /status, at most once a second.
func (s *server) leaderLead(ctx context.Context, st raft.Status) uint64 {
	addr, ok := s.sm.HTTPAddr(st.Leader)
	if !ok || st.Leader == s.id {
		return 0
	}
	commit := s.leaderCommit.get(ctx, addr)
	return commit - min(commit, st.LastIndex)
}

// leaderCommitCache remembers a leader's commit index for a second.
type leaderCommitCache struct {
	mu     sync.Mutex
	addr   string
	commit uint64
	at     time.Time
}

// leaderCommitTTL is how long an answer from the leader is reused.
const leaderCommitTTL = time.Second

// statusClient asks other nodes for their /status; a slow answer means
// "not known", never a slow /status here.
var statusClient = &http.Client{
	Timeout: 300 * time.Millisecond,
	// No idle connections: nothing outlives the request (goleak in tests).
	Transport: &http.Transport{DisableKeepAlives: true},
}

// get returns the commit index the leader at addr reported (0: unknown).
func (c *leaderCommitCache) get(ctx context.Context, addr string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addr == addr && time.Since(c.at) < leaderCommitTTL {
		return c.commit
	}
	c.addr, c.commit, c.at = addr, 0, time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return 0
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var st struct {
		State       string `json:"state"`
		CommitIndex uint64 `json:"commit_index"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st) == nil && st.State == "leader" {
		c.commit = st.CommitIndex
	}
	return c.commit
}

// seconds formats a duration for a person: "8.2 s", "340 ms".
func seconds(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// thousands formats n with thousands separators: 12,034.
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
