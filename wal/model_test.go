package wal

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"

	"github.com/raftline/raft"
)

// model is the reference log a WAL must match: the raft.Storage semantics
// written out plainly.
type model struct {
	hs       raft.HardState
	first    uint64
	prevTerm uint64
	ents     []raft.Entry // ents[i] has index first+i
}

func newModel() *model { return &model{first: 1} }

func (m *model) clone() *model {
	c := *m
	c.ents = slices.Clone(m.ents)
	return &c
}

func (m *model) last() uint64 { return m.first + uint64(len(m.ents)) - 1 }

func (m *model) save(hs raft.HardState, ents []raft.Entry) {
	if !hs.IsZero() {
		m.hs = hs
	}
	for _, e := range ents {
		if e.Index < m.first {
			continue
		}
		m.ents = append(m.ents[:e.Index-m.first], e)
	}
}

func (m *model) compact(index uint64) {
	m.prevTerm = m.ents[index-m.first].Term
	m.ents = slices.Clone(m.ents[index+1-m.first:])
	m.first = index + 1
}

// termAt returns the term of entry index, which m holds or has compacted
// to.
func (m *model) termAt(index uint64) uint64 {
	if index+1 == m.first {
		return m.prevTerm
	}
	return m.ents[index-m.first].Term
}

// installResets reports whether installing a snapshot of (index, term)
// drops every entry, rather than compacting up to it.
func (m *model) installResets(index, term uint64) bool {
	return index+1 < m.first || index > m.last() || m.termAt(index) != term
}

// install is InstallSnapshot(index, term), for index+1 ≥ first.
func (m *model) install(index, term uint64) {
	switch {
	case m.installResets(index, term):
		m.ents, m.first, m.prevTerm = nil, index+1, term
	case index >= m.first:
		m.compact(index)
	}
}

// diff describes how w differs from m, or returns "" when it holds the
// same hard state and every entry m holds (w may keep an older prefix: a
// reopened WAL compacts at segment granularity).
func (m *model) diff(w *WAL) string {
	hs, err := w.InitialState()
	if err != nil || hs != m.hs {
		return fmt.Sprintf("hard state %+v (%v), want %+v", hs, err, m.hs)
	}
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	if last != m.last() || first > m.first {
		return fmt.Sprintf("log [%d, %d], want [%d, %d]", first, last, m.first, m.last())
	}
	if t, err := w.Term(m.first - 1); err != nil || t != m.prevTerm {
		return fmt.Sprintf("term of %d: %d (%v), want %d", m.first-1, t, err, m.prevTerm)
	}
	if len(m.ents) == 0 {
		return ""
	}
	got, err := w.Entries(m.first, last+1, ^uint64(0))
	if err != nil {
		return fmt.Sprintf("entries: %v", err)
	}
	for i := range m.ents {
		if !sameEntry(got[i], m.ents[i]) {
			return fmt.Sprintf("entry %d: got %+v, want %+v", m.ents[i].Index, got[i], m.ents[i])
		}
	}
	return ""
}

func sameEntry(a, b raft.Entry) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && bytes.Equal(a.Data, b.Data)
}

// op is one step of a generated workload: a Save, a Compact when compact
// is non-zero, or an InstallSnapshot when install is.
type op struct {
	compact uint64
	hs      raft.HardState
	ents    []raft.Entry

	install, installTerm uint64
}

// genOps generates a raft-like workload: appends in the current term,
// term changes that overwrite an uncommitted suffix, hard-state updates
// and compactions of the committed prefix. The sequence for a seed never
// changes: testdata/legacy-v1 was written from it.
func genOps(seed uint64, n int) []op { return genWorkload(seed, n, false) }

// genInstallOps is genOps with snapshot installs mixed in: at a committed
// entry the log holds (a compaction), past the end of the log, and over an
// uncommitted suffix of other terms (both of which drop every entry).
func genInstallOps(seed uint64, n int) []op { return genWorkload(seed, n, true) }

func genWorkload(seed uint64, n int, installs bool) []op {
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	m := newModel()
	term, commit := uint64(1), uint64(0)
	var ops []op
	for len(ops) < n {
		var o op
		last := m.last()
		if installs && r.IntN(8) == 0 {
			o.install, o.installTerm = genInstall(r, m, &term, &commit)
			if o.install != 0 {
				m.install(o.install, o.installTerm)
				ops = append(ops, o)
			}
			continue
		}
		switch p := r.IntN(10); {
		case p == 0 && commit >= m.first:
			o.compact = m.first + r.Uint64N(commit-m.first+1)
			m.compact(o.compact)
			ops = append(ops, o)
			continue
		case p <= 2 && last > commit:
			term++
			o.hs = raft.HardState{Term: term, Vote: raft.NodeID(1 + r.IntN(3)), Commit: commit}
			o.ents = genEntries(r, commit+1+r.Uint64N(last-commit), 1+r.IntN(4), term)
		default:
			o.ents = genEntries(r, last+1, 1+r.IntN(8), term)
			if r.IntN(2) == 0 {
				commit = min(last, commit+uint64(r.IntN(6)))
				o.hs = raft.HardState{Term: term, Vote: 1, Commit: commit}
			}
		}
		m.save(o.hs, o.ents)
		ops = append(ops, o)
	}
	return ops
}

// genInstall picks a snapshot (index, term) to install on m, updating the
// workload's term and commit index, or returns index 0 for none.
func genInstall(r *rand.Rand, m *model, term, commit *uint64) (uint64, uint64) {
	last := m.last()
	switch r.IntN(3) {
	case 0: // a committed entry the log holds: compaction
		if *commit+1 < m.first {
			return 0, 0
		}
		i := m.first - 1 + r.Uint64N(*commit-m.first+2)
		if i == 0 {
			return 0, 0
		}
		return i, m.termAt(i)
	case 1: // past the end of the log
		i := last + 1 + r.Uint64N(12)
		*term += r.Uint64N(2)
		*commit = i
		return i, *term
	default: // over an uncommitted suffix, from a newer leader
		if last <= *commit || last < m.first {
			return 0, 0
		}
		i := *commit + 1 + r.Uint64N(last-*commit)
		*term++
		*commit = i
		return i, *term
	}
}

func genEntries(r *rand.Rand, first uint64, n int, term uint64) []raft.Entry {
	ents := make([]raft.Entry, n)
	for i := range ents {
		data := make([]byte, r.IntN(200))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		ents[i] = raft.Entry{Index: first + uint64(i), Term: term, Type: raft.EntryType(r.IntN(3)), Data: data}
	}
	return ents
}

// apply runs o on w and the model; the model is only updated on success.
func apply(w *WAL, m *model, o op) error {
	if err := run(w, o); err != nil {
		return err
	}
	m.apply(o)
	return nil
}

// run runs o on w. A compaction's segments are deleted before it returns,
// as they would be soon after in a running WAL, so the file system's
// operations come in one order on every run.
func run(w *WAL, o op) error {
	var err error
	switch {
	case o.install != 0:
		err = w.InstallSnapshot(o.install, o.installTerm)
	case o.compact != 0:
		err = w.Compact(o.compact)
	default:
		return w.Save(o.hs, o.ents)
	}
	w.rm.flush()
	return err
}

// apply updates the model as o does.
func (m *model) apply(o op) {
	switch {
	case o.install != 0:
		m.install(o.install, o.installTerm)
	case o.compact != 0:
		m.compact(o.compact)
	default:
		m.save(o.hs, o.ents)
	}
}

// quietLogger drops recovery warnings the tests provoke on purpose.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// memOptions returns options for a WAL on fs with tiny segments.
func memOptions(fs *memFS, segmentSize int64) Options {
	return Options{SegmentSize: segmentSize, Logger: quietLogger(), fs: fs}
}
