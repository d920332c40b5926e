//go:build unix

package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// heldSocket is a listening socket on a loopback port that the test holds
// from creation to cleanup and hands to each node it starts there, through
// --raft-listen-fd or --http-listen-fd. Picking a port by listening on port
// 0 and closing the listener before the node binds it would let any other
// listener on the machine asking for port 0 be given the port in between.
type heldSocket struct {
	ln   *net.TCPListener
	addr string

	mu       sync.Mutex
	draining chan struct{} // closed when the drain goroutine ended; nil when not draining
}

// holdSockets opens n held sockets, closed when the test ends.
func holdSockets(t *testing.T, n int) []*heldSocket {
	t.Helper()
	var hs []*heldSocket
	for range n {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		h := &heldSocket{ln: ln, addr: ln.Addr().String()}
		t.Cleanup(func() {
			h.stopDraining()
			ln.Close()
		})
		hs = append(hs, h)
	}
	return hs
}

// fd returns a new descriptor of the socket, for a node started in this
// process: run takes it over and closes it.
func (h *heldSocket) fd(t *testing.T) int {
	t.Helper()
	h.stopDraining()
	raw, err := h.ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := raw.Control(func(s uintptr) { fd = dup(t, s) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// dup returns a close-on-exec copy of descriptor fd.
func dup(t *testing.T, fd uintptr) int {
	t.Helper()
	// Under ForkLock no child process started meanwhile (go build in
	// another test) inherits the copy before it is close-on-exec.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	nfd, err := syscall.Dup(int(fd))
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(nfd)
	return nfd
}

// listenArgs returns the flags that start a node in this process on the
// raft and HTTP sockets given.
func listenArgs(t *testing.T, raft, http *heldSocket) []string {
	t.Helper()
	return []string{"--raft-addr", raft.addr, "--raft-listen-fd", strconv.Itoa(raft.fd(t)),
		"--http-addr", http.addr, "--http-listen-fd", strconv.Itoa(http.fd(t))}
}

// file returns a new descriptor of the socket as a file, for a child
// process's ExtraFiles; the caller closes it once the child started. Unlike
// TCPListener.File it is not switched to blocking mode when exec reads its
// descriptor, which would make this process's copy of the socket block too.
func (h *heldSocket) file(t *testing.T) *os.File {
	t.Helper()
	return os.NewFile(uintptr(h.fd(t)), h.addr)
}

// drain accepts and closes every connection until the socket is handed to
// a node again, so that while no node serves the port a client fails at
// once, as at a closed port, instead of waiting in the listen queue for its
// timeout.
func (h *heldSocket) drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining != nil {
		return
	}
	done := make(chan struct{})
	h.draining = done
	go func() {
		defer close(done)
		for {
			c, err := h.ln.Accept()
			if err != nil {
				// The deadline set by stopDraining or the socket closed;
				// after any other error clients wait in the queue again.
				return
			}
			c.Close()
		}
	}()
}

// stopDraining ends drain, if running, without closing the socket.
func (h *heldSocket) stopDraining() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining == nil {
		return
	}
	h.ln.SetDeadline(time.Unix(1, 0))
	<-h.draining
	h.draining = nil
	h.ln.SetDeadline(time.Time{})
}

func TestInheritedHTTPSocketServesTheAPIAndHTTPAddrIsWhatIsPublished(t *testing.T) {
	socks := holdSockets(t, 2)
	_, port, _ := net.SplitHostPort(socks[1].addr)
	published := "localhost:" + port // the same socket, under another name
	stdout, stderr, stop := runInBackground(t, "--id", "1", "--peers", "1="+socks[0].addr, "--data", t.TempDir(),
		"--raft-addr", socks[0].addr, "--raft-listen-fd", strconv.Itoa(socks[0].fd(t)),
		"--http-addr", published, "--http-listen-fd", strconv.Itoa(socks[1].fd(t)))
	eventually(t, 10*time.Second, "the startup banner", func() bool { return strings.Contains(stdout.String(), "SIGTERM") })
	if !strings.Contains(stdout.String(), "node 1: http://"+published+" ") {
		t.Fatalf("the banner does not give --http-addr %s as the node's URL:\n%s", published, stdout.String())
	}
	putURL, value, _ := curlLines(t, stdout.String())
	eventually(t, 10*time.Second, "the PUT to succeed", func() bool {
		return do(t, followRedirects, "PUT", putURL, value).code == http.StatusOK
	})
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
	}
}

func TestInheritedDescriptorThatIsNotAListeningSocketIsRefusedWithExitCode1(t *testing.T) {
	socks := holdSockets(t, 2)
	f, err := os.Open(os.Args[0]) // any file that is not a socket
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stderr strings.Builder
	code := run(context.Background(), []string{"--id", "1", "--peers", "1=" + socks[0].addr, "--data", t.TempDir(),
		"--raft-addr", socks[0].addr, "--raft-listen-fd", strconv.Itoa(dup(t, f.Fd())),
		"--http-addr", socks[1].addr, "--http-listen-fd", strconv.Itoa(socks[1].fd(t))}, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "--raft-listen-fd") || !strings.Contains(stderr.String(), "not a listening socket") {
		t.Fatalf("a file given as --raft-listen-fd: exit %d, stderr %q; want 1 and an error naming the flag", code, stderr.String())
	}
}
