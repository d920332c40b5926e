package main

import (
	"errors"
	"net"
	"sync"
)

// This file keeps a node's HTTP port open across the lab's crash and
// restart (single-process mode): the socket is listened on once, and each
// connection is handed to whichever server stands behind the port now — the
// running node's, or, while it is crashed, one that says so. Closing and
// binding the port again would let another program take it meanwhile.

// portHolder owns a listening socket and routes its connections.
type portHolder struct {
	ln   net.Listener
	mu   sync.Mutex
	cur  *handoff // the running node's, nil while it is down
	down *handoff // the stand-in's, always there
	done chan struct{}
}

// newPortHolder starts routing ln's connections.
func newPortHolder(ln net.Listener) *portHolder {
	h := &portHolder{ln: ln, done: make(chan struct{})}
	h.down = newHandoff(ln.Addr(), nil)
	go h.run()
	return h
}

// run accepts connections until the socket is closed.
func (h *portHolder) run() {
	defer close(h.done)
	for {
		conn, err := h.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			h.down.Close()
			return
		}
		h.mu.Lock()
		to := h.cur
		h.mu.Unlock()
		if to == nil || !to.give(conn) {
			if !h.down.give(conn) {
				conn.Close()
			}
		}
	}
}

// attach returns a listener for the node now starting: it gets every new
// connection until it is closed.
func (h *portHolder) attach() net.Listener {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := newHandoff(h.ln.Addr(), func(l *handoff) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.cur == l {
			h.cur = nil
		}
	})
	h.cur = l
	return l
}

// standIn is the listener of the server that answers while the node is
// down.
func (h *portHolder) standIn() net.Listener { return h.down }

// Close closes the socket and waits for the router to stop.
func (h *portHolder) Close() error {
	err := h.ln.Close()
	<-h.done
	return err
}

// handoff is a net.Listener fed connections by a portHolder.
type handoff struct {
	addr    net.Addr
	conns   chan net.Conn
	closed  chan struct{}
	once    sync.Once
	onClose func(*handoff)
}

func newHandoff(addr net.Addr, onClose func(*handoff)) *handoff {
	return &handoff{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{}), onClose: onClose}
}

// give hands conn to the listener's server; false once it is closed.
func (l *handoff) give(conn net.Conn) bool {
	select {
	case l.conns <- conn:
		return true
	case <-l.closed:
		return false
	}
}

// Accept implements net.Listener.
func (l *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener: the port stays open, and new connections
// go elsewhere.
func (l *handoff) Close() error {
	l.once.Do(func() {
		close(l.closed)
		if l.onClose != nil {
			l.onClose(l)
		}
	})
	return nil
}

// Addr implements net.Listener.
func (l *handoff) Addr() net.Addr { return l.addr }
