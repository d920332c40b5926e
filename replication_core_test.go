package raft

import (
	"fmt"
	"testing"
)

// slowDiskRound runs the core cluster until quiet, with followers whose
// append acknowledgements (which wait for their disk) arrive only after
// every other message: a heartbeat answer overtakes the append answer, as
// it does in a durable cluster. It returns the appends carrying entries
// the leader sent.
func (cc *coreCluster) slowDiskRound(leader NodeID) int {
	appends := 0
	var fast, slow []Message
	for steps := 0; ; steps++ {
		if steps > 100000 {
			cc.t.Fatal("cluster did not settle")
		}
		for _, id := range cc.ids {
			c := cc.cores[id]
			rd := c.takeReady()
			if err := cc.stores[id].Save(rd.hardState, rd.entries); err != nil {
				cc.t.Fatal(err)
			}
			if n := len(rd.entries); n > 0 {
				c.persisted(rd.entries[n-1].Index, rd.entries[n-1].Term)
			}
			if n := len(rd.committed); n > 0 {
				c.appliedTo(rd.committed[n-1].Index)
			}
			fast = append(fast, rd.messages...)
			slow = append(slow, rd.afterPersist...)
		}
		var m Message
		switch {
		case len(fast) > 0:
			m, fast = fast[0], fast[1:]
		case len(slow) > 0:
			m, slow = slow[0], slow[1:]
		default:
			return appends
		}
		if m.From == leader && m.Type == MsgApp && len(m.Entries) > 0 {
			appends++
		}
		cc.cores[m.To].step(m)
	}
}

func TestHeartbeatAnswerOvertakingAnAppendAnswerResendsNothing(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	ld := cc.cores[1]
	ld.tickHeartbeat() // an idle heartbeat round first
	cc.stabilize()
	const proposals = 12
	appends := 0
	for i := range proposals {
		ld.appendEntries([]Entry{{Data: []byte(fmt.Sprint(i))}})
		ld.tickHeartbeat() // the heartbeat leaves right behind the append
		appends += cc.slowDiskRound(1)
	}
	if want := proposals * 2; appends != want {
		t.Fatalf("%d proposals to 2 followers took %d appends, want %d (one per entry per follower)", proposals, appends, want)
	}
	if got := ld.log.committed; got != ld.log.lastIndex() {
		t.Fatalf("committed %d of %d", got, ld.log.lastIndex())
	}
}

func TestLostAppendIsResentAfterAHeartbeatIntervalWithoutProgress(t *testing.T) {
	cc := newCoreCluster(t, 3, 1)
	cc.elect(1)
	ld := cc.cores[1]
	ld.tickHeartbeat()
	cc.stabilize()
	cc.drop = func(m Message) bool { return m.Type == MsgApp && m.To == 3 && len(m.Entries) > 0 }
	ld.appendEntries([]Entry{{Data: []byte("lost")}})
	cc.stabilize()
	cc.drop = nil
	last := ld.log.lastIndex()
	for range 2 {
		ld.tickHeartbeat()
		cc.stabilize()
	}
	if got := ld.peer(3).match; got != last {
		t.Fatalf("after two heartbeat rounds follower 3 matches %d, want %d: the lost append was never resent", got, last)
	}
}
