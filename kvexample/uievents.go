package main

import (
	"fmt"
	"time"
)

// This file tells the /ui page's event stream what happened between two
// pictures of the cluster: elections, new leaders, nodes going down and
// coming back, a leader losing touch with a peer. Comparing pictures,
// rather than subscribing to each node's raft events, works the same in
// both modes, for every node the page shows.

// uiEvent is one line of the page's event stream.
type uiEvent struct {
	At   int64  `json:"at"` // Unix milliseconds
	Kind string `json:"kind"`
	Node uint64 `json:"node"`
	Text string `json:"text"`
}

// Kinds of events, which the page colours.
const (
	kindElection = "election"
	kindLeader   = "leader"
	kindDown     = "down"
	kindUp       = "up"
	kindPeer     = "peer"
	kindTerm     = "term"
)

// diffViews returns the events between two pictures, in node order; none
// for the first picture (prev nil).
func diffViews(prev, cur []nodeView, now time.Time) []uiEvent {
	if prev == nil {
		return nil
	}
	before := make(map[uint64]nodeView, len(prev))
	for _, v := range prev {
		before[v.ID] = v
	}
	var out []uiEvent
	add := func(kind string, node uint64, format string, args ...any) {
		out = append(out, uiEvent{At: now.UnixMilli(), Kind: kind, Node: node, Text: fmt.Sprintf(format, args...)})
	}
	for _, v := range cur {
		p, seen := before[v.ID]
		switch {
		case !seen:
			continue
		case p.Up && !v.Up:
			add(kindDown, v.ID, "node %d is down (%s)", v.ID, v.Down)
			continue
		case !p.Up && v.Up:
			add(kindUp, v.ID, "node %d is back: %s in term %d, log up to %d", v.ID, v.Role, v.Term, v.Last)
			continue
		case !v.Up:
			continue
		}
		roleChanged := p.Role != v.Role
		if roleChanged {
			switch v.Role {
			case "pre-candidate":
				add(kindElection, v.ID, "node %d heard no leader for an election timeout: asks whether it could win (pre-vote)", v.ID)
			case "candidate":
				add(kindElection, v.ID, "node %d is a candidate in term %d: it voted for itself and asks the others", v.ID, v.Term)
			case "leader":
				add(kindLeader, v.ID, "node %d won the election: leader of term %d", v.ID, v.Term)
			case "follower":
				if p.Role == "leader" {
					add(kindLeader, v.ID, "node %d stepped down: follower in term %d", v.ID, v.Term)
				}
			}
		}
		if !roleChanged && v.ElectionsStarted > p.ElectionsStarted {
			add(kindElection, v.ID, "node %d campaigned (term %d)", v.ID, v.Term)
		}
		if v.Term > p.Term && v.Role == "follower" {
			add(kindTerm, v.ID, "node %d moved to term %d", v.ID, v.Term)
		}
		if v.Leader != p.Leader && v.Leader != 0 && v.Leader != v.ID {
			add(kindLeader, v.ID, "node %d follows node %d (term %d)", v.ID, v.Leader, v.Term)
		}
		out = append(out, peerEvents(p, v, now)...)
	}
	return out
}

// peerEvents tells when a leader loses or regains touch with a peer.
func peerEvents(p, v nodeView, now time.Time) []uiEvent {
	if v.Role != "leader" || p.Role != "leader" {
		return nil
	}
	was := map[uint64]bool{}
	for _, pp := range p.Peers {
		was[pp.ID] = pp.Unreachable
	}
	var out []uiEvent
	for _, pp := range v.Peers {
		switch old, ok := was[pp.ID]; {
		case ok && !old && pp.Unreachable:
			out = append(out, uiEvent{At: now.UnixMilli(), Kind: kindPeer, Node: v.ID,
				Text: fmt.Sprintf("leader %d cannot reach node %d: no answer for an election timeout", v.ID, pp.ID)})
		case ok && old && !pp.Unreachable:
			out = append(out, uiEvent{At: now.UnixMilli(), Kind: kindPeer, Node: v.ID,
				Text: fmt.Sprintf("leader %d hears from node %d again", v.ID, pp.ID)})
		}
	}
	return out
}
