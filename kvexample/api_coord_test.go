package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests drive the coordination endpoints (counters, TTLs, listing,
// watches, locks) of a real 3-node cluster over HTTP.

// raftIndex returns a response's X-Raft-Index, failing if it has none.
func raftIndex(t *testing.T, r response) uint64 {
	t.Helper()
	i, err := strconv.ParseUint(r.header.Get("X-Raft-Index"), 10, 64)
	if err != nil || i == 0 {
		t.Fatalf("response %d %q has no X-Raft-Index (%q)", r.code, r.body, r.header.Get("X-Raft-Index"))
	}
	return i
}

// goDo sends one request on its own goroutine; the test reads the answer
// (or the transport error) from the channel, on its own goroutine.
func goDo(client *http.Client, method, url, body string) <-chan response {
	out := make(chan response, 1)
	go func() {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			out <- response{body: err.Error()}
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			out <- response{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- response{code: resp.StatusCode, header: resp.Header, body: string(b)}
	}()
	return out
}

// decode unmarshals a JSON body, failing on error.
func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return v
}

func TestKeysWithSlashesListingAndIndexes(t *testing.T) {
	_, leader := startTestCluster(t)
	kv := leader.URL() + "/kv"
	var last uint64
	for _, k := range []string{"users/2", "users/10", "users/1", "userz", "user", "users/1/append"} {
		r := do(t, noRedirects, "PUT", kv+"/"+k, "v-"+k)
		wantStatus(t, r, http.StatusOK)
		if i := raftIndex(t, r); i <= last {
			t.Fatalf("PUT %s at index %d, after a write at %d", k, i, last)
		} else {
			last = i
		}
	}
	r := do(t, noRedirects, "GET", kv+"/users/1/append", "")
	if r.body != "v-users/1/append" || raftIndex(t, r) < last {
		t.Fatalf("GET of a key ending in /append: %d %q at %s", r.code, r.body, r.header.Get("X-Raft-Index"))
	}
	if r := do(t, noRedirects, "GET", kv+"/users/3", ""); r.code != http.StatusNotFound || raftIndex(t, r) < last {
		t.Fatalf("an absent key's 404 must carry the index it reflects: %d %v", r.code, r.header)
	}
	type page struct {
		Items []listEntry `json:"items"`
		Next  *string     `json:"next"`
	}
	var keys []string
	url := kv + "?prefix=users/&limit=2"
	for pages := 0; ; pages++ {
		r := do(t, noRedirects, "GET", url, "")
		wantStatus(t, r, http.StatusOK)
		p := decode[page](t, r)
		for _, it := range p.Items {
			if it.Value != "v-"+it.Key {
				t.Fatalf("listed %q = %q", it.Key, it.Value)
			}
			keys = append(keys, it.Key)
		}
		if p.Next == nil {
			break
		}
		if pages > 3 {
			t.Fatal("listing does not end")
		}
		url = kv + "?prefix=users/&limit=2&start=" + *p.Next
	}
	if got, want := strings.Join(keys, " "), "users/1 users/1/append users/10 users/2"; got != want {
		t.Fatalf("listing users/ in pages of 2: %q, want %q", got, want)
	}

	allow := []struct{ method, path, want string }{
		{"PATCH", "/kv/k", "GET, HEAD, PUT, DELETE"},
		{"POST", "/kv/a/b", "GET, HEAD, PUT, DELETE"},
		{"PATCH", "/kv/a/incr", "GET, HEAD, PUT, DELETE, POST"},
		{"DELETE", "/kv", "GET, HEAD"},
		{"DELETE", "/locks/L", "GET, HEAD"},
		{"DELETE", "/locks/L/release", "GET, HEAD, POST"},
	}
	for _, a := range allow {
		r := do(t, noRedirects, a.method, leader.URL()+a.path, "")
		wantJSONError(t, r, http.StatusMethodNotAllowed)
		if got := r.header.Get("Allow"); got != a.want {
			t.Errorf("%s %s: Allow %q, want %q", a.method, a.path, got, a.want)
		}
		if a.method == "POST" && !strings.Contains(r.body, "/kv/{key}/append, /kv/{key}/cas or /kv/{key}/incr") {
			t.Errorf("POST %s: the 405 does not say where POST goes: %s", a.path, r.body)
		}
	}
}

func TestCountersAndExpiringKeysOverHTTP(t *testing.T) {
	_, leader := startTestCluster(t)
	n := leader.URL() + "/kv/hits/incr"
	steps := []struct{ body, want string }{{"", "1"}, {"", "2"}, {"10", "12"}, {" -20\n", "-8"}}
	for _, s := range steps {
		if r := do(t, noRedirects, "POST", n, s.body); r.code != http.StatusOK || r.body != s.want {
			t.Fatalf("incr %q: %d %q, want %s", s.body, r.code, r.body, s.want)
		}
	}
	session := []string{"X-Client-Id", "c", "X-Request-Seq", "1"}
	first := do(t, noRedirects, "POST", n, "5", session...)
	retry := do(t, noRedirects, "POST", n, "5", session...)
	if first.body != "-3" || retry.body != "-3" || raftIndex(t, first) >= raftIndex(t, retry) {
		t.Fatalf("incr and its retry: %q at %d, %q; want -3 applied once", first.body, raftIndex(t, first), retry.body)
	}
	msg := wantJSONError(t, do(t, noRedirects, "POST", n, "6", session...), http.StatusConflict)
	if !strings.Contains(msg, "different request") {
		t.Errorf("same seq, different delta: %q", msg)
	}
	wantStatus(t, do(t, noRedirects, "PUT", leader.URL()+"/kv/name", "ann"), http.StatusOK)
	if msg := wantJSONError(t, do(t, noRedirects, "POST", leader.URL()+"/kv/name/incr", ""), http.StatusConflict); !strings.Contains(msg, "not a decimal integer") {
		t.Errorf("incr of text: %q", msg)
	}

	// A key with a TTL disappears with no write after it: the leader's
	// ticks move the log's clock.
	wantStatus(t, do(t, noRedirects, "PUT", leader.URL()+"/kv/session?ttl=0.4", "s"), http.StatusOK)
	if r := do(t, noRedirects, "GET", leader.URL()+"/kv/session", ""); r.body != "s" {
		t.Fatalf("a fresh TTL key: %d %q", r.code, r.body)
	}
	start := time.Now()
	eventually(t, 5*time.Second, "the TTL key to expire", func() bool {
		return do(t, noRedirects, "GET", leader.URL()+"/kv/session", "").code == http.StatusNotFound
	})
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("a 0.4 s TTL took %v to expire", waited)
	}
}

func TestLocksAndFencedWritesOverHTTP(t *testing.T) {
	_, leader := startTestCluster(t)
	lock := leader.URL() + "/locks/jobs/nightly"
	r := do(t, noRedirects, "POST", lock+"/acquire", `{"holder":"a","ttl_ms":60000}`)
	wantStatus(t, r, http.StatusOK)
	a := decode[lockResponse](t, r)
	if a.Token != raftIndex(t, r) || a.Holder != "a" || a.TTLMs != 60000 || a.ExpiresAtMs == 0 || a.ExpiresIndex != a.Token {
		t.Fatalf("acquire answered %+v at index %d", a, raftIndex(t, r))
	}
	wantJSONError(t, do(t, noRedirects, "POST", lock+"/acquire", `{"holder":"b","ttl_ms":1000}`), http.StatusConflict)
	if got := decode[lockResponse](t, do(t, noRedirects, "GET", lock, "")); got != a {
		t.Fatalf("GET lock: %+v, want %+v", got, a)
	}
	wantJSONError(t, do(t, noRedirects, "POST", lock+"/renew", `{"holder":"b","token":`+strconv.FormatUint(a.Token, 10)+`}`), http.StatusConflict)
	r = do(t, noRedirects, "POST", lock+"/renew", `{"holder":"a","token":`+strconv.FormatUint(a.Token, 10)+`}`)
	if renewed := decode[lockResponse](t, r); r.code != 200 || renewed.Token != a.Token || renewed.ExpiresIndex <= a.ExpiresIndex {
		t.Fatalf("renew: %d %+v", r.code, renewed)
	}

	fence := func(token uint64) []string {
		return []string{"X-Fence", "jobs/nightly:" + strconv.FormatUint(token, 10)}
	}
	wantStatus(t, do(t, noRedirects, "PUT", leader.URL()+"/kv/report", "by a", fence(a.Token)...), http.StatusOK)
	wantJSONError(t, do(t, noRedirects, "PUT", leader.URL()+"/kv/report", "forged", fence(a.Token+1)...), http.StatusConflict)
	for _, bad := range []string{"jobs/nightly", "jobs/nightly:", "jobs/nightly:x", ":5", "L:0"} {
		wantJSONError(t, do(t, noRedirects, "PUT", leader.URL()+"/kv/report", "x", "X-Fence", bad), http.StatusBadRequest)
	}

	// b waits for the lock; a releases it; b gets it with a larger token.
	waiting := goDo(noRedirects, "POST", lock+"/acquire", `{"holder":"b","ttl_ms":60000,"wait_ms":10000}`)
	time.Sleep(200 * time.Millisecond)
	wantStatus(t, do(t, noRedirects, "POST", lock+"/release", `{"holder":"a","token":`+strconv.FormatUint(a.Token, 10)+`}`), http.StatusOK)
	b := <-waiting
	wantStatus(t, b, http.StatusOK)
	if got := decode[lockResponse](t, b); got.Holder != "b" || got.Token <= a.Token {
		t.Fatalf("the waiting acquire got %+v, want b with a token above %d", got, a.Token)
	}
	wantJSONError(t, do(t, noRedirects, "PUT", leader.URL()+"/kv/report", "by a, late", fence(a.Token)...), http.StatusConflict)
	if r := do(t, noRedirects, "GET", leader.URL()+"/kv/report", ""); r.body != "by a" {
		t.Fatalf("the fenced key holds %q", r.body)
	}
	// A short lease ends by itself on the log's clock.
	wantStatus(t, do(t, noRedirects, "POST", leader.URL()+"/locks/short/acquire", `{"holder":"c","ttl_ms":300}`), http.StatusOK)
	eventually(t, 5*time.Second, "the short lease to end", func() bool {
		return do(t, noRedirects, "GET", leader.URL()+"/locks/short", "").code == http.StatusNotFound
	})
}

func TestWatchesOverHTTP(t *testing.T) {
	_, leader := startTestCluster(t)
	kv := leader.URL() + "/kv/"
	read := do(t, noRedirects, "GET", kv+"cfg/a", "")
	from := raftIndex(t, read)
	watching := goDo(noRedirects, "GET", kv+"cfg/a?watch=1&wait=10&after="+strconv.FormatUint(from, 10), "")
	time.Sleep(100 * time.Millisecond)
	at := raftIndex(t, do(t, noRedirects, "PUT", kv+"cfg/a", "1"))
	r := <-watching
	wantStatus(t, r, http.StatusOK)
	w := decode[watchResponse](t, r)
	if w.Key != "cfg/a" || w.Value == nil || *w.Value != "1" || w.Index != at || raftIndex(t, r) != at {
		t.Fatalf("watch answered %s (X-Raft-Index %d), want cfg/a=1 at %d", r.body, raftIndex(t, r), at)
	}
	// Read, then write, then watch from the read: the write is not missed.
	wantStatus(t, do(t, noRedirects, "DELETE", kv+"cfg/a", ""), http.StatusOK)
	r = do(t, noRedirects, "GET", kv+"cfg/a?watch=1&wait=10&after="+strconv.FormatUint(w.Index, 10), "")
	if d := decode[watchResponse](t, r); d.Value != nil || d.Index <= w.Index {
		t.Fatalf("watch after a delete: %s", r.body)
	}
	r = do(t, noRedirects, "GET", kv+"cfg/a?watch=1&wait=0.2&after="+r.header.Get("X-Raft-Index"), "")
	if r.code != http.StatusNoContent || raftIndex(t, r) == 0 {
		t.Fatalf("a watch with nothing to report: %d %q", r.code, r.body)
	}
	// A prefix watch sees keys under the prefix only.
	after := r.header.Get("X-Raft-Index")
	wantStatus(t, do(t, noRedirects, "PUT", kv+"other", "x"), http.StatusOK)
	wantStatus(t, do(t, noRedirects, "PUT", kv+"cfg/b", "2"), http.StatusOK)
	r = do(t, noRedirects, "GET", leader.URL()+"/kv?prefix=cfg/&watch=1&wait=10&after="+after, "")
	if p := decode[watchResponse](t, r); p.Key != "cfg/b" || len(p.Changes) != 1 || *p.Changes[0].Value != "2" {
		t.Fatalf("prefix watch: %s", r.body)
	}
}
