//go:build unix

package main

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// This file gives TestTutorial its ports without a race for them.
//
// The tutorial's commands name their ports, and number them: 800$i. So the
// test replaces each of the tutorial's blocks of ports (8080-8082,
// 7001-7009, 8001-8009) with a block of ten, P0-P9, and binds all thirty
// ports at the start, holding them:
//
//   - the 700x and 800x blocks for the whole run. The tutorial's shell
//     runs ./kvd, which is this test binary (see tutorialKVD): it asks the
//     test's socket broker for the sockets of its --raft-addr and
//     --http-addr, and executes the real kvexample on them, with
//     --raft-listen-fd and --http-listen-fd. When that process exits
//     (stopped, killed with -9, removed from the cluster), the broker sees
//     its connection close and takes the sockets back: it accepts and
//     closes every connection to them until the next ./kvd on that
//     address, so that a client or a peer of a dead node fails at once,
//     as at a closed port, instead of waiting in the listen queue.
//   - the 808x block until just before the single-process cluster starts:
//     that mode binds its ports itself (it takes no inherited sockets), a
//     moment later.
//
// The blocks are between 2000 and 5999, below the kernel's range for
// ephemeral ports, so that no one asking for port 0 is ever given one of
// the 808x ports in that moment.

// The environment of a ./kvd started by the tutorial's shell.
const (
	tutorialKVDEnv    = "RAFTLINE_TUTORIAL_KVD"    // the real kvexample binary
	tutorialBrokerEnv = "RAFTLINE_TUTORIAL_BROKER" // the broker's unix socket
)

func init() {
	// A test binary started as the tutorial's kvd does nothing else.
	if bin := os.Getenv(tutorialKVDEnv); bin != "" {
		err := tutorialKVD(bin, os.Getenv(tutorialBrokerEnv), os.Args)
		fmt.Fprintln(os.Stderr, "tutorial kvd:", err)
		os.Exit(1)
	}
}

// tutorialKVD executes the kvexample binary bin with args, on the held
// sockets the broker hands over for its --raft-addr and --http-addr. It
// keeps the process ID, so the tutorial's $! and kill reach the node, and
// returns only on error.
func tutorialKVD(bin, broker string, args []string) error {
	env := slicesDeleteEnv(os.Environ(), tutorialKVDEnv, tutorialBrokerEnv)
	// A node outlives no shell of the tutorial, even one killed with the
	// test binary.
	if err := dieWithParentSelf(); err != nil {
		return err
	}
	raftAddr, httpAddr := flagValue(args[1:], "raft-addr"), flagValue(args[1:], "http-addr")
	if broker == "" || raftAddr == "" && httpAddr == "" {
		// The single-process mode, or a command that fails anyway.
		return syscall.Exec(bin, args, env)
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: broker, Net: "unix"})
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(conn, "%s %s\n", orDash(raftAddr), orDash(httpAddr)); err != nil {
		return err
	}
	buf, oob := make([]byte, 64), make([]byte, syscall.CmsgSpace(2*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return fmt.Errorf("the broker: %w", err)
	}
	var fds []int
	if oobn > 0 {
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return fmt.Errorf("the broker's answer: %v", err)
		}
		if fds, err = syscall.ParseUnixRights(&msgs[0]); err != nil {
			return err
		}
	}
	names := strings.Fields(string(buf[:n]))
	if len(names) != len(fds) {
		return fmt.Errorf("the broker answered %q with %d sockets", buf[:n], len(fds))
	}
	// The descriptors received are closed on exec; a dup is not.
	var flags []string
	for i, name := range names {
		fd, err := syscall.Dup(fds[i])
		if err != nil {
			return err
		}
		flags = append(flags, "--"+name+"-listen-fd", strconv.Itoa(fd))
	}
	// The connection stays open in the node, and closes when it exits:
	// that is how the broker knows to take its sockets back.
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var dupErr error
	if err := raw.Control(func(fd uintptr) { _, dupErr = syscall.Dup(int(fd)) }); err != nil {
		return err
	}
	if dupErr != nil {
		return dupErr
	}
	return syscall.Exec(bin, append(append([]string{args[0]}, flags...), args[1:]...), env)
}

// flagValue returns the value of flag name in args (-name V, --name V,
// -name=V or --name=V), or "".
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// slicesDeleteEnv returns env without the variables names.
func slicesDeleteEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			keep = keep && name != n
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// portBlock is ten loopback ports P0-P9, held by the test.
type portBlock struct {
	prefix string // P
	socks  []*heldSocket
}

// holdPortBlocks binds n blocks of ten ports between 2000 and 5999, each
// held until the test ends or it is released.
func holdPortBlocks(t *testing.T, n int) []*portBlock {
	t.Helper()
	var blocks []*portBlock
	for _, p := range rand.Perm(400) {
		if b := holdPortBlock(200 + p); b != nil {
			t.Cleanup(b.release)
			blocks = append(blocks, b)
			if len(blocks) == n {
				return blocks
			}
		}
	}
	t.Fatal("found no free blocks of ten ports between 2000 and 5999")
	return nil
}

// holdPortBlock binds the ports prefix0-prefix9, or none.
func holdPortBlock(prefix int) *portBlock {
	b := &portBlock{prefix: strconv.Itoa(prefix)}
	for d := range 10 {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: prefix*10 + d})
		if err != nil {
			b.release()
			return nil
		}
		b.socks = append(b.socks, &heldSocket{ln: ln, addr: ln.Addr().String()})
	}
	return b
}

// release closes the block's sockets, if still open.
func (b *portBlock) release() {
	for _, h := range b.socks {
		h.stopDraining()
		h.ln.Close()
	}
	b.socks = nil
}

// socketBroker hands held sockets to the ./kvd processes the tutorial's
// shell starts, and takes them back when those exit.
type socketBroker struct {
	path  string
	ln    *net.UnixListener
	socks map[string]*heldSocket // by address, 127.0.0.1:port
	wg    sync.WaitGroup

	mu     sync.Mutex
	closed bool
	server map[*heldSocket]*net.UnixConn // the connection of the process serving a socket
	conns  map[*net.UnixConn]bool
	errs   []error
	handed int // sockets handed over
}

// startSocketBroker serves socks (which it drains while no process has
// them) on a unix socket in dir, until the test ends.
func startSocketBroker(t *testing.T, dir string, socks []*heldSocket) *socketBroker {
	t.Helper()
	b := &socketBroker{path: filepath.Join(dir, "broker.sock"), socks: map[string]*heldSocket{},
		server: map[*heldSocket]*net.UnixConn{}, conns: map[*net.UnixConn]bool{}}
	for _, h := range socks {
		b.socks[h.addr] = h
		h.drain()
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: b.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	b.ln = ln
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(func() {
		b.mu.Lock()
		b.closed = true
		ln.Close()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
		t.Logf("the socket broker handed %d held sockets to ./kvd processes", b.handed)
		if err := errors.Join(b.errs...); err != nil {
			t.Errorf("the socket broker: %v", err)
		}
	})
	return b
}

func (b *socketBroker) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			c.Close()
			return
		}
		b.conns[c] = true
		b.wg.Add(1)
		b.mu.Unlock()
		go b.handle(c)
	}
}

// handle serves one ./kvd: it hands over the sockets it asks for, then
// waits for its connection to close.
func (b *socketBroker) handle(c *net.UnixConn) {
	defer b.wg.Done()
	defer c.Close()
	if err := b.handOver(c); err != nil {
		b.mu.Lock()
		if !b.closed {
			b.errs = append(b.errs, err)
		}
		b.mu.Unlock()
		return
	}
	var buf [1]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			break // the process exited
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, c)
	for h, server := range b.server {
		if server == c {
			delete(b.server, h)
			if !b.closed {
				h.drain()
			}
		}
	}
}

func (b *socketBroker) handOver(c *net.UnixConn) error {
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading a request: %w", err)
	}
	addrs := strings.Fields(line)
	if len(addrs) != 2 {
		return fmt.Errorf("request %q", line)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var names []string
	var fds []int
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	for i, name := range []string{"raft", "http"} {
		h := b.socks[addrs[i]]
		if h == nil {
			continue // not one of the tutorial's: the node binds it itself
		}
		h.stopDraining()
		fd, err := dupCloseOnExec(h)
		if err != nil {
			return err
		}
		names, fds = append(names, name), append(fds, fd)
		b.server[h] = c // a previous process on it has exited
		b.handed++
	}
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix([]byte(strings.Join(names, " ")+"\n"), oob, nil)
	return err
}

// dupCloseOnExec returns a new descriptor of h's socket.
func dupCloseOnExec(h *heldSocket) (int, error) {
	raw, err := h.ln.SyscallConn()
	if err != nil {
		return 0, err
	}
	var nfd int
	var dupErr error
	err = raw.Control(func(fd uintptr) {
		// Under ForkLock no process started meanwhile inherits it.
		syscall.ForkLock.RLock()
		defer syscall.ForkLock.RUnlock()
		if nfd, dupErr = syscall.Dup(int(fd)); dupErr == nil {
			syscall.CloseOnExec(nfd)
		}
	})
	if err != nil {
		return 0, err
	}
	return nfd, dupErr
}
