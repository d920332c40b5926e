package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests watch the library's snapshots and compaction through the
// service: /status, the flags, the files in --data.

// statusOf asks node n for GET /status.
func statusOf(t *testing.T, n *kvNode) statusResponse {
	t.Helper()
	var st statusResponse
	r := do(t, noRedirects, "GET", n.URL()+"/status", "")
	wantStatus(t, r, http.StatusOK)
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestFollowerCutOffPastCompactionCatchesUpBySnapshot(t *testing.T) {
	c, leader := startTestClusterWith(t, func(cfg *nodeConfig) {
		// Snapshots every 20 entries, not once a second, so that 60 quick
		// writes compact past the follower.
		cfg.SnapshotEntries, cfg.SnapshotTrailing, cfg.SnapshotInterval = 20, 5, -1
	})
	f := follower(c, leader)
	c.network.Isolate(f.id)
	behind := statusOf(t, f).LastIndex
	for i := range 60 {
		wantStatus(t, do(t, followRedirects, "PUT", leader.URL()+fmt.Sprintf("/kv/k%02d", i), fmt.Sprint(i)), http.StatusOK)
	}
	var st statusResponse
	eventually(t, 10*time.Second, "the leader to compact past the cut-off follower", func() bool {
		st = statusOf(t, leader)
		return st.FirstIndex > behind+1
	})
	if st.SnapshotIndex == 0 || st.SnapshotIndex > st.CommitIndex || st.LastIndex < st.CommitIndex || st.FirstIndex > st.SnapshotIndex+1 {
		t.Fatalf("leader's /status after compaction: snapshot %d, first %d, commit %d, last %d",
			st.SnapshotIndex, st.FirstIndex, st.CommitIndex, st.LastIndex)
	}
	c.network.Heal()
	eventually(t, 10*time.Second, "the follower to catch up", func() bool {
		v, ok, _ := f.sm.Get("k59")
		return ok && string(v) == "59"
	})
	if got := f.raft.Status().Metrics.SnapshotsReceived; got == 0 {
		t.Fatal("the follower caught up without receiving a snapshot: the leader still had the entries it missed")
	}
	for i := range 60 {
		if v, ok, _ := f.sm.Get(fmt.Sprintf("k%02d", i)); !ok || string(v) != fmt.Sprint(i) {
			t.Fatalf("after the snapshot the follower has k%02d = %q (%v)", i, v, ok)
		}
	}
}

func TestSnapshotFlagsSetThePolicy(t *testing.T) {
	for _, tc := range []struct {
		name         string
		flags        []string
		wantSnapshot bool
	}{
		{"every 10 entries", []string{"--snapshot-entries", "10", "--snapshot-trailing", "0"}, true},
		{"never", []string{"--snapshot-entries", "0"}, false},
		{"the default, 8192", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, stop := runInBackground(t, append([]string{"--port", "0"}, tc.flags...)...)
			eventually(t, 10*time.Second, "the startup banner", func() bool { return strings.Contains(stdout.String(), "Ctrl-C") })
			putURL, _, _ := curlLines(t, stdout.String())
			for i := range 30 {
				wantStatus(t, do(t, followRedirects, "PUT", fmt.Sprintf("%s%d", putURL, i), "v"), http.StatusOK)
			}
			statusURL := strings.Replace(putURL, "/kv/greeting", "/status", 1)
			var st statusResponse
			snapshotted := func() bool {
				_ = json.Unmarshal([]byte(do(t, noRedirects, "GET", statusURL, "").body), &st)
				return st.SnapshotIndex > 0
			}
			if tc.wantSnapshot {
				eventually(t, 10*time.Second, "a snapshot", snapshotted)
			} else if snapshotted() {
				t.Fatalf("a snapshot at %d after 30 writes", st.SnapshotIndex)
			}
			if code := stop(); code != 0 {
				t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
			}
		})
	}
}

func TestRestartRestoresFromTheSnapshotFilesInData(t *testing.T) {
	data := t.TempDir()
	args := []string{"--port", "0", "--data", data, "--snapshot-entries", "10", "--snapshot-trailing", "2"}
	stdout, stderr, stop := runInBackground(t, args...)
	eventually(t, 10*time.Second, "the startup banner", func() bool { return strings.Contains(stdout.String(), "Ctrl-C") })
	putURL, _, _ := curlLines(t, stdout.String())
	for i := range 40 {
		wantStatus(t, do(t, followRedirects, "PUT", fmt.Sprintf("%s%d", putURL, i), fmt.Sprint(i)), http.StatusOK)
	}
	eventually(t, 10*time.Second, "snapshot files on every node", func() bool {
		for i := 1; i <= localSize; i++ {
			if files, _ := filepath.Glob(filepath.Join(data, fmt.Sprintf("node%d", i), snapshotDir, "*.snap")); len(files) == 0 {
				return false
			}
		}
		return true
	})
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
	}

	stdout, stderr, stop = runInBackground(t, args...)
	eventually(t, 10*time.Second, "the startup banner", func() bool { return strings.Contains(stdout.String(), "Ctrl-C") })
	_, _, getURL := curlLines(t, stdout.String())
	base := strings.TrimSuffix(getURL, "/kv/greeting")
	// The node found its snapshot. (Its log may still start at 1: the
	// WAL deletes whole segments only, and this one is not full.)
	var st statusResponse
	if err := json.Unmarshal([]byte(do(t, noRedirects, "GET", base+"/status", "").body), &st); err != nil || st.SnapshotIndex < 30 {
		t.Errorf("after the restart /status shows snapshot %d (%v): want the node restored from a snapshot of 40 writes", st.SnapshotIndex, err)
	}
	for i := range 40 {
		if r := do(t, followRedirects, "GET", fmt.Sprintf("%s/kv/greeting%d", base, i), ""); r.code != http.StatusOK || r.body != fmt.Sprint(i) {
			t.Fatalf("after the restart greeting%d = %d %q", i, r.code, r.body)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
	}
}
