package main

import "net/http"

// This file holds TEACHING-ONLY endpoints, served only in single-process
// mode: they cut a node off the in-memory network so that a reader can
// watch a leader fail and a new one take over (docs/tutorial.md). A real
// deployment has no such thing; its failures are real.

func (s *server) debugRoutes(mux *http.ServeMux) {
	// POST /debug/isolate cuts this node off from every other node (its
	// HTTP API stays up, so you can watch it through /status).
	mux.HandleFunc("POST /debug/isolate", func(w http.ResponseWriter, r *http.Request) {
		s.network.Isolate(s.id)
		writeJSON(w, http.StatusOK, map[string]any{"isolated": uint64(s.id)})
	})
	// POST /debug/heal reconnects every node.
	mux.HandleFunc("POST /debug/heal", func(w http.ResponseWriter, r *http.Request) {
		s.network.Heal()
		writeJSON(w, http.StatusOK, map[string]any{"healed": true})
	})
}
