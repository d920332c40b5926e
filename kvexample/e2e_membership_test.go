//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file changes the membership of a cluster of real processes over TCP
// with WALs, while a client writes, and measures what each change costs:
// wall time, and the client's writes that failed meanwhile.

// e2eWriter writes keys one at a time, round-robin through the nodes it is
// told are members, one attempt each (following redirects, like curl -L),
// and counts writes and failures per phase.
type e2eWriter struct {
	mu      sync.Mutex
	targets []string
	phase   string
	counts  map[string]*phaseCount
	acked   map[string]string
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// phaseCount is what the writer saw in one phase.
type phaseCount struct {
	writes, failed int
	lastFailure    string
	// firstFail and lastFail bound the failures in time.
	firstFail, lastFail time.Time
}

func startWriter(targets []string) *e2eWriter {
	w := &e2eWriter{targets: targets, phase: "start", counts: map[string]*phaseCount{"start": {}},
		acked: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *e2eWriter) run() {
	defer close(w.done)
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
		w.mu.Lock()
		target := w.targets[i%len(w.targets)]
		w.mu.Unlock()
		key, value := fmt.Sprintf("w-%06d", i), fmt.Sprint(i)
		failure := putOnce(target+"/kv/"+key, value)
		w.mu.Lock()
		pc := w.counts[w.phase]
		pc.writes++
		if failure == "" {
			w.acked[key] = value
		} else {
			pc.failed++
			pc.lastFailure = failure
			if pc.firstFail.IsZero() {
				pc.firstFail = time.Now()
			}
			pc.lastFail = time.Now()
		}
		w.mu.Unlock()
	}
}

// putOnce sends one PUT and returns "" if it was acknowledged, else why not.
func putOnce(url, value string) string {
	req, err := http.NewRequest("PUT", url, strings.NewReader(value))
	if err != nil {
		return err.Error()
	}
	resp, err := e2eClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return ""
}

// setPhase starts counting under a new phase name, writing through targets.
func (w *e2eWriter) setPhase(name string, targets []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.phase, w.targets = name, targets
	w.counts[name] = &phaseCount{}
}

// count returns what the writer saw in phase name so far.
func (w *e2eWriter) count(name string) phaseCount {
	w.mu.Lock()
	defer w.mu.Unlock()
	return *w.counts[name]
}

// finish stops the writer and returns the acknowledged writes.
func (w *e2eWriter) finish() map[string]string {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.acked
}

// urls returns the base URLs of nodes ids.
func (c *e2eCluster) urls(ids ...int) []string {
	var out []string
	for _, id := range ids {
		out = append(out, c.url(id))
	}
	return out
}

// cluster asks node id for GET /cluster.
func (c *e2eCluster) cluster(id int) (clusterView, error) {
	var v clusterView
	resp, err := e2eClient.Get(c.url(id) + "/cluster")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// waitForVoter waits until the leader's committed configuration lists id
// as a voter.
func (c *e2eCluster) waitForVoter(id int) clusterView {
	c.t.Helper()
	var v clusterView
	eventually(c.t, 60*time.Second, fmt.Sprintf("node %d to be a voter", id), func() bool {
		leader := c.waitForLeader()
		var err error
		v, err = c.cluster(leader)
		return err == nil && v.roles()[uint64(id)] == "voter"
	})
	return v
}

// removeServer asks the cluster, through the nodes in via in turn, to
// remove id, retrying while there is no leader, until it is done.
func (c *e2eCluster) removeServer(id int, via []int) clusterView {
	c.t.Helper()
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		node := via[attempt%len(via)]
		resp, err := e2eClient.Post(c.url(node)+"/cluster/remove", "application/json", strings.NewReader(fmt.Sprintf(`{"id":%d}`, id)))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var v clusterView
			if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &v) == nil {
				return v
			}
			if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusGatewayTimeout {
				c.t.Fatalf("removing node %d via node %d: %d %s", id, node, resp.StatusCode, body)
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		last = err.Error()
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("node %d was never removed; last answer %s", id, last)
	return clusterView{}
}

// checkEveryMemberHasAll waits until every running node applied what the
// leader committed, then lists the keys under prefix on each, locally, and
// checks that each acknowledged write is there.
func (c *e2eCluster) checkEveryMemberHasAll(acked map[string]string, prefix string) {
	c.t.Helper()
	leader := c.waitForLeader()
	st, err := c.status(leader)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, id := range c.live() {
		eventually(c.t, 30*time.Second, fmt.Sprintf("node %d to apply index %d", id, st.CommitIndex), func() bool {
			s, err := c.status(id)
			return err == nil && s.AppliedIndex >= st.CommitIndex
		})
		got := c.listAll(id, prefix)
		for key, want := range acked {
			if got[key] != want {
				c.t.Fatalf("node %d: %s = %q, want %q (acknowledged)", id, key, got[key], want)
			}
		}
	}
}

// listAll reads every key under prefix on node id, locally (stale).
func (c *e2eCluster) listAll(id int, prefix string) map[string]string {
	c.t.Helper()
	out := map[string]string{}
	start := ""
	for {
		resp, err := e2eClient.Get(fmt.Sprintf("%s/kv?prefix=%s&start=%s&limit=1000&stale=1", c.url(id), prefix, start))
		if err != nil {
			c.t.Fatal(err)
		}
		var page listResponse
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			c.t.Fatal(err)
		}
		for _, it := range page.Items {
			out[it.Key] = it.Value
		}
		if page.Next == nil {
			return out
		}
		start = *page.Next
	}
}

// phase runs step as a named phase of the writer's load and logs its cost.
func phase(t *testing.T, w *e2eWriter, name string, targets []string, step func()) time.Duration {
	t.Helper()
	w.setPhase(name, targets)
	start := time.Now()
	step()
	took := time.Since(start)
	// The writer's last write of the phase may still be in flight.
	time.Sleep(50 * time.Millisecond)
	pc := w.count(name)
	window := ""
	if pc.failed > 0 {
		window = fmt.Sprintf(" over %v (last: %s)", pc.lastFail.Sub(pc.firstFail).Round(time.Millisecond), pc.lastFailure)
	}
	t.Logf("%s: %v wall; client writes during it: %d, failed %d%s", name, took.Round(time.Millisecond), pc.writes, pc.failed, window)
	return took
}

func TestClusterGrowsLosesItsLeaderAndReplacesItWithoutLosingAWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs up to 6 processes")
	}
	c := newE2EClusterOf(t, 6, 3)
	for id := 1; id <= 3; id++ {
		c.start(id)
	}
	c.waitForLeader()
	w := startWriter(c.urls(1, 2, 3))
	t.Cleanup(func() { w.finish() })

	members := []int{1, 2, 3}
	phase(t, w, "grow 3 -> 5 (two joins, one after the other)", c.urls(members...), func() {
		for _, id := range []int{4, 5} {
			c.join(id, 1)
			c.waitForVoter(id)
			members = append(members, id)
		}
	})
	if out := c.output(4); !strings.Contains(out, "joined: ") {
		t.Errorf("node 4 did not report joining:\n%s", out)
	}

	leader := c.waitForLeader()
	others := slices.DeleteFunc(slices.Clone(members), func(id int) bool { return id == leader })
	phase(t, w, fmt.Sprintf("remove the live leader (node %d)", leader), c.urls(others...), func() {
		v := c.removeServer(leader, others)
		if _, ok := v.roles()[uint64(leader)]; ok {
			t.Fatalf("node %d still a member: %+v", leader, v)
		}
		// Until a write succeeds through the new leader.
		c.put("after-removal", "x")
	})
	if err := c.waitExit(leader, 10*time.Second); err != nil {
		t.Fatalf("removed node %d exited with %v, want status 0", leader, err)
	}
	members = others

	victim := c.waitForLeader()
	others = slices.DeleteFunc(slices.Clone(members), func(id int) bool { return id == victim })
	phase(t, w, fmt.Sprintf("kill -9 the leader (node %d) and remove it", victim), c.urls(others...), func() {
		if err := c.stop(victim, syscall.SIGKILL); !killedBy(err, syscall.SIGKILL) {
			t.Fatalf("node %d after kill -9: %v", victim, err)
		}
		c.removeServer(victim, others)
	})
	members = others

	phase(t, w, "add a fresh node (6) in its place", c.urls(members...), func() {
		c.join(6, members[0])
		c.waitForVoter(6)
	})
	members = append(members, 6)

	c.restartJoined(6, members[0])

	acked := w.finish()
	c.checkFinal(members, []int{leader, victim}, acked)
	t.Logf("every one of %d acknowledged writes is on each final member %v", len(acked), members)
}

// restartJoined stops node id, which joined the cluster, and starts it
// with the same flags, --join included: with state in --data, it recovers.
func (c *e2eCluster) restartJoined(id, via int) {
	c.t.Helper()
	if err := c.stop(id, syscall.SIGTERM); err != nil {
		c.t.Fatalf("node %d after SIGTERM: %v", id, err)
	}
	c.join(id, via)
	eventually(c.t, 10*time.Second, fmt.Sprintf("node %d to recover", id), func() bool {
		return strings.Contains(c.output(id), "recovered from ")
	})
	if !strings.Contains(c.output(id), "--join is ignored") {
		c.t.Errorf("node %d restarted with --join and state does not warn that --join is ignored:\n%s", id, c.output(id))
	}
}

// checkFinal checks the final configuration (members, with removed among
// the retired IDs) and that every acknowledged write is on every member,
// then stops the cluster and looks for data races.
func (c *e2eCluster) checkFinal(members, removed []int, acked map[string]string) {
	c.t.Helper()
	final, err := c.cluster(c.waitForLeader())
	if err != nil {
		c.t.Fatal(err)
	}
	if got := final.roles(); len(got) != len(members) {
		c.t.Fatalf("final configuration %v, want voters %v", got, members)
	}
	for _, id := range removed {
		if !slices.Contains(final.Removed, uint64(id)) {
			c.t.Errorf("final removed IDs %v, want %d among them", final.Removed, id)
		}
	}
	c.checkEveryMemberHasAll(acked, "w-")
	for _, id := range c.live() {
		if err := c.stop(id, syscall.SIGTERM); err != nil {
			c.t.Errorf("node %d after SIGTERM: %v, want exit status 0", id, err)
		}
	}
	for id := 1; id <= len(c.procs); id++ {
		if strings.Contains(c.output(id), "DATA RACE") {
			c.t.Errorf("node %d reported a data race", id)
		}
	}
}
