package raft

import (
	"context"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// faultMode is what a faulty link does to writes.
type faultMode int

const (
	faultNone  faultMode = iota
	faultDrop            // writes vanish: a partition that TCP cannot see
	faultDelay           // each write waits first: a slow link
	faultStall           // writes block until the fault is lifted or the deadline passes
	faultReset           // the next writes send half their bytes, then reset the connection
)

// linkFault is one directed link's fault.
type linkFault struct {
	mode   faultMode
	delay  time.Duration
	resets int // for faultReset: how many writes still to cut
}

// faultNet injects faults into the connections of a TCP cluster. Messages
// flow from dialer to acceptor only, so a fault on the connections node a
// dials to node b is a fault of the link a→b. Inbound reads can be slowed
// per node through the listener wrapper.
type faultNet struct {
	mu        sync.Mutex
	addrs     map[string]NodeID // listen address → node
	links     map[[2]NodeID]*linkFault
	readDelay map[NodeID]time.Duration
	changed   chan struct{} // closed on every change, to wake stalled writes
}

func newFaultNet() *faultNet {
	return &faultNet{
		addrs: map[string]NodeID{}, links: map[[2]NodeID]*linkFault{},
		readDelay: map[NodeID]time.Duration{}, changed: make(chan struct{}),
	}
}

func (f *faultNet) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// set puts a fault on the link from→to.
func (f *faultNet) set(from, to NodeID, lf linkFault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links[[2]NodeID{from, to}] = &lf
	f.notifyLocked()
}

// isolate drops everything between id and others, both ways.
func (f *faultNet) isolate(id NodeID, others []NodeID) {
	for _, o := range others {
		if o != id {
			f.set(id, o, linkFault{mode: faultDrop})
			f.set(o, id, linkFault{mode: faultDrop})
		}
	}
}

// slowReads delays every read of node id's accepted connections.
func (f *faultNet) slowReads(id NodeID, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readDelay[id] = d
}

// heal lifts every fault.
func (f *faultNet) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.links)
	clear(f.readDelay)
	f.notifyLocked()
}

// fault returns the link's current fault, consuming one reset, and the
// channel closed at the next change.
func (f *faultNet) fault(from, to NodeID) (linkFault, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lf := f.links[[2]NodeID{from, to}]
	if lf == nil {
		return linkFault{}, f.changed
	}
	out := *lf
	if lf.mode == faultReset {
		if lf.resets <= 0 {
			return linkFault{}, f.changed
		}
		lf.resets--
	}
	return out, f.changed
}

// dialer returns node from's TCPConfig.Dial.
func (f *faultNet) dialer(from NodeID) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		f.mu.Lock()
		to := f.addrs[addr]
		f.mu.Unlock()
		return &faultConn{Conn: c, net: f, from: from, to: to, closed: make(chan struct{})}, nil
	}
}

// listener wraps node id's listener so its accepted connections can be
// slowed.
func (f *faultNet) listener(ln net.Listener, id NodeID) net.Listener {
	return &faultListener{Listener: ln, net: f, id: id}
}

type faultListener struct {
	net.Listener
	net *faultNet
	id  NodeID
}

func (l *faultListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: c, net: l.net, reader: l.id, closed: make(chan struct{})}, nil
}

// faultConn is a net.Conn whose writes (dialed side) or reads (accepted
// side) suffer the faultNet's faults.
type faultConn struct {
	net.Conn
	net      *faultNet
	from, to NodeID // dialed side: the link
	reader   NodeID // accepted side: the node reading

	mu        sync.Mutex
	wDeadline time.Time
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.reader != None {
		c.net.mu.Lock()
		d := c.net.readDelay[c.reader]
		c.net.mu.Unlock()
		if d > 0 {
			time.Sleep(d)
		}
	}
	return c.Conn.Read(p)
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.from == None {
		return c.Conn.Write(p)
	}
	for {
		lf, changed := c.net.fault(c.from, c.to)
		switch lf.mode {
		case faultDrop:
			return len(p), nil
		case faultDelay:
			time.Sleep(lf.delay)
			return c.Conn.Write(p)
		case faultReset:
			n, _ := c.Conn.Write(p[:len(p)/2])
			if tc, ok := c.Conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // close with RST, not FIN
			}
			c.Close()
			return n, syscall.ECONNRESET
		case faultStall:
			if err := c.waitChange(changed); err != nil {
				return 0, err
			}
			continue
		}
		return c.Conn.Write(p)
	}
}

// waitChange blocks a stalled write until the faults change, the conn
// closes, or its write deadline passes.
func (c *faultConn) waitChange(changed <-chan struct{}) error {
	c.mu.Lock()
	deadline := c.wDeadline
	c.mu.Unlock()
	var expire <-chan time.Time
	if !deadline.IsZero() {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		expire = timer.C
	}
	select {
	case <-changed:
		return nil
	case <-c.closed:
		return net.ErrClosed
	case <-expire:
		return os.ErrDeadlineExceeded
	}
}

func (c *faultConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.wDeadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *faultConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wDeadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *faultConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
