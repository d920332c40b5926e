package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to write from run's goroutine while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

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

func TestRunWithDataSaysStateIsStillInMemory(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout syncBuffer
	exit := make(chan int)
	go func() { exit <- run(ctx, []string{"--port", "0", "--data", t.TempDir()}, &stdout, io.Discard) }()
	eventually(t, 10*time.Second, "the startup banner", func() bool {
		return strings.Contains(stdout.String(), "Ctrl-C")
	})
	cancel()
	if code := <-exit; code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if !strings.Contains(stdout.String(), "still in memory until the WAL lands") {
		t.Errorf("output does not say --data is not durable yet:\n%s", stdout.String())
	}
}

func TestMultiProcessModeExplainsItNeedsTheTCPTransport(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), []string{
		"--id", "1", "--raft-addr", "127.0.0.1:7001", "--http-addr", "127.0.0.1:8001",
		"--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003", "--data", t.TempDir(),
	}, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "needs the TCP transport") {
		t.Fatalf("exit %d, stderr %q; want 1 and an explanation", code, stderr.String())
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
		"missing peers":          with("--peers", ""),
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
	}
	for name, args := range cases {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != 2 {
			t.Errorf("%s (%v): exit %d, want 2", name, args, code)
		}
	}
}
