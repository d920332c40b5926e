package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/raftline/raft"
	"github.com/raftline/raft/internal/testutil"
)

// syncBuffer is a bytes.Buffer safe to write from run's goroutine while the
// test reads it.
type syncBuffer = testutil.SyncBuffer

func TestRunPrintsAWorkingCurlLineAndExitsZeroWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	exit := make(chan int)
	go func() { exit <- run(ctx, []string{"--port", "0"}, &stdout, &stderr) }()

	eventually(t, 10*time.Second, "the startup banner", func() bool {
		return strings.Contains(stdout.String(), "Ctrl-C")
	})
	out := stdout.String()
	for _, want := range []string{"node 1: http://127.0.0.1:", "node 3: http://", "does not survive a restart", "curl -L -X PUT"} {
		if !strings.Contains(out, want) {
			t.Errorf("startup output lacks %q:\n%s", want, out)
		}
	}
	// Do what the printed curl lines do.
	m := regexp.MustCompile(`curl -L -X PUT --data-binary '([^']*)' (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no curl PUT line in:\n%s", out)
	}
	wantStatus(t, do(t, followRedirects, "PUT", m[2], m[1]), http.StatusOK)
	if r := do(t, followRedirects, "GET", m[2], ""); r.body != m[1] {
		t.Fatalf("GET %s: %d %q, want %q", m[2], r.code, r.body, m[1])
	}

	cancel() // what SIGINT does
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
}

// runInBackground starts run with args and returns its output and a
// function that cancels it (what SIGINT does) and returns its exit code.
func runInBackground(t *testing.T, args ...string) (stdout, stderr *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, args, stdout, stderr) }()
	stopped := false
	stop = func() int {
		t.Helper()
		stopped = true
		cancel()
		select {
		case code := <-exit:
			return code
		case <-time.After(15 * time.Second):
			t.Fatalf("run %v did not return after cancellation", args)
			return -1
		}
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	return stdout, stderr, stop
}

// curlLines returns the URL and value of the PUT line and the URL of the
// GET line that run printed.
func curlLines(t *testing.T, out string) (putURL, value, getURL string) {
	t.Helper()
	put := regexp.MustCompile(`curl -L -X PUT --data-binary '([^']*)' (\S+)`).FindStringSubmatch(out)
	get := regexp.MustCompile(`curl -L (http\S+)`).FindStringSubmatch(out)
	if put == nil || get == nil {
		t.Fatalf("no curl PUT and GET lines in:\n%s", out)
	}
	return put[2], put[1], get[1]
}

func TestRunWithDataKeepsTheClusterStateAcrossRestarts(t *testing.T) {
	data := t.TempDir()
	stdout, stderr, stop := runInBackground(t, "--port", "0", "--data", data)
	eventually(t, 10*time.Second, "the startup banner", func() bool { return strings.Contains(stdout.String(), "Ctrl-C") })
	if !strings.Contains(stdout.String(), "write-ahead log under "+data) {
		t.Errorf("output does not say where the state is kept:\n%s", stdout.String())
	}
	putURL, value, _ := curlLines(t, stdout.String())
	wantStatus(t, do(t, followRedirects, "PUT", putURL, value), http.StatusOK)
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
	}

	// Ports are chosen afresh (--port 0), so the URLs differ this time.
	stdout, stderr, stop = runInBackground(t, "--port", "0", "--data", data)
	eventually(t, 10*time.Second, "the startup banner", func() bool { return strings.Contains(stdout.String(), "Ctrl-C") })
	if !strings.Contains(stdout.String(), "recovered the cluster's state") {
		t.Errorf("output does not say the state was recovered:\n%s", stdout.String())
	}
	_, _, getURL := curlLines(t, stdout.String())
	if r := do(t, followRedirects, "GET", getURL, ""); r.code != http.StatusOK || r.body != value {
		t.Fatalf("after restart GET %s: %d %q, want %q", getURL, r.code, r.body, value)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
	}
}

func TestMultiProcessModeBootstrapsThenRecoversFromItsDataDir(t *testing.T) {
	socks := holdSockets(t, 2)
	data := t.TempDir()
	args := func(peers string) []string {
		return append([]string{"--id", "1", "--peers", peers, "--data", data, "--cluster-id", "42"},
			listenArgs(t, socks[0], socks[1])...)
	}
	stdout, stderr, stop := runInBackground(t, args("1="+socks[0].addr)...)
	eventually(t, 10*time.Second, "the startup banner", func() bool { return strings.Contains(stdout.String(), "SIGTERM") })
	if out := stdout.String(); !strings.Contains(out, "bootstrapped a new cluster: voters [1]") || !strings.Contains(out, "cluster 42") {
		t.Errorf("first start does not report bootstrapping cluster 42:\n%s", out)
	}
	putURL, value, getURL := curlLines(t, stdout.String())
	// A lone voter elects itself within a couple of election timeouts.
	eventually(t, 10*time.Second, "the PUT to succeed", func() bool {
		return do(t, followRedirects, "PUT", putURL, value).code == http.StatusOK
	})
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
	}

	// --peers is only a hint now: the log's configuration wins.
	stdout, stderr, stop = runInBackground(t, args("1="+socks[0].addr+",2=127.0.0.1:1")...)
	eventually(t, 10*time.Second, "the startup banner", func() bool { return strings.Contains(stdout.String(), "SIGTERM") })
	if out := stdout.String(); !strings.Contains(out, "recovered from "+data) || !strings.Contains(out, "voters [1]") {
		t.Errorf("restart does not report recovering the log's one-voter configuration:\n%s", out)
	}
	if msg := stderr.String(); !strings.Contains(msg, "the log wins") || !strings.Contains(msg, "node 2 is not a member") {
		t.Errorf("restart with a --peers that lists node 2 does not warn that node 2 is not a member:\n%s", msg)
	}
	var r response
	eventually(t, 10*time.Second, "the linearizable GET to succeed", func() bool {
		r = do(t, followRedirects, "GET", getURL, "")
		return r.code != http.StatusServiceUnavailable
	})
	if r.code != http.StatusOK || r.body != value {
		t.Fatalf("after restart GET %s: %d %q, want %q", getURL, r.code, r.body, value)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
	}
}

func TestSecondNodeOnTheSameDataDirIsRefused(t *testing.T) {
	socks := holdSockets(t, 4)
	data := t.TempDir()
	stdout, _, stop := runInBackground(t, append([]string{"--id", "1", "--peers", "1=" + socks[0].addr, "--data", data},
		listenArgs(t, socks[0], socks[1])...)...)
	eventually(t, 10*time.Second, "the startup banner", func() bool { return strings.Contains(stdout.String(), "SIGTERM") })
	var stderr bytes.Buffer
	code := run(context.Background(), append([]string{"--id", "1", "--peers", "1=" + socks[2].addr, "--data", data},
		listenArgs(t, socks[2], socks[3])...), io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "locked") {
		t.Fatalf("second node on %s: exit %d, stderr %q; want 1 and a lock error", data, code, stderr.String())
	}
	if code := stop(); code != 0 {
		t.Fatalf("first node's exit code %d", code)
	}
}

func TestInvalidFlagsAreRejectedWithExitCode2(t *testing.T) {
	valid := map[string]string{
		"--id": "2", "--raft-addr": "10.0.0.2:7001", "--http-addr": "10.0.0.2:8001",
		"--peers": "1=10.0.0.1:7001,2=10.0.0.2:7001,3=10.0.0.3:7001", "--data": "/tmp/kvd2",
	}
	// with returns the valid multi-process flags with one changed ("" drops it).
	with := func(name, value string) []string {
		var args []string
		for _, n := range []string{"--id", "--raft-addr", "--http-addr", "--peers", "--data"} {
			v := valid[n]
			if n == name {
				v = value
			}
			if v != "" {
				args = append(args, n, v)
			}
		}
		return args
	}
	if _, err := parseOptions(with("", ""), io.Discard); err != nil {
		t.Fatalf("the valid flags are rejected: %v", err)
	}
	cases := map[string][]string{
		"unknown flag":           {"--nope"},
		"stray argument":         {"extra"},
		"port out of range":      {"--port", "70000"},
		"missing data":           with("--data", ""),
		"missing peers and join": with("--peers", ""),
		"both peers and join":    append(with("", ""), "--join", "10.0.0.1:8001"),
		"join without a port":    append(with("--peers", ""), "--join", "10.0.0.1"),
		"join a wildcard":        append(with("--peers", ""), "--join", "0.0.0.0:8001"),
		"negative snapshots":     {"--snapshot-entries", "-1"},
		"negative trailing":      append(with("", ""), "--snapshot-trailing", "-5"),
		"negative interval":      {"--snapshot-interval", "-1s"},
		"zero clock drift":       {"--max-clock-drift", "0"},
		"clock drift of 50%":     append(with("", ""), "--max-clock-drift", "0.5"),
		"clock drift NaN":        {"--max-clock-drift", "NaN"},
		"zero id":                with("--id", "0"),
		"self not in peers":      with("--id", "4"),
		"raft-addr not in peers": with("--raft-addr", "10.0.0.9:7001"),
		"raft-addr no port":      with("--raft-addr", "10.0.0.2"),
		"wildcard http-addr":     with("--http-addr", "0.0.0.0:8001"),
		"empty http host":        with("--http-addr", ":8001"),
		"peer without id":        with("--peers", "10.0.0.2:7001"),
		"peer with bad id":       with("--peers", "x=10.0.0.2:7001"),
		"duplicate peer id":      with("--peers", "2=10.0.0.2:7001,2=10.0.0.3:7001"),
		"peer with bad port":     with("--peers", "2=10.0.0.2:http"),
		"port in multi mode":     append(with("", ""), "--port", "9000"),
		"zero cluster id":        append(with("", ""), "--cluster-id", "0"),
		"cluster id alone":       {"--cluster-id", "7"},
		"listen fd alone":        {"--http-listen-fd", "3"},
		"stdout as listen fd":    append(with("", ""), "--raft-listen-fd", "1"),
		"negative listen fd":     append(with("", ""), "--http-listen-fd", "-1"),
		"one fd for both":        append(with("", ""), "--raft-listen-fd", "5", "--http-listen-fd", "5"),
		"listen fd not a number": append(with("", ""), "--raft-listen-fd", "three"),
	}
	for name, args := range cases {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != 2 {
			t.Errorf("%s (%v): exit %d, want 2", name, args, code)
		}
	}
}

// The snapshot flags reach raft.Config in its terms: 0 means "none" on the
// command line and a negative value in the Config, whose 0 is the default.
func TestSnapshotFlagsInConfigTerms(t *testing.T) {
	for _, tc := range []struct {
		args              []string
		entries, trailing int
		interval          time.Duration
	}{
		{nil, raft.DefaultSnapshotEntries, raft.DefaultSnapshotTrailing, raft.DefaultSnapshotInterval},
		{[]string{"--snapshot-entries", "20", "--snapshot-trailing", "10", "--snapshot-interval", "0"}, 20, 10, -1},
		{[]string{"--snapshot-entries", "0", "--snapshot-trailing", "0", "--snapshot-interval", "5s"}, -1, -1, 5 * time.Second},
	} {
		o, err := parseOptions(tc.args, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		entries, trailing, interval := o.snapshotPolicy()
		if entries != tc.entries || trailing != tc.trailing || interval != tc.interval {
			t.Errorf("%v: entries %d, trailing %d, interval %v; want %d, %d, %v", tc.args, entries, trailing, interval, tc.entries, tc.trailing, tc.interval)
		}
	}
}
