// Command kvexample is a replicated key-value service built on the raftline
// raft library, written to be read: docs/tutorial.md follows a request
// through it.
//
// With no flags it runs a 3-node cluster inside one process, on the
// library's in-memory network, with node 1's HTTP API on 127.0.0.1:8080:
//
//	go run ./kvexample
//
// With --id, --raft-addr, --http-addr, --peers and --data it runs one node
// of a multi-process cluster (that mode needs the TCP transport and the
// WAL; see newTransport and newStorage in cluster.go).
//
// Files, in reading order: main.go (flags, startup, signals), cluster.go
// (wiring a node together), server.go and handlers.go (the HTTP API),
// command.go (how a write is encoded into the raft log), statemachine.go
// (applying committed writes), session.go (exactly-once writes), debug.go
// (teaching-only fault injection).
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
	// multi is true when any multi-process flag was given.
	multi bool
}

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
	fs.StringVar(&o.data, "data", "", "data directory (durable storage; in memory until the WAL lands)")
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
		if o.port < 0 || o.port > 65535-(localSize-1) {
			return o, fmt.Errorf("--port %d out of range", o.port)
		}
		return o, nil
	}
	if set["port"] {
		return o, errors.New("--port is for the single-process mode; in multi-process mode use --http-addr")
	}
	o.id = raft.NodeID(id)
	return o, validateMulti(&o, peers)
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
	n, err := startNode(nodeConfig{
		ID: o.id, HTTPAddr: o.httpAddr, RaftAddr: o.raftAddr, Peers: o.peers, DataDir: o.data,
		ElectionTimeout: time.Second, RequestTimeout: 5 * time.Second, Logger: logger,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %d: %s (raft %s, data %s)\n", o.id, n.URL(), o.raftAddr, o.data)
	<-ctx.Done()
	return n.Close()
}

// runLocal runs the single-process cluster until ctx ends.
func runLocal(ctx context.Context, o options, logger *slog.Logger, stdout io.Writer) error {
	c, err := startLocalCluster(localSize, "127.0.0.1", o.port, func(cfg *nodeConfig) {
		cfg.Logger = logger
		if o.data != "" {
			cfg.DataDir = fmt.Sprintf("%s/node%d", o.data, cfg.ID)
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kvexample: %d-node raft cluster in this process (in-memory network)\n", localSize)
	for _, n := range c.nodes {
		fmt.Fprintf(stdout, "  node %d: %s\n", n.id, n.URL())
	}
	if o.data != "" {
		fmt.Fprintf(stdout, "note: --data %s is accepted, but storage is still in memory until the WAL lands:\n", o.data)
	} else {
		fmt.Fprintln(stdout, "note: storage is in memory:")
	}
	fmt.Fprintln(stdout, "      the cluster's state does not survive a restart.")

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
