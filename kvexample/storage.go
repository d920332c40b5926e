package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/raftline/raft"
	"github.com/raftline/raft/snapstore"
	"github.com/raftline/raft/wal"
)

// This file chooses where a node keeps its log, its hard state and its
// snapshots: a WAL and snapshot files in its data directory, or memory.

// errNeedData is why a node on a real network cannot keep its log in
// memory. parseOptions already insists on --data; this guards startNode.
var errNeedData = errors.New("multi-process mode needs a data directory (--data): " +
	"a node that forgets its vote or its log on restart can break safety")

// snapshotDir is the directory, inside a node's data directory, that holds
// its snapshot files. The WAL keeps its segments in the data directory
// itself and ignores names it does not know, and a snapshot store wants a
// directory of its own; a data directory written before snapshots existed
// simply has no such directory yet, and it is created on the next start.
const snapshotDir = "snapshots"

// walSegmentSize is smaller than the WAL's 64 MiB default: each segment is
// preallocated in full and read in full on recovery, and this example's
// logs are small, so the default would cost a tutorial reader 64 MiB of
// disk per node and a slower restart for nothing.
const walSegmentSize = 4 << 20

// nodeStorage is a node's log and snapshot store, and how to close them.
type nodeStorage struct {
	log   raft.Storage
	snaps raft.SnapshotStore // nil: the library's in-memory default
	close func() error
}

// newStorage opens the WAL and the snapshot store in cfg.DataDir, or
// memory when there is none (single-process mode without --data, whose
// state then does not survive a restart).
func newStorage(cfg nodeConfig) (nodeStorage, error) {
	if cfg.Storage != nil {
		return *cfg.Storage, nil
	}
	if cfg.DataDir == "" {
		if cfg.Network == nil {
			return nodeStorage{}, errNeedData
		}
		// raft.NewNode gives a MemoryStorage a MemorySnapshotStore.
		return nodeStorage{log: raft.NewMemoryStorage(), close: func() error { return nil }}, nil
	}
	// The WAL locks the directory, so a second process started by mistake
	// on the same --data fails here instead of corrupting the log.
	w, err := wal.Open(cfg.DataDir, wal.Options{SegmentSize: walSegmentSize, Logger: cfg.Logger})
	if err != nil {
		return nodeStorage{}, fmt.Errorf("node %d: opening the WAL in %s: %w", cfg.ID, cfg.DataDir, err)
	}
	if err := checkIdentity(cfg.DataDir, cfg.ID, cfg.ClusterID); err != nil {
		w.Close()
		return nodeStorage{}, fmt.Errorf("node %d: %w", cfg.ID, err)
	}
	dir := filepath.Join(cfg.DataDir, snapshotDir)
	snaps, err := snapstore.Open(dir, snapstore.Options{Logger: cfg.Logger})
	if err != nil {
		w.Close()
		return nodeStorage{}, fmt.Errorf("node %d: opening the snapshot store in %s: %w", cfg.ID, dir, err)
	}
	return nodeStorage{log: w, snaps: snaps, close: func() error { return errors.Join(snaps.Close(), w.Close()) }}, nil
}

// isEmpty reports whether the node has never held any state: no term, no
// log, no snapshot. Only such a node may bootstrap or join; any other
// restarts from what it has, whatever its flags say.
func (s nodeStorage) isEmpty() (bool, error) {
	hs, err := s.log.InitialState()
	if err != nil {
		return false, err
	}
	last, err := s.log.LastIndex()
	if err != nil {
		return false, err
	}
	if !hs.IsZero() || last > 0 {
		return false, nil
	}
	if s.snaps == nil {
		return true, nil
	}
	metas, err := s.snaps.List()
	return len(metas) == 0, err
}
