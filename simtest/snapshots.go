package simtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"maps"
	"slices"

	"github.com/raftline/raft"
)

// Snapshots in the simulator: each node snapshots its key-value state
// every few applied entries (a per-run threshold), keeps the newest two on
// its simulated disk, sends them to followers in small chunks, installs
// the ones it receives, and compacts its log. The disk loses what was not
// yet durable on a crash, and with torn writes a snapshot whose commit was
// in flight may survive corrupt (its rename reached the disk before its
// data): recovery must detect it and fall back to the previous one.

// simSnapshot is a snapshot file on a simulated disk.
type simSnapshot struct {
	meta raft.SnapshotMeta
	data []byte
}

// snapsKept is how many snapshots a simulated disk keeps, as the stores do.
const snapsKept = 2

// snapDisk is a node's durable snapshots, newest first.
type snapDisk struct{ snaps []simSnapshot }

func (d *snapDisk) commit(sn simSnapshot) {
	d.snaps = slices.DeleteFunc(d.snaps, func(o simSnapshot) bool {
		return o.meta.Index == sn.meta.Index && o.meta.Term == sn.meta.Term
	})
	d.snaps = append(d.snaps, sn)
	slices.SortStableFunc(d.snaps, func(a, b simSnapshot) int { return cmpU64(b.meta.Index, a.meta.Index) })
	if len(d.snaps) > snapsKept {
		d.snaps = d.snaps[:snapsKept]
	}
}

func (d *snapDisk) find(meta raft.SnapshotMeta) (simSnapshot, bool) {
	for _, sn := range d.snaps {
		if sn.meta.Same(meta) {
			return sn, true
		}
	}
	return simSnapshot{}, false
}

func (d *snapDisk) remove(meta raft.SnapshotMeta) {
	d.snaps = slices.DeleteFunc(d.snaps, func(o simSnapshot) bool { return o.meta.Same(meta) })
}

func (d *snapDisk) newest() uint64 {
	if len(d.snaps) == 0 {
		return 0
	}
	return d.snaps[0].meta.Index
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// intact reports whether a stored snapshot's bytes match its meta.
func (sn simSnapshot) intact() bool {
	return int64(len(sn.data)) == sn.meta.Size && checksum(sn.data) == sn.meta.Checksum
}

// snapshotBytes encodes the store deterministically (sorted keys), so equal
// states give equal snapshots and equal digests.
func (s *kvStore) snapshotBytes() []byte {
	b := binary.AppendUvarint(nil, uint64(len(s.data)))
	for _, k := range slices.Sorted(maps.Keys(s.data)) {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(s.data[k])))
		b = append(b, s.data[k]...)
	}
	return b
}

// digest summarizes the state for the state-machine invariant.
func (s *kvStore) digest() uint64 {
	h := fnv.New64a()
	h.Write(s.snapshotBytes())
	return h.Sum64()
}

var errBadSnapshot = errors.New("simtest: malformed snapshot")

func decodeKV(b []byte) (*kvStore, error) {
	s := newKVStore()
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errBadSnapshot
	}
	b = b[k:]
	for range n {
		var kv [2]string
		for j := range kv {
			l, k := binary.Uvarint(b)
			if k <= 0 || l > uint64(len(b)-k) {
				return nil, errBadSnapshot
			}
			kv[j] = string(b[k : k+int(l)])
			b = b[k+int(l):]
		}
		s.data[kv[0]] = kv[1]
	}
	if len(b) != 0 {
		return nil, errBadSnapshot
	}
	return s, nil
}

// maybeSnapshot takes a snapshot of node i's state once enough entries were
// applied since the last one and none is being written: it is captured now
// and durable when the disk gets to it.
func (s *sim) maybeSnapshot(i int) {
	n := s.nodes[i]
	if n.snapBusy || n.sinceSnap < s.tuning.SnapEvery || n.meta.Index == 0 {
		return
	}
	data := n.kv.snapshotBytes()
	meta := n.meta
	meta.Size, meta.Checksum = int64(len(data)), checksum(data)
	n.snapBusy, n.sinceSnap = true, 0
	s.queueWrite(n, i, pendingWrite{snap: &simSnapshot{meta: meta, data: data}, taken: true})
}

// fillChunk reads the bytes of a MsgSnap the core emitted from node n's
// disk. It reports false when the snapshot is gone (the core is told).
func (s *sim) fillChunk(n *simNode, m *raft.Message) bool {
	k := *m.Chunk
	sn, ok := n.snaps.find(k.Meta)
	if !ok || uint64(len(sn.data)) < k.Offset+k.Length {
		n.core.SnapshotSendFailed(m.To, k.Meta)
		return false
	}
	k.Data = sn.data[k.Offset : k.Offset+k.Length : k.Offset+k.Length]
	k.Checksum = checksum(k.Data)
	m.Chunk = &k
	s.snapStats.ChunksSent++
	return true
}

// writeChunk is a chunk write completing on node i's disk: the chunk joins
// the partial snapshot (which a crash loses), its ack leaves, and after the
// last one the snapshot is verified and its commit queued.
func (s *sim) writeChunk(i int, w *raft.SnapshotWrite) {
	n := s.nodes[i]
	if w.Offset == 0 {
		n.recv = &simSnapshot{meta: w.Meta}
	}
	if n.recv == nil || !n.recv.meta.Same(w.Meta) || uint64(len(n.recv.data)) != w.Offset {
		n.recv = nil
		n.core.SnapshotReceived(w.Meta, fmt.Errorf("chunk at %d does not continue the partial snapshot", w.Offset))
		return
	}
	n.recv.data = append(n.recv.data, w.Data...)
	s.emit(n, w.Ack)
	if !w.Last {
		return
	}
	sn := *n.recv
	n.recv = nil
	if !sn.intact() {
		n.core.SnapshotReceived(sn.meta, fmt.Errorf("received %v does not match its checksum", sn.meta))
		return
	}
	s.queueWrite(n, i, pendingWrite{snap: &sn})
}

// commitSnapshot is a snapshot's commit (fsync, rename) completing.
func (s *sim) commitSnapshot(n *simNode, w *pendingWrite) {
	n.snaps.commit(*w.snap)
	s.check.snapshotDurable(n, w.snap.meta)
	n.noteMoment(momentSnapshot)
	if w.taken {
		s.snapStats.Taken++
		n.snapBusy = false
		n.core.SnapshotTaken(w.snap.meta)
	} else {
		n.core.SnapshotReceived(w.snap.meta, nil)
	}
}

// installSnapshot restores node i's state machine from a snapshot the core
// installed (already durable on its disk).
func (s *sim) installSnapshot(i int, meta raft.SnapshotMeta) {
	n := s.nodes[i]
	sn, ok := n.snaps.find(meta)
	if !ok || !sn.intact() {
		s.fail(fmt.Errorf("node %d installs %v, which its disk does not hold intact", n.id, meta))
		return
	}
	kv, err := decodeKV(sn.data)
	if err != nil {
		s.fail(fmt.Errorf("node %d: %v: %v", n.id, meta, err))
		return
	}
	if meta.Index <= n.applied {
		s.fail(fmt.Errorf("node %d installs %v at or before its applied index %d: its state would go back", n.id, meta, n.applied))
		return
	}
	n.kv, n.applied, n.meta, n.sinceSnap = kv, meta.Index, meta, 0
	s.snapStats.Installed++
	s.check.stateAt(n, meta.Index)
	n.noteMoment(momentSnapshot)
	n.core.Applied(meta.Index)
}

// compact is a compaction completing on node n's disk.
func (s *sim) compact(n *simNode, index uint64) {
	s.check.compaction(n, index)
	s.snapStats.Compactions++
	if err := n.store.Compact(index); err != nil && !errors.Is(err, raft.ErrCompacted) && !errors.Is(err, raft.ErrUnavailable) {
		s.fail(fmt.Errorf("node %d compacting to %d: %w", n.id, index, err))
	}
	n.noteMoment(momentSnapshot)
}

// recoverSnapshot restores a booting node from the newest intact snapshot
// covering the start of its log, and makes the log agree with it, as Node
// does. A corrupt snapshot is dropped (the store would list it again).
func (s *sim) recoverSnapshot(n *simNode) (raft.SnapshotMeta, bool) {
	first, _ := n.store.FirstIndex()
	last, _ := n.store.LastIndex()
	for _, sn := range slices.Clone(n.snaps.snaps) {
		if sn.meta.Index+1 < first {
			break
		}
		kv, err := decodeKV(sn.data)
		if !sn.intact() || err != nil {
			s.tracef("node %d: %v is corrupt; falling back", n.id, sn.meta)
			s.snapStats.Fallbacks++
			n.snaps.remove(sn.meta)
			continue
		}
		if t, err := n.store.Term(sn.meta.Index); sn.meta.Index > last || err != nil || t != sn.meta.Term {
			if err := n.store.InstallSnapshot(sn.meta.Index, sn.meta.Term); err != nil {
				s.fail(fmt.Errorf("node %d resetting its log to %v: %w", n.id, sn.meta, err))
				return raft.SnapshotMeta{}, false
			}
		}
		n.kv = kv
		s.snapStats.Restored++
		return sn.meta, true
	}
	if first > 1 {
		s.fail(fmt.Errorf("node %d cannot restart: its log starts at %d and no intact snapshot covers the entries before it", n.id, first))
		return raft.SnapshotMeta{}, false
	}
	return raft.SnapshotMeta{}, true
}

// tearSnapshot models a crash with a snapshot's commit in flight on a disk
// that renamed before the data was durable: the snapshot survives, corrupt.
func (s *sim) tearSnapshot(n *simNode, w pendingWrite) {
	for _, o := range n.snaps.snaps {
		if o.meta.Index == w.snap.meta.Index && o.meta.Term == w.snap.meta.Term {
			return // the same snapshot is already intact on the disk
		}
	}
	sn := simSnapshot{meta: w.snap.meta, data: slices.Clone(w.snap.data)}
	if len(sn.data) > 0 && s.rng.IntN(2) == 0 {
		sn.data[s.rng.IntN(len(sn.data))] ^= 0x40
	} else {
		sn.data = sn.data[:s.rng.IntN(len(sn.data)+1)]
		sn.data = append(sn.data, 0) // never the whole, valid file
	}
	n.snaps.commit(sn)
	s.snapStats.Torn++
	s.tracef("crash tears node %d's %v", n.id, sn.meta)
}
