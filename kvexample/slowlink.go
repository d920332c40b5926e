package main

import (
	"sync"
	"time"

	"github.com/raftline/raft"
)

// This file holds back messages on slowed links: TEACHING-ONLY, for the
// single-process mode's lab (lab.go), where a learner slows the link
// between two nodes and watches heartbeats arrive late, a follower fall
// behind, or an election start. The library's in-memory network delays
// every link alike, so the delay is applied here, where a node receives.

// delayLines delays messages per sender. Each sender gets a queue and a
// goroutine: a link's messages keep their order, as on a slow TCP
// connection, and one slow link does not hold back the others.
type delayLines struct {
	out     chan<- raft.Message
	stop    <-chan struct{}
	tracker *contactTracker
	lines   map[raft.NodeID]chan delayed
	wg      sync.WaitGroup
}

// delayed is a message and when it may be delivered.
type delayed struct {
	m   raft.Message
	due time.Time
}

// delayLineSize bounds a slowed link's queue; past it messages are lost,
// as on a congested link.
const delayLineSize = 4096

// add queues m for delivery after d.
func (l *delayLines) add(m raft.Message, d time.Duration) {
	line, ok := l.lines[m.From]
	if !ok {
		if l.lines == nil {
			l.lines = make(map[raft.NodeID]chan delayed)
		}
		line = make(chan delayed, delayLineSize)
		l.lines[m.From] = line
		l.wg.Add(1)
		go l.run(line)
	}
	select {
	case line <- delayed{m, time.Now().Add(d)}:
	default:
	}
}

// run delivers one link's messages, each at its time.
func (l *delayLines) run(line <-chan delayed) {
	defer l.wg.Done()
	for {
		select {
		case d := <-line:
			t := time.NewTimer(time.Until(d.due))
			select {
			case <-t.C:
			case <-l.stop:
				t.Stop()
				return
			}
			l.tracker.receivedFrom(d.m, time.Now())
			select {
			case l.out <- d.m:
			case <-l.stop:
				return
			}
		case <-l.stop:
			return
		}
	}
}

// wait waits for every line's goroutine, which end once stop is closed.
func (l *delayLines) wait() { l.wg.Wait() }

// slowLinks is the lab's table of slowed links: a delay for each (from, to)
// pair, one way.
type slowLinks struct {
	mu    sync.Mutex
	delay map[[2]raft.NodeID]time.Duration
}

// set slows the link from → to by d (0: back to normal).
func (s *slowLinks) set(from, to raft.NodeID, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.delay == nil {
		s.delay = make(map[[2]raft.NodeID]time.Duration)
	}
	if d <= 0 {
		delete(s.delay, [2]raft.NodeID{from, to})
		return
	}
	s.delay[[2]raft.NodeID{from, to}] = d
}

// get returns the delay of the link from → to.
func (s *slowLinks) get(from, to raft.NodeID) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delay[[2]raft.NodeID{from, to}]
}

// clear puts every link back to normal.
func (s *slowLinks) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.delay)
}

// list returns the slowed links.
func (s *slowLinks) list() map[[2]raft.NodeID]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[[2]raft.NodeID]time.Duration, len(s.delay))
	for k, v := range s.delay {
		out[k] = v
	}
	return out
}
