package main

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/raftline/raft/raftprom"
)

// This file serves GET /metrics in Prometheus' text format: the library's
// metrics (package raftprom: raftline_*), this service's own
// (kvexample_*), and the Go runtime's and the process's (go_*, process_*).
// docs/operations.md says what each means and which to alert on.
//
// Each node has a registry of its own, not Prometheus' global one: the
// single-process mode runs three nodes in one process, each scraped on its
// own port.

// nodeMetrics are a node's registry and the service's own metrics in it.
type nodeMetrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newNodeMetrics registers everything /metrics exports for s.
func newNodeMetrics(s *server) *nodeMetrics {
	reg := prometheus.NewRegistry()
	m := &nodeMetrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvexample_http_requests_total",
			Help: "HTTP requests answered, by method and status code (307: sent to the leader; 503/504: no leader, or an outcome unknown).",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvexample_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by method; watches and lock waits last as long as they wait.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method"}),
	}
	reg.MustRegister(
		raftprom.NewCollector(s.raft, raftprom.Opts{}),
		flowCollector{s.contact},
		m.requests, m.duration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// instrument counts and times every request h answers.
func (m *nodeMetrics) instrument(h http.Handler) http.Handler {
	return promhttp.InstrumentHandlerCounter(m.requests, promhttp.InstrumentHandlerDuration(m.duration, h))
}

// handler serves GET /metrics.
func (m *nodeMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// flowDesc is kvexample_messages_received_total.
var flowDesc = prometheus.NewDesc("kvexample_messages_received_total",
	"Raft messages this node received, by sender and type: which links carry traffic, and which fell silent.",
	[]string{"from", "type"}, nil)

// flowCollector exports the contact tracker's counts.
type flowCollector struct{ contact *contactTracker }

// Describe implements prometheus.Collector.
func (f flowCollector) Describe(ch chan<- *prometheus.Desc) { ch <- flowDesc }

// Collect implements prometheus.Collector.
func (f flowCollector) Collect(ch chan<- prometheus.Metric) {
	if f.contact == nil {
		return
	}
	for k, n := range f.contact.flows() {
		ch <- prometheus.MustNewConstMetric(flowDesc, prometheus.CounterValue, float64(n),
			strconv.FormatUint(uint64(k.From), 10), k.Type.String())
	}
}
