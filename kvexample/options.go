package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftline/raft"
)

// This file parses and checks the command line (the flags are part of the
// API contract).

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
	// join is the HTTP address of a member of the cluster to join (--join).
	join string
	data string
	// clusterID is checked in every TCP handshake (multi-process mode).
	clusterID uint64
	// raftListenFD and httpListenFD are inherited listening sockets to
	// serve on instead of binding the addresses (multi-process mode).
	raftListenFD, httpListenFD fdFlag
	// multi is true when any multi-process flag was given.
	multi bool

	// Flags of both modes.
	snapshotEntries, snapshotTrailing int
	snapshotInterval                  time.Duration
	maxClockDrift                     float64
	gracefulTransfer                  bool
}

// defaultClusterID is the --cluster-id of a node not given one. Any fixed
// value works as long as every node of a cluster agrees; clusters that
// share a network should each be given their own.
const defaultClusterID = 1

// defaultMaxClockDrift is --max-clock-drift's default: 5% is far more than
// the drift of a working quartz clock (some parts per million), and leaves
// room for a VM whose clock is steered hard after a pause.
const defaultMaxClockDrift = 0.05

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
	fs.Uint64Var(&id, "id", 0, "multi-process mode: this node's id (a positive integer, never one a removed server had)")
	fs.StringVar(&o.raftAddr, "raft-addr", "", "multi-process mode: this node's raft address, host:port")
	fs.StringVar(&o.httpAddr, "http-addr", "", "multi-process mode: this node's HTTP API address, host:port, as clients reach it")
	fs.StringVar(&peers, "peers", "", "multi-process mode: initial voters, self included, as id=host:port,...; bootstraps a new cluster on an empty --data")
	fs.StringVar(&o.join, "join", "", "multi-process mode: HTTP address (host:port) of any member of a running cluster to join, with an empty --data, instead of --peers")
	fs.StringVar(&o.data, "data", "", "data directory for the write-ahead log and snapshots; single-process mode: optional, node i uses DIR/nodei")
	fs.Uint64Var(&o.clusterID, "cluster-id", defaultClusterID, "multi-process mode: cluster ID, the same on every node; peers with another ID are refused")
	fs.Var(&o.raftListenFD, "raft-listen-fd", "multi-process mode, optional: serve raft on the listening socket inherited as file descriptor `N` (3 or more) instead of binding --raft-addr, which peers still dial")
	fs.Var(&o.httpListenFD, "http-listen-fd", "multi-process mode, optional: serve HTTP on the listening socket inherited as file descriptor `N` (3 or more) instead of binding --http-addr, which is still the address published to clients")
	fs.IntVar(&o.snapshotEntries, "snapshot-entries", raft.DefaultSnapshotEntries, "snapshot the state every `N` applied entries (0: never)")
	fs.DurationVar(&o.snapshotInterval, "snapshot-interval", raft.DefaultSnapshotInterval, "least time between two automatic snapshots, unless entries pile up (`D`, 0: none, so a snapshot every --snapshot-entries exactly)")
	fs.IntVar(&o.snapshotTrailing, "snapshot-trailing", raft.DefaultSnapshotTrailing, "entries kept in the log behind a snapshot, so a follower a little behind catches up without a whole snapshot (`N`, 0: none)")
	fs.Float64Var(&o.maxClockDrift, "max-clock-drift", defaultMaxClockDrift, "the largest `rate` at which one node's clock may run ahead of another's (0.05 is 5%); lease reads are only as safe as this bound")
	fs.BoolVar(&o.gracefulTransfer, "graceful-transfer", true, "multi-process mode: on SIGTERM or SIGINT, a leader hands leadership to another voter before it stops")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := checkCommonFlags(o); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.multi = set["id"] || set["raft-addr"] || set["http-addr"] || set["peers"] || set["join"]
	if !o.multi {
		for _, name := range []string{"cluster-id", "raft-listen-fd", "http-listen-fd"} {
			if set[name] {
				return o, fmt.Errorf("--%s is for the multi-process mode (with --id, --raft-addr, --http-addr, --peers or --join)", name)
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

// checkCommonFlags checks the flags both modes take.
func checkCommonFlags(o options) error {
	switch {
	case o.snapshotEntries < 0:
		return fmt.Errorf("--snapshot-entries %d: want 0 (no snapshots) or more", o.snapshotEntries)
	case o.snapshotTrailing < 0:
		return fmt.Errorf("--snapshot-trailing %d: want 0 or more", o.snapshotTrailing)
	case o.snapshotInterval < 0:
		return fmt.Errorf("--snapshot-interval %v: want 0 (none) or more", o.snapshotInterval)
	case !(o.maxClockDrift > 0 && o.maxClockDrift < 0.5): // NaN too
		return fmt.Errorf("--max-clock-drift %v: want a rate above 0 and below 0.5, such as 0.05", o.maxClockDrift)
	}
	return nil
}

// snapshotPolicy returns the snapshot flags in raft.Config's terms, where 0
// means the library's default and a negative number "none".
func (o options) snapshotPolicy() (entries, trailing int, interval time.Duration) {
	entries, trailing, interval = o.snapshotEntries, o.snapshotTrailing, o.snapshotInterval
	if entries == 0 {
		entries = -1
	}
	if trailing == 0 {
		trailing = -1
	}
	if interval == 0 {
		interval = -1
	}
	return entries, trailing, interval
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
		"--id": o.id != raft.None, "--raft-addr": o.raftAddr != "", "--http-addr": o.httpAddr != "", "--data": o.data != "",
	} {
		if !v {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("multi-process mode needs %s", strings.Join(missing, ", "))
	}
	if peers != "" && o.join != "" {
		return errors.New("--peers bootstraps a new cluster and --join joins a running one: give one of them")
	}
	if err := checkHostPort(o.raftAddr); err != nil {
		return fmt.Errorf("--raft-addr: %w", err)
	}
	if err := checkClientAddr(o.httpAddr); err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	if o.join != "" {
		if err := checkClientAddr(o.join); err != nil {
			return fmt.Errorf("--join (a member's HTTP address): %w", err)
		}
	}
	if peers == "" && o.join == "" {
		// Only a restart may do without both; say so before anything is
		// created in --data.
		if _, err := os.Stat(filepath.Join(o.data, identityFile)); err != nil {
			return fmt.Errorf("--data %s holds no node's state: give --peers to bootstrap a new cluster, or --join to join a running one", o.data)
		}
		return nil
	}
	if peers == "" {
		return nil
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

// checkClientAddr checks an HTTP address a client (or another node) will
// connect to as written: host:port, and not a wildcard.
func checkClientAddr(addr string) error {
	if err := checkHostPort(addr); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		return fmt.Errorf("%q: give an address clients can connect to, not a wildcard", addr)
	}
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
