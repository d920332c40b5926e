package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftline/raft"
	"github.com/raftline/raft/snapstore"
	"github.com/raftline/raft/wal"
)

// The scenarios measure snapshots at work (issue 11). Each prints a JSON
// line per repetition on stdout and its story on stderr.
//
// restart: a durable cluster commits -entries entries (closed-loop
// clients, as fast as they go), writes stop and every node applies
// everything; then a follower is stopped and restarted -repeat times,
// timing each step: listening, wal.Open, snapstore.Open, raft.NewNode
// (which restores the newest snapshot), and until the node has applied
// every committed entry (it learns the last commit index from its hard
// state, the rest from the leader's next heartbeat).
//
//	go run ./bench -scenario restart -transport tcp -durable -clients 256 -entries 1000000
//
// catchup: a TCP cluster (durable with -durable) under a write load (the
// clients, at -rate writes/s or as fast as they go) is measured for
// -window: heartbeat round trips to each follower, on the wire (tap.go).
// Then a follower is stopped, -entries entries are written as fast as the
// clients go, the load is started again, and the follower restarts while
// it runs. It is caught up once it has applied what was committed when it
// restarted and the leader replicates to it normally again; the load goes
// on until -window has passed since the restart. Every run builds a new
// cluster (-repeat runs).
//
//	go run ./bench -scenario catchup -transport tcp -durable -clients 256 -entries 1000000 -window 10s
func runScenario(f flags, dir string) int {
	switch f.scenario {
	case "restart":
		if !f.durable {
			fatalf("-scenario restart needs -durable")
		}
		return restartScenario(f, dir)
	case "catchup":
		if f.transport != "tcp" {
			fatalf("-scenario catchup needs -transport tcp")
		}
		return catchupScenario(f, dir)
	}
	return 2
}

// loadGen is a closed-loop write load: each client proposes a fresh
// command and waits for it, optionally paced so that all together make
// rate proposals per second.
type loadGen struct {
	c      *cluster
	stopc  chan struct{}
	wg     sync.WaitGroup
	rate   float64
	start  time.Time
	slot   atomic.Uint64
	ops    atomic.Uint64
	errs   atomic.Uint64
	h      atomic.Pointer[hist]
	errMu  sync.Mutex
	errOne error
}

// startLoad starts clients; seed keeps the commands of different loads
// apart.
func startLoad(c *cluster, clients, payload int, rate float64, seed uint64) *loadGen {
	l := &loadGen{c: c, stopc: make(chan struct{}), rate: rate, start: time.Now()}
	l.h.Store(&hist{})
	for i := range clients {
		id := seed<<32 | uint64(i+1)
		l.wg.Go(func() {
			rng := rand.New(rand.NewPCG(id, 42))
			for seq := uint64(1); ; seq++ {
				select {
				case <-l.stopc:
					return
				default:
				}
				if l.rate > 0 {
					due := l.start.Add(time.Duration(float64(l.slot.Add(1)-1) / l.rate * 1e9))
					time.Sleep(time.Until(due))
				}
				cmd := make([]byte, payload)
				binary.LittleEndian.PutUint64(cmd[0:], id)
				binary.LittleEndian.PutUint64(cmd[8:], seq)
				for j := 16; j+8 <= len(cmd); j += 8 {
					binary.LittleEndian.PutUint64(cmd[j:], rng.Uint64())
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				err := l.c.propose(ctx, cmd)
				t1 := time.Now()
				cancel()
				if err != nil {
					l.errs.Add(1)
					l.errMu.Lock()
					if l.errOne == nil {
						l.errOne = err
					}
					l.errMu.Unlock()
					time.Sleep(time.Millisecond)
					continue
				}
				l.ops.Add(1)
				l.h.Load().record(t1.Sub(t0).Nanoseconds())
			}
		})
	}
	return l
}

// window starts a new latency histogram and returns the previous one.
func (l *loadGen) window() *hist { return l.h.Swap(&hist{}) }

func (l *loadGen) stop() {
	close(l.stopc)
	l.wg.Wait()
}

func (l *loadGen) firstErr() error {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return l.errOne
}

// latency summarizes a histogram of writes over d.
type latency struct {
	N      uint64  `json:"n"`
	PerSec float64 `json:"per_sec"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func summarize(h *hist, d time.Duration) latency {
	n := h.n.Load()
	return latency{N: n, PerSec: round1(float64(n) / d.Seconds()), P50ms: ms(h.quantile(0.5)),
		P99ms: ms(h.quantile(0.99)), MaxMs: ms(float64(h.max.Load()))}
}

// fill writes as fast as the clients go until the leader committed target.
func fill(c *cluster, f flags, target uint64, seed uint64) (time.Duration, error) {
	start := time.Now()
	l := startLoad(c, f.clients, f.payload, 0, seed)
	defer l.stop()
	next := start.Add(10 * time.Second)
	for {
		time.Sleep(50 * time.Millisecond)
		m := c.leaderMember()
		if m == nil {
			continue
		}
		n := m.node.Load()
		if n == nil {
			continue
		}
		st := n.Status()
		if st.Commit >= target {
			return time.Since(start), nil
		}
		if time.Now().After(next) {
			logf("  fill: commit %d of %d after %v (%d write errors)", st.Commit, target, time.Since(start).Round(time.Second), l.errs.Load())
			next = next.Add(10 * time.Second)
		}
		if time.Since(start) > 30*time.Minute {
			return time.Since(start), fmt.Errorf("fill: commit %d of %d after 30 minutes", st.Commit, target)
		}
	}
}

// settle waits until every running node applied the leader's commit index
// and it stopped moving; it returns that index.
func settle(c *cluster) (uint64, error) {
	deadline := time.Now().Add(2 * time.Minute)
	var last uint64
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		lm := c.leaderMember()
		if lm == nil {
			continue
		}
		commit := lm.node.Load().Status().Commit
		done := commit == last
		for _, n := range c.nodes() {
			if n.Status().Applied < commit {
				done = false
			}
		}
		if done {
			return commit, nil
		}
		last = commit
	}
	return 0, fmt.Errorf("the nodes did not apply everything committed within 2 minutes")
}

// pickFollower returns the follower with the highest ID.
func pickFollower(c *cluster) *member {
	l := c.leaderMember()
	for i := len(c.members) - 1; i >= 0; i-- {
		if m := c.members[i]; m != l && m.node.Load() != nil {
			return m
		}
	}
	return nil
}

func printJSON(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

// restartResult is one restart's JSON line.
type restartResult struct {
	Scenario        string  `json:"scenario"`
	Rep             int     `json:"rep"`
	Transport       string  `json:"transport"`
	SnapshotEntries int     `json:"snapshot_entries"`
	Committed       uint64  `json:"committed"`
	WalMB           float64 `json:"wal_mb"`
	SnapshotsMB     float64 `json:"snapshots_mb"`
	ListenMs        float64 `json:"listen_ms"`
	WalOpenMs       float64 `json:"wal_open_ms"`
	SnapstoreOpenMs float64 `json:"snapstore_open_ms"`
	NewNodeMs       float64 `json:"new_node_ms"`
	// AppliedHintMs and AppliedMs are measured from the call to NewNode:
	// until the node applied up to the commit index it found in its hard
	// state, and until it applied everything committed.
	AppliedHintMs float64 `json:"applied_hint_ms"`
	AppliedMs     float64 `json:"applied_ms"`
	// TotalMs is from before wal.Open to everything applied.
	TotalMs float64 `json:"total_ms"`
	// At NewNode's return: the applied index (the snapshot restored), the
	// commit hint, and the log's first and last index; Replayed is what
	// was applied from the log afterwards.
	RestoredIndex uint64  `json:"restored_index"`
	CommitHint    uint64  `json:"commit_hint"`
	FirstIndex    uint64  `json:"first_index"`
	LastIndex     uint64  `json:"last_index"`
	Replayed      uint64  `json:"replayed"`
	HeapLiveMB    float64 `json:"heap_live_mb"`
}

func restartScenario(f flags, dir string) int {
	c, err := newCluster(clusterOptions(f, dir))
	if err != nil {
		logf("building cluster: %v", err)
		return 1
	}
	defer c.close()
	logf("restart: filling %d entries with %d clients (-snapshot-entries %d)", f.entries, f.clients, f.snapshotEntries)
	took, err := fill(c, f, uint64(f.entries), 1)
	if err != nil {
		logf("%v", err)
		return 1
	}
	committed, err := settle(c)
	if err != nil {
		logf("%v", err)
		return 1
	}
	logf("restart: %d entries committed in %v (%.0f/s) and applied everywhere", committed, took.Round(time.Millisecond), float64(committed)/took.Seconds())
	m := pickFollower(c)
	for rep := 1; rep <= f.repeat; rep++ {
		if err := c.stopMember(m); err != nil {
			logf("stopping node %d: %v", m.id, err)
			return 1
		}
		w, _ := diskUsage(filepath.Join(m.dir, "wal"))
		s, _ := diskUsage(filepath.Join(m.dir, "snapshots"))
		stopProfile := func() {}
		if rep == 1 {
			stopProfile = startCPUProfile(f.cpuprofile) // -cpuprofile: the first restart
		}
		r, err := c.restartTimed(m, committed)
		stopProfile()
		if err != nil {
			logf("restarting node %d: %v", m.id, err)
			return 1
		}
		r.Scenario, r.Rep, r.Transport, r.SnapshotEntries, r.Committed = "restart", rep, f.transport, f.snapshotEntries, committed
		r.WalMB, r.SnapshotsMB = round1(mb(w)), round1(mb(s))
		logf("restart %d of node %d: WAL %.1f MB, snapshots %.1f MB; wal.Open %.1f ms, snapstore.Open %.1f ms, NewNode %.1f ms (restored index %d, log %d..%d); applied everything %.1f ms after NewNode was called (%d entries replayed), %.1f ms in all",
			rep, m.id, r.WalMB, r.SnapshotsMB, r.WalOpenMs, r.SnapstoreOpenMs, r.NewNodeMs, r.RestoredIndex, r.FirstIndex, r.LastIndex, r.AppliedMs, r.Replayed, r.TotalMs)
		printJSON(r)
		time.Sleep(2 * time.Second) // let it settle before the next stop
	}
	return 0
}

// restartTimed starts a stopped member again, timing each step, and waits
// until it applied target.
func (c *cluster) restartTimed(m *member, target uint64) (restartResult, error) {
	var r restartResult
	since := func(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1e3 }
	t0 := time.Now()
	tr, err := c.transport(m)
	if err != nil {
		return r, err
	}
	r.ListenMs = since(t0)
	t1 := time.Now()
	w, err := wal.Open(filepath.Join(m.dir, "wal"), wal.Options{Logger: c.logger})
	if err != nil {
		return r, err
	}
	m.closers = append(m.closers, w.Close)
	r.WalOpenMs = since(t1)
	t2 := time.Now()
	snaps, err := snapstore.Open(filepath.Join(m.dir, "snapshots"), snapstore.Options{Logger: c.logger})
	if err != nil {
		return r, err
	}
	m.closers = append(m.closers, snaps.Close)
	r.SnapstoreOpenMs = since(t2)
	t3 := time.Now()
	n, err := c.newNode(m, w, snaps, tr)
	if err != nil {
		return r, err
	}
	r.NewNodeMs = since(t3)
	st := n.Status()
	m.node.Store(n)
	r.RestoredIndex, r.CommitHint, r.FirstIndex, r.LastIndex = st.Applied, st.Commit, st.FirstIndex, st.LastIndex
	hint := st.Commit
	deadline := time.Now().Add(5 * time.Minute)
	for {
		st := n.Status()
		if r.AppliedHintMs == 0 && st.Applied >= hint {
			r.AppliedHintMs = since(t3)
		}
		if st.Applied >= target {
			r.AppliedMs, r.TotalMs = since(t3), since(t1)
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("node %d applied %d of %d after 5 minutes", m.id, st.Applied, target)
		}
		time.Sleep(time.Millisecond)
	}
	r.Replayed = target - r.RestoredIndex
	r.HeapLiveMB = round1(mb(heapLive()))
	return r, nil
}

// catchupResult is one catch-up run's JSON line.
type catchupResult struct {
	Scenario  string  `json:"scenario"`
	Rep       int     `json:"rep"`
	Durable   bool    `json:"durable"`
	Clients   int     `json:"clients"`
	Rate      float64 `json:"rate"`
	StateMB   int     `json:"state_mb"`
	Entries   int     `json:"entries"`
	Follower  uint64  `json:"follower"`
	Other     uint64  `json:"other"`
	FillSec   float64 `json:"fill_s"`
	Behind    uint64  `json:"behind"` // leader's commit minus the follower's last index at its restart
	NewNodeMs float64 `json:"new_node_ms"`
	// From the restart (before NewNode): the leader first shows the
	// follower in snapshot state, the follower has the snapshot (received,
	// verified, durable), and the follower is caught up.
	SnapshotStateMs float64 `json:"snapshot_state_ms"`
	ReceivedMs      float64 `json:"received_ms"`
	CaughtUpMs      float64 `json:"caught_up_ms"`
	SnapshotBytes   uint64  `json:"snapshot_bytes"`
	SnapshotIndex   uint64  `json:"snapshot_index"`
	SnapshotsRecv   uint64  `json:"snapshots_received"`
	// Elections: leader term at the start and the end, nodes that became
	// (pre)candidates, and leader-change events (the restarted follower
	// learning the leader counts as one).
	TermStart     uint64 `json:"term_start"`
	LeaderEnd     uint64 `json:"leader_end"`
	TermEnd       uint64 `json:"term_end"`
	Candidates    uint64 `json:"candidates"`
	LeaderChanges uint64 `json:"leader_changes"`
	// Heartbeat round trips to the follower and to the other follower:
	// baseline window; catch-up (heartbeats sent from NewNode's return to
	// caught up); after (caught up to the end of the window).
	HBBase        hbStats `json:"hb_base"`
	HBCatchup     hbStats `json:"hb_catchup"`
	HBAfter       hbStats `json:"hb_after"`
	HBStartup     hbStats `json:"hb_startup"` // sent before NewNode returned
	HBOtherBase   hbStats `json:"hb_other_base"`
	HBOtherCatch  hbStats `json:"hb_other_catchup"`
	HBLostBase    int     `json:"hb_lost_base"`
	HBLostCatchup int     `json:"hb_lost_catchup"`
	// HBPending: the most heartbeat events left unpaired for either
	// follower at the end of a window (1-2 in flight is normal).
	HBPendingBase    int `json:"hb_pending_base"`
	HBPendingCatchup int `json:"hb_pending_catchup"`
	// CandidateEvents: which node became (pre)candidate, when.
	CandidateEvents []string `json:"candidate_events,omitempty"`
	// Writes in the baseline window and during the catch-up.
	WritesBase    latency `json:"writes_base"`
	WritesCatchup latency `json:"writes_catchup"`
	WriteErrors   uint64  `json:"write_errors"`
	// Messages dropped or failed to send (nodes' and transports'
	// counters) in the baseline window and from the restart to the end.
	DropsBase uint64 `json:"drops_base"`
	Drops     uint64 `json:"drops"`
}

func catchupScenario(f flags, dir string) int {
	code := 0
	for rep := 1; rep <= f.repeat; rep++ {
		sub := filepath.Join(dir, fmt.Sprintf("run%d", rep))
		o := clusterOptions(f, sub)
		o.tap = newHBTap()
		c, err := newCluster(o)
		if err != nil {
			logf("building cluster: %v", err)
			return 1
		}
		r, err := catchupRun(c, f, o.tap)
		if err != nil {
			logf("catchup run %d: %v", rep, err)
			code = 1
		} else {
			r.Rep = rep
			printJSON(r)
		}
		if err := c.close(); err != nil {
			logf("close: %v", err)
		}
		os.RemoveAll(sub)
	}
	return code
}

func catchupRun(c *cluster, f flags, tap *hbTap) (catchupResult, error) {
	r := catchupResult{Scenario: "catchup", Durable: f.durable, Clients: f.clients, Rate: f.rate, StateMB: f.stateMB, Entries: f.entries}
	lm := c.leaderMember()
	fm := pickFollower(c)
	if lm == nil || fm == nil {
		return r, fmt.Errorf("no leader or follower")
	}
	var om *member
	for _, m := range c.members {
		if m != lm && m != fm {
			om = m
		}
	}
	r.Follower, r.Other = uint64(fm.id), uint64(om.id)
	leader := lm.node.Load()
	drops := func() uint64 { return c.dropped() + c.tcpDropped() }
	cand0, elect0 := c.candidates.Load(), c.elections.Load()
	runStart := time.Now()
	var phases phaseLog
	phases.add("warm-up", runStart)
	defer func() {
		if len(r.CandidateEvents) == 0 {
			for _, e := range phases.label(c.candidateEvents(runStart)) {
				logf("catchup: %s", e)
			}
		}
	}()
	r.TermStart = leader.Status().Term

	// Baseline.
	load := startLoad(c, f.clients, f.payload, f.rate, 1)
	time.Sleep(2 * time.Second)
	tb := time.Now()
	dropsBase := drops()
	tap.record(tb)
	load.window()
	time.Sleep(f.window)
	r.HBPendingBase = max(tap.pending(hbPair{lm.id, fm.id}), tap.pending(hbPair{lm.id, om.id}))
	base := tap.stop()
	r.WritesBase = summarize(load.window(), time.Since(tb))
	load.stop()
	r.HBBase = base.stats(fm.id, tb, time.Time{})
	r.HBOtherBase = base.stats(om.id, tb, time.Time{})
	r.HBLostBase = base.lost[fm.id] + base.lost[om.id]
	r.DropsBase = drops() - dropsBase
	phases.add("baseline", tb)
	logf("catchup: baseline %v: writes %.0f/s p99 %.1f ms; heartbeat RTT to node %d p50 %.2f p99 %.2f ms (n=%d), to node %d p50 %.2f p99 %.2f ms (n=%d)",
		f.window, r.WritesBase.PerSec, r.WritesBase.P99ms, fm.id, r.HBBase.P50ms, r.HBBase.P99ms, r.HBBase.N, om.id, r.HBOtherBase.P50ms, r.HBOtherBase.P99ms, r.HBOtherBase.N)

	// The follower goes down while the others take -entries entries.
	phases.add("fill", time.Now())
	if err := c.stopMember(fm); err != nil {
		return r, err
	}
	tap.reset(fm.id)
	downAt := fmLast(fm, leader)
	took, err := fill(c, f, leader.Status().Commit+uint64(f.entries), 2)
	if err != nil {
		return r, err
	}
	r.FillSec = round1(took.Seconds())
	logf("catchup: node %d down; %d entries written in %v", fm.id, f.entries, took.Round(time.Millisecond))

	// The load again, then the restart.
	load = startLoad(c, f.clients, f.payload, f.rate, 3)
	defer func() {
		if load != nil {
			load.stop()
		}
	}()
	time.Sleep(time.Second)
	if cur := c.leaderMember(); cur != nil && cur != lm {
		logf("catchup: node %d leads now (was node %d)", cur.id, lm.id)
		lm, leader = cur, cur.node.Load()
	}
	target := leader.Status().Commit
	r.Behind = target - downAt
	tap.reset(fm.id)
	phases.add("load before restart", time.Now())
	dropsCatch := drops()
	t0 := time.Now()
	phases.add("catch-up", t0)
	tap.record(t0)
	load.window()
	// -cpuprofile: the first run's catch-up, from the restart for at most
	// 60 s.
	stopProfile := func() {}
	if f.cpuprofile != "" && !profiled {
		profiled = true
		stop := startCPUProfile(f.cpuprofile)
		var once sync.Once
		stopProfile = func() { once.Do(stop) }
		time.AfterFunc(60*time.Second, stopProfile)
		defer stopProfile()
	}
	if err := c.startMember(fm, nil); err != nil {
		return r, err
	}
	tNew := time.Now()
	r.NewNodeMs = float64(tNew.Sub(t0).Microseconds()) / 1e3
	fnode := fm.node.Load()
	var tCaught time.Time
	deadline := t0.Add(5 * time.Minute)
	var writesCatch *hist
	for {
		var p raft.PeerStatus
		if cur := c.leaderMember(); cur != nil && cur != fm {
			if cur != lm {
				logf("catchup: node %d leads now (was node %d)", cur.id, lm.id)
				lm, leader = cur, cur.node.Load()
			}
			p = leader.Status().Peers[fm.id]
		}
		fs := fnode.Status()
		now := time.Now()
		if p.State == "snapshot" {
			if r.SnapshotStateMs == 0 {
				r.SnapshotStateMs = float64(now.Sub(t0).Microseconds()) / 1e3
			}
			r.SnapshotBytes = max(r.SnapshotBytes, p.SnapshotSize)
		}
		if fs.Metrics.SnapshotsReceived > 0 && r.ReceivedMs == 0 {
			r.ReceivedMs = float64(now.Sub(t0).Microseconds()) / 1e3
		}
		if tCaught.IsZero() && fs.Applied >= target && p.State == "replicate" {
			tCaught = now
			writesCatch = load.window()
			r.CaughtUpMs = float64(now.Sub(t0).Microseconds()) / 1e3
			r.SnapshotIndex, r.SnapshotsRecv = fs.SnapshotIndex, fs.Metrics.SnapshotsReceived
			phases.add("after catch-up", now)
			stopProfile()
			logf("catchup: node %d caught up %.0f ms after its restart (snapshot state at %.0f ms, snapshot received at %.0f ms, %d bytes)",
				fm.id, r.CaughtUpMs, r.SnapshotStateMs, r.ReceivedMs, r.SnapshotBytes)
		}
		if !tCaught.IsZero() && now.Sub(t0) >= f.window {
			break
		}
		if now.After(deadline) {
			return r, fmt.Errorf("node %d not caught up after 5 minutes: applied %d of %d, peer %+v (leader: node %d)", fm.id, fs.Applied, target, p, lm.id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.HBPendingCatchup = max(tap.pending(hbPair{lm.id, fm.id}), tap.pending(hbPair{lm.id, om.id}))
	if lm.id != raft.NodeID(r.Follower) && lm.id != raft.NodeID(r.Other) {
		r.LeaderEnd = uint64(lm.id)
	}
	rec := tap.stop()
	load.stop()
	r.WriteErrors = load.errs.Load()
	if err := load.firstErr(); err != nil {
		logf("catchup: %d write errors during the catch-up window; first: %v", r.WriteErrors, err)
	}
	load = nil
	r.WritesCatchup = summarize(writesCatch, tCaught.Sub(t0))
	r.HBStartup = rec.stats(fm.id, t0, tNew)
	r.HBCatchup = rec.stats(fm.id, tNew, tCaught)
	r.HBAfter = rec.stats(fm.id, tCaught, time.Time{})
	r.HBOtherCatch = rec.stats(om.id, t0, tCaught)
	r.HBLostCatchup = rec.lost[fm.id] + rec.lost[om.id]
	r.TermEnd = c.term()
	r.Candidates = c.candidates.Load() - cand0
	r.LeaderChanges = c.elections.Load() - elect0
	r.Drops = drops() - dropsCatch
	r.CandidateEvents = phases.label(c.candidateEvents(runStart))
	for _, e := range r.CandidateEvents {
		logf("catchup: %s", e)
	}
	logf("catchup: heartbeat RTT to node %d: baseline p50 %.2f p99 %.2f ms (n=%d; there p50/p99 %.2f/%.2f, back %.2f/%.2f); catch-up p50 %.2f p99 %.2f max %.2f ms (n=%d; there %.2f/%.2f, back %.2f/%.2f); after p50 %.2f p99 %.2f ms (n=%d); startup n=%d max %.2f ms",
		fm.id, r.HBBase.P50ms, r.HBBase.P99ms, r.HBBase.N, r.HBBase.ThereP50ms, r.HBBase.ThereP99ms, r.HBBase.BackP50ms, r.HBBase.BackP99ms,
		r.HBCatchup.P50ms, r.HBCatchup.P99ms, r.HBCatchup.MaxMs, r.HBCatchup.N, r.HBCatchup.ThereP50ms, r.HBCatchup.ThereP99ms, r.HBCatchup.BackP50ms, r.HBCatchup.BackP99ms,
		r.HBAfter.P50ms, r.HBAfter.P99ms, r.HBAfter.N, r.HBStartup.N, r.HBStartup.MaxMs)
	logf("catchup: to node %d: baseline p99 %.2f ms, during catch-up p99 %.2f ms (n=%d); writes during catch-up %.0f/s p99 %.1f ms; term %d → %d, candidates %d, leader-change events %d, drops %d/%d, heartbeats unpaired %d/%d",
		om.id, r.HBOtherBase.P99ms, r.HBOtherCatch.P99ms, r.HBOtherCatch.N, r.WritesCatchup.PerSec, r.WritesCatchup.P99ms,
		r.TermStart, r.TermEnd, r.Candidates, r.LeaderChanges, r.DropsBase, r.Drops, r.HBLostBase, r.HBLostCatchup)
	return r, nil
}

// profiled: the catch-up of one run was profiled already.
var profiled bool

// phaseLog names the phases of a run by their start, so that events can
// be told apart by when they happened.
type phaseLog []struct {
	name string
	at   time.Time
}

func (p *phaseLog) add(name string, at time.Time) {
	*p = append(*p, struct {
		name string
		at   time.Time
	}{name, at})
}

// label describes each event with the phase it fell in.
func (p phaseLog) label(evs []candEvent) []string {
	var out []string
	for _, ce := range evs {
		phase := ""
		for _, ph := range p {
			if !ce.at.Before(ph.at) {
				phase = ph.name
			}
		}
		out = append(out, fmt.Sprintf("%s (%s, +%.1fs) node %d became %s in term %d",
			ce.at.Format("15:04:05.000"), phase, ce.at.Sub(p[0].at).Seconds(), ce.e.Node, ce.e.Role, ce.e.Term))
	}
	return out
}

// fmLast is the last index the leader knew the follower to hold when it
// stopped.
func fmLast(fm *member, leader *raft.Node) uint64 {
	return leader.Status().Peers[fm.id].Match
}
