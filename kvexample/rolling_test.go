//go:build unix

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rollingEnv turns on TestRollingRestartUnderLoad, a measurement rather
// than a check to run on every change: it takes about a minute, and its
// figures depend on the machine. Its value is how many times to restart
// every node (KVEXAMPLE_ROLLING=3: three rounds).
const rollingEnv = "KVEXAMPLE_ROLLING"

// rollingClient is one of the measurement's clients: it writes through the
// three nodes in turn. A connection refused delivered nothing (the node is
// down, or the leader it was redirected to is), so the client tries the
// next node, as a load balancer would; any other failure counts.
type rollingClient struct {
	c      *e2eCluster
	id     int
	writes int
	failed []string
	acked  map[string]string
}

func (rc *rollingClient) run(stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		key, value := fmt.Sprintf("r%d-%06d", rc.id, i), fmt.Sprint(i)
		rc.writes++
		failure := ""
		for try := range 3 {
			failure = putOnce(rc.c.url(1+(i+try+rc.id)%3)+"/kv/"+key, value)
			if !strings.Contains(failure, "connection refused") {
				break
			}
		}
		if failure == "" {
			rc.acked[key] = value
		} else {
			rc.failed = append(rc.failed, failure)
		}
	}
}

// rollingRestart restarts each node of c in turn with sig, rounds times,
// while clients write, and returns every client's figures and how many of
// the nodes restarted were leading.
func rollingRestart(t *testing.T, c *e2eCluster, sig syscall.Signal, clients, rounds int) (_ []*rollingClient, leaders int) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var rcs []*rollingClient
	for id := range clients {
		rc := &rollingClient{c: c, id: id, acked: map[string]string{}}
		rcs = append(rcs, rc)
		wg.Go(func() { rc.run(stop) })
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	time.Sleep(time.Second)
	for i := range 3 * rounds {
		id := 1 + i%3
		leader := c.waitForLeader()
		err := c.stop(id, sig)
		if sig == syscall.SIGKILL && !killedBy(err, sig) || sig != syscall.SIGKILL && err != nil {
			t.Fatalf("node %d after %v: %v", id, sig, err)
		}
		c.start(id)
		c.waitForLeader()
		if leader == id {
			leaders++
		}
		time.Sleep(time.Second)
	}
	return rcs, leaders
}

func TestRollingRestartUnderLoad(t *testing.T) {
	rounds, err := strconv.Atoi(os.Getenv(rollingEnv))
	if err != nil || rounds < 1 {
		t.Skipf("a measurement: set %s=1 (or more rounds) to run it", rollingEnv)
	}
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		args []string
	}{
		{"SIGTERM, graceful transfer (the default)", syscall.SIGTERM, nil},
		{"SIGTERM, --graceful-transfer=false", syscall.SIGTERM, []string{"--graceful-transfer=false"}},
		{"SIGKILL", syscall.SIGKILL, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newE2ECluster(t, 3)
			c.args = tc.args
			for id := 1; id <= 3; id++ {
				c.start(id)
			}
			c.waitForLeader()
			start := time.Now()
			rcs, leaders := rollingRestart(t, c, tc.sig, 4, rounds)
			writes, failed := 0, 0
			acked := map[string]string{}
			kinds := map[string]int{}
			for _, rc := range rcs {
				writes += rc.writes
				failed += len(rc.failed)
				for _, f := range rc.failed {
					kinds[failureKind(f)]++
				}
				for k, v := range rc.acked {
					acked[k] = v
				}
			}
			t.Logf("%s: %d restarts (%d of a leader); %d writes in %v by 4 clients, %d failed %v",
				tc.name, 3*rounds, leaders, writes, time.Since(start).Round(time.Millisecond), failed, kinds)
			c.checkEveryMemberHasAll(acked, "r")
		})
	}
}

// failureKind shortens a failure to what kind it was.
func failureKind(f string) string {
	switch {
	case len(f) > 4 && f[3] == ' ' && strings.Trim(f[:3], "0123456789") == "":
		return f[:3]
	case strings.Contains(f, "refused"):
		return "connection refused"
	case strings.Contains(f, "imeout"):
		return "timeout"
	case strings.Contains(f, "EOF"), strings.Contains(f, "reset"):
		return "connection closed"
	}
	return f
}
