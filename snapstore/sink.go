package snapstore

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"

	"github.com/raftline/raft"
)

// sinkBuffer is how much a sink buffers before writing to its file: large
// writes for a large file, without holding much of the snapshot in memory.
const sinkBuffer = 1 << 20

var errSinkDone = errors.New("snapstore: snapshot sink already committed or aborted")

// Create implements raft.SnapshotStore: the sink writes a temporary file,
// which Commit makes durable and visible.
func (s *Store) Create() (raft.SnapshotSink, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	seq := s.seq.Add(1)
	tmp := s.path(createName(seq))
	f, err := s.fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("snapstore: creating %s: %w", tmp, err)
	}
	return &sink{store: s, seq: seq, f: f, buf: bufio.NewWriterSize(f, sinkBuffer), tmp: tmp}, nil
}

// sink is one snapshot being written. Like any io.Writer it is used by one
// goroutine at a time.
type sink struct {
	store *Store
	seq   uint64
	f     writeFile // nil once closed
	buf   *bufio.Writer
	size  int64
	crc   uint32
	done  bool
	// The names this sink's bytes live under, as far as it got; discard
	// removes them.
	tmp, data, metaTmp, meta string
}

func (k *sink) Write(p []byte) (int, error) {
	if k.done {
		return 0, errSinkDone
	}
	n, err := k.buf.Write(p)
	k.size += int64(n)
	k.crc = crc32.Update(k.crc, castagnoli, p[:n])
	return n, err
}

// Commit implements raft.SnapshotSink. It refuses (with an error wrapping
// raft.ErrSnapshotCorrupt) a meta whose size or checksum does not match
// the bytes written, then makes the snapshot durable in an order that lets
// a crash at any point leave either all of it or none of it listed (see
// the package documentation), and finally removes the snapshots beyond
// the store's Retain. Nothing of the snapshot is left when it fails.
func (k *sink) Commit(meta raft.SnapshotMeta) error {
	if k.done {
		return errSinkDone
	}
	k.done = true
	s := k.store
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	err := ErrClosed
	if !closed {
		err = k.commit(meta)
	}
	if err != nil {
		if derr := k.discard(); derr != nil {
			k.store.log.Error("snapstore: cleaning up a failed commit", "snapshot", meta, "err", derr)
		}
		return err
	}
	// The snapshot is durable: a failure to remove older ones is no
	// reason to report it lost. The next Commit or Open retries.
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.scan(nil)
	if err == nil {
		err = s.applyRetention(st)
	}
	if err != nil {
		s.log.Error("snapstore: removing old snapshots", "err", err)
	}
	return nil
}

func (k *sink) commit(meta raft.SnapshotMeta) error {
	s := k.store
	if err := k.buf.Flush(); err != nil {
		return fmt.Errorf("snapstore: writing %s: %w", k.tmp, err)
	}
	if k.size != meta.Size || k.crc != meta.Checksum {
		return fmt.Errorf("%w: %v committed after writing %d bytes with checksum %08x",
			raft.ErrSnapshotCorrupt, meta, k.size, k.crc)
	}
	mb, err := encodeMeta(meta)
	if err != nil {
		return fmt.Errorf("snapstore: %v: %w", meta, err)
	}
	if err := k.f.Sync(); err != nil {
		return fmt.Errorf("snapstore: syncing %s: %w", k.tmp, err)
	}
	err, k.f = k.f.Close(), nil
	if err != nil {
		return fmt.Errorf("snapstore: closing %s: %w", k.tmp, err)
	}
	base := s.path(baseName(meta.Index, meta.Term, k.seq))
	if err := s.fs.Rename(k.tmp, base+dataExt); err != nil {
		return fmt.Errorf("snapstore: renaming %s: %w", k.tmp, err)
	}
	k.tmp, k.data = "", base+dataExt
	// The data's name must be durable before the metadata can be: the
	// metadata is what lists the snapshot.
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("snapstore: syncing %s: %w", s.dir, err)
	}
	k.metaTmp = base + metaExt + tmpExt
	if err := writeSynced(s.fs, k.metaTmp, mb); err != nil {
		return fmt.Errorf("snapstore: writing %s: %w", k.metaTmp, err)
	}
	if err := s.fs.Rename(k.metaTmp, base+metaExt); err != nil {
		return fmt.Errorf("snapstore: renaming %s: %w", k.metaTmp, err)
	}
	k.metaTmp, k.meta = "", base+metaExt
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("snapstore: syncing %s: %w", s.dir, err)
	}
	return nil
}

// writeSynced creates name holding b, durably.
func writeSynced(fsys fileSystem, name string, b []byte) error {
	f, err := fsys.Create(name)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort implements raft.SnapshotSink. After Commit it does nothing.
func (k *sink) Abort() error {
	if k.done {
		return nil
	}
	k.done = true
	return k.discard()
}

// discard removes whatever of the sink's files exist, metadata first so
// the snapshot is never listed without its data.
func (k *sink) discard() error {
	s := k.store
	var errs []error
	if k.f != nil {
		errs = append(errs, k.f.Close())
		k.f = nil
	}
	for _, name := range []string{k.meta, k.metaTmp, k.data, k.tmp} {
		if name == "" {
			continue
		}
		if err := s.fs.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		if name == k.meta {
			errs = append(errs, s.fs.SyncDir(s.dir))
		}
	}
	return errors.Join(errs...)
}
