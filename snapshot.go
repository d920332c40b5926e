package raft

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// This file holds the snapshot contract: what a snapshot is (SnapshotMeta),
// where snapshots are kept (SnapshotStore), and how the user's
// StateMachine produces one without stopping the world (StateSnapshot).
//
// Taking a snapshot is split in two, in the pattern of Go's incremental map
// growth: StateMachine.Snapshot captures a cheap point-in-time view on the
// applier goroutine, and the view is written out on another goroutine while
// applying goes on. Once it is durable the log is compacted behind it
// (Storage.Compact), and a follower that needs entries the leader no longer
// has is sent the snapshot in chunks (MsgSnap, snapshot_transfer.go).

// StateSnapshot is a point-in-time view of a StateMachine.
type StateSnapshot interface {
	// WriteTo writes the snapshot; it runs on its own goroutine,
	// concurrently with Apply.
	WriteTo(w io.Writer) (int64, error)
	// Release frees the view; it is called once writing is done.
	Release()
}

// SnapshotMeta describes a snapshot: the last log entry whose effect it
// holds, the configuration in force at that entry, and its bytes' size and
// checksum. Two snapshots whose metas are Same hold identical bytes, which
// is what lets an interrupted transfer resume from an offset.
type SnapshotMeta struct {
	// Index and Term name the last entry the snapshot covers.
	Index uint64
	Term  uint64
	// Config is the latest configuration at or before Index, and
	// ConfigIndex the index of the entry that holds it (0 for none).
	Config      Configuration
	ConfigIndex uint64
	// Size is the snapshot's length in bytes and Checksum the CRC-32C
	// (Castagnoli) of those bytes; both are filled in as it is written.
	Size     int64
	Checksum uint32
}

// Same reports whether m and o name the same bytes: equal position, size
// and checksum. Two nodes' snapshots at one index generally differ (a state
// machine need not serialize deterministically), so only Same snapshots may
// be resumed from one another.
func (m SnapshotMeta) Same(o SnapshotMeta) bool {
	return m.Index == o.Index && m.Term == o.Term && m.Size == o.Size && m.Checksum == o.Checksum
}

// String formats the meta for logs.
func (m SnapshotMeta) String() string {
	return fmt.Sprintf("snapshot %d (term %d, %d bytes, crc %08x)", m.Index, m.Term, m.Size, m.Checksum)
}

// Advance moves m past an entry the state machine applied, so m always
// describes the applied state: its last index and term, and the latest
// configuration among the entries. A driver calls it for every applied
// entry (of every type), in order, and snapshots the state machine with the
// meta it holds. It fails only on a configuration entry that does not
// decode, which the log never holds.
func (m *SnapshotMeta) Advance(e Entry) error {
	if bugSnapshotTermFromCommands && e.Type != EntryNormal {
		// Planted bug: the term follows commands only, so a snapshot taken
		// right after a new leader's no-op records the previous term.
		bugHit("snapshot-wrong-term")
		m.Index = e.Index
	} else {
		m.Index, m.Term = e.Index, e.Term
	}
	if e.Type == EntryConfig {
		conf, err := DecodeConfiguration(e.Data)
		if err != nil {
			return fmt.Errorf("raft: configuration entry %d: %w", e.Index, err)
		}
		m.Config, m.ConfigIndex = conf, e.Index
	}
	return nil
}

// SnapshotStore keeps a node's snapshots. The library writes one snapshot
// at a time and reads any number concurrently. Package snapstore is a
// durable, file-based implementation; NewMemorySnapshotStore keeps them in
// memory, for tests and in-memory clusters.
type SnapshotStore interface {
	// Create starts a new snapshot. Nothing of it is visible to List or
	// Open until its sink's Commit returns.
	Create() (SnapshotSink, error)
	// List returns the complete snapshots, newest (highest index) first.
	List() ([]SnapshotMeta, error)
	// Open returns a reader of the snapshot that is Same as meta, or an
	// error wrapping ErrSnapshotNotFound. The library checks the checksum
	// as it reads.
	Open(meta SnapshotMeta) (SnapshotReader, error)
}

// SnapshotRemover is implemented by stores that can drop one snapshot. A
// node that finds its newest snapshot corrupt on restart removes it, so it
// stops counting among the snapshots the store keeps (which could
// otherwise drop the good one before it) and is not read again.
type SnapshotRemover interface {
	Remove(meta SnapshotMeta) error
}

// SnapshotSink receives a snapshot's bytes, in order.
type SnapshotSink interface {
	io.Writer
	// Commit makes the snapshot durable and visible, described by meta
	// (whose Size and Checksum the library computed from the bytes
	// written). It returns only once a crash can no longer lose it. A store
	// may then drop its older snapshots, keeping at least the newest two.
	Commit(meta SnapshotMeta) error
	// Abort discards what was written.
	Abort() error
}

// SnapshotReader reads a stored snapshot; a transfer reads it in chunks at
// any offset, a restore from start to end.
type SnapshotReader interface {
	io.ReaderAt
	io.Closer
}

// ErrSnapshotNotFound: the snapshot asked for is not (or no longer) in the
// store.
var ErrSnapshotNotFound = errors.New("raft: snapshot not found")

// ErrSnapshotCorrupt: a snapshot's bytes do not match its size or checksum.
var ErrSnapshotCorrupt = errors.New("raft: snapshot corrupt")

// castagnoli is the CRC-32C table: hardware-accelerated on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksumWriter counts and checksums what passes through it.
type checksumWriter struct {
	w    io.Writer
	size int64
	crc  uint32
}

func (c *checksumWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.size += int64(n)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

// verifiedReader reads a snapshot start to end and fails, instead of
// reporting the end, when the bytes do not match meta's size and checksum:
// a Restore that reads to the end can therefore never accept a corrupt
// snapshot without seeing an error.
type verifiedReader struct {
	r    io.ReaderAt
	meta SnapshotMeta
	off  int64
	crc  uint32
}

// newVerifiedReader returns a reader of r's bytes that checks them against
// meta.
func newVerifiedReader(r io.ReaderAt, meta SnapshotMeta) *verifiedReader {
	return &verifiedReader{r: r, meta: meta}
}

func (v *verifiedReader) Read(p []byte) (int, error) {
	if left := v.meta.Size - v.off; int64(len(p)) > left {
		p = p[:left]
	}
	if len(p) == 0 {
		return 0, v.atEnd()
	}
	n, err := v.r.ReadAt(p, v.off)
	v.off += int64(n)
	v.crc = crc32.Update(v.crc, castagnoli, p[:n])
	if errors.Is(err, io.EOF) {
		if v.off < v.meta.Size {
			return n, fmt.Errorf("%w: %v ends after %d bytes", ErrSnapshotCorrupt, v.meta, v.off)
		}
		err = nil
	}
	if err == nil && v.off == v.meta.Size {
		err = v.atEnd()
	}
	return n, err
}

// atEnd reports io.EOF when every byte was read and matched, an error
// otherwise.
func (v *verifiedReader) atEnd() error {
	if v.crc != v.meta.Checksum {
		return fmt.Errorf("%w: %v: bytes have checksum %08x", ErrSnapshotCorrupt, v.meta, v.crc)
	}
	return io.EOF
}

// chunkChecksum is the checksum a MsgSnap chunk carries.
func chunkChecksum(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }
