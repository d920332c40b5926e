// Package wal is a durable raft.Storage: a write-ahead log of segmented,
// append-only files.
//
// Every Save is one fsync, however many entries it carries (the node
// already merges concurrent proposals into one Save: group commit), and
// one write per 256 KiB of them. Records are framed with a length, a type and CRC32C
// checksums. A follower's conflicting suffix is replaced by appending: a
// record for an index at or before the last one truncates the log there,
// and InstallSnapshot appends a reset record that drops every entry, both
// live and on replay, so files are never rewritten.
//
// Segments are rolled at Options.SegmentSize. The segment being written is
// preallocated a step (4 MiB) at a time, so most writes change no file
// size and fdatasync stays cheap while a small log occupies little disk;
// a segment is cut to the end of its data when the next one starts.
// Compact and InstallSnapshot delete whole segments, in the background so
// that no Save waits for it: first a start marker naming the new oldest
// segment is made durable, then the older ones go, so a crash part-way
// leaves segments recovery knows to skip and remove. Close finishes the
// deletions queued; one that fails makes the next write fail.
//
// Open recovers the log, reading records through a bounded buffer: its
// time and memory follow the data held, not the space preallocated. A
// write cut short by a crash at the very end of the newest segment is
// dropped and reported (see Recovery); anything else that does not check
// out (a bad checksum before the tail, a gap in the indexes or the segment
// numbers, a malformed header) is corruption: Open fails with an error
// naming the file and offset and changes nothing.
//
// Once a write or sync fails the WAL refuses all further writes: after a
// failed fsync the kernel may have dropped the dirty pages, so retrying
// could acknowledge data that is not on disk.
package wal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/raftline/raft"
)

// Errors callers can test with errors.Is.
var (
	// ErrLocked: another WAL (in this or another process) has the
	// directory open.
	ErrLocked = errors.New("wal: directory is locked by another WAL")
	// ErrCorrupt: recovery found data it cannot trust; the error names the
	// file and offset.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrFailed: an earlier write or sync failed and the WAL refuses
	// further writes; the error wraps the original failure.
	ErrFailed = errors.New("wal: failed earlier, refusing writes")
	// ErrClosed: the WAL was closed.
	ErrClosed = errors.New("wal: closed")
)

// Defaults for Options.
const (
	DefaultSegmentSize = 64 << 20
	// preallocStep is how much the active segment's preallocation grows
	// at a time: each growth makes the next fdatasync also flush the file
	// size, so steps must be large next to a write, and small next to the
	// disk a small log should occupy.
	preallocStep = 4 << 20
	// DefaultCacheBytes is small on purpose: the node reads back only
	// entries between durable and applied (and those of a follower that
	// fell behind), while every cached entry is heap the GC marks.
	DefaultCacheBytes = 4 << 20
	// minSegmentSize keeps a segment able to hold its header and a record.
	minSegmentSize = 1 << 10
)

// Options configures a WAL. The zero value gives the defaults.
type Options struct {
	// SegmentSize is the size at which the WAL starts a new segment file.
	// A Save larger than that goes whole into one segment, which then
	// grows past the size. Default 64 MiB; values below 1 KiB are raised
	// to 1 KiB. Compaction deletes whole segments, so up to a segment of
	// entries older than the compaction point stays on disk.
	SegmentSize int64
	// CacheBytes bounds the memory kept for recent entries (counted as
	// their data plus a fixed overhead); older entries are read back from
	// disk. Default 4 MiB. A negative value disables the cache. A raft node
	// also releases the entries it no longer needs (ReleaseCached), so the
	// cache usually holds much less.
	CacheBytes int64
	// Logger receives recovery warnings. Default slog.Default().
	Logger *slog.Logger

	// fs replaces the real file system in tests.
	fs fileSystem
	// preallocStep replaces preallocStep in benchmarks.
	preallocStep int64
}

func (o *Options) setDefaults() {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	o.SegmentSize = max(o.SegmentSize, minSegmentSize)
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.fs == nil {
		o.fs = osFS{}
	}
	if o.preallocStep <= 0 {
		o.preallocStep = preallocStep
	}
	o.preallocStep = min(o.preallocStep, o.SegmentSize)
}

// Recovery describes what Open had to repair.
type Recovery struct {
	// TornTail is set when the newest segment ended in a partial write
	// (a crash mid-write), which Open discarded.
	TornTail bool
	// File and Offset locate the discarded tail; Discarded is how far
	// non-zero data reached past Offset, as far as recovery looked (a few
	// MiB past the damaged record; everything after Offset is cut off
	// anyway).
	File      string
	Offset    int64
	Discarded int64
	// Reason says what was wrong with the first discarded record.
	Reason string
}

// WAL is a durable raft.Storage kept in a directory. It is safe for
// concurrent use; Save and Compact are serialized with each other. Reads
// never wait for a Save's fsync, and see its entries only once they are
// durable.
type WAL struct {
	// Locking: writeMu serializes writers (Save, Compact, Close) and is
	// held across fsync; mu guards the in-memory view that readers use and
	// is taken only to publish a finished write, so readers never wait for
	// an fsync. Disk reads of entries older than the cache hold mu shared,
	// so Compact cannot close a segment under them.

	dir  string
	opts Options
	fs   fileSystem
	lock io.Closer
	log  *slog.Logger

	writeMu sync.Mutex
	// Guarded by writeMu.
	failed    error    // sticky write failure
	active    *segment // segment receiving writes
	tailOff   int64    // where the next record goes in active
	allocated int64    // how much of active is preallocated
	buf       []byte   // encoding buffer reused across Saves

	// rm deletes compacted segments (remove.go); marker, the segment the
	// start marker names (0 for none), is its own once Open returns.
	rm     *remover
	marker uint64

	mu sync.RWMutex
	// Guarded by mu; written only with writeMu also held, so a writer may
	// read them without mu.
	closed bool
	hs     raft.HardState
	segs   []*segment // live segments in sequence order
	first  uint64     // first index kept
	// prevTerm is the term of first-1, the compaction point (0 if none).
	prevTerm uint64
	ents     posIndex // location of entry first+i at position i
	cache    entryCache

	recovery Recovery
}

// segment is one segment file.
type segment struct {
	seq       uint64
	name      string // path
	f         file
	prevIndex uint64 // index of the entry before the segment's first
	prevTerm  uint64
	// minIndex is the smallest entry index recorded in the segment before
	// its first reset record (0 when none): a later truncation can write
	// an index below prevIndex+1, which matters when deciding where replay
	// may start. hasReset says the segment holds a reset record, after
	// which nothing earlier matters to replay.
	minIndex uint64
	hasReset bool
}

// entryPos locates one live entry on disk.
type entryPos struct {
	term uint64
	seq  uint64 // segment
	off  int64  // record offset in the segment
	size int64  // framed record size
}

// Open opens (creating if needed) the WAL in dir and recovers its state.
func Open(dir string, opts Options) (*WAL, error) {
	opts.setDefaults()
	w := &WAL{dir: dir, opts: opts, fs: opts.fs, log: opts.Logger}
	w.cache.limit = opts.CacheBytes
	if err := w.fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("wal: creating %s: %w", dir, err)
	}
	lock, err := w.fs.Lock(dir)
	if err != nil {
		return nil, err
	}
	w.lock = lock
	if err := w.recover(); err != nil {
		w.closeFiles()
		return nil, err
	}
	w.startRemover()
	return w, nil
}

// Recovery reports what Open repaired; the zero value means nothing.
func (w *WAL) Recovery() Recovery { return w.recovery }

// Dir returns the WAL's directory.
func (w *WAL) Dir() string { return w.dir }

// Close releases the files and the directory lock. It waits for a Save in
// progress. Later calls fail with ErrClosed.
func (w *WAL) Close() error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	w.mu.Unlock()
	w.rm.close()
	return w.closeFiles()
}

// closeFiles closes every segment and releases the lock.
func (w *WAL) closeFiles() error {
	var errs []error
	for _, s := range w.segs {
		if s.f != nil {
			errs = append(errs, s.f.Close())
		}
	}
	w.segs = nil
	if w.lock != nil {
		errs = append(errs, w.lock.Close())
		w.lock = nil
	}
	return errors.Join(errs...)
}

var (
	_ raft.Storage       = (*WAL)(nil)
	_ raft.CacheReleaser = (*WAL)(nil)
)
