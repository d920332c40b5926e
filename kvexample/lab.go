package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/raftline/raft"
)

// This file is the lab: TEACHING-ONLY fault injection, served only in
// single-process mode, so that a reader can break the cluster and watch
// Raft repair it (docs/tutorial.md, and the buttons of the /ui page). A
// real deployment has no such thing; its failures are real.
//
//	POST /debug/isolate[?node=N]  cut node N (default: this one) off the network
//	POST /debug/heal              reconnect every node, and unslow every link
//	POST /debug/crash?node=N      stop node N as a crash would; its port answers 503
//	POST /debug/restart?node=N    start node N again from its storage
//	POST /debug/slow              {"from":1,"to":2,"delay_ms":300,"both":true}
//	GET  /debug/lab               what is broken now
//
// Crash and restart answer 202 at once and happen in the background: the
// node asked to crash may be the one serving the request.

// lab is the single-process cluster's fault injector and /ui data source.
type lab struct {
	c        *localCluster
	ui       *uiHandler
	mu       sync.Mutex
	isolated map[raft.NodeID]bool
	stopping context.Context
	stopAll  context.CancelFunc
}

func newLab(c *localCluster) *lab {
	l := &lab{c: c, isolated: map[raft.NodeID]bool{}}
	l.stopping, l.stopAll = context.WithCancel(context.Background())
	l.ui = &uiHandler{src: l, write: l.write, lab: true}
	return l
}

// stop refuses further crashes and restarts.
func (l *lab) stop() { l.stopAll() }

// labView is what the lab has broken, for the page's controls.
type labView struct {
	Isolated []uint64   `json:"isolated"`
	Crashed  []uint64   `json:"crashed"`
	Slow     []slowView `json:"slow"`
}

// slowView is one slowed link.
type slowView struct {
	From    uint64 `json:"from"`
	To      uint64 `json:"to"`
	DelayMS int64  `json:"delay_ms"`
}

// state returns what is broken now.
func (l *lab) state() labView {
	v := labView{Isolated: []uint64{}, Crashed: []uint64{}, Slow: []slowView{}}
	l.mu.Lock()
	for id := range l.isolated {
		v.Isolated = append(v.Isolated, uint64(id))
	}
	l.mu.Unlock()
	slices.Sort(v.Isolated)
	for i := range l.c.slots {
		if _, up := l.c.node(raft.NodeID(i + 1)); !up {
			v.Crashed = append(v.Crashed, uint64(i+1))
		}
	}
	for k, d := range l.c.links.list() {
		v.Slow = append(v.Slow, slowView{From: uint64(k[0]), To: uint64(k[1]), DelayMS: d.Milliseconds()})
	}
	slices.SortFunc(v.Slow, func(a, b slowView) int { return cmpUint(a.From<<32|a.To, b.From<<32|b.To) })
	return v
}

// views implements viewSource: every node, crashed ones included.
func (l *lab) views(ctx context.Context) ([]nodeView, *labView) {
	var out []nodeView
	for i := range l.c.slots {
		id := raft.NodeID(i + 1)
		n, up := l.c.node(id)
		if !up {
			out = append(out, nodeView{ID: uint64(id), URL: "http://" + l.c.slots[i].cfg.HTTPAddr, Down: "crashed"})
			continue
		}
		out = append(out, n.api.view(ctx, n.URL()))
	}
	st := l.state()
	return out, &st
}

// routes adds the lab's endpoints to the mux of node self.
func (l *lab) routes(mux *http.ServeMux, self raft.NodeID) {
	mux.HandleFunc("POST /debug/isolate", func(w http.ResponseWriter, r *http.Request) {
		id, ok := l.nodeParam(w, r, self)
		if !ok {
			return
		}
		l.c.network.Isolate(id)
		l.mu.Lock()
		// The network keeps one partition: isolating a node heals the last.
		clear(l.isolated)
		l.isolated[id] = true
		l.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"isolated": uint64(id)})
	})
	mux.HandleFunc("POST /debug/heal", func(w http.ResponseWriter, r *http.Request) {
		l.c.network.Heal()
		l.c.links.clear()
		l.mu.Lock()
		clear(l.isolated)
		l.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"healed": true})
	})
	mux.HandleFunc("POST /debug/crash", func(w http.ResponseWriter, r *http.Request) {
		if id, ok := l.nodeParam(w, r, 0); ok && l.mustBe(w, id, true) {
			l.background(w, "crashing", id, func() error {
				if !l.c.crash(id) {
					return fmt.Errorf("node %d is not up", id)
				}
				return nil
			})
		}
	})
	mux.HandleFunc("POST /debug/restart", func(w http.ResponseWriter, r *http.Request) {
		if id, ok := l.nodeParam(w, r, 0); ok && l.mustBe(w, id, false) {
			l.background(w, "restarting", id, func() error { return l.c.restart(id) })
		}
	})
	mux.HandleFunc("POST /debug/slow", l.handleSlow)
	mux.HandleFunc("GET /debug/lab", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, l.state())
	})
}

// background runs a crash or restart after answering 202.
func (l *lab) background(w http.ResponseWriter, what string, id raft.NodeID, op func() error) {
	if l.stopping.Err() != nil {
		writeError(w, http.StatusServiceUnavailable, "the cluster is shutting down")
		return
	}
	l.c.ops.Add(1)
	go func() {
		defer l.c.ops.Done()
		if err := op(); err != nil {
			slog.Default().Warn("kvexample lab: "+what+" failed", "id", id, "err", err)
		}
	}()
	writeJSON(w, http.StatusAccepted, map[string]any{what: uint64(id)})
}

// mustBe answers 409 and returns false unless node id is up (up true) or
// crashed (up false).
func (l *lab) mustBe(w http.ResponseWriter, id raft.NodeID, up bool) bool {
	if _, isUp := l.c.node(id); isUp != up {
		state := "crashed"
		if isUp {
			state = "up"
		}
		writeError(w, http.StatusConflict, fmt.Sprintf("node %d is %s", id, state))
		return false
	}
	return true
}

// nodeParam reads ?node=N, a member's ID (def when absent and def != 0),
// or answers 400.
func (l *lab) nodeParam(w http.ResponseWriter, r *http.Request, def raft.NodeID) (raft.NodeID, bool) {
	q := r.URL.Query().Get("node")
	if q == "" && def != 0 {
		return def, true
	}
	n, err := strconv.ParseUint(q, 10, 64)
	if err != nil || n < 1 || n > uint64(len(l.c.slots)) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("?node= must name a node, 1 to %d", len(l.c.slots)))
		return 0, false
	}
	return raft.NodeID(n), true
}

// slowRequest is POST /debug/slow.
type slowRequest struct {
	From    uint64 `json:"from"`
	To      uint64 `json:"to"`
	DelayMS int64  `json:"delay_ms"`
	Both    bool   `json:"both"`
}

// maxSlowDelay bounds a slowed link: longer only stalls the demo.
const maxSlowDelay = 10 * time.Second

func (l *lab) handleSlow(w http.ResponseWriter, r *http.Request) {
	var req slowRequest
	if !decodeStrict(w, r, &req) {
		return
	}
	size := uint64(len(l.c.slots))
	d := time.Duration(req.DelayMS) * time.Millisecond
	if req.From < 1 || req.From > size || req.To < 1 || req.To > size || req.From == req.To ||
		d < 0 || d > maxSlowDelay {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(
			`"from" and "to" must be two nodes, 1 to %d, and "delay_ms" 0 to %d`, size, maxSlowDelay.Milliseconds()))
		return
	}
	l.c.links.set(raft.NodeID(req.From), raft.NodeID(req.To), d)
	if req.Both {
		l.c.links.set(raft.NodeID(req.To), raft.NodeID(req.From), d)
	}
	writeJSON(w, http.StatusOK, l.state())
}

// standIn is the server that answers on node id's port while it is down:
// the page and the lab still work there, everything else is a 503.
func (l *lab) standIn(id raft.NodeID, logger *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	l.routes(mux, id)
	stopping, stop := context.WithCancel(context.Background())
	l.ui.routes(mux, stopping)
	down := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf(
			"node %d is crashed (the lab's crash button); POST /debug/restart?node=%d starts it again", id, id))
	}
	mux.HandleFunc("/", down)
	srv := &http.Server{
		Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(stop)
	return srv
}

// write implements the page's write box: a PUT through a running node,
// following redirects to the leader as curl -L would.
func (l *lab) write(ctx context.Context, key, value string) writeResult {
	nodes := l.c.running()
	if len(nodes) == 0 {
		return writeResult{Status: http.StatusServiceUnavailable, Error: "every node is crashed"}
	}
	// A node that knows the leader saves a redirect.
	via := nodes[0]
	for _, n := range nodes {
		if st := n.raft.Status(); st.Role == raft.Leader {
			via = n
			break
		}
	}
	return putVia(ctx, via.URL(), key, value)
}
