package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// These tests drive the HTTP API of a real 3-node cluster (in-memory raft
// network, HTTP on loopback ports), the way a client would.

func TestKeyValueOperationsThroughTheLeader(t *testing.T) {
	_, leader := startTestCluster(t)
	kv := leader.URL() + "/kv/"

	wantStatus(t, do(t, noRedirects, "PUT", kv+"greeting", "hello"), http.StatusOK)
	r := do(t, noRedirects, "GET", kv+"greeting", "")
	wantStatus(t, r, http.StatusOK)
	if r.body != "hello" {
		t.Fatalf("GET body %q, want hello", r.body)
	}
	if msg := wantJSONError(t, do(t, noRedirects, "GET", kv+"absent", ""), http.StatusNotFound); msg != "key not found" {
		t.Errorf("404 message %q", msg)
	}

	wantStatus(t, do(t, noRedirects, "DELETE", kv+"greeting", ""), http.StatusOK)
	wantJSONError(t, do(t, noRedirects, "GET", kv+"greeting", ""), http.StatusNotFound)
	wantStatus(t, do(t, noRedirects, "DELETE", kv+"greeting", ""), http.StatusOK) // absent: still 200

	if r := do(t, noRedirects, "POST", kv+"log/append", "a"); r.code != 200 || r.body != "a" {
		t.Fatalf("append to absent key: %d %q, want 200 a", r.code, r.body)
	}
	if r := do(t, noRedirects, "POST", kv+"log/append", "b"); r.code != 200 || r.body != "ab" {
		t.Fatalf("second append: %d %q, want 200 ab", r.code, r.body)
	}

	// A key may hold any bytes, "/" included when escaped.
	wantStatus(t, do(t, noRedirects, "PUT", kv+url.PathEscape("dir/file"), "x"), http.StatusOK)
	if r := do(t, noRedirects, "GET", kv+"dir%2Ffile", ""); r.body != "x" {
		t.Fatalf("escaped key: %d %q", r.code, r.body)
	}
}

func TestCompareAndSwapOverHTTP(t *testing.T) {
	_, leader := startTestCluster(t)
	cas := func(body string) casResponse {
		t.Helper()
		r := do(t, noRedirects, "POST", leader.URL()+"/kv/lock/cas", body)
		wantStatus(t, r, http.StatusOK)
		var out casResponse
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatalf("CAS answer %q: %v", r.body, err)
		}
		return out
	}
	show := func(c casResponse) string {
		if c.Value == nil {
			return "null"
		}
		return *c.Value
	}
	steps := []struct{ body, want string }{
		{`{"old": null, "new": "me"}`, "true me"},      // must be absent: it is
		{`{"old": null, "new": "you"}`, "false me"},    // must be absent: it is not
		{`{"old": "me", "new": "you"}`, "true you"},    // matches
		{`{"old": "me", "new": "again"}`, "false you"}, // does not match
	}
	for _, s := range steps {
		got := cas(s.body)
		if g := strings.Join([]string{map[bool]string{true: "true", false: "false"}[got.OK], show(got)}, " "); g != s.want {
			t.Errorf("CAS %s: got %s, want %s", s.body, g, s.want)
		}
	}
	// The answer's value is null when the key is absent.
	r := do(t, noRedirects, "POST", leader.URL()+"/kv/nothing/cas", `{"old": "x", "new": "y"}`)
	if strings.TrimSpace(r.body) != `{"ok":false,"value":null}` {
		t.Errorf("CAS on absent key answered %s", r.body)
	}
}

// A key and a value one byte over the API's limits.
var (
	longKey  = strings.Repeat("k", maxKeySize+1)
	bigValue = strings.Repeat("v", maxValueSize+1)
)

// malformedRequests are requests the API must refuse with a JSON error.
var malformedRequests = []struct {
	name, method, path, body string
	code                     int
}{
	{"empty key", "GET", "/kv/", "", 400},
	{"empty key on write", "PUT", "/kv/", "v", 400},
	{"oversized key", "PUT", "/kv/" + longKey, "v", 413},
	{"oversized key on read", "GET", "/kv/" + longKey, "", 413},
	{"oversized value", "PUT", "/kv/k", bigValue, 413},
	{"oversized append", "POST", "/kv/k/append", bigValue, 413},
	{"absent key with a raw slash", "GET", "/kv/a/b", "", 404},
	{"unknown path", "GET", "/nope", "", 404},
	{"method not allowed on key", "PATCH", "/kv/k", "", 405},
	{"method not allowed on cas", "PATCH", "/kv/k/cas", "", 405},
	{"post without an operation", "POST", "/kv/k", "", 405},
	{"method not allowed on a lock", "PUT", "/locks/L", "", 405},
	{"empty lock name", "GET", "/locks/", "", 400},
	{"lock: not JSON", "POST", "/locks/L/acquire", "holder=a", 400},
	{"lock: unknown field", "POST", "/locks/L/acquire", `{"holder":"a","ttl_ms":5,"x":1}`, 400},
	{"lock: no holder", "POST", "/locks/L/acquire", `{"ttl_ms":5}`, 400},
	{"lock: no ttl", "POST", "/locks/L/acquire", `{"holder":"a"}`, 400},
	{"lock: zero ttl", "POST", "/locks/L/acquire", `{"holder":"a","ttl_ms":0}`, 400},
	{"lock: negative ttl", "POST", "/locks/L/acquire", `{"holder":"a","ttl_ms":-1}`, 400},
	{"lock: wait too long", "POST", "/locks/L/acquire", `{"holder":"a","ttl_ms":5,"wait_ms":3600000}`, 400},
	{"lock: token on acquire", "POST", "/locks/L/acquire", `{"holder":"a","ttl_ms":5,"token":1}`, 400},
	{"lock: renew without token", "POST", "/locks/L/renew", `{"holder":"a"}`, 400},
	{"lock: release with ttl", "POST", "/locks/L/release", `{"holder":"a","token":1,"ttl_ms":5}`, 400},
	{"lock: trailing data", "POST", "/locks/L/release", `{"holder":"a","token":1} {}`, 400},
	{"incr: not a number", "POST", "/kv/n/incr", "one", 400},
	{"incr: a fraction", "POST", "/kv/n/incr", "1.5", 400},
	{"incr: too large", "POST", "/kv/n/incr", "99999999999999999999", 400},
	{"ttl: not a number", "PUT", "/kv/k?ttl=soon", "v", 400},
	{"ttl: zero", "PUT", "/kv/k?ttl=0", "v", 400},
	{"ttl: negative", "PUT", "/kv/k?ttl=-1", "v", 400},
	{"ttl: NaN", "PUT", "/kv/k?ttl=NaN", "v", 400},
	{"ttl: over a year", "PUT", "/kv/k?ttl=99999999", "v", 400},
	{"list: zero limit", "GET", "/kv?prefix=a&limit=0", "", 400},
	{"list: limit too large", "GET", "/kv?limit=1001", "", 400},
	{"list: post", "POST", "/kv", "", 405},
	{"watch: bad after", "GET", "/kv/k?watch=1&after=-1", "", 400},
	{"watch: bad wait", "GET", "/kv/k?watch=1&wait=forever", "", 400},
	{"watch: bad flag", "GET", "/kv/k?watch=yes", "", 400},
	{"method not allowed on status", "POST", "/status", "", 405},
	{"cas: not JSON", "POST", "/kv/k/cas", "old=a&new=b", 400},
	{"cas: array", "POST", "/kv/k/cas", `["a","b"]`, 400},
	{"cas: JSON null", "POST", "/kv/k/cas", `null`, 400},
	{"cas: missing old", "POST", "/kv/k/cas", `{"new": "b"}`, 400},
	{"cas: missing new", "POST", "/kv/k/cas", `{"old": "a"}`, 400},
	{"cas: null new", "POST", "/kv/k/cas", `{"old": "a", "new": null}`, 400},
	{"cas: number", "POST", "/kv/k/cas", `{"old": 1, "new": "b"}`, 400},
	{"cas: unknown field", "POST", "/kv/k/cas", `{"old": "a", "new": "b", "x": 1}`, 400},
	{"cas: trailing data", "POST", "/kv/k/cas", `{"old": "a", "new": "b"} {}`, 400},
	{"cas: truncated", "POST", "/kv/k/cas", `{"old": "a", "new": `, 400},
	{"cas: oversized new", "POST", "/kv/k/cas", `{"old": null, "new": "` + bigValue + `"}`, 413},
	{"read: unknown consistency", "GET", "/kv/k?consistency=strong", "", 400},
	{"read: bad stale flag", "GET", "/kv/k?stale=2", "", 400},
	{"read: stale contradicts", "GET", "/kv/k?stale=1&consistency=lease", "", 400},
	{"list: unknown consistency", "GET", "/kv?prefix=a&consistency=eventual", "", 400},
	{"lock read: unknown consistency", "GET", "/locks/L?consistency=x", "", 400},
	{"add: not JSON", "POST", "/cluster/add", "id=4", 400},
	{"add: no id", "POST", "/cluster/add", `{"raft_addr":"h:1"}`, 400},
	{"add: id zero", "POST", "/cluster/add", `{"id":0,"raft_addr":"h:1"}`, 400},
	{"add: negative id", "POST", "/cluster/add", `{"id":-4,"raft_addr":"h:1"}`, 400},
	{"add: unknown field", "POST", "/cluster/add", `{"id":4,"raft_addr":"h:1","voter":true}`, 400},
	{"add: raft address without port", "POST", "/cluster/add", `{"id":4,"raft_addr":"h"}`, 400},
	{"add: wildcard http address", "POST", "/cluster/add", `{"id":4,"raft_addr":"h:1","http_addr":"0.0.0.0:80"}`, 400},
	{"add: learner not a bool", "POST", "/cluster/add", `{"id":4,"raft_addr":"h:1","learner":"yes"}`, 400},
	{"add: two objects", "POST", "/cluster/add", `{"id":4,"raft_addr":"h:1"} {}`, 400},
	{"add: an array", "POST", "/cluster/add", `[4]`, 400},
	{"add: oversized", "POST", "/cluster/add", `{"id":4,"raft_addr":"` + strings.Repeat("h", 5000) + `:1"}`, 413},
	{"remove: no id", "POST", "/cluster/remove", `{}`, 400},
	{"remove: id a string", "POST", "/cluster/remove", `{"id":"4"}`, 400},
	{"remove: null", "POST", "/cluster/remove", `null`, 400},
	{"transfer: unknown field", "POST", "/cluster/transfer", `{"to":2}`, 400},
	{"transfer: fractional id", "POST", "/cluster/transfer", `{"id":2.5}`, 400},
	{"transfer: unknown server", "POST", "/cluster/transfer", `{"id":99}`, 400},
	{"cluster: wrong method", "GET", "/cluster/add", "", 405},
	{"cluster: post", "POST", "/cluster", "", 405},
}

func TestMalformedRequestsGetJSONErrors(t *testing.T) {
	c, leader := startTestCluster(t)
	base := leader.URL()
	long := longKey
	for _, tc := range malformedRequests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, noRedirects, tc.method, base+tc.path, tc.body)
			wantJSONError(t, r, tc.code)
			if tc.code == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
	// An invalid escape never reaches the API: net/http itself answers 400.
	// (Go's client refuses to send such a URL, so write the request by hand.)
	conn, err := net.Dial("tcp", leader.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /kv/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	status, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(status, "HTTP/1.1 400 ") {
		t.Errorf("invalid escape answered %q, want 400", status)
	}
	// A key of exactly 1024 bytes is fine, and none of the above reached
	// the store.
	wantStatus(t, do(t, noRedirects, "PUT", base+"/kv/"+long[1:], "v"), http.StatusOK)
	if _, found, _ := c.nodes[0].sm.Get("k"); found {
		t.Error("a rejected request changed the store")
	}
}

func TestBadSessionHeadersAreRejected(t *testing.T) {
	_, leader := startTestCluster(t)
	url := leader.URL() + "/kv/k"
	for _, h := range [][]string{
		{"X-Client-Id", "c"},
		{"X-Request-Seq", "1"},
		{"X-Client-Id", "c", "X-Request-Seq", "zero"},
		{"X-Client-Id", "c", "X-Request-Seq", "0"},
		{"X-Client-Id", "c", "X-Request-Seq", "-1"},
		{"X-Client-Id", strings.Repeat("c", maxClientIDSize+1), "X-Request-Seq", "1"},
	} {
		wantJSONError(t, do(t, noRedirects, "PUT", url, "v", h...), http.StatusBadRequest)
	}
	wantStatus(t, do(t, noRedirects, "PUT", url, "v", "X-Client-Id", "c", "X-Request-Seq", "2"), http.StatusOK)
	wantJSONError(t, do(t, noRedirects, "PUT", url, "w", "X-Client-Id", "c", "X-Request-Seq", "1"), http.StatusConflict)
}

func TestFollowerRedirectsWritesAndServesReadsItself(t *testing.T) {
	c, leader := startTestCluster(t)
	f := follower(c, leader)

	r := do(t, noRedirects, "PUT", f.URL()+"/kv/k?x=1", "v")
	wantJSONError(t, r, http.StatusTemporaryRedirect)
	if loc, want := r.header.Get("Location"), leader.URL()+"/kv/k?x=1"; loc != want {
		t.Fatalf("Location %q, want %q", loc, want)
	}
	// A client that follows redirects (curl -L) just works from any node.
	wantStatus(t, do(t, followRedirects, "PUT", f.URL()+"/kv/k", "v"), http.StatusOK)
	// A linearizable read on the follower is served there, after it asked
	// the leader for the read index and applied up to it: it sees the
	// write acknowledged just before, with no redirect.
	if r := do(t, noRedirects, "GET", f.URL()+"/kv/k", ""); r.code != http.StatusOK || r.body != "v" {
		t.Fatalf("linearizable GET on the follower: %d %q (Location %q)", r.code, r.body, r.header.Get("Location"))
	}
	// A stale read is answered by the follower itself once it applied
	// the write.
	eventually(t, 5*time.Second, "the follower to apply the write", func() bool {
		r := do(t, noRedirects, "GET", f.URL()+"/kv/k?stale=1", "")
		return r.code == http.StatusOK && r.body == "v"
	})
}

func TestStatusReportsTheDocumentedFields(t *testing.T) {
	c, leader := startTestCluster(t)
	for _, n := range c.nodes {
		r := do(t, noRedirects, "GET", n.URL()+"/status", "")
		wantStatus(t, r, http.StatusOK)
		var st map[string]any
		if err := json.Unmarshal([]byte(r.body), &st); err != nil {
			t.Fatal(err)
		}
		for _, field := range []string{"id", "state", "term", "leader", "commit_index", "applied_index", "voters"} {
			if _, ok := st[field]; !ok {
				t.Errorf("node %d: /status lacks %q: %s", n.id, field, r.body)
			}
		}
		var typed statusResponse
		_ = json.Unmarshal([]byte(r.body), &typed)
		wantState := "follower"
		if n == leader {
			wantState = "leader"
		}
		if typed.ID != uint64(n.id) || typed.State != wantState || len(typed.Voters) != 3 || typed.Term == 0 {
			t.Errorf("node %d status %s", n.id, r.body)
		}
	}
}
