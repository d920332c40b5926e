//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestStoppingALeaderHandsLeadershipOverUnlessToldNotTo(t *testing.T) {
	for _, tc := range []struct {
		flag         string
		wantHandOver bool
	}{
		{"--graceful-transfer=true", true},
		{"--graceful-transfer=false", false},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			socks := holdSockets(t, 6)
			var peers []string
			for i := range 3 {
				peers = append(peers, fmt.Sprintf("%d=%s", i+1, socks[i].addr))
			}
			stops := map[int]func() int{}
			for i := range 3 {
				_, _, stop := runInBackground(t, append([]string{"--id", fmt.Sprint(i + 1), "--peers", strings.Join(peers, ","),
					"--data", t.TempDir(), tc.flag}, listenArgs(t, socks[i], socks[3+i])...)...)
				stops[i+1] = stop
			}
			status := func(id int) statusResponse {
				var st statusResponse
				r, err := noRedirects.Get("http://" + socks[2+id].addr + "/status")
				if err == nil {
					defer r.Body.Close()
					_ = json.NewDecoder(r.Body).Decode(&st)
				}
				return st
			}
			leader := 0
			eventually(t, 15*time.Second, "a leader", func() bool {
				leader = int(status(1).Leader)
				return leader != 0 && status(leader).State == "leader"
			})
			if code := stops[leader](); code != 0 {
				t.Fatalf("leader %d exited with %d", leader, code)
			}
			// Within half a second of the leader's exit, a survivor knows a
			// new leader only if leadership was handed over: an election
			// takes a timeout (1 s) from the old leader's last heartbeat
			// first. (Half a second, not at once: the survivor that was not
			// the target may hear from the new leader a moment after the
			// old one, waiting for the target to win, has exited.)
			other := leader%3 + 1
			var st statusResponse
			handedOver := func() bool {
				st = status(other)
				return st.Leader != 0 && st.Leader != uint64(leader)
			}
			deadline := time.Now().Add(500 * time.Millisecond)
			for !handedOver() && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if got := st.Leader != 0 && st.Leader != uint64(leader); got != tc.wantHandOver {
				t.Fatalf("just after leader %d stopped, node %d follows %d (term %d); want a new leader already: %v",
					leader, other, st.Leader, st.Term, tc.wantHandOver)
			}
		})
	}
}
