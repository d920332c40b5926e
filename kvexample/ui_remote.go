package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/raftline/raft"
)

// This file gives the /ui page of a multi-process node its picture of the
// cluster: its own view, and each other member's GET /ui/node, asked for
// in parallel at every frame.

// remoteSource is the multi-process mode's viewSource.
type remoteSource struct {
	s   *server
	url string // this node's own base URL
}

// views implements viewSource.
func (rs remoteSource) views(ctx context.Context) ([]nodeView, *labView) {
	st := rs.s.raft.Status()
	servers := st.Config.Servers
	out := make([]nodeView, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		if srv.ID == rs.s.id {
			out[i] = rs.s.view(ctx, rs.url)
			continue
		}
		addr, ok := rs.s.sm.HTTPAddr(srv.ID)
		if !ok {
			out[i] = nodeView{ID: uint64(srv.ID), Down: "its HTTP address is not known yet"}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = fetchView(ctx, srv.ID, "http://"+addr)
		}()
	}
	wg.Wait()
	return out, nil
}

// fetchView asks the node at base for its view.
func fetchView(ctx context.Context, id raft.NodeID, base string) nodeView {
	down := func(err error) nodeView {
		return nodeView{ID: uint64(id), URL: base, Down: "not answering: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ui/node", nil)
	if err != nil {
		return down(err)
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return down(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return down(fmt.Errorf("status %d", resp.StatusCode))
	}
	var v nodeView
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&v); err != nil {
		return down(err)
	}
	if v.ID != uint64(id) {
		return down(fmt.Errorf("it says it is node %d", v.ID))
	}
	return v
}

// handleNodeView serves GET /ui/node: this node's view.
func (s *server) handleNodeView(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.view(r.Context(), "http://"+r.Host))
}
