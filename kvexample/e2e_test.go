//go:build unix

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// This file tests the multi-process mode the way an operator runs it: one
// built binary per node, TCP between them, a WAL in each --data, and
// SIGKILL for a crash.

// e2eClient follows redirects, like curl -L. Its timeout exceeds the
// nodes' 5 s request timeout, so a slow write is answered by the node
// (503/504) rather than cut off by the client.
var e2eClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   8 * time.Second,
}

// e2eCluster is three kvexample processes on loopback.
type e2eCluster struct {
	t     *testing.T
	bin   string
	dir   string
	peers string   // the --peers flag
	raft  []string // raft address of node i+1
	http  []string // HTTP address of node i+1
	// rafts and https are node i+1's raft and HTTP sockets, held by the
	// test and handed to each process started as that node.
	rafts, https []*heldSocket
	procs        []*e2eProc
	// args are given to every node started from now on, after the others.
	args []string
}

// e2eProc is one running (or exited) node process.
type e2eProc struct {
	id     int
	cmd    *exec.Cmd
	out    string        // file holding its stdout and stderr
	exited chan struct{} // closed once Wait returned; err is then set
	err    error
}

// buildKVD builds the command once into a temporary directory.
func buildKVD(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the end-to-end test builds the binary and needs the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "kvd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		// The nodes then check themselves for data races, and one found
		// makes a node exit non-zero, which the test notices.
		args = append(args, "-race")
	}
	out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// newE2ECluster builds the binary and opens the sockets of size nodes; it
// starts none. Every process still running when the test ends is killed.
func newE2ECluster(t *testing.T, size int) *e2eCluster {
	return newE2EClusterOf(t, size, size)
}

// newE2EClusterOf is newE2ECluster with only the first voters nodes in
// --peers: the others can join later.
func newE2EClusterOf(t *testing.T, size, voters int) *e2eCluster {
	socks := holdSockets(t, 2*size)
	c := &e2eCluster{t: t, bin: buildKVD(t), dir: t.TempDir(), rafts: socks[:size], https: socks[size:]}
	var peers []string
	for i, h := range socks {
		// A node not started yet fails its peers' dials at once.
		h.drain()
		if i < size {
			c.raft = append(c.raft, h.addr)
			if i < voters {
				peers = append(peers, fmt.Sprintf("%d=%s", i+1, h.addr))
			}
		} else {
			c.http = append(c.http, h.addr)
		}
	}
	c.peers = strings.Join(peers, ",")
	c.procs = make([]*e2eProc, size)
	t.Cleanup(func() {
		for _, p := range c.procs {
			if p != nil {
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			c.dumpLogs()
		}
	})
	return c
}

// start starts node id with its data directory and its sockets; restarting
// a node gives it the same flags, so it recovers from the same --data.
func (c *e2eCluster) start(id int) {
	c.t.Helper()
	c.startWith(id, "--peers", c.peers)
}

// join starts node id with an empty data directory, joining the cluster
// through node via.
func (c *e2eCluster) join(id, via int) {
	c.t.Helper()
	c.startWith(id, "--join", c.http[via-1])
}

// startWith starts node id with the flags every node gets and extra.
func (c *e2eCluster) startWith(id int, extra ...string) {
	c.t.Helper()
	out := filepath.Join(c.dir, fmt.Sprintf("node%d.log", id))
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close() // the child has its own copy
	raftSock, httpSock := c.rafts[id-1], c.https[id-1]
	// ExtraFiles become the child's descriptors 3, 4, ...
	args := []string{"--id", fmt.Sprint(id), "--raft-addr", c.raft[id-1], "--raft-listen-fd", "3",
		"--http-addr", c.http[id-1], "--http-listen-fd", "4", "--data", filepath.Join(c.dir, fmt.Sprintf("data%d", id))}
	cmd := exec.Command(c.bin, append(append(args, extra...), c.args...)...)
	cmd.ExtraFiles = []*os.File{raftSock.file(c.t), httpSock.file(c.t)}
	// An *os.File is handed to the child as is: no copying goroutines.
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Start()
	for _, ef := range cmd.ExtraFiles {
		ef.Close() // the child has its own copies
	}
	if err != nil {
		c.t.Fatal(err)
	}
	p := &e2eProc{id: id, cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		// Whatever ended the process, its ports stay held by the test.
		raftSock.drain()
		httpSock.drain()
		close(p.exited)
	}()
	c.procs[id-1] = p
}

// stop sends sig to node id and returns its exit error once it exited.
func (c *e2eCluster) stop(id int, sig os.Signal) error {
	c.t.Helper()
	p := c.procs[id-1]
	if err := p.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signalling node %d: %v", id, err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("node %d did not exit within 10s of %v", id, sig)
	}
	c.procs[id-1] = nil
	return p.err
}

// waitExit waits up to d for node id to exit by itself, and returns its
// exit error.
func (c *e2eCluster) waitExit(id int, d time.Duration) error {
	c.t.Helper()
	p := c.procs[id-1]
	select {
	case <-p.exited:
	case <-time.After(d):
		c.t.Fatalf("node %d did not exit within %v", id, d)
	}
	c.procs[id-1] = nil
	return p.err
}

// killedBy reports whether a process's exit error says sig killed it.
func killedBy(err error, sig syscall.Signal) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// url is node id's base URL.
func (c *e2eCluster) url(id int) string { return "http://" + c.http[id-1] }

// live returns the IDs of the running nodes.
func (c *e2eCluster) live() []int {
	var ids []int
	for i, p := range c.procs {
		if p != nil {
			ids = append(ids, i+1)
		}
	}
	return ids
}

// status asks node id for GET /status.
func (c *e2eCluster) status(id int) (statusResponse, error) {
	var st statusResponse
	resp, err := e2eClient.Get(c.url(id) + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitForLeader waits until every running node follows the same leader
// and knows its HTTP address, so any of them can redirect a client.
func (c *e2eCluster) waitForLeader() int {
	c.t.Helper()
	leader := 0
	eventually(c.t, 15*time.Second, "a leader known to every running node", func() bool {
		leader = 0
		for _, id := range c.live() {
			st, err := c.status(id)
			if err != nil || st.Leader == 0 || st.LeaderHTTP == "" || (leader != 0 && int(st.Leader) != leader) {
				return false
			}
			leader = int(st.Leader)
		}
		st, err := c.status(leader)
		return err == nil && st.State == "leader"
	})
	return leader
}

// put writes key=value through the running nodes in turn until one
// acknowledges it (200), retrying through elections: rewriting the same
// value is harmless, so an unknown outcome is simply retried.
func (c *e2eCluster) put(key, value string) {
	c.t.Helper()
	var last string
	deadline := time.Now().Add(15 * time.Second)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		live := c.live()
		id := live[attempt%len(live)]
		req, err := http.NewRequest("PUT", c.url(id)+"/kv/"+key, strings.NewReader(value))
		if err != nil {
			c.t.Fatal(err)
		}
		resp, err := e2eClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		last = fmt.Sprintf("via node %d: %v", id, err)
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("PUT %s was never acknowledged; last attempt %s", key, last)
}

// get reads key from node id; stale selects the local read.
func (c *e2eCluster) get(id int, key string, stale bool) (int, string, error) {
	u := c.url(id) + "/kv/" + key
	if stale {
		u += "?stale=1"
	}
	resp, err := e2eClient.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// output returns what node id's processes printed so far.
func (c *e2eCluster) output(id int) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)))
	return string(b)
}

// lineWith returns the last line of s containing substr, or "".
func lineWith(s, substr string) string {
	i := strings.LastIndex(s, substr)
	if i < 0 {
		return ""
	}
	start := strings.LastIndexByte(s[:i], '\n') + 1
	end, _, _ := strings.Cut(s[start:], "\n")
	return end
}

// dumpLogs logs the tail of every node's output, for a failed test.
func (c *e2eCluster) dumpLogs() {
	for id := 1; id <= len(c.procs); id++ {
		out := c.output(id)
		if len(out) > 8000 {
			out = "...\n" + out[len(out)-8000:]
		}
		c.t.Logf("node %d output:\n%s", id, out)
	}
}

// writeKeys writes n keys named prefix-i, each with its own value, and
// records them in acked.
func (c *e2eCluster) writeKeys(acked map[string]string, prefix string, n int) {
	c.t.Helper()
	for i := range n {
		key, value := fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("value of %s-%d", prefix, i)
		c.put(key, value)
		acked[key] = value
	}
}

// checkEveryNodeHas waits until every running node has applied what the
// leader committed, then reads each acknowledged key locally on each node.
func (c *e2eCluster) checkEveryNodeHas(acked map[string]string) {
	c.t.Helper()
	leader := c.waitForLeader()
	st, err := c.status(leader)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, id := range c.live() {
		eventually(c.t, 15*time.Second, fmt.Sprintf("node %d to apply index %d", id, st.CommitIndex), func() bool {
			s, err := c.status(id)
			return err == nil && s.AppliedIndex >= st.CommitIndex
		})
		for key, want := range acked {
			code, got, err := c.get(id, key, true)
			if err != nil || code != http.StatusOK || got != want {
				c.t.Fatalf("node %d: stale GET %s = %d %q (%v), want %q", id, key, code, got, err, want)
			}
		}
	}
}

func TestKilledLeaderRestartsFromItsWALAndNoAcknowledgedWriteIsLost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a 3-process cluster")
	}
	c := newE2ECluster(t, 3)
	for id := 1; id <= 3; id++ {
		c.start(id)
	}
	leader := c.waitForLeader()
	acked := map[string]string{}
	c.writeKeys(acked, "before", 20)
	t.Logf("3 processes up, node %d leads; %d writes acknowledged", leader, len(acked))

	// A crash: no chance to flush or say goodbye.
	err := c.stop(leader, syscall.SIGKILL)
	if !killedBy(err, syscall.SIGKILL) {
		t.Fatalf("node %d after kill -9: %v, want killed by SIGKILL", leader, err)
	}
	t.Logf("kill -9 node %d (the leader)", leader)
	c.writeKeys(acked, "during", 20)
	newLeader := c.waitForLeader()
	if newLeader == leader {
		t.Fatalf("node %d still reported as leader after being killed", leader)
	}
	t.Logf("node %d took over; %d writes acknowledged in all", newLeader, len(acked))

	c.start(leader)
	var banner string
	eventually(t, 10*time.Second, "the restarted node's banner", func() bool {
		banner = lineWith(c.output(leader), "recovered from ")
		return banner != ""
	})
	// Before the crash the leader had durably logged every write it
	// acknowledged (its own copy counts towards the majority only once it
	// is on disk), so it recovers at least that many entries.
	var last, term uint64
	if _, err := fmt.Sscanf(banner[strings.Index(banner, ": ")+2:], "log up to index %d, term %d", &last, &term); err != nil || last < 20 {
		t.Fatalf("restarted node %d printed %q: want it to recover at least the 20 writes it acknowledged (%v)", leader, banner, err)
	}
	t.Logf("node %d restarted with the same --data: recovered its log up to index %d, term %d", leader, last, term)
	c.writeKeys(acked, "after", 10)
	c.checkEveryNodeHas(acked)
	t.Logf("final check: all %d acknowledged writes present on every node (stale reads after catch-up)", len(acked))

	for id := 1; id <= 3; id++ {
		if err := c.stop(id, syscall.SIGTERM); err != nil {
			t.Errorf("node %d after SIGTERM: %v, want exit status 0", id, err)
		}
	}
	t.Logf("SIGTERM: all 3 nodes exited with status 0")

	// A whole-cluster restart must come back with everything: this time
	// no node can catch up from a survivor.
	for id := 1; id <= 3; id++ {
		c.start(id)
	}
	c.checkEveryNodeHas(acked)
	t.Logf("whole-cluster restart: all %d acknowledged writes recovered on every node", len(acked))
	for id := 1; id <= 3; id++ {
		if strings.Contains(c.output(id), "DATA RACE") {
			t.Errorf("node %d reported a data race", id)
		}
	}
}
