package raft_test

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/raftline/raft"
)

// driven is one server of ExampleCore: a Core, the storage it persists
// to, and the commands it has applied.
type driven struct {
	core    *raft.Core
	storage *raft.MemoryStorage
	applied []string
}

// cluster is ExampleCore's three servers and the network between them: a
// queue of messages in flight, delivered one at a time in order.
type cluster struct {
	servers  map[raft.NodeID]*driven
	inFlight []raft.Message
}

// drive carries out everything one server's core asks for, keeping the
// two rules of a driver: hard state and entries are durable before any
// message leaves, and acknowledgements (AfterPersist) leave only after
// the entries are durable, which is then reported with Persisted.
func (c *cluster) drive(s *driven) {
	for s.core.HasReady() {
		rd := s.core.Ready()
		// A MemoryStorage's Save is durable on return (as durable as
		// memory gets); a WAL's would be an fsync.
		if err := s.storage.Save(rd.HardState, rd.Entries); err != nil {
			panic(err)
		}
		c.inFlight = append(c.inFlight, rd.Messages...)
		if n := len(rd.Entries); n > 0 {
			s.core.Persisted(rd.Entries[n-1].Index, rd.Entries[n-1].Term)
		}
		c.inFlight = append(c.inFlight, rd.AfterPersist...)
		for _, e := range rd.Committed {
			// Configuration and no-op entries are the core's own; the
			// state machine applies the others.
			if e.Type == raft.EntryNormal {
				s.applied = append(s.applied, string(e.Data))
			}
			s.core.Applied(e.Index)
		}
		// A fuller driver also handles rd.Reads, rd.Events, and the
		// snapshot fields (see Core): this one neither reads nor
		// snapshots.
	}
}

// deliver hands every message in flight to its addressee, and whatever
// those messages make the cores do, until the network is quiet.
func (c *cluster) deliver() {
	for len(c.inFlight) > 0 {
		m := c.inFlight[0]
		c.inFlight = c.inFlight[1:]
		to := c.servers[m.To]
		to.core.Step(m)
		c.drive(to)
	}
}

// The pure Raft core, driven by hand: three Cores, each with its own
// MemoryStorage, connected by a message queue. Nothing runs on its own (no
// goroutines, no clock), so every run is the same: time passes only when
// the driver ticks a core, and messages arrive only when it delivers them.
// This is how package simtest drives the cores under simulated faults, and
// how Node drives its own core with goroutines for timers and I/O.
func ExampleCore() {
	conf := raft.Configuration{Servers: []raft.Server{{ID: 1}, {ID: 2}, {ID: 3}}}
	c := &cluster{servers: map[raft.NodeID]*driven{}}
	for id := raft.NodeID(1); id <= 3; id++ {
		storage := raft.NewMemoryStorage()
		if err := raft.Bootstrap(storage, conf); err != nil {
			panic(err)
		}
		// A fixed source of randomness for the election timeouts: the
		// same run every time.
		core, err := raft.NewCore(raft.CoreConfig{ID: id, Rand: rand.NewPCG(uint64(id), 42)}, storage)
		if err != nil {
			panic(err)
		}
		c.servers[id] = &driven{core: core, storage: storage}
	}

	// Tick every core's election clock until one of them has become
	// leader: the first whose randomized timeout runs out campaigns.
	var leader raft.NodeID
	for ticks := 1; leader == raft.None; ticks++ {
		for id := raft.NodeID(1); id <= 3; id++ {
			c.servers[id].core.TickElection()
			c.drive(c.servers[id])
		}
		c.deliver()
		for id := raft.NodeID(1); id <= 3; id++ {
			if c.servers[id].core.Status().Role == raft.Leader {
				leader = id
				fmt.Printf("node %d leads term %d after %d ticks\n", id, c.servers[id].core.Status().Term, ticks)
			}
		}
	}

	// Propose on the leader, and deliver until every message is answered.
	first, _, err := c.servers[leader].core.Propose([]byte("x=1"), []byte("y=2"))
	if err != nil {
		panic(err)
	}
	fmt.Println("proposed at index", first)
	c.drive(c.servers[leader])
	c.deliver()
	// The leader learns that the entries committed from the followers'
	// acknowledgements; the followers learn it from the leader's next
	// message: a heartbeat.
	c.servers[leader].core.TickHeartbeat()
	c.drive(c.servers[leader])
	c.deliver()

	for id := raft.NodeID(1); id <= 3; id++ {
		st := c.servers[id].core.Status()
		fmt.Printf("node %d: %-8s commit %d, applied %s\n", id, st.Role, st.Commit, strings.Join(c.servers[id].applied, " "))
	}
	// Output:
	// node 1 leads term 2 after 10 ticks
	// proposed at index 3
	// node 1: leader   commit 4, applied x=1 y=2
	// node 2: follower commit 4, applied x=1 y=2
	// node 3: follower commit 4, applied x=1 y=2
}
