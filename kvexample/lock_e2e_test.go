//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftline/raft/internal/testutil"
)

// This file shows why a lock needs a fencing token, with real processes: a
// 3-node cluster (one kvd process per node, as in e2e_test.go), a lock
// holder in a process of its own, and SIGSTOP standing in for a long GC
// pause. The holder's lease ends while it is stopped, another client takes
// the lock, and when the holder wakes up, its write with its old token is
// refused: the resource it guards (a key written only with X-Fence) only
// ever holds writes made under the current token.

// holderEnv, set in a child's environment, makes TestLockHolderProcess act
// as the lock holder instead of skipping: the value is the cluster's node
// URLs, comma-separated.
const holderEnv = "KVEXAMPLE_LOCK_HOLDER"

// Names the holder and the test share.
const (
	e2eLock     = "printer"
	e2eResource = "printer-queue"
	holderTTL   = 1500 * time.Millisecond
)

func TestPausedLockHolderCannotWriteWithItsExpiredToken(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a 3-process cluster and a holder process")
	}
	c := newE2ECluster(t, 3)
	for id := 1; id <= 3; id++ {
		c.start(id)
	}
	c.waitForLeader()
	var urls []string
	for id := 1; id <= 3; id++ {
		urls = append(urls, c.url(id))
	}

	holder := startHolder(t, urls)
	// The holder takes the lock and writes under its token.
	eventually(t, 20*time.Second, "the holder's first fenced write", func() bool {
		return strings.Contains(holder.out.String(), "holder: write 200")
	})
	oldToken := holderToken(t, holder.out.String())
	holder.signal(t, syscall.SIGSTOP)
	t.Logf("holder has token %d; SIGSTOP", oldToken)

	// Another client waits for the lock: it is granted once the stopped
	// holder's lease ends on the log's clock, with a larger token.
	body := fmt.Sprintf(`{"holder":"rescuer","ttl_ms":60000,"wait_ms":%d}`, (10 * holderTTL).Milliseconds())
	code, answer := e2eRequest(t, c, "POST", "/locks/"+e2eLock+"/acquire", body)
	if code != http.StatusOK {
		t.Fatalf("the second client's acquire: %d %s", code, answer)
	}
	var granted lockResponse
	if err := json.Unmarshal([]byte(answer), &granted); err != nil || granted.Token <= oldToken {
		t.Fatalf("the second client got %s, want a token above %d", answer, oldToken)
	}
	fence := fmt.Sprintf("%s:%d", e2eLock, granted.Token)
	if code, answer := e2eRequest(t, c, "PUT", "/kv/"+e2eResource, "job from rescuer", "X-Fence", fence); code != http.StatusOK {
		t.Fatalf("the new holder's fenced write: %d %s", code, answer)
	}
	t.Logf("lease ended; the second client holds token %d and wrote the resource", granted.Token)

	// The holder wakes up and carries on as if it still held the lock.
	holder.signal(t, syscall.SIGCONT)
	select {
	case <-holder.exited:
		if holder.err != nil {
			t.Fatalf("holder exited with %v", holder.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the woken holder never noticed it lost the lock")
	}
	refusal := lineWith(holder.out.String(), "holder: write 409")
	if refusal == "" || !strings.Contains(refusal, "not the lock's current one") {
		t.Fatalf("the woken holder's write was not refused by the fence; its output:\n%s", holder.out.String())
	}
	t.Logf("woken holder: %s", strings.TrimSpace(refusal))
	if code, value := e2eRequest(t, c, "GET", "/kv/"+e2eResource, ""); code != http.StatusOK || value != "job from rescuer" {
		t.Fatalf("the resource holds %d %q, want the new holder's write", code, value)
	}
}

// holderProc is the lock holder's process.
type holderProc struct {
	cmd    *exec.Cmd
	out    testutil.SyncBuffer
	exited chan struct{} // closed once Wait returned, with err set
	err    error
}

// startHolder starts TestLockHolderProcess in a child process, talking to
// the nodes at urls. It is killed (stopped or not) when the test ends.
func startHolder(t *testing.T, urls []string) *holderProc {
	t.Helper()
	h := &holderProc{exited: make(chan struct{})}
	h.cmd = exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$", "-test.v")
	h.cmd.Env = append(os.Environ(), holderEnv+"="+strings.Join(urls, ","))
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.err = h.cmd.Wait(); close(h.exited) }()
	t.Cleanup(func() {
		h.cmd.Process.Kill() // a stopped process dies of SIGKILL too
		<-h.exited
		if t.Failed() {
			t.Logf("holder output:\n%s", h.out.String())
		}
	})
	return h
}

// signal sends sig to the holder.
func (h *holderProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := h.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling the holder: %v", err)
	}
}

// holderToken finds the token in the holder's "acquired token=N" line.
func holderToken(t *testing.T, out string) uint64 {
	t.Helper()
	var token uint64
	if _, err := fmt.Sscanf(strings.TrimSpace(lineWith(out, "holder: acquired token=")), "holder: acquired token=%d", &token); err != nil {
		t.Fatalf("no token in the holder's output (%v):\n%s", err, out)
	}
	return token
}

// e2eRequest sends a request to the running nodes in turn (following
// redirects) until one answers something other than an error of the
// cluster itself (503, 504, no connection), and returns that answer.
func e2eRequest(t *testing.T, c *e2eCluster, method, path, body string, headers ...string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		live := c.live()
		code, answer, err := httpRequest(c.url(live[attempt%len(live)])+path, method, body, headers...)
		if err == nil && code != http.StatusServiceUnavailable && code != http.StatusGatewayTimeout {
			return code, answer
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s %s: no node answered", method, path)
	return 0, ""
}

// httpRequest sends one request with e2eClient (which follows redirects).
func httpRequest(url, method, body string, headers ...string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e2eClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestLockHolderProcess is the lock holder of the test above, run in a
// child process; on its own it skips. It does what a careless holder does:
// acquire, then keep writing the guarded resource with its token and
// renewing its lease, without ever checking the time, until a write is
// refused.
func TestLockHolderProcess(t *testing.T) {
	urls := os.Getenv(holderEnv)
	if urls == "" {
		t.Skip("run by TestPausedLockHolderCannotWriteWithItsExpiredToken in a child process")
	}
	nodes := strings.Split(urls, ",")
	// send tries each node until one is not busy electing a leader.
	send := func(method, path, body string, headers ...string) (int, string) {
		for attempt := 0; ; attempt++ {
			code, answer, err := httpRequest(nodes[attempt%len(nodes)]+path, method, body, headers...)
			if err == nil && code != http.StatusServiceUnavailable && code != http.StatusGatewayTimeout {
				return code, answer
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	code, answer := send("POST", "/locks/"+e2eLock+"/acquire",
		fmt.Sprintf(`{"holder":"careless","ttl_ms":%d,"wait_ms":10000}`, holderTTL.Milliseconds()))
	var l lockResponse
	if err := json.Unmarshal([]byte(answer), &l); code != http.StatusOK || err != nil {
		t.Fatalf("acquire: %d %s", code, answer)
	}
	fmt.Printf("holder: acquired token=%d\n", l.Token)
	fence := fmt.Sprintf("%s:%d", e2eLock, l.Token)
	renew := fmt.Sprintf(`{"holder":"careless","token":%d}`, l.Token)
	for i := 0; ; i++ {
		code, answer := send("PUT", "/kv/"+e2eResource, fmt.Sprintf("job %d from careless", i), "X-Fence", fence)
		fmt.Printf("holder: write %d %s\n", code, strings.TrimSpace(answer))
		if code != http.StatusOK {
			return
		}
		if i%3 == 2 {
			code, answer := send("POST", "/locks/"+e2eLock+"/renew", renew)
			fmt.Printf("holder: renew %d %s\n", code, strings.TrimSpace(answer))
		}
		time.Sleep(holderTTL / 6)
	}
}
