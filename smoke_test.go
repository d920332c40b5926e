package raft

import (
	"testing"
	"testing/synctest"
)

func TestSmokeThreeNodesAgree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, nil)
		c.checkOneLeader()
		for i := range 5 {
			c.one(string(rune('a'+i)), 3)
		}
	})
}
