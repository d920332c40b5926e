package main

import (
	"net/http/httptest"
	"testing"
)

// BenchmarkMetricsScrape is one Prometheus scrape of a leader's /metrics:
// a Status round trip to the raft goroutine, and the text encoding.
func BenchmarkMetricsScrape(b *testing.B) {
	_, leader := startTestCluster(b)
	h := leader.api.metrics.handler()
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
