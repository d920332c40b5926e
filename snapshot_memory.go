package raft

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// MemorySnapshotStore is a SnapshotStore kept in memory, for tests,
// simulations and in-memory clusters. It keeps the newest two snapshots.
// It is safe for concurrent use; a reader opened before a snapshot is
// dropped still reads it.
type MemorySnapshotStore struct {
	mu    sync.Mutex
	snaps []memSnapshot // newest first
}

type memSnapshot struct {
	meta SnapshotMeta
	data []byte
}

// memSnapshotsKept is how many snapshots a MemorySnapshotStore keeps.
const memSnapshotsKept = 2

// NewMemorySnapshotStore returns an empty MemorySnapshotStore.
func NewMemorySnapshotStore() *MemorySnapshotStore { return &MemorySnapshotStore{} }

// Create implements SnapshotStore.
func (s *MemorySnapshotStore) Create() (SnapshotSink, error) {
	return &memSnapshotSink{store: s}, nil
}

// List implements SnapshotStore.
func (s *MemorySnapshotStore) List() ([]SnapshotMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	metas := make([]SnapshotMeta, len(s.snaps))
	for i, sn := range s.snaps {
		metas[i] = sn.meta
	}
	return metas, nil
}

// Open implements SnapshotStore.
func (s *MemorySnapshotStore) Open(meta SnapshotMeta) (SnapshotReader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sn := range s.snaps {
		if sn.meta.Same(meta) {
			return nopCloserAt{bytes.NewReader(sn.data)}, nil
		}
	}
	return nil, fmt.Errorf("%w: %v", ErrSnapshotNotFound, meta)
}

// Remove implements SnapshotRemover.
func (s *MemorySnapshotStore) Remove(meta SnapshotMeta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snaps = slices.DeleteFunc(s.snaps, func(sn memSnapshot) bool { return sn.meta.Same(meta) })
	return nil
}

func (s *MemorySnapshotStore) commit(meta SnapshotMeta, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snaps = slices.DeleteFunc(s.snaps, func(sn memSnapshot) bool { return sn.meta.Same(meta) })
	s.snaps = append(s.snaps, memSnapshot{meta: meta, data: data})
	slices.SortStableFunc(s.snaps, func(a, b memSnapshot) int { return cmpUint64(b.meta.Index, a.meta.Index) })
	if len(s.snaps) > memSnapshotsKept {
		clear(s.snaps[memSnapshotsKept:])
		s.snaps = s.snaps[:memSnapshotsKept]
	}
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// memSnapshotSink collects a snapshot's bytes until Commit.
type memSnapshotSink struct {
	store *MemorySnapshotStore
	buf   bytes.Buffer
	done  bool
}

var errSinkDone = errors.New("raft: snapshot sink already committed or aborted")

func (k *memSnapshotSink) Write(p []byte) (int, error) {
	if k.done {
		return 0, errSinkDone
	}
	return k.buf.Write(p)
}

func (k *memSnapshotSink) Commit(meta SnapshotMeta) error {
	if k.done {
		return errSinkDone
	}
	k.done = true
	if int64(k.buf.Len()) != meta.Size {
		return fmt.Errorf("%w: %v committed with %d bytes written", ErrSnapshotCorrupt, meta, k.buf.Len())
	}
	k.store.commit(meta, bytes.Clone(k.buf.Bytes()))
	k.buf = bytes.Buffer{}
	return nil
}

func (k *memSnapshotSink) Abort() error {
	k.done = true
	k.buf = bytes.Buffer{}
	return nil
}

// nopCloserAt adds a no-op Close to a ReaderAt.
type nopCloserAt struct{ *bytes.Reader }

func (nopCloserAt) Close() error { return nil }
