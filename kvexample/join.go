package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/raftline/raft"
)

// This file decides how a node starts from its storage: bootstrap a new
// cluster, join a running one, or recover. Only a node that has never held
// any state may bootstrap or join; any other restarts from what its log
// says, whatever its flags say, because the log is the truth the rest of
// the cluster agreed on.
//
// Joining (--join ADDR, an empty --data) goes: ask ADDR for GET /cluster,
// so the TCP transport knows the members and accepts their connections;
// start the node with raft.Config.Join, which waits without campaigning;
// then ask for POST /cluster/add as a voter (a follower redirects it to
// the leader), which adds the node as a learner, catches it up and
// promotes it.

// errEmptyData is why a node with nothing in --data and neither --peers
// nor --join cannot start.
var errEmptyData = errors.New("--data is empty: give --peers to bootstrap a new cluster, or --join to join a running one")

// startPlan is how startNode starts the node.
type startPlan struct {
	// peers are the raft addresses the transport starts with; the node
	// keeps them in step with its configuration from then on.
	peers           raft.Configuration
	join, recovered bool
}

// prepareStorage bootstraps empty storage from cfg.Peers, or learns the
// cluster to join, or leaves recovered storage alone.
func prepareStorage(cfg nodeConfig, st nodeStorage) (startPlan, error) {
	empty, err := st.isEmpty()
	if err != nil {
		return startPlan{}, fmt.Errorf("node %d: reading its storage: %w", cfg.ID, err)
	}
	switch {
	case !empty:
		return startPlan{recovered: true}, nil
	case cfg.JoinVia != "":
		ctx, cancel := context.WithTimeout(context.Background(), joinDiscoveryTimeout)
		defer cancel()
		view, err := discoverCluster(ctx, cfg)
		if err != nil {
			return startPlan{}, err
		}
		return startPlan{peers: view.configuration(), join: true}, nil
	case len(cfg.Peers.Servers) > 0:
		if err := raft.Bootstrap(st.log, cfg.Peers); err != nil {
			return startPlan{}, fmt.Errorf("bootstrapping node %d: %w", cfg.ID, err)
		}
		return startPlan{peers: cfg.Peers}, nil
	default:
		return startPlan{}, errEmptyData
	}
}

// joinDiscoveryTimeout bounds how long a joining node keeps asking for the
// cluster's members: the member it was pointed at may be starting too.
const joinDiscoveryTimeout = 30 * time.Second

// discoverCluster asks the member at cfg.JoinVia for the cluster's
// configuration, and checks that this node may join it.
func discoverCluster(ctx context.Context, cfg nodeConfig) (clusterView, error) {
	var view clusterView
	var err error
	for {
		var code int
		var body []byte
		code, body, err = clusterRequest(ctx, http.MethodGet, "http://"+cfg.JoinVia+"/cluster", nil)
		if err == nil && code == http.StatusOK {
			err = json.Unmarshal(body, &view)
			break
		}
		if err == nil {
			err = fmt.Errorf("GET /cluster answered %d: %s", code, bytes.TrimSpace(body))
		}
		cfg.Logger.Warn("kvexample: cannot learn the cluster's members yet; retrying", "join", cfg.JoinVia, "err", err)
		select {
		case <-ctx.Done():
			return view, fmt.Errorf("--join %s: %w", cfg.JoinVia, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err != nil {
		return view, fmt.Errorf("--join %s: %w", cfg.JoinVia, err)
	}
	if slices.Contains(view.Removed, uint64(cfg.ID)) {
		return view, fmt.Errorf("node %d was removed from this cluster, and IDs are never reused: start the new server with a new --id", cfg.ID)
	}
	for _, s := range view.Servers {
		// A voter that lost its data and came back under its ID would have
		// forgotten its votes, and could help elect two leaders in a term.
		// A learner never voted, so it may start over.
		if s.ID == uint64(cfg.ID) && s.Role == raft.Voter.String() {
			return view, fmt.Errorf("node %d is already a voter of this cluster, and its --data is empty: "+
				"a voter that lost its data must be removed and replaced under a new --id", cfg.ID)
		}
	}
	if len(view.Servers) == 0 {
		return view, fmt.Errorf("--join %s: the member answered with no configuration", cfg.JoinVia)
	}
	return view, nil
}

// configuration returns the view's members as a raft configuration.
func (v clusterView) configuration() raft.Configuration {
	var conf raft.Configuration
	for _, s := range v.Servers {
		srv := raft.Server{ID: raft.NodeID(s.ID), Address: s.RaftAddr}
		if s.Role == raft.Learner.String() {
			srv.Suffrage = raft.Learner
		}
		conf.Servers = append(conf.Servers, srv)
	}
	return conf
}

// joinCluster asks the cluster, through the member at via, to add this
// node as a voter, retrying what may be retried until ctx ends. It
// returns the cluster as the leader answered once the node is a voter.
func (n *kvNode) joinCluster(ctx context.Context, via, raftAddr string) (clusterView, error) {
	body, _ := json.Marshal(addRequest{ID: uint64(n.id), RaftAddr: raftAddr, HTTPAddr: n.httpAddr})
	for {
		code, answer, err := clusterRequest(ctx, http.MethodPost, "http://"+via+"/cluster/add", body)
		switch {
		case err == nil && code == http.StatusOK:
			var view clusterView
			return view, json.Unmarshal(answer, &view)
		case err == nil && refusedForGood(code, answer):
			return clusterView{}, fmt.Errorf("the cluster refused to add node %d (%d): %s", n.id, code, bytes.TrimSpace(answer))
		case err == nil:
			err = fmt.Errorf("%d: %s", code, bytes.TrimSpace(answer))
		}
		n.logger.Info("kvexample: not added to the cluster yet; retrying", "id", n.id, "via", via, "answer", err)
		select {
		case <-ctx.Done():
			return clusterView{}, fmt.Errorf("joining through %s: %w (last answer: %v)", via, ctx.Err(), err)
		case <-n.removed:
			return clusterView{}, errors.New("removed from the cluster while joining")
		case <-time.After(time.Second):
		}
	}
}

// refusedForGood reports whether an answer to /cluster/add says the add
// can never succeed: a malformed request, a retired ID, or the ID already
// a member in another form. Other refusals (a change in progress) pass.
func refusedForGood(code int, answer []byte) bool {
	return code == http.StatusBadRequest || code == http.StatusConflict &&
		(bytes.Contains(answer, []byte("never reused")) || bytes.Contains(answer, []byte("is already a")))
}

// clusterClient is the HTTP client a node uses to talk to the others'
// APIs (joining, and removal.go). It follows redirects to the leader, 307
// keeping the body. Keep-alives are off: these requests are rare, and an
// idle connection would outlive the node.
var clusterClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   membershipTimeout + 5*time.Second,
}

// clusterRequest sends one request to another node's API.
func clusterRequest(ctx context.Context, method, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := clusterClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, answer, err
}

// warnPeersDiffer logs, for a node that recovered its state, how the
// configuration in its log differs from the flags it was started with:
// the log wins.
func warnPeersDiffer(cfg nodeConfig, conf raft.Configuration) {
	if cfg.JoinVia != "" {
		cfg.Logger.Warn("kvexample: --data holds state, so --join is ignored: this node restarts as the member its log says it is",
			"id", cfg.ID, "voters", conf.Voters())
	}
	if diff := peersDifference(cfg.Peers, conf); diff != "" {
		cfg.Logger.Warn("kvexample: --peers differs from the configuration in the log, and the log wins: "+diff,
			"id", cfg.ID, "voters", conf.Voters())
	}
	if _, ok := conf.Server(cfg.ID); !ok && len(conf.Servers) > 0 {
		cfg.Logger.Warn("kvexample: this node is not in the configuration in its log: it was removed, or --data is another node's",
			"id", cfg.ID, "voters", conf.Voters())
	}
}

// peersDifference says how the servers given in --peers differ from the
// log's configuration, or "" when they agree (or --peers was not given).
func peersDifference(peers, conf raft.Configuration) string {
	if len(peers.Servers) == 0 {
		return ""
	}
	var diffs []string
	for _, p := range peers.Servers {
		s, ok := conf.Server(p.ID)
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("node %d is not a member", p.ID))
		case s.Address != p.Address:
			diffs = append(diffs, fmt.Sprintf("node %d is at %s, not %s", p.ID, s.Address, p.Address))
		case s.Suffrage != raft.Voter:
			diffs = append(diffs, fmt.Sprintf("node %d is a learner", p.ID))
		}
	}
	for _, s := range conf.Servers {
		if _, ok := peers.Server(s.ID); !ok {
			diffs = append(diffs, fmt.Sprintf("%s %d (%s) is a member not in --peers", s.Suffrage, s.ID, s.Address))
		}
	}
	return strings.Join(diffs, "; ")
}

// describe lists the view's servers by role, for a log line.
func (v clusterView) describe() string {
	var voters, learners []uint64
	for _, s := range v.Servers {
		if s.Role == raft.Voter.String() {
			voters = append(voters, s.ID)
		} else {
			learners = append(learners, s.ID)
		}
	}
	if len(learners) == 0 {
		return fmt.Sprintf("voters %v", voters)
	}
	return fmt.Sprintf("voters %v, learners %v", voters, learners)
}
