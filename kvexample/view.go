package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/raftline/raft"
)

// This file builds a node's view for the /ui page: what one card shows —
// its Raft state, the tail of its log, a few of its keys, and the messages
// it received from each peer.

// nodeView is one node as the /ui page draws it (also GET /ui/node).
type nodeView struct {
	ID  uint64 `json:"id"`
	URL string `json:"url"`
	// Up is false for a node that does not answer; Down then says why.
	Up   bool   `json:"up"`
	Down string `json:"down,omitempty"`

	Role          string         `json:"role"`
	Term          uint64         `json:"term"`
	Vote          uint64         `json:"vote"`
	Leader        uint64         `json:"leader"`
	Commit        uint64         `json:"commit"`
	Applied       uint64         `json:"applied"`
	Last          uint64         `json:"last"`
	First         uint64         `json:"first"`
	SnapshotIndex uint64         `json:"snapshot_index"`
	Voters        []uint64       `json:"voters"`
	Lease         bool           `json:"lease"`
	Health        string         `json:"health"`
	Entries       []entryView    `json:"entries"`
	Keys          []keyView      `json:"keys"`
	KeysMore      bool           `json:"keys_more"`
	Peers         []peerProgress `json:"peers,omitempty"`
	// Received counts messages by sender and type: the page draws the
	// flows between nodes from how fast these grow.
	Received []flowView `json:"received"`
	// ElectionsStarted counts this node's campaigns, so the page can tell
	// an election that was too quick to be seen as a role.
	ElectionsStarted uint64 `json:"elections_started"`
}

// entryView is one log entry on a card.
type entryView struct {
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	Text  string `json:"text"`
}

// keyView is a key and its value on a card, both shortened.
type keyView struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// flowView is how many messages of one type arrived from one node.
type flowView struct {
	From  uint64 `json:"from"`
	Type  string `json:"type"`
	Count uint64 `json:"count"`
}

// Sizes of a card: enough log to see terms change and the commit point
// move, few enough keys to read at a glance.
const (
	viewEntries = 14
	viewKeys    = 6
	viewText    = 40 // characters of a key or value shown
)

// view returns this node's view.
func (s *server) view(ctx context.Context, url string) nodeView {
	st := s.raft.Status()
	v := nodeView{
		ID: uint64(s.id), URL: url, Up: st.Err == nil, Role: st.Role.String(), Term: st.Term, Vote: uint64(st.Vote),
		Leader: uint64(st.Leader), Commit: st.Commit, Applied: st.Applied, Last: st.LastIndex, First: st.FirstIndex,
		SnapshotIndex: st.SnapshotIndex, Voters: []uint64{}, Lease: st.Lease, Health: s.health(ctx, st, time.Now()),
		ElectionsStarted: st.Metrics.ElectionsStarted,
	}
	if st.Err != nil {
		v.Down = st.Err.Error()
	}
	for _, id := range st.Config.Voters() {
		v.Voters = append(v.Voters, uint64(id))
	}
	for _, id := range slices.Sorted(maps.Keys(st.Peers)) {
		v.Peers = append(v.Peers, peerProgress{ID: uint64(id), progressView: progressOf(st, id)})
	}
	v.Entries = s.logTail(st)
	keys, next, _ := s.sm.List("", "", viewKeys, 64<<10)
	v.Keys, v.KeysMore = make([]keyView, 0, len(keys)), next != ""
	for _, it := range keys {
		v.Keys = append(v.Keys, keyView{Key: clip(it.Key), Value: clip(string(it.Value))})
	}
	v.Received = []flowView{}
	if s.contact != nil {
		flows := s.contact.flows()
		for _, k := range slices.SortedFunc(maps.Keys(flows), func(a, b flowKey) int {
			return cmpUint(uint64(a.From)<<8|uint64(a.Type), uint64(b.From)<<8|uint64(b.Type))
		}) {
			v.Received = append(v.Received, flowView{From: uint64(k.From), Type: k.Type.String(), Count: flows[k]})
		}
	}
	return v
}

// logTail returns the last entries of the log, oldest first.
func (s *server) logTail(st raft.Status) []entryView {
	out := []entryView{}
	if s.log == nil || st.LastIndex < st.FirstIndex {
		return out
	}
	lo := max(st.FirstIndex, st.LastIndex-min(st.LastIndex, viewEntries-1))
	// Compaction may run between Status and this read; then the card
	// simply shows no entries until the next frame.
	ents, err := s.log.Entries(lo, st.LastIndex+1, 1<<20)
	if err != nil {
		return out
	}
	for _, e := range ents {
		out = append(out, entryView{Index: e.Index, Term: e.Term, Text: describeEntry(e)})
	}
	return out
}

// describeEntry says in a few words what an entry does.
func describeEntry(e raft.Entry) string {
	if e.Type == raft.EntryConfig {
		conf, err := raft.DecodeConfiguration(e.Data)
		if err != nil {
			return "configuration (unreadable)"
		}
		return fmt.Sprintf("config: voters %v", conf.Voters())
	}
	if len(e.Data) == 0 {
		return "no-op (a new leader's first entry)"
	}
	c, err := decodeCommand(e.Data)
	if err != nil {
		return "unreadable command"
	}
	switch c.Op {
	case opPut:
		return fmt.Sprintf("put %s = %s", clip(c.Key), clip(string(c.Value)))
	case opDelete:
		return "delete " + clip(c.Key)
	case opAppend:
		return fmt.Sprintf("append %s += %s", clip(c.Key), clip(string(c.Value)))
	case opCAS:
		return fmt.Sprintf("cas %s → %s", clip(c.Key), clip(string(c.Value)))
	case opIncr:
		return fmt.Sprintf("incr %s by %d", clip(c.Key), c.Delta)
	case opRegister:
		return fmt.Sprintf("node %d serves HTTP at %s", c.NodeID, c.HTTPAddr)
	case opRetire:
		return fmt.Sprintf("retire node %d", c.NodeID)
	case opTick:
		return "tick (the log's clock)"
	}
	return fmt.Sprintf("%s %s", c.Op, clip(c.Key))
}

// clip shortens s for a card.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if r := []rune(s); len(r) > viewText {
		return string(r[:viewText-1]) + "…"
	}
	return s
}
