package main

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/raftline/raft"
)

// hbTap measures heartbeat round trips on the wire, leader → follower →
// leader, without changing how the nodes send: it wraps the TCP
// transports' connections (TCPConfig.Dial for the connections a node
// dials, TCPConfig.Listener for those it accepts) and reads the frames
// passing through them. Connections carry messages one way, so a leader's
// MsgHeartbeat leaves on a connection it dialed and arrives on one the
// follower accepted, and the MsgHeartbeatResp goes back the same way round.
// All nodes run in this process, on one clock, so each heartbeat gives four
// times: the leader's transport hands the heartbeat's frame to the socket
// (Write), the follower's transport reads it (Read), the follower's
// transport writes the answer, the leader's transport reads it. The round
// trip is the last minus the first; "there" is the second minus the first,
// "back" the last minus the second (the follower's handling included).
//
// Pairing: an answer echoes its heartbeat's ReadSeq, but without reads
// every heartbeat of a term carries the same ReadSeq, so each of the four
// events is queued per (leader, follower) and matched first in, first out
// among those of equal term and ReadSeq (one with a lower term or ReadSeq
// still queued was lost). Heartbeats and answers both go on the urgent
// lane, one connection each way, so their order is kept; a heartbeat lost
// on the way would shift the pairing, so the caller resets a follower's
// queues when it stops or restarts it, and reports the transports' drop
// counters and the unpaired events.
type hbTap struct {
	mu     sync.Mutex
	queues map[hbPair]*[3][]hbEvent // sent, arrived, answered
	rec    *hbRecorder
}

type hbPair struct{ leader, follower raft.NodeID }

type hbEvent struct {
	term, seq uint64
	at        time.Time
}

const (
	hbSentQ = iota
	hbArrivedQ
	hbAnsweredQ
)

// hbRecorder collects the round trips of one measurement window.
type hbRecorder struct {
	// since: only heartbeats sent at or after it count.
	since   time.Time
	samples []hbSample
	lost    map[raft.NodeID]int
}

// hbSample is one answered heartbeat.
type hbSample struct {
	follower         raft.NodeID
	sent             time.Time
	rtt, there, back time.Duration
}

// stats summarizes the round trips to follower of heartbeats sent in
// [from, to) (a zero to: no end).
func (r *hbRecorder) stats(follower raft.NodeID, from, to time.Time) hbStats {
	var h, there, back hist
	for _, s := range r.samples {
		if s.follower == follower && !s.sent.Before(from) && (to.IsZero() || s.sent.Before(to)) {
			h.record(s.rtt.Nanoseconds())
			there.record(s.there.Nanoseconds())
			back.record(s.back.Nanoseconds())
		}
	}
	return hbStats{N: h.n.Load(), P50ms: ms(h.quantile(0.5)), P99ms: ms(h.quantile(0.99)), MaxMs: ms(float64(h.max.Load())),
		ThereP50ms: ms(there.quantile(0.5)), ThereP99ms: ms(there.quantile(0.99)),
		BackP50ms: ms(back.quantile(0.5)), BackP99ms: ms(back.quantile(0.99))}
}

// hbStats is a summary of heartbeat round trips, in milliseconds.
type hbStats struct {
	N          uint64  `json:"n"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	ThereP50ms float64 `json:"there_p50_ms"`
	ThereP99ms float64 `json:"there_p99_ms"`
	BackP50ms  float64 `json:"back_p50_ms"`
	BackP99ms  float64 `json:"back_p99_ms"`
}

func ms(ns float64) float64 { return float64(int64(ns/1e3)) / 1e3 }

func newHBTap() *hbTap { return &hbTap{queues: map[hbPair]*[3][]hbEvent{}} }

// record starts a new measurement window and returns the previous one.
func (t *hbTap) record(since time.Time) *hbRecorder {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev := t.rec
	t.rec = &hbRecorder{since: since, lost: map[raft.NodeID]int{}}
	return prev
}

// stop ends the window and returns it.
func (t *hbTap) stop() *hbRecorder {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev := t.rec
	t.rec = nil
	return prev
}

// reset forgets the heartbeats pending to or from a node (one stopped or
// restarted: what was in flight is lost).
func (t *hbTap) reset(id raft.NodeID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p := range t.queues {
		if p.leader == id || p.follower == id {
			delete(t.queues, p)
		}
	}
}

// event queues one of the first three events of a heartbeat.
func (t *hbTap) event(q int, p hbPair, term, seq uint64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	qs := t.queues[p]
	if qs == nil {
		qs = new([3][]hbEvent)
		t.queues[p] = qs
	}
	qs[q] = append(qs[q], hbEvent{term, seq, at})
}

// pop removes and returns the event matching (term, seq) from the front of
// q, dropping older ones (counted as lost).
func pop(q *[]hbEvent, term, seq uint64) (hbEvent, int, bool) {
	lost := 0
	for len(*q) > 0 && ((*q)[0].term < term || ((*q)[0].term == term && (*q)[0].seq < seq)) {
		*q, lost = (*q)[1:], lost+1
	}
	if len(*q) == 0 || (*q)[0].term != term || (*q)[0].seq != seq {
		return hbEvent{}, lost, false
	}
	e := (*q)[0]
	*q = (*q)[1:]
	return e, lost, true
}

// received completes a heartbeat: the leader read the answer at at.
func (t *hbTap) received(p hbPair, term, seq uint64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	qs := t.queues[p]
	if qs == nil {
		return
	}
	var ev [3]hbEvent
	lost, ok := 0, true
	for i := range qs {
		e, l, found := pop(&qs[i], term, seq)
		ev[i], lost, ok = e, lost+l, ok && found
	}
	if r := t.rec; r != nil && ok && !ev[hbSentQ].at.Before(r.since) {
		r.samples = append(r.samples, hbSample{follower: p.follower, sent: ev[hbSentQ].at,
			rtt: at.Sub(ev[hbSentQ].at), there: ev[hbArrivedQ].at.Sub(ev[hbSentQ].at), back: at.Sub(ev[hbArrivedQ].at)})
	}
	if r := t.rec; r != nil {
		r.lost[p.follower] += lost
	}
}

// dialer returns node id's TCPConfig.Dial.
func (t *hbTap) dialer(id raft.NodeID) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &tapConn{Conn: c, tap: t, owner: id}, nil
	}
}

// listener returns node id's TCPConfig.Listener around ln.
func (t *hbTap) listener(id raft.NodeID, ln net.Listener) net.Listener {
	return &tapListener{Listener: ln, tap: t, owner: id}
}

type tapListener struct {
	net.Listener
	tap   *hbTap
	owner raft.NodeID
}

func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: c, tap: l.tap, owner: l.owner}, nil
}

// tapConn parses the frames written (out) or read (in) on a connection.
type tapConn struct {
	net.Conn
	tap   *hbTap
	owner raft.NodeID
	// in and out follow the two directions' frame streams.
	in, out frameReader
}

func (c *tapConn) Write(p []byte) (int, error) {
	now := time.Now()
	c.out.feed(p, func(m hbMsg) {
		if m.typ == raft.MsgHeartbeat {
			c.tap.event(hbSentQ, hbPair{m.from, m.to}, m.term, m.seq, now)
		} else {
			c.tap.event(hbAnsweredQ, hbPair{m.to, m.from}, m.term, m.seq, now)
		}
	})
	return c.Conn.Write(p)
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		now := time.Now()
		c.in.feed(p[:n], func(m hbMsg) {
			if m.typ == raft.MsgHeartbeat {
				c.tap.event(hbArrivedQ, hbPair{m.from, m.to}, m.term, m.seq, now)
			} else {
				c.tap.received(hbPair{m.to, m.from}, m.term, m.seq, now)
			}
		})
	}
	return n, err
}

// hbMsg is the part of a heartbeat (or its answer) the tap reads.
type hbMsg struct {
	typ       raft.MessageType
	from, to  raft.NodeID
	term, seq uint64
}

// frameReader follows the frame stream of one direction of a connection
// (codec.go: a 6-byte header, body length then version and kind, then the
// body) and decodes the leading fields of heartbeat messages; it skips
// every other body without looking at it.
type frameReader struct {
	hdr    [6]byte
	nhdr   int
	body   []byte // the prefix of a message body being collected
	want   int    // bytes of prefix to collect
	remain int    // body bytes still to pass after the prefix
}

// bodyPrefix is enough for a heartbeat's type, mask and ten uvarints.
const bodyPrefix = 1 + 10 + 10*10

const frameMessage = 3

func (f *frameReader) feed(p []byte, emit func(hbMsg)) {
	for len(p) > 0 {
		switch {
		case f.want > 0:
			k := min(f.want, len(p))
			f.body = append(f.body, p[:k]...)
			f.want -= k
			p = p[k:]
			if f.want == 0 {
				if m, ok := decodeHB(f.body); ok {
					emit(m)
				}
				f.body = f.body[:0]
			}
		case f.remain > 0:
			k := min(f.remain, len(p))
			f.remain -= k
			p = p[k:]
		default:
			k := copy(f.hdr[f.nhdr:], p)
			f.nhdr += k
			p = p[k:]
			if f.nhdr < len(f.hdr) {
				return
			}
			f.nhdr = 0
			size := int(binary.BigEndian.Uint32(f.hdr[0:4]))
			if f.hdr[5] == frameMessage && size > 0 {
				f.want = min(size, bodyPrefix)
				f.remain = size - f.want
			} else {
				f.remain = size
			}
		}
	}
}

// decodeHB decodes the type and fields of a message body's prefix if it is
// a heartbeat or a heartbeat's answer.
func decodeHB(b []byte) (hbMsg, bool) {
	typ := raft.MessageType(b[0])
	if typ != raft.MsgHeartbeat && typ != raft.MsgHeartbeatResp {
		return hbMsg{}, false
	}
	b = b[1:]
	mask, k := binary.Uvarint(b)
	if k <= 0 {
		return hbMsg{}, false
	}
	b = b[k:]
	var vals [10]uint64 // Group, From, To, Term, Index, LogTerm, Commit, ConflictIndex, ConflictTerm, ReadSeq
	for i := range vals {
		if mask&(1<<i) == 0 {
			continue
		}
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return hbMsg{}, false
		}
		vals[i], b = v, b[k:]
	}
	return hbMsg{typ: typ, from: raft.NodeID(vals[1]), to: raft.NodeID(vals[2]), term: vals[3], seq: vals[9]}, true
}

// pending returns the longest of a pair's queues: events not yet paired
// (one or two in flight is normal; more means the pairing broke).
func (t *hbTap) pending(p hbPair) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	if qs := t.queues[p]; qs != nil {
		for _, q := range qs {
			n = max(n, len(q))
		}
	}
	return n
}
