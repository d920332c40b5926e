package raftprom

import (
	"context"
	"errors"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/raftline/raft"
)

func TestLeaderChangeSeenByAFollowerCountsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := startCluster(t)
		old := c.waitLeader(t, -1)
		f := (old + 1) % 3
		c.waitKnowsLeader(t, f, old)
		before := c.value(t, f, "raftline_leader_changes_total")

		c.net.Isolate(c.nodes[old].ID())
		next := c.waitLeader(t, old)
		c.waitKnowsLeader(t, f, next)
		// Losing the old leader is not a change; learning the new one is.
		if got := c.value(t, f, "raftline_leader_changes_total"); got != before+1 {
			t.Errorf("raftline_leader_changes_total went from %v to %v over one leader change, want +1", before, got)
		}
		if got := c.value(t, next, "raftline_elections_won_total"); got < 1 {
			t.Errorf("the new leader's raftline_elections_won_total is %v, want at least 1", got)
		}
		if got := c.value(t, next, "raftline_role", "role", "leader"); got != 1 {
			t.Errorf(`the new leader's raftline_role{role="leader"} is %v, want 1`, got)
		}
		if got := c.value(t, next, "raftline_role", "role", "follower"); got != 0 {
			t.Errorf(`the new leader's raftline_role{role="follower"} is %v, want 0`, got)
		}
		c.net.Heal()
	})
}

func TestProposalRefusedByAFollowerIsCountedAsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := startCluster(t)
		l := c.waitLeader(t, -1)
		f := (l + 1) % 3
		c.waitKnowsLeader(t, f, l)
		before := c.value(t, f, "raftline_proposals_total", "outcome", "dropped")
		_, err := c.nodes[f].Propose(context.Background(), []byte("x"))
		if !errors.Is(err, raft.ErrNotLeader) {
			t.Fatalf("Propose on a follower: %v, want ErrNotLeader", err)
		}
		if got := c.value(t, f, "raftline_proposals_total", "outcome", "dropped"); got != before+1 {
			t.Errorf(`raftline_proposals_total{outcome="dropped"} went from %v to %v, want +1`, before, got)
		}
		if got := c.value(t, f, "raftline_proposals_total", "outcome", "committed"); got != 0 {
			t.Errorf(`raftline_proposals_total{outcome="committed"} is %v on the follower, want 0`, got)
		}
	})
}

func TestCommitLatencyIsInSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := startCluster(t)
		l := c.waitLeader(t, -1)
		// Every message now takes 10 ms (virtual) each way, so a commit
		// takes one round trip: 20 ms, give or take a heartbeat.
		c.net.SetDelay(10*time.Millisecond, 10*time.Millisecond)
		c.propose(t, l)

		m := find(t, c.family(t, l, "raftline_commit_duration_seconds"))
		h := m.GetHistogram()
		if h.GetSampleCount() != 1 {
			t.Fatalf("%d commits observed, want 1", h.GetSampleCount())
		}
		if sum := h.GetSampleSum(); sum < 0.02 || sum > 0.2 {
			t.Errorf("a 20 ms commit observed as %v, want it in seconds (0.02 to 0.2)", sum)
		}
		if got := bucket(t, h, 0.01); got != 0 {
			t.Errorf("%d observations at or under 10 ms, want 0", got)
		}
		if got := bucket(t, h, 0.25); got != 1 {
			t.Errorf("%d observations at or under 250 ms, want 1", got)
		}
		if got := c.value(t, l, "raftline_proposals_total", "outcome", "committed"); got != 1 {
			t.Errorf(`raftline_proposals_total{outcome="committed"} is %v, want 1`, got)
		}
	})
}

func TestPeerMetricsAreExportedOnlyByTheLeaderWithAPeerLabel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := startCluster(t)
		l := c.waitLeader(t, -1)
		c.propose(t, l)
		time.Sleep(200 * time.Millisecond) // a few heartbeat rounds
		f := c.family(t, l, "raftline_peer_match_lag_entries")
		if len(f.Metric) != 2 {
			t.Fatalf("the leader exports %d peer series, want 2", len(f.Metric))
		}
		for i, n := range c.nodes {
			if i == l {
				continue
			}
			peer := labelOf(n.ID())
			if lag := find(t, f, "peer", peer).GetGauge().GetValue(); lag != 0 {
				t.Errorf("peer %s lags %v entries after a quiet 200 ms, want 0", peer, lag)
			}
			rtt := find(t, c.family(t, l, "raftline_peer_heartbeat_round_trip_seconds"), "peer", peer)
			if rtt.GetHistogram().GetSampleCount() == 0 {
				t.Errorf("no heartbeat round trip to peer %s observed", peer)
			}
		}
		fams, err := c.regs[(l+1)%3].Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if strings.HasPrefix(f.GetName(), "raftline_peer_") {
				t.Errorf("a follower exports %s", f.GetName())
			}
		}
	})
}

func TestMessagesAreCountedByType(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := startCluster(t)
		l := c.waitLeader(t, -1)
		c.propose(t, l)
		if got := c.value(t, l, "raftline_messages_sent_total", "type", raft.MsgApp.String()); got < 2 {
			t.Errorf("the leader sent %v appends for a committed proposal, want at least one per follower", got)
		}
		// Every type is exported, sent or not, so rate() sees the first one.
		if got := len(c.family(t, l, "raftline_messages_dropped_total").Metric); got < 10 {
			t.Errorf("%d message types exported, want every type", got)
		}
	})
}

func TestHistogramBucketsAreCumulativeWithOverflowOnlyInTheCount(t *testing.T) {
	desc := prometheus.NewDesc("h_seconds", "test", nil, nil)
	h := raft.Histogram{Bounds: []float64{0.1, 1}, Counts: []uint64{2, 3, 4}, Count: 9, Sum: 20}
	var m dto.Metric
	if err := histogram(desc, h).Write(&m); err != nil {
		t.Fatal(err)
	}
	got := m.GetHistogram()
	if got.GetSampleCount() != 9 || got.GetSampleSum() != 20 {
		t.Errorf("count %d, sum %v; want 9, 20", got.GetSampleCount(), got.GetSampleSum())
	}
	if b := bucket(t, got, 0.1); b != 2 {
		t.Errorf("le=0.1 holds %d, want 2", b)
	}
	if b := bucket(t, got, 1); b != 5 {
		t.Errorf("le=1 holds %d, want 5 (cumulative)", b)
	}
}

func TestCorePackageImportsNothingOutsideTheStandardLibrary(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list imports with")
	}
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "github.com/raftline/raft").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/raftline/raft" && !strings.HasPrefix(p, "github.com/raftline/raft/internal/") {
			t.Errorf("the raft package depends on %s: its users would compile it; keep it in raftprom or another package", p)
		}
	}
}

// bucket returns the cumulative count of h's bucket with upper bound le.
func bucket(t *testing.T, h *dto.Histogram, le float64) uint64 {
	t.Helper()
	for _, b := range h.Bucket {
		if math.Abs(b.GetUpperBound()-le) < 1e-12 {
			return b.GetCumulativeCount()
		}
	}
	t.Fatalf("no bucket with upper bound %v", le)
	return 0
}

func labelOf(id raft.NodeID) string { return strconv.FormatUint(uint64(id), 10) }
