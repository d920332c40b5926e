package wal

import (
	"fmt"

	"github.com/raftline/raft"
)

// entryOverhead matches the raft package's per-entry size estimate, so the
// maxBytes limit of Entries means the same as for MemoryStorage.
const entryOverhead = 24

func entrySize(e *raft.Entry) uint64 { return uint64(len(e.Data)) + entryOverhead }

// InitialState implements raft.Storage.
func (w *WAL) InitialState() (raft.HardState, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return raft.HardState{}, ErrClosed
	}
	return w.hs, nil
}

// FirstIndex implements raft.Storage.
func (w *WAL) FirstIndex() (uint64, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return 0, ErrClosed
	}
	return w.first, nil
}

// LastIndex implements raft.Storage.
func (w *WAL) LastIndex() (uint64, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return 0, ErrClosed
	}
	return w.lastIndex(), nil
}

func (w *WAL) lastIndex() uint64 { return w.first + uint64(w.ents.len()) - 1 }

// Term implements raft.Storage. Terms are kept in memory for every live
// entry, so it never reads the disk.
func (w *WAL) Term(index uint64) (uint64, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return 0, ErrClosed
	}
	return w.term(index)
}

func (w *WAL) term(index uint64) (uint64, error) {
	switch {
	case index+1 < w.first:
		return 0, raft.ErrCompacted
	case index+1 == w.first:
		return w.prevTerm, nil
	case index > w.lastIndex():
		return 0, raft.ErrUnavailable
	}
	return w.ents.at(int(index - w.first)).term, nil
}

// Entries implements raft.Storage. Recent entries come from the cache;
// older ones are read from their segments.
func (w *WAL) Entries(lo, hi, maxBytes uint64) ([]raft.Entry, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return nil, ErrClosed
	}
	if lo < w.first {
		return nil, raft.ErrCompacted
	}
	if hi > w.lastIndex()+1 {
		return nil, raft.ErrUnavailable
	}
	if lo >= hi {
		return nil, nil
	}
	if ents, ok := w.cache.slice(lo, hi); ok {
		return limitSize(ents, maxBytes), nil
	}
	var out []raft.Entry
	size := uint64(0)
	for i := lo; i < hi; i++ {
		var e raft.Entry
		if c, ok := w.cache.slice(i, i+1); ok {
			e = c[0]
		} else {
			var err error
			if e, err = w.readEntry(i); err != nil {
				return nil, err
			}
		}
		size += entrySize(&e)
		if len(out) > 0 && size > maxBytes {
			break
		}
		out = append(out, e)
	}
	return out[:len(out):len(out)], nil
}

// readEntry reads entry index from its segment. Data read back is checked
// again: a file can rot after recovery, and a wrong entry must become an
// error, never a silently different log.
func (w *WAL) readEntry(index uint64) (raft.Entry, error) {
	pos := w.ents.at(int(index - w.first))
	seg := w.segment(pos.seq)
	if seg == nil {
		return raft.Entry{}, fmt.Errorf("%w: entry %d points at missing segment %d", ErrCorrupt, index, pos.seq)
	}
	buf := make([]byte, pos.size)
	if _, err := seg.f.ReadAt(buf, pos.off); err != nil {
		return raft.Entry{}, fmt.Errorf("wal: reading entry %d from %s at offset %d: %w", index, seg.name, pos.off, err)
	}
	return checkedEntry(buf, index, pos, seg)
}

// checkedEntry decodes the record of entry index read back from seg. The
// entry's data aliases rec.
func checkedEntry(rec []byte, index uint64, pos entryPos, seg *segment) (raft.Entry, error) {
	typ, payload, _, err := decodeRecord(rec)
	if err == nil && typ != typeEntry {
		err = fmt.Errorf("record type %#x, want an entry", typ)
	}
	var e raft.Entry
	if err == nil {
		e, err = decodeEntry(payload)
	}
	if err == nil && (e.Index != index || e.Term != pos.term) {
		err = fmt.Errorf("found entry %d term %d, want %d term %d", e.Index, e.Term, index, pos.term)
	}
	if err != nil {
		return raft.Entry{}, fmt.Errorf("%w: %s offset %d: %w", ErrCorrupt, seg.name, pos.off, err)
	}
	return e, nil
}

// warmCache fills the cache after recovery with the newest entries that
// fit, read back in runs of adjacent records (one read and one buffer per
// run, which the cached entries share; it is never written again).
func (w *WAL) warmCache() error {
	if w.cache.limit < 0 {
		return nil
	}
	lo, budget := w.ents.len(), w.cache.limit
	for lo > 0 {
		size := w.ents.at(lo-1).size - recordOverhead - entryFixed + entryOverhead
		if size > budget {
			break
		}
		budget -= size
		lo--
	}
	for i := lo; i < w.ents.len(); {
		first, last := w.ents.at(i), w.ents.at(i)
		j := i + 1
		for ; j < w.ents.len(); j++ {
			p := w.ents.at(j)
			if p.seq != first.seq || p.off != last.off+last.size {
				break
			}
			last = p
		}
		seg := w.segment(first.seq)
		buf := make([]byte, last.off+last.size-first.off)
		if _, err := seg.f.ReadAt(buf, first.off); err != nil {
			return fmt.Errorf("wal: reading %s at offset %d: %w", seg.name, first.off, err)
		}
		for k := i; k < j; k++ {
			pos := w.ents.at(k)
			e, err := checkedEntry(buf[pos.off-first.off:][:pos.size], w.first+uint64(k), pos, seg)
			if err != nil {
				return err
			}
			w.cache.add(e)
		}
		i = j
	}
	return nil
}

// segment returns the live segment with sequence number seq.
func (w *WAL) segment(seq uint64) *segment {
	if len(w.segs) == 0 || seq < w.segs[0].seq {
		return nil
	}
	i := seq - w.segs[0].seq
	if i >= uint64(len(w.segs)) {
		return nil
	}
	return w.segs[i]
}

// limitSize returns the longest prefix of ents within maxBytes, never
// fewer than one entry (the rule of raft.Storage.Entries).
func limitSize(ents []raft.Entry, maxBytes uint64) []raft.Entry {
	if len(ents) == 0 {
		return ents
	}
	size := entrySize(&ents[0])
	n := 1
	for ; n < len(ents); n++ {
		size += entrySize(&ents[n])
		if size > maxBytes {
			break
		}
	}
	return ents[:n:n]
}
