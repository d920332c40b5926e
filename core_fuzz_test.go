package raft

import (
	"math/rand/v2"
	"testing"
	"time"
)

// fuzzInput reads small numbers out of the fuzzer's bytes; past the end it
// reads zeros, so every input is a complete run.
type fuzzInput struct {
	b []byte
	i int
}

func (in *fuzzInput) more() bool { return in.i < len(in.b) }

func (in *fuzzInput) next() byte {
	if in.i >= len(in.b) {
		return 0
	}
	in.i++
	return in.b[in.i-1]
}

// number returns mostly small values, near the log's real indexes and
// terms, and now and then a huge one.
func (in *fuzzInput) number() uint64 {
	v := in.next()
	if v == 255 {
		return 1<<64 - 1 - uint64(in.next())
	}
	return uint64(v % 24)
}

// message builds a message a faulty or hostile peer could send: decodable,
// addressed to node 1, but with arbitrary contents.
func (in *fuzzInput) message() Message {
	m := Message{
		Type: MessageType(1 + in.next()%uint8(msgTypeCount-1)),
		From: NodeID(in.next() % 5), To: 1,
		Term: in.number(), Index: in.number(), LogTerm: in.number(), Commit: in.number(),
		Reject: in.next()%2 == 0, ConflictIndex: in.number(), ConflictTerm: in.number(),
		ReadSeq: in.number(),
	}
	n := int(in.next() % 4)
	contiguous := in.next()%4 != 0
	for k := range n {
		e := Entry{Index: m.Index + 1 + uint64(k), Term: in.number(), Type: EntryType(in.next() % 3), Data: []byte{byte(k)}}
		if !contiguous {
			e.Index = in.number()
		}
		m.Entries = append(m.Entries, e)
	}
	return m
}

// FuzzCoreSurvivesHostileMessages feeds one node of a three-node cluster
// arbitrary message sequences (with ticks, proposals and persistence in
// between), as a buggy or malicious peer could send them. The node must
// neither panic nor stop, its term never goes back, and it keeps a log it
// can read back whole: whatever a peer sends, it refuses what is
// impossible.
func FuzzCoreSurvivesHostileMessages(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 1, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1, 0})
	f.Add([]byte{0, 200, 3, 5, 2, 3, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0})
	// Node 1 times out, wins its pre-vote and vote from node 2, leads, and
	// hears node 2 acknowledge its no-op: a start inside the leader's paths.
	f.Add([]byte{0, 7,
		3, 3, 2, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0,
		3, 1, 2, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0,
		3, 5, 2, 2, 2, 0, 0, 1, 0, 0, 0, 0, 0})
	f.Fuzz(stepHostileMessages)
}

// stepHostileMessages runs one fuzz input against node 1 of three.
func stepHostileMessages(t *testing.T, data []byte) {
	storage := NewMemoryStorage()
	conf := Configuration{Servers: []Server{{ID: 1}, {ID: 2}, {ID: 3}}}
	if err := Bootstrap(storage, conf); err != nil {
		t.Fatal(err)
	}
	c, err := NewCore(CoreConfig{ID: 1, ElectionTicks: 3, Rand: rand.NewPCG(1, 2), Logger: discardLogger()}, storage)
	if err != nil {
		t.Fatal(err)
	}
	in := &fuzzInput{b: data}
	var term uint64
	for in.more() {
		began := time.Now()
		var last Message
		switch op := in.next() % 8; op {
		case 0:
			for range in.next() % 8 {
				c.TickElection()
			}
		case 1:
			c.TickHeartbeat()
		case 2:
			_, _, _ = c.Propose([]byte("cmd"))
		default:
			last = in.message()
			c.Step(last)
		}
		rd := c.Ready()
		if err := storage.Save(rd.HardState, rd.Entries); err != nil {
			t.Fatalf("the core asked to persist entries storage refuses: %v", err)
		}
		if k := len(rd.Entries); k > 0 {
			c.Persisted(rd.Entries[k-1].Index, rd.Entries[k-1].Term)
		}
		if k := len(rd.Committed); k > 0 {
			c.Applied(rd.Committed[k-1].Index)
		}
		if d := time.Since(began); d > 200*time.Millisecond {
			t.Fatalf("one step took %v: %v", d, last)
		}
		st := c.Status()
		if st.Err != nil {
			t.Fatalf("a peer's message stopped the node: %v", st.Err)
		}
		if st.Term < term {
			t.Fatalf("term went back from %d to %d", term, st.Term)
		}
		term = st.Term
		if st.Commit > st.LastIndex {
			t.Fatalf("commit index %d beyond the last index %d", st.Commit, st.LastIndex)
		}
		if _, err := c.Entries(1, st.LastIndex+1); err != nil {
			t.Fatalf("log unreadable after a peer's message: %v", err)
		}
	}
}
