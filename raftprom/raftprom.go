// Package raftprom exports a raft.Node's metrics to Prometheus.
//
// It is a package of its own so that the raft package keeps its promise of
// depending on nothing outside the standard library: a program that
// imports only github.com/raftline/raft never compiles or links the
// Prometheus client; one that wants the export imports this package too.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(raftprom.NewCollector(node, raftprom.Opts{}))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Every scrape asks the node for one Status (a round trip to the goroutine
// that owns the raft state) and turns it into metrics named after
// Prometheus' conventions: counters end in _total, durations are in
// seconds, sizes in bytes. docs/operations.md says what each one means and
// which to alert on.
package raftprom

import (
	"maps"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftline/raft"
)

// Opts configures a Collector.
type Opts struct {
	// Namespace prefixes every metric name; default "raftline".
	Namespace string
	// ConstLabels are added to every metric, for a process that runs
	// several raft groups (a "group" label, say). A process with one node
	// needs none: Prometheus' own instance label tells nodes apart.
	ConstLabels prometheus.Labels
}

// StatusSource is what a Collector reads: *raft.Node satisfies it. A
// program that restarts its node behind one registry can hand in its own
// source that always answers for the current node.
type StatusSource interface {
	Status() raft.Status
}

// Collector is a prometheus.Collector for one node.
type Collector struct {
	node StatusSource
	d    descs
}

// NewCollector returns a Collector reading node's Status at every scrape.
func NewCollector(node StatusSource, opts Opts) *Collector {
	ns := opts.Namespace
	if ns == "" {
		ns = "raftline"
	}
	return &Collector{node: node, d: newDescs(ns, opts.ConstLabels)}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.d.all() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.node.Status()
	m := st.Metrics
	d := &c.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}

	gauge(d.term, float64(st.Term))
	gauge(d.hasLeader, boolValue(m.HasLeader))
	for _, r := range []raft.Role{raft.Follower, raft.PreCandidate, raft.Candidate, raft.Leader} {
		gauge(d.role, boolValue(st.Role == r), r.String())
	}
	gauge(d.commitIndex, float64(st.Commit))
	gauge(d.appliedIndex, float64(st.Applied))
	gauge(d.lastIndex, float64(st.LastIndex))
	gauge(d.firstIndex, float64(st.FirstIndex))
	gauge(d.snapshotIndex, float64(st.SnapshotIndex))
	gauge(d.applyBacklog, float64(m.ApplyBacklog))
	gauge(d.leaderContact, m.LeaderContact.Seconds())
	gauge(d.snapshotSize, float64(m.SnapshotBytes))
	gauge(d.failed, boolValue(st.Err != nil))

	counter(d.leaderChanges, m.LeaderChanges)
	counter(d.electionsStarted, m.ElectionsStarted)
	counter(d.electionsWon, m.ElectionsWon)
	counter(d.proposals, m.ProposalsCommitted, "committed")
	counter(d.proposals, m.ProposalsFailed, "failed")
	counter(d.proposals, m.ProposalsDropped, "dropped")
	counter(d.sendErrors, m.SendErrors)
	counter(d.recvRejected, m.RecvRejected)
	counter(d.eventsDropped, m.EventsDropped)
	counter(d.snapshotsTaken, m.SnapshotsTaken)
	counter(d.snapshotsReceived, m.SnapshotsReceived)
	counter(d.snapshotsSent, m.SnapshotsSent)
	counter(d.compactions, m.Compactions)
	counter(d.readRounds, m.ReadIndexRounds)
	counter(d.readsFailed, m.ReadsFailed)
	counter(d.leaseReads, m.LeaseReads)
	ch <- prometheus.MustNewConstMetric(d.ownerBusy, prometheus.CounterValue, m.OwnerBusy.Seconds())
	byType(ch, d.messagesSent, m.MessagesSent)
	byType(ch, d.messagesDropped, m.MessagesDropped)
	byType(ch, d.messagesRefused, m.MessagesRefused)

	ch <- histogram(d.commitLatency, m.CommitLatency)
	ch <- histogram(d.applyLatency, m.ApplyLatency)
	ch <- histogram(d.saveLatency, m.SaveLatency)
	ch <- histogram(d.snapshotDuration, m.SnapshotDuration)
	ch <- histogram(d.installDuration, m.InstallDuration)

	for _, id := range slices.Sorted(maps.Keys(m.Peers)) {
		p, peer := m.Peers[id], strconv.FormatUint(uint64(id), 10)
		gauge(d.peerContact, p.LastContact.Seconds(), peer)
		gauge(d.peerLag, float64(p.MatchLag), peer)
		ch <- histogram(d.peerRTT, p.RPCLatency, peer)
	}
}

// byType exports per-message-type counters. Every known type is exported,
// zero or not, so that a rate() over a type that starts at zero sees its
// first increase.
func byType(ch chan<- prometheus.Metric, desc *prometheus.Desc, counts map[raft.MessageType]uint64) {
	for t := raft.MessageType(1); t.Valid(); t++ {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(counts[t]), t.String())
	}
}

// histogram turns the library's per-bucket counts into Prometheus'
// cumulative ones; observations above the last bound count only in +Inf,
// which Prometheus derives from the total.
func histogram(desc *prometheus.Desc, h raft.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, bound := range h.Bounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[bound] = cum
	}
	return prometheus.MustNewConstHistogram(desc, h.Count, h.Sum, buckets, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
