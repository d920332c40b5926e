// Command kvexample is a replicated key-value service built on the raftline
// raft library, written to be read: docs/tutorial.md follows a request
// through it.
//
// With no flags it runs a 3-node cluster inside one process, on the
// library's in-memory network, with node 1's HTTP API on 127.0.0.1:8080:
//
//	go run ./kvexample
//
// Its state is in memory unless --data DIR is given: then each node keeps a
// write-ahead log (package wal) in DIR/node1, DIR/node2, DIR/node3, and a
// restart with the same --data recovers the cluster.
//
// With --id, --raft-addr, --http-addr, --peers and --data it runs one node
// of a multi-process cluster, talking to its peers over the library's TCP
// transport and keeping its log in a WAL in --data:
//
//	go build -o kvd ./kvexample
//	./kvd --id 1 --raft-addr 127.0.0.1:7001 --http-addr 127.0.0.1:8001 \
//	      --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data /tmp/kvd1
//
// A node whose --data is empty bootstraps the cluster from --peers; one
// whose --data holds a log recovers from it, and --peers is then only a
// hint. Every node of one cluster must be given the same --cluster-id
// (default 1): the TCP handshake refuses a peer from another cluster, so
// two clusters sharing a network cannot mix up their messages.
//
// --raft-listen-fd N and --http-listen-fd N (multi-process mode, optional)
// make the node serve raft or HTTP on an already listening socket it
// inherited as file descriptor N, instead of binding --raft-addr or
// --http-addr; those flags still say what the node publishes. A supervisor
// or a test that keeps the sockets itself (os/exec's ExtraFiles: the first
// extra file is descriptor 3) thereby never releases a port that another
// program could take before the node binds it again:
//
//	./kvd --id 1 --raft-addr 127.0.0.1:7001 --raft-listen-fd 3 \
//	      --http-addr 127.0.0.1:8001 --http-listen-fd 4 ...
//
// Files, in reading order: main.go (flags, startup, signals), cluster.go
// (wiring a node together), server.go, routes.go, params.go and the
// handlers*.go files (the HTTP API), command.go (how a write is encoded into
// the raft log), statemachine.go and state.go (applying committed writes),
// keys.go, locks.go and expiry.go (what each command does), logclock.go
// (time on the log), session.go (exactly-once writes), history.go and
// watch.go (watches and waiting for locks), cowtree.go and snapshot.go
// (snapshots that do not stop applies), debug.go (teaching-only fault
// injection).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftline/raft"
)

func main() {
	// SIGINT (Ctrl-C) and SIGTERM cancel ctx; run then shuts down cleanly
	// and returns 0.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	// port is the single-process mode's base HTTP port: node i listens on
	// port+i-1.
	port int
	// The multi-process mode's flags (see the API contract).
	id       raft.NodeID
	raftAddr string
	httpAddr string
	peers    raft.Configuration
	data     string
	// clusterID is checked in every TCP handshake (multi-process mode).
	clusterID uint64
	// raftListenFD and httpListenFD are inherited listening sockets to
	// serve on instead of binding the addresses (multi-process mode).
	raftListenFD, httpListenFD fdFlag
	// multi is true when any multi-process flag was given.
	multi bool
}

// defaultClusterID is the --cluster-id of a node not given one. Any fixed
// value works as long as every node of a cluster agrees; clusters that
// share a network should each be given their own.
const defaultClusterID = 1

// localSize is the number of nodes in the single-process cluster.
const localSize = 3

// parseOptions parses and validates the command line. It returns
// flag.ErrHelp for -h.
func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	var id uint64
	var peers string
	fs := flag.NewFlagSet("kvexample", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.port, "port", 8080, "single-process mode: HTTP port of node 1; node i uses port+i-1 (0: any free ports)")
	fs.Uint64Var(&id, "id", 0, "multi-process mode: this node's id (a positive integer listed in --peers)")
	fs.StringVar(&o.raftAddr, "raft-addr", "", "multi-process mode: this node's raft address, host:port")
	fs.StringVar(&o.httpAddr, "http-addr", "", "multi-process mode: this node's HTTP API address, host:port, as clients reach it")
	fs.StringVar(&peers, "peers", "", "multi-process mode: initial voters, self included, as id=host:port,...")
	fs.StringVar(&o.data, "data", "", "data directory for the write-ahead log; single-process mode: optional, node i uses DIR/nodei")
	fs.Uint64Var(&o.clusterID, "cluster-id", defaultClusterID, "multi-process mode: cluster ID, the same on every node; peers with another ID are refused")
	fs.Var(&o.raftListenFD, "raft-listen-fd", "multi-process mode, optional: serve raft on the listening socket inherited as file descriptor `N` (3 or more) instead of binding --raft-addr, which peers still dial")
	fs.Var(&o.httpListenFD, "http-listen-fd", "multi-process mode, optional: serve HTTP on the listening socket inherited as file descriptor `N` (3 or more) instead of binding --http-addr, which is still the address published to clients")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.multi = set["id"] || set["raft-addr"] || set["http-addr"] || set["peers"]
	if !o.multi {
		for _, name := range []string{"cluster-id", "raft-listen-fd", "http-listen-fd"} {
			if set[name] {
				return o, fmt.Errorf("--%s is for the multi-process mode (with --id, --raft-addr, --http-addr, --peers)", name)
			}
		}
		if o.port < 0 || o.port > 65535-(localSize-1) {
			return o, fmt.Errorf("--port %d out of range", o.port)
		}
		return o, nil
	}
	if set["port"] {
		return o, errors.New("--port is for the single-process mode; in multi-process mode use --http-addr")
	}
	if o.clusterID == 0 {
		return o, errors.New("--cluster-id must be a positive integer")
	}
	o.id = raft.NodeID(id)
	if err := checkListenFDs(o); err != nil {
		return o, err
	}
	return o, validateMulti(&o, peers)
}

// fdFlag is the value of --raft-listen-fd or --http-listen-fd: a file
// descriptor, if given. Its zero value prints as "", so --help shows no
// made-up default.
type fdFlag struct {
	fd  int
	set bool
}

// String implements flag.Value.
func (f *fdFlag) String() string {
	if !f.set {
		return ""
	}
	return strconv.Itoa(f.fd)
}

// Set implements flag.Value.
func (f *fdFlag) Set(s string) error {
	fd, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	f.fd, f.set = fd, true
	return nil
}

// checkListenFDs checks --raft-listen-fd and --http-listen-fd.
func checkListenFDs(o options) error {
	for _, f := range []struct {
		name string
		fd   fdFlag
	}{{"raft-listen-fd", o.raftListenFD}, {"http-listen-fd", o.httpListenFD}} {
		// Taking over standard input, output or error would close it when
		// the node stops, or on a mistake silence the node's own messages.
		if f.fd.set && f.fd.fd < 3 {
			return fmt.Errorf("--%s %d: want a descriptor of 3 or more (0, 1 and 2 are standard input, output and error)", f.name, f.fd.fd)
		}
	}
	if o.raftListenFD.set && o.raftListenFD == o.httpListenFD {
		return fmt.Errorf("--raft-listen-fd and --http-listen-fd are both %d: raft and HTTP need a socket each", o.raftListenFD.fd)
	}
	return nil
}

// inheritedListener takes over the listening socket inherited as file
// descriptor fd (named after its flag in errors). The node then owns the
// socket: the descriptor is closed here, and the listener's own copy when
// the node stops.
func inheritedListener(fd int, flagName string) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), flagName)
	if f == nil {
		return nil, fmt.Errorf("--%s %d: not a file descriptor", flagName, fd)
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		// The OpError around it only repeats the descriptor's name.
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err
		}
		return nil, fmt.Errorf("--%s %d: not a listening socket (%w)", flagName, fd, err)
	}
	return ln, nil
}

// validateMulti checks the multi-process flags and parses --peers.
func validateMulti(o *options, peers string) error {
	var missing []string
	for name, v := range map[string]bool{
		"--id": o.id != raft.None, "--raft-addr": o.raftAddr != "", "--http-addr": o.httpAddr != "",
		"--peers": peers != "", "--data": o.data != "",
	} {
		if !v {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("multi-process mode needs %s", strings.Join(missing, ", "))
	}
	if err := checkHostPort(o.raftAddr); err != nil {
		return fmt.Errorf("--raft-addr: %w", err)
	}
	if err := checkHostPort(o.httpAddr); err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	// Followers redirect clients to the leader's --http-addr as written, so
	// it must be an address a client can connect to.
	host, _, _ := net.SplitHostPort(o.httpAddr)
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		return fmt.Errorf("--http-addr %q: give the address clients reach this node at, not a wildcard", o.httpAddr)
	}
	conf, err := parsePeers(peers)
	if err != nil {
		return fmt.Errorf("--peers: %w", err)
	}
	self, ok := conf.Server(o.id)
	if !ok {
		return fmt.Errorf("--peers does not list this node (--id %d)", o.id)
	}
	if self.Address != o.raftAddr {
		return fmt.Errorf("--peers gives node %d the address %q but --raft-addr is %q", o.id, self.Address, o.raftAddr)
	}
	o.peers = conf
	return nil
}

// parsePeers parses "1=host:port,2=host:port" into a configuration of
// voters.
func parsePeers(s string) (raft.Configuration, error) {
	var conf raft.Configuration
	for item := range strings.SplitSeq(s, ",") {
		idText, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return conf, fmt.Errorf("%q is not id=host:port", item)
		}
		id, err := strconv.ParseUint(idText, 10, 64)
		if err != nil || id == 0 {
			return conf, fmt.Errorf("%q: the id must be a positive integer", item)
		}
		if err := checkHostPort(addr); err != nil {
			return conf, fmt.Errorf("%q: %w", item, err)
		}
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(id), Address: addr})
	}
	if err := conf.Validate(); err != nil { // duplicate ids
		return conf, err
	}
	return conf, nil
}

// checkHostPort checks that addr is host:port with a numeric port.
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q: bad port", addr)
	}
	return nil
}

// run is main without the process around it, so tests can drive it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "kvexample:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if o.multi {
		err = runNode(ctx, o, logger, stdout)
	} else {
		err = runLocal(ctx, o, logger, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "kvexample:", err)
		return 1
	}
	return 0
}

// runNode runs one node of a multi-process cluster until ctx ends.
func runNode(ctx context.Context, o options, logger *slog.Logger, stdout io.Writer) error {
	cfg := nodeConfig{
		ID: o.id, HTTPAddr: o.httpAddr, RaftAddr: o.raftAddr, ClusterID: o.clusterID, Peers: o.peers, DataDir: o.data,
		ElectionTimeout: time.Second, RequestTimeout: 5 * time.Second, Logger: logger,
	}
	if o.raftListenFD.set {
		ln, err := inheritedListener(o.raftListenFD.fd, "raft-listen-fd")
		if err != nil {
			return err
		}
		cfg.RaftListener = ln
	}
	if o.httpListenFD.set {
		ln, err := inheritedListener(o.httpListenFD.fd, "http-listen-fd")
		if err != nil {
			if cfg.RaftListener != nil {
				cfg.RaftListener.Close()
			}
			return err
		}
		cfg.HTTPListener = ln
	}
	n, err := startNode(cfg)
	if err != nil {
		return err
	}
	st := n.raft.Status()
	fmt.Fprintf(stdout, "node %d: %s (raft %s, cluster %d, data %s)\n", o.id, n.URL(), o.raftAddr, o.clusterID, o.data)
	if n.recovered {
		fmt.Fprintf(stdout, "recovered from %s: log up to index %d, term %d, voters %v\n", o.data, st.LastIndex, st.Term, st.Config.Voters())
	} else {
		fmt.Fprintf(stdout, "bootstrapped a new cluster: voters %v\n", st.Config.Voters())
	}
	fmt.Fprintf(stdout, "try:\n  curl -L -X PUT --data-binary 'hello raft' %s/kv/greeting\n", n.URL())
	fmt.Fprintf(stdout, "  curl -L %s/kv/greeting\n  curl %s/status\n", n.URL(), n.URL())
	fmt.Fprintln(stdout, "Ctrl-C or SIGTERM stops the node.")
	<-ctx.Done()
	fmt.Fprintf(stdout, "node %d: shutting down\n", o.id)
	return n.Close()
}

// runLocal runs the single-process cluster until ctx ends.
func runLocal(ctx context.Context, o options, logger *slog.Logger, stdout io.Writer) error {
	c, err := startLocalCluster(localSize, "127.0.0.1", o.port, func(cfg *nodeConfig) {
		cfg.Logger = logger
		if o.data != "" {
			cfg.DataDir = filepath.Join(o.data, fmt.Sprintf("node%d", cfg.ID))
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kvexample: %d-node raft cluster in this process (in-memory network)\n", localSize)
	for _, n := range c.nodes {
		fmt.Fprintf(stdout, "  node %d: %s\n", n.id, n.URL())
	}
	switch {
	case o.data == "":
		fmt.Fprintln(stdout, "note: storage is in memory:")
		fmt.Fprintln(stdout, "      the cluster's state does not survive a restart (--data DIR keeps it).")
	case c.nodes[0].recovered:
		fmt.Fprintf(stdout, "note: recovered the cluster's state from the logs under %s\n", o.data)
	default:
		fmt.Fprintf(stdout, "note: each node keeps a write-ahead log under %s/nodeN:\n", o.data)
		fmt.Fprintln(stdout, "      run again with the same --data and the state is still there.")
	}

	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	leader, err := c.waitForLeader(wctx)
	cancel()
	if err == nil {
		first := c.nodes[0].URL()
		fmt.Fprintf(stdout, "leader: node %d (%s)\n", leader.id, leader.URL())
		fmt.Fprintf(stdout, "try:\n  curl -L -X PUT --data-binary 'hello raft' %s/kv/greeting\n", first)
		fmt.Fprintf(stdout, "  curl -L %s/kv/greeting\n  curl %s/status\n", first, first)
		fmt.Fprintln(stdout, "Ctrl-C stops the cluster.")
	} else if ctx.Err() == nil {
		logger.Warn("kvexample: still no leader; requests answer 503 until one is elected", "err", err)
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "kvexample: shutting down")
	return c.Close()
}
