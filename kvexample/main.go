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
// write-ahead log (package wal) and snapshot files (package snapstore) in
// DIR/node1, DIR/node2, DIR/node3, and a restart with the same --data
// recovers the cluster.
//
// With --id, --raft-addr, --http-addr, --peers and --data it runs one node
// of a multi-process cluster, talking to its peers over the library's TCP
// transport and keeping its log in a WAL in --data:
//
//	go build -o kvd ./kvexample
//	./kvd --id 1 --raft-addr 127.0.0.1:7001 --http-addr 127.0.0.1:8001 \
//	      --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data /tmp/kvd1
//
// A node whose --data is empty bootstraps the cluster from --peers, or,
// given --join with any member's HTTP address instead, joins a running
// cluster: it is added as a learner, caught up and promoted to voter. One
// whose --data holds state recovers from it whatever it is given, and the
// log's configuration wins. A node removed from the cluster
// (POST /cluster/remove) exits with status 0. Every node of one cluster
// must be given the same --cluster-id (default 1): the TCP handshake
// refuses a peer from another cluster, so two clusters sharing a network
// cannot mix up their messages.
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
// In both modes --snapshot-entries, --snapshot-interval and
// --snapshot-trailing set when the state is snapshotted and how much log
// is kept behind a snapshot, and
// --max-clock-drift the bound lease reads assume. On SIGTERM or SIGINT a
// multi-process leader hands leadership over before it stops, unless
// --graceful-transfer=false.
//
// Files, in reading order: main.go and options.go (flags, startup,
// signals), cluster.go (wiring a node together), storage.go, transport.go
// and join.go (where it keeps its state, how it talks, how it starts),
// local.go (the single-process mode), server.go, routes.go, params.go,
// reads.go, redirect.go and the handlers*.go files (the HTTP API),
// removal.go (noticing a removal), command.go (how a write is encoded into
// the raft log), statemachine.go and state.go (applying committed writes),
// keys.go, locks.go and expiry.go (what each command does), logclock.go
// (time on the log), session.go (exactly-once writes), history.go and
// watch.go (watches and waiting for locks), cowtree.go and snapshot.go
// (snapshots that do not stop applies), identity.go (which node a data
// directory belongs to), debug.go (teaching-only fault injection).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	// SIGINT (Ctrl-C) and SIGTERM cancel ctx; run then shuts down cleanly
	// and returns 0.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
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

// runNode runs one node of a multi-process cluster until ctx ends or it
// learns it was removed from the cluster.
func runNode(ctx context.Context, o options, logger *slog.Logger, stdout io.Writer) error {
	cfg := nodeConfig{
		ID: o.id, HTTPAddr: o.httpAddr, RaftAddr: o.raftAddr, ClusterID: o.clusterID, Peers: o.peers, JoinVia: o.join,
		DataDir: o.data, ElectionTimeout: time.Second, RequestTimeout: 5 * time.Second, Logger: logger,
	}
	o.tune(&cfg)
	if o.gracefulTransfer {
		cfg.TransferTimeout = gracefulTransferTimeout
	}
	if err := o.inheritListeners(&cfg); err != nil {
		return err
	}
	n, err := startNode(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %d: %s (raft %s, cluster %d, data %s)\n", o.id, n.URL(), o.raftAddr, o.clusterID, o.data)
	switch {
	case n.recovered:
		// What it read back, not what its leader may have sent it since.
		st := n.recoveredState
		fmt.Fprintf(stdout, "recovered from %s: log up to index %d, term %d, voters %v\n", o.data, st.LastIndex, st.Term, st.Config.Voters())
	case n.joining:
		fmt.Fprintf(stdout, "joining the cluster through %s: asking to be added as a voter\n", o.join)
		view, err := n.joinCluster(ctx, o.join, o.raftAddr)
		if err != nil && ctx.Err() == nil {
			return errors.Join(err, n.Close())
		}
		if err == nil {
			fmt.Fprintf(stdout, "joined: the cluster's configuration at index %d is %s\n", view.Index, view.describe())
		}
	default:
		fmt.Fprintf(stdout, "bootstrapped a new cluster: voters %v\n", n.raft.Status().Config.Voters())
	}
	fmt.Fprintf(stdout, "try:\n  curl -L -X PUT --data-binary 'hello raft' %s/kv/greeting\n", n.URL())
	fmt.Fprintf(stdout, "  curl -L %s/kv/greeting\n  curl %s/status\n", n.URL(), n.URL())
	fmt.Fprintf(stdout, "the cluster, live: %s/ui/\n", n.URL())
	fmt.Fprintln(stdout, "Ctrl-C or SIGTERM stops the node.")
	select {
	case <-ctx.Done():
		fmt.Fprintf(stdout, "node %d: shutting down\n", o.id)
	case <-n.Removed():
		// Nothing is wrong: an operator removed it. Exit 0.
		fmt.Fprintf(stdout, "node %d: removed from the cluster; shutting down\n", o.id)
	}
	return n.Close()
}

// gracefulTransferTimeout bounds how long a stopping leader waits for
// another voter to take over: a transfer ends within an election timeout
// (1 s in this mode), so 2 s leaves room for one that had to catch the
// target up first.
const gracefulTransferTimeout = 2 * time.Second

// tune applies the flags both modes share to a node's configuration.
func (o options) tune(cfg *nodeConfig) {
	cfg.SnapshotEntries, cfg.SnapshotTrailing, cfg.SnapshotInterval = o.snapshotPolicy()
	cfg.MaxClockDrift = o.maxClockDrift
}

// inheritListeners takes over the sockets --raft-listen-fd and
// --http-listen-fd name, if given.
func (o options) inheritListeners(cfg *nodeConfig) error {
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
	return nil
}

// runLocal runs the single-process cluster until ctx ends.
func runLocal(ctx context.Context, o options, logger *slog.Logger, stdout io.Writer) error {
	// Ctrl-C stops every node at once, so a leader handing over to a node
	// that is stopping too would only slow the exit: no graceful transfer.
	c, err := startLocalCluster(localSize, "127.0.0.1", o.port, func(cfg *nodeConfig) {
		cfg.Logger = logger
		o.tune(cfg)
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
		fmt.Fprintf(stdout, "watch it live, and break it: %s/ui/\n", first)
		fmt.Fprintln(stdout, "Ctrl-C stops the cluster.")
	} else if ctx.Err() == nil {
		logger.Warn("kvexample: still no leader; requests answer 503 until one is elected", "err", err)
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "kvexample: shutting down")
	return c.Close()
}
