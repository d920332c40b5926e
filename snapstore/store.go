package snapstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/raftline/raft"
)

// Errors callers can test with errors.Is. Damaged snapshots are reported
// with raft.ErrSnapshotCorrupt, a missing one with raft.ErrSnapshotNotFound.
var (
	// ErrLocked: another Store (in this or another process) has the
	// directory open.
	ErrLocked = errors.New("snapstore: directory is locked by another store")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("snapstore: closed")
)

// DefaultRetain is how many snapshots a Store keeps unless told otherwise:
// the newest, and the one the library falls back to if the newest turns
// out to be corrupt.
const DefaultRetain = 2

// Options configures a Store. The zero value gives the defaults.
type Options struct {
	// Retain is how many complete snapshots to keep, newest first; older
	// ones are removed after each Commit. Default 2, minimum 1. With 1 a
	// corrupt newest snapshot leaves nothing to fall back to.
	Retain int
	// Logger receives what the store skips, removes or repairs. Default
	// slog.Default().
	Logger *slog.Logger

	// fs replaces the real file system in tests.
	fs fileSystem
}

// Store is a durable raft.SnapshotStore kept in a directory of its own.
// It is safe for concurrent use: any number of sinks and readers at once.
type Store struct {
	// Locking: mu is held while the directory is scanned and while
	// retention removes files, so a List or Open never sees a snapshot
	// half removed and a reader is opened before retention can remove its
	// file. Writing and syncing a snapshot's bytes happen outside it.

	dir    string
	fs     fileSystem
	log    *slog.Logger
	retain int
	seq    atomic.Uint64 // last sequence number handed out

	mu     sync.Mutex
	closed bool
	lock   io.Closer
}

var (
	_ raft.SnapshotStore   = (*Store)(nil)
	_ raft.SnapshotRemover = (*Store)(nil)
)

// Open opens (creating if needed) the snapshot store in dir. It removes
// what interrupted writes left behind and the snapshots beyond
// Options.Retain, logging each.
func Open(dir string, opts Options) (*Store, error) {
	switch {
	case opts.Retain == 0:
		opts.Retain = DefaultRetain
	case opts.Retain < 0:
		return nil, fmt.Errorf("snapstore: Retain %d: must be at least 1", opts.Retain)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.fs == nil {
		opts.fs = osFS{}
	}
	s := &Store{dir: dir, fs: opts.fs, log: opts.Logger, retain: opts.Retain}
	if err := s.fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("snapstore: creating %s: %w", dir, err)
	}
	lock, err := s.fs.Lock(dir)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	if err := s.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// recover clears leftovers of interrupted writes and applies retention.
func (s *Store) recover() error {
	st, err := s.scan(nil)
	if err != nil {
		return err
	}
	s.seq.Store(st.maxSeq)
	leftovers := st.tmps
	for _, base := range st.orphans {
		// Data renamed into place but no metadata yet: a Commit that never
		// returned.
		leftovers = append(leftovers, base+dataExt)
	}
	for _, name := range leftovers {
		s.log.Info("snapstore: removing the leftover of an interrupted write", "file", s.path(name))
		if err := s.fs.Remove(s.path(name)); err != nil {
			return fmt.Errorf("snapstore: removing %s: %w", s.path(name), err)
		}
	}
	if len(leftovers) > 0 {
		if err := s.fs.SyncDir(s.dir); err != nil {
			return fmt.Errorf("snapstore: syncing %s: %w", s.dir, err)
		}
	}
	s.logSkipped(st)
	return s.applyRetention(st)
}

// Close releases the directory lock. Readers already opened stay usable;
// everything else fails with ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	return s.lock.Close()
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// List implements raft.SnapshotStore. It reads every snapshot's metadata
// and checks its data file's size, but not the data's checksum: that
// needs reading all of it, which the library does anyway as it reads. A
// snapshot whose metadata does not decode or whose data file is missing
// or of the wrong size is skipped and logged.
func (s *Store) List() ([]raft.SnapshotMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	st, err := s.scan(nil)
	if err != nil {
		return nil, err
	}
	s.logSkipped(st)
	var metas []raft.SnapshotMeta
	for _, sn := range st.snaps {
		if sn.err == nil {
			metas = append(metas, sn.meta)
		}
	}
	return metas, nil
}

// Open implements raft.SnapshotStore: it returns a reader of the data file
// of the snapshot that is Same as meta. The reader reads the file as asked
// (nothing is loaded up front) and stays usable after retention removes
// the snapshot: an open file outlives its name.
func (s *Store) Open(meta raft.SnapshotMeta) (raft.SnapshotReader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	st, err := s.scan(func(index, term uint64) bool { return index == meta.Index && term == meta.Term })
	if err != nil {
		return nil, err
	}
	s.logSkipped(st)
	for _, sn := range st.snaps {
		if sn.err == nil && sn.meta.Same(meta) {
			return s.openData(sn)
		}
	}
	return nil, fmt.Errorf("%w: %v", raft.ErrSnapshotNotFound, meta)
}

// Remove implements raft.SnapshotRemover: it removes the snapshot that is
// Same as meta (a node does so with one it found corrupt, so that it is
// not read again and stops counting towards Retain), in the order
// retention does. Removing a snapshot the store does not hold does
// nothing; readers already open keep reading.
func (s *Store) Remove(meta raft.SnapshotMeta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	st, err := s.scan(func(index, term uint64) bool { return index == meta.Index && term == meta.Term })
	if err != nil {
		return err
	}
	var drop []snapFile
	for _, sn := range st.snaps {
		// Whether or not its data still checks out: the caller found it
		// unusable.
		if sn.meta.Same(meta) {
			drop = append(drop, sn)
		}
	}
	return s.removeSnapshots(drop)
}

// openData opens a snapshot's data file, checking its size once more on
// the open file.
func (s *Store) openData(sn snapFile) (raft.SnapshotReader, error) {
	name := s.path(sn.base + dataExt)
	f, err := s.fs.Open(name)
	if err != nil {
		return nil, fmt.Errorf("snapstore: opening %s: %w", name, err)
	}
	size, err := f.Size()
	if err == nil && size != sn.meta.Size {
		err = fmt.Errorf("%w: %s has %d bytes, its metadata says %d", raft.ErrSnapshotCorrupt, name, size, sn.meta.Size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }
