package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches n's /metrics and parses it with Prometheus' own text
// parser, failing the test if it does not parse.
func scrape(t *testing.T, n *kvNode) map[string]*dto.MetricFamily {
	t.Helper()
	r := do(t, noRedirects, "GET", n.URL()+"/metrics", "")
	wantStatus(t, r, 200)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want Prometheus text", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(r.body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// sample returns the value of the named counter or gauge whose labels
// include the given pairs, and whether there is one.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsParseAndFollowPrometheusNamingConventions(t *testing.T) {
	_, leader := startTestCluster(t)
	wantStatus(t, do(t, followRedirects, "PUT", leader.URL()+"/kv/k", "v"), 200)
	fams := scrape(t, leader)
	for _, name := range []string{
		"raftline_term", "raftline_has_leader", "raftline_commit_index", "raftline_leader_changes_total",
		"raftline_proposals_total", "raftline_commit_duration_seconds", "raftline_peer_match_lag_entries",
		"kvexample_http_requests_total", "kvexample_messages_received_total", "go_goroutines",
	} {
		if fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "raftline_") && !strings.HasPrefix(name, "kvexample_") {
			continue // the client library's own go_* and process_*
		}
		switch {
		case strings.HasSuffix(name, "_total") && f.GetType() != dto.MetricType_COUNTER:
			t.Errorf("%s ends in _total but is a %v", name, f.GetType())
		case f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total"):
			t.Errorf("counter %s does not end in _total", name)
		case f.GetType() == dto.MetricType_HISTOGRAM && !strings.HasSuffix(name, "_seconds"):
			t.Errorf("histogram %s is not in seconds", name)
		case strings.Contains(name, "millis") || strings.HasSuffix(name, "_ms") || strings.Contains(name, "_ms_"):
			t.Errorf("%s is not in base units", name)
		}
	}
	if v, _ := sample(fams, "raftline_proposals_total", "outcome", "committed"); v < 1 {
		t.Errorf(`the leader's raftline_proposals_total{outcome="committed"} is %v after a write`, v)
	}
	if v, _ := sample(fams, "raftline_role", "role", "leader"); v != 1 {
		t.Errorf(`the leader's raftline_role{role="leader"} is %v`, v)
	}
}

func TestMetricsCountRequestsByCodeAndMessagesBySender(t *testing.T) {
	c, leader := startTestCluster(t)
	f := follower(c, leader)
	wantStatus(t, do(t, noRedirects, "PUT", f.URL()+"/kv/k", "v"), 307)
	fams := scrape(t, f)
	if v, _ := sample(fams, "kvexample_http_requests_total", "method", "put", "code", "307"); v != 1 {
		t.Errorf(`kvexample_http_requests_total{method="put",code="307"} is %v after one redirected PUT`, v)
	}
	from := labelID(leader)
	if v, _ := sample(fams, "kvexample_messages_received_total", "from", from, "type", "Heartbeat"); v < 1 {
		t.Errorf("the follower counts %v heartbeats from leader %s", v, from)
	}
}

func TestCrashedLeaderIsCountedOnceAsALeaderChangeByEachSurvivor(t *testing.T) {
	c, leader := startTestCluster(t)
	f := follower(c, leader)
	before, _ := sample(scrape(t, f), "raftline_leader_changes_total")
	wantStatus(t, do(t, noRedirects, "POST", f.URL()+"/debug/crash?node="+labelID(leader), ""), 202)
	eventually(t, 10*time.Second, "a new leader", func() bool {
		l := c.leaderKnownToAll()
		return l != nil && l != leader
	})
	time.Sleep(300 * time.Millisecond) // the survivors agree and stay put
	if after, _ := sample(scrape(t, f), "raftline_leader_changes_total"); after != before+1 {
		t.Errorf("raftline_leader_changes_total went from %v to %v on a survivor over one failover, want +1", before, after)
	}
}

func labelID(n *kvNode) string { return strconv.FormatUint(uint64(n.id), 10) }
