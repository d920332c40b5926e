package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCrashedNodeAnswers503OnItsPortAndRestartsWithItsLogAndWhatItMissed(t *testing.T) {
	c, leader := startTestCluster(t)
	f := follower(c, leader)
	wantStatus(t, do(t, followRedirects, "PUT", leader.URL()+"/kv/before", "1"), 200)
	wantStatus(t, do(t, noRedirects, "POST", leader.URL()+"/debug/crash?node="+labelID(f), ""), 202)
	var msg string
	eventually(t, 5*time.Second, "the crashed node's port to say it is crashed", func() bool {
		r := do(t, noRedirects, "GET", f.URL()+"/status", "")
		if r.code != http.StatusServiceUnavailable {
			return false
		}
		msg = wantJSONError(t, r, http.StatusServiceUnavailable)
		return true
	})
	if !strings.Contains(msg, "crashed") || !strings.Contains(msg, "/debug/restart") {
		t.Errorf("a crashed node's port says %q; want it to say it is crashed and how to restart it", msg)
	}
	wantStatus(t, do(t, followRedirects, "PUT", leader.URL()+"/kv/during", "2"), 200)

	wantStatus(t, do(t, noRedirects, "POST", leader.URL()+"/debug/restart?node="+labelID(f), ""), 202)
	eventually(t, 10*time.Second, "the restarted node to have both keys", func() bool {
		a := do(t, noRedirects, "GET", f.URL()+"/kv/before?stale=1", "")
		b := do(t, noRedirects, "GET", f.URL()+"/kv/during?stale=1", "")
		return a.code == 200 && a.body == "1" && b.code == 200 && b.body == "2"
	})
	var lab labView
	if err := json.Unmarshal([]byte(do(t, noRedirects, "GET", leader.URL()+"/debug/lab", "").body), &lab); err != nil || len(lab.Crashed) != 0 {
		t.Errorf("after the restart the lab says crashed %v (%v)", lab.Crashed, err)
	}
}

func TestLabRefusesMalformedFaultsWith400(t *testing.T) {
	_, leader := startTestCluster(t)
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/debug/crash", ""},
		{"POST", "/debug/crash?node=4", ""},
		{"POST", "/debug/restart?node=x", ""},
		{"POST", "/debug/isolate?node=0", ""},
		{"POST", "/debug/slow", `{"from":1,"to":1,"delay_ms":100}`},
		{"POST", "/debug/slow", `{"from":1,"to":2,"delay_ms":-5}`},
		{"POST", "/debug/slow", `{"from":1,"to":2,"delay_ms":100000}`},
		{"POST", "/debug/slow", `{"from":1,"to":9,"delay_ms":100}`},
		{"POST", "/debug/slow", `{"from":1,"to":2,"delay":100}`},
		{"POST", "/ui/write", `{"key":"","value":"v"}`},
		{"POST", "/ui/write", `not json`},
	} {
		wantJSONError(t, do(t, noRedirects, tc.method, leader.URL()+tc.path, tc.body), http.StatusBadRequest)
	}
	// Restarting a running node, or crashing a crashed one, is a conflict.
	wantJSONError(t, do(t, noRedirects, "POST", leader.URL()+"/debug/restart?node="+labelID(leader), ""), http.StatusConflict)
}

func TestSlowedLinkDelaysAFollowerUntilHealed(t *testing.T) {
	c, leader := startTestCluster(t)
	f := follower(c, leader)
	body := `{"from":` + labelID(leader) + `,"to":` + labelID(f) + `,"delay_ms":600,"both":true}`
	r := do(t, noRedirects, "POST", leader.URL()+"/debug/slow", body)
	wantStatus(t, r, 200)
	var lab labView
	if err := json.Unmarshal([]byte(r.body), &lab); err != nil || len(lab.Slow) != 2 || lab.Slow[0].DelayMS != 600 {
		t.Fatalf("after slowing one link both ways the lab lists %+v (%v)", lab.Slow, err)
	}
	// The other follower makes the majority, so a write is acknowledged
	// before the slowed follower has even received it.
	wantStatus(t, do(t, followRedirects, "PUT", leader.URL()+"/kv/late", "v"), 200)
	acked := time.Now()
	if r := do(t, noRedirects, "GET", f.URL()+"/kv/late?stale=1", ""); r.code != http.StatusNotFound {
		t.Errorf("the follower behind a %d ms link had the write at once (%d %q)", 600, r.code, r.body)
	}
	eventually(t, 5*time.Second, "the write to reach the slowed follower", func() bool {
		return do(t, noRedirects, "GET", f.URL()+"/kv/late?stale=1", "").code == http.StatusOK
	})
	if d := time.Since(acked); d < 300*time.Millisecond {
		t.Errorf("the write reached the follower behind a 600 ms link %v after it was acknowledged", d)
	}
	wantStatus(t, do(t, noRedirects, "POST", leader.URL()+"/debug/heal", ""), 200)
	if err := json.Unmarshal([]byte(do(t, noRedirects, "GET", leader.URL()+"/debug/lab", "").body), &lab); err != nil || len(lab.Slow) != 0 {
		t.Errorf("after heal the lab lists slowed links %+v (%v)", lab.Slow, err)
	}
}

func TestPageWriteBoxCommitsThroughTheLeaderFromAnyNode(t *testing.T) {
	c, leader := startTestCluster(t)
	f := follower(c, leader)
	var w writeResult
	r := do(t, noRedirects, "POST", f.URL()+"/ui/write", `{"key":"a/b","value":"v"}`)
	if err := json.Unmarshal([]byte(r.body), &w); err != nil || w.Status != 200 || w.Index == 0 || w.Via != leader.httpAddr {
		t.Fatalf("POST /ui/write on a follower answered %s: want status 200, an index, via the leader %s", r.body, leader.httpAddr)
	}
	if got := do(t, followRedirects, "GET", leader.URL()+"/kv/a%2Fb", ""); got.body != "v" {
		t.Errorf("after the write the key holds %q", got.body)
	}
}

func TestEventStreamSendsFramesOfEveryNodeAndTellsOfACrash(t *testing.T) {
	c, leader := startTestCluster(t)
	f := follower(c, leader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.URL()+"/ui/events", nil)
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	next := func() (event, data string) {
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data = line[len("data: "):]
			case line == "" && event != "":
				return event, data
			}
		}
		t.Fatalf("the stream ended: %v", sc.Err())
		return "", ""
	}
	ev, data := next()
	var fr frame
	if err := json.Unmarshal([]byte(data), &fr); ev != "state" || err != nil || len(fr.Nodes) != 3 || fr.Lab == nil {
		t.Fatalf("first event %q %s: want a state frame with 3 nodes and the lab", ev, data)
	}
	do(t, noRedirects, "POST", f.URL()+"/debug/crash?node="+labelID(leader), "")
	for {
		ev, data = next()
		if ev == "log" && strings.Contains(data, "is down") {
			break
		}
	}
	for {
		ev, data = next()
		if ev == "log" && strings.Contains(data, "won the election") {
			return
		}
	}
}

func TestPageUsesNothingFromOutsideTheBinary(t *testing.T) {
	err := fs.WalkDir(uiFiles, "ui", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := uiFiles.ReadFile(path)
		if err != nil {
			return err
		}
		// The SVG namespace is a name, not something fetched.
		text := strings.ReplaceAll(string(b), `"http://www.w3.org/2000/svg"`, "")
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s refers to %q: the page must work offline", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, leader := startTestCluster(t)
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/app.css"} {
		wantStatus(t, do(t, noRedirects, "GET", leader.URL()+p, ""), 200)
	}
}
