package main

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// This file serves the live cluster page, /ui: a card per node, the
// messages flowing between them, and a stream of what happened, pushed to
// the page with server-sent events. The page itself is static (ui/, built
// into the binary, no build step, nothing fetched from elsewhere); its data
// is one JSON frame per uiFrameEvery on GET /ui/events.
//
// Every node serves the page. In single-process mode the data comes from
// the lab, which sees every node even while one is crashed; in
// multi-process mode a node asks each member for its GET /ui/node.

//go:embed ui
var uiFiles embed.FS

// uiFrameEvery is how often the page gets a new picture of the cluster:
// often enough to watch an election (300 ms here), rarely enough to cost
// nothing.
const uiFrameEvery = 200 * time.Millisecond

// viewSource gives the page its picture of the cluster: every node's view,
// and the lab's state in single-process mode (nil otherwise).
type viewSource interface {
	views(ctx context.Context) ([]nodeView, *labView)
}

// uiHandler serves the page and its data.
type uiHandler struct {
	src viewSource
	// write puts a key through the cluster, for the page's write box.
	write func(ctx context.Context, key, value string) writeResult
	// lab is true in single-process mode, where the page shows the
	// fault controls.
	lab bool
}

// routes adds the page's endpoints to mux. stopping ends the event streams
// when the server shuts down (a stream never goes idle by itself).
func (u *uiHandler) routes(mux *http.ServeMux, stopping context.Context) {
	static, _ := fs.Sub(uiFiles, "ui") // a constant path: cannot fail
	files := http.StripPrefix("/ui/", http.FileServerFS(static))
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
	})
	mux.Handle("GET /ui/", files)
	mux.HandleFunc("GET /ui/events", func(w http.ResponseWriter, r *http.Request) { u.stream(w, r, stopping) })
	mux.HandleFunc("POST /ui/write", u.handleWrite)
}

// frame is one picture of the cluster on the event stream.
type frame struct {
	Seq   uint64     `json:"seq"`
	At    int64      `json:"at"` // Unix milliseconds
	Lab   *labView   `json:"lab"`
	Nodes []nodeView `json:"nodes"`
}

// stream serves GET /ui/events: a "state" event per frame, and a "log"
// event for each change worth telling (uievents.go).
func (u *uiHandler) stream(w http.ResponseWriter, r *http.Request, stopping context.Context) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	// The browser reconnects by itself; half a second, not its default
	// three, when the node serving the stream is crashed and restarted.
	fmt.Fprint(w, "retry: 500\n\n")
	tick := time.NewTicker(uiFrameEvery)
	defer tick.Stop()
	var prev []nodeView
	for seq := uint64(1); ; seq++ {
		ctx, cancel := context.WithTimeout(r.Context(), uiFrameEvery*2)
		nodes, lab := u.src.views(ctx)
		cancel()
		now := time.Now()
		for _, ev := range diffViews(prev, nodes, now) {
			writeEvent(w, "log", ev)
		}
		prev = nodes
		writeEvent(w, "state", frame{Seq: seq, At: now.UnixMilli(), Lab: lab, Nodes: nodes})
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-stopping.Done():
			return
		case <-tick.C:
		}
	}
}

// writeEvent writes one server-sent event with a JSON payload.
func writeEvent(w io.Writer, name string, v any) {
	b, _ := json.Marshal(v) // plain structs: cannot fail
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
}

// writeRequest is POST /ui/write.
type writeRequest struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// writeResult is the answer to POST /ui/write: what the PUT got.
type writeResult struct {
	Status int    `json:"status"`
	Index  uint64 `json:"index,omitempty"`
	Error  string `json:"error,omitempty"`
	// Via is the node that answered (the leader, after redirects).
	Via string `json:"via,omitempty"`
}

func (u *uiHandler) handleWrite(w http.ResponseWriter, r *http.Request) {
	var req writeRequest
	if !decodeStrict(w, r, &req) || !checkName(w, req.Key, "key") {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	writeJSON(w, http.StatusOK, u.write(ctx, req.Key, req.Value))
}

// uiClient follows redirects, like curl -L; no idle connections outlive a
// request.
var uiClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// putVia writes key = value with PUT /kv/{key} on the node at base.
func putVia(ctx context.Context, base, key, value string) writeResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/kv/"+url.PathEscape(key), bytes.NewReader([]byte(value)))
	if err != nil {
		return writeResult{Status: http.StatusBadRequest, Error: err.Error()}
	}
	resp, err := uiClient.Do(req)
	if err != nil {
		return writeResult{Status: http.StatusBadGateway, Error: err.Error()}
	}
	defer resp.Body.Close()
	out := writeResult{Status: resp.StatusCode, Via: resp.Request.URL.Host}
	out.Index, _ = strconv.ParseUint(resp.Header.Get("X-Raft-Index"), 10, 64)
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		out.Error = e.Error
	}
	return out
}
