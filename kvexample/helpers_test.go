package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftline/raft"
	"github.com/raftline/raft/internal/testutil"
)

// startTestCluster starts the single-process cluster on free ports, waits
// for a leader that has recorded its HTTP address, and closes it when the
// test ends.
func startTestCluster(t testing.TB) (*localCluster, *kvNode) {
	t.Helper()
	return startTestClusterWith(t, nil)
}

// startTestClusterWith is startTestCluster with each node's configuration
// changed by tune.
func startTestClusterWith(t testing.TB, tune func(*nodeConfig)) (*localCluster, *kvNode) {
	t.Helper()
	c, err := startLocalCluster(3, "127.0.0.1", 0, func(cfg *nodeConfig) {
		cfg.Logger = slog.New(slog.DiscardHandler)
		cfg.RequestTimeout = 3 * time.Second
		if tune != nil {
			tune(cfg)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing cluster: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leader, err := c.waitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c, leader
}

// follower returns a node of c other than leader.
func follower(c *localCluster, leader *kvNode) *kvNode {
	for _, n := range c.nodes {
		if n != leader {
			return n
		}
	}
	return nil
}

// noRedirects is a client that shows redirects instead of following them.
// Keep-alives are off so no connection goroutine outlives a test.
var noRedirects = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       15 * time.Second,
}

// followRedirects is a client that follows redirects, like curl -L.
var followRedirects = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   15 * time.Second,
}

// response is what a test looks at in an HTTP answer.
type response struct {
	code   int
	header http.Header
	body   string
}

// do sends one request; headers are given as "Name", "value" pairs.
func do(t *testing.T, client *http.Client, method, url, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// wantStatus fails unless r has the given status code.
func wantStatus(t *testing.T, r response, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body %q", r.code, code, r.body)
	}
}

// wantJSONError fails unless r is an API error: the code and a JSON body
// {"error": "..."} with a message.
func wantJSONError(t *testing.T, r response, code int) string {
	t.Helper()
	wantStatus(t, r, code)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var e map[string]string
	dec := json.NewDecoder(bytes.NewReader([]byte(r.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || len(e) != 1 || e["error"] == "" {
		t.Fatalf("body %q is not {\"error\": \"...\"}", r.body)
	}
	return e["error"]
}

// eventually polls cond until it holds or the timeout passes.
var eventually = testutil.Eventually

// entry builds a log entry for state machine tests.
func entry(index uint64, c command) raft.Entry {
	return raft.Entry{Index: index, Term: 1, Type: raft.EntryNormal, Data: c.encode()}
}
