package raft

import (
	"fmt"
	"sync"
)

// EventType names what an Event reports.
type EventType uint8

const (
	// EventLeaderChanged: the node learned of a new leader, or lost track
	// of the leader (Leader == None).
	EventLeaderChanged EventType = iota + 1
	// EventRoleChanged: this node became follower, candidate or leader.
	EventRoleChanged
	// EventPeerUnreachable: as leader, this node has not heard from Peer
	// for a whole election timeout: a failure detector, so an operator (or
	// a supervisor) can act on a dead machine.
	EventPeerUnreachable
	// EventPeerReachable: an unreachable Peer answered again.
	EventPeerReachable
	// EventFailed: the node stopped taking part because its storage failed
	// (or a log invariant broke); Status.Err says why. It acknowledges
	// nothing more and must be restarted once the cause is fixed.
	EventFailed
	// EventRemoved: a committed configuration no longer lists this node.
	// It stops campaigning; its process may exit.
	EventRemoved
)

// String returns the event type's name.
func (t EventType) String() string {
	switch t {
	case EventLeaderChanged:
		return "leader-changed"
	case EventRoleChanged:
		return "role-changed"
	case EventPeerUnreachable:
		return "peer-unreachable"
	case EventPeerReachable:
		return "peer-reachable"
	case EventFailed:
		return "failed"
	case EventRemoved:
		return "removed"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Event is a change in a node's view of the cluster, delivered to
// subscribers (see Node.Subscribe).
type Event struct {
	Type   EventType
	Node   NodeID // the node reporting the event
	Term   uint64
	Role   Role   // EventRoleChanged
	Leader NodeID // EventLeaderChanged
	Peer   NodeID // EventPeerUnreachable, EventPeerReachable
}

// String formats the event for logs.
func (e Event) String() string {
	switch e.Type {
	case EventLeaderChanged:
		return fmt.Sprintf("node %d: leader is %d (term %d)", e.Node, e.Leader, e.Term)
	case EventRoleChanged:
		return fmt.Sprintf("node %d: became %s (term %d)", e.Node, e.Role, e.Term)
	case EventFailed:
		return fmt.Sprintf("node %d: failed (term %d)", e.Node, e.Term)
	default:
		return fmt.Sprintf("node %d: %s %d (term %d)", e.Node, e.Type, e.Peer, e.Term)
	}
}

// subscribers fans events out without ever blocking the node: a subscriber
// whose channel is full misses the event (and the miss is counted).
type subscribers struct {
	mu      sync.Mutex
	next    int
	chans   map[int]chan<- Event
	dropped uint64
}

func (s *subscribers) add(ch chan<- Event) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.chans == nil {
		s.chans = make(map[int]chan<- Event)
	}
	id := s.next
	s.next++
	s.chans[id] = ch
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.chans, id)
	}
}

func (s *subscribers) publish(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.chans {
		select {
		case ch <- e:
		default:
			s.dropped++
		}
	}
}
