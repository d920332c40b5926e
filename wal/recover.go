package wal

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Segment files are named <seq>-<first>.wal, both 16 hex digits: the
// segment's sequence number (consecutive, so a missing file shows as a
// gap) and the index its first entry would have when it was created.
// Sorting names sorts segments.
//
// A start marker, an empty file named start-<seq>, names the oldest live
// segment. Compaction creates it (durably) before deleting the segments
// before that one, so a crash part-way through the deletions leaves older
// segments that recovery knows to ignore and remove, instead of a run of
// segments whose oldest may not be a valid place to start replaying (a
// truncation recorded in it can reach back before its header's entry). A
// directory without a marker (the first format, or a log never compacted)
// starts at its oldest segment.
const (
	segmentExt   = ".wal"
	tmpSuffix    = ".tmp"
	markerPrefix = "start-"
)

func segmentName(seq, first uint64) string {
	return fmt.Sprintf("%016x-%016x%s", seq, first, segmentExt)
}

func markerName(seq uint64) string { return fmt.Sprintf("%s%016x", markerPrefix, seq) }

// parseSegmentName returns the sequence number and first index in a
// segment file name, or ok false for any other name.
func parseSegmentName(name string) (seq, first uint64, ok bool) {
	base, found := strings.CutSuffix(name, segmentExt)
	if !found || len(base) != 33 || base[16] != '-' {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseUint(base[:16], 16, 64)
	first, err2 := strconv.ParseUint(base[17:], 16, 64)
	return seq, first, err1 == nil && err2 == nil
}

// parseMarkerName returns the sequence number a start marker names.
func parseMarkerName(name string) (seq uint64, ok bool) {
	hex, found := strings.CutPrefix(name, markerPrefix)
	if !found || len(hex) != 16 {
		return 0, false
	}
	seq, err := strconv.ParseUint(hex, 16, 64)
	return seq, err == nil && seq > 0
}

// corrupt builds the error Open returns for data it cannot trust.
func corrupt(name string, off int64, format string, args ...any) error {
	return fmt.Errorf("%w: %s offset %d: %s", ErrCorrupt, name, off, fmt.Sprintf(format, args...))
}

// segFile is a segment file found in the directory.
type segFile struct {
	name       string
	seq, first uint64
}

// dirListing is what recovery found in the directory.
type dirListing struct {
	live     []segFile // from the start marker on, in sequence order
	remnants []segFile // before the start marker: an interrupted deletion
	tmps     []string
	markers  []uint64 // sorted; the last is the start
}

func (w *WAL) listDir() (dirListing, error) {
	names, err := w.fs.ReadDir(w.dir)
	if err != nil {
		return dirListing{}, fmt.Errorf("wal: listing %s: %w", w.dir, err)
	}
	var l dirListing
	var files []segFile
	for _, name := range names {
		if strings.HasSuffix(name, tmpSuffix) {
			l.tmps = append(l.tmps, name)
		} else if seq, first, ok := parseSegmentName(name); ok {
			files = append(files, segFile{name, seq, first})
		} else if seq, ok := parseMarkerName(name); ok {
			l.markers = append(l.markers, seq)
		}
	}
	slices.SortFunc(files, func(a, b segFile) int { return cmpUint(a.seq, b.seq) })
	slices.Sort(l.markers)
	start := uint64(0)
	if len(l.markers) > 0 {
		start = l.markers[len(l.markers)-1]
	}
	i, _ := slices.BinarySearchFunc(files, start, func(f segFile, seq uint64) int { return cmpUint(f.seq, seq) })
	l.remnants, l.live = files[:i], files[i:]
	if start > 0 && (len(l.live) == 0 || l.live[0].seq != start) {
		return dirListing{}, fmt.Errorf("%w: %s: segment %d, which the start marker names, is missing",
			ErrCorrupt, filepath.Join(w.dir, markerName(start)), start)
	}
	for i := 1; i < len(l.live); i++ {
		if l.live[i].seq != l.live[i-1].seq+1 {
			return dirListing{}, fmt.Errorf("%w: %s: segment %d is missing (previous is %s)",
				ErrCorrupt, filepath.Join(w.dir, l.live[i].name), l.live[i-1].seq+1, l.live[i-1].name)
		}
	}
	return l, nil
}

// recover rebuilds the in-memory state from the segments. It writes
// nothing until every segment has been checked, so a corrupt directory is
// left exactly as found.
//
// A missing segment between two others shows as a gap in the sequence
// numbers (and each header names the entry before it, checked against the
// log so far), a missing oldest one by the start marker. A missing newest
// segment cannot be told from a log that never rolled: the WAL keeps no
// separate manifest to catch that.
func (w *WAL) recover() error {
	l, err := w.listDir()
	if err != nil {
		return err
	}
	w.first = 1
	var tail, size int64
	var buf []byte // shared by the segments' readers in turn
	for i, sf := range l.live {
		path := filepath.Join(w.dir, sf.name)
		f, err := w.fs.Open(path)
		if err != nil {
			return fmt.Errorf("wal: opening %s: %w", path, err)
		}
		seg := &segment{seq: sf.seq, name: path, f: f}
		w.segs = append(w.segs, seg)
		rr, err := newRecordReader(f, buf)
		if err != nil {
			return fmt.Errorf("wal: reading %s: %w", path, err)
		}
		if tail, err = w.replaySegment(seg, sf.first, rr, i == 0, i == len(l.live)-1); err != nil {
			return err
		}
		size, buf = rr.size, rr.buf
	}
	if err := w.removeLeftovers(l); err != nil {
		return err
	}
	if len(l.live) == 0 {
		seg, err := w.createSegment(1, 0, 0)
		if err != nil {
			return err
		}
		w.segs = []*segment{seg}
		tail, size = segHeaderLen, w.allocTarget(segHeaderLen)
	}
	w.active, w.tailOff, w.allocated = w.segs[len(w.segs)-1], tail, size
	if len(l.markers) > 0 {
		w.marker = l.markers[len(l.markers)-1]
	}
	if err := w.warmCache(); err != nil {
		return err
	}
	return w.repairTail(size)
}

// removeLeftovers deletes what interrupted operations left: temporary
// files of a segment creation, and segments (with their stale markers) a
// compaction had started deleting. None holds anything live.
func (w *WAL) removeLeftovers(l dirListing) error {
	var names []string
	for _, sf := range l.remnants {
		names = append(names, sf.name)
	}
	if len(l.markers) > 1 {
		for _, seq := range l.markers[:len(l.markers)-1] {
			names = append(names, markerName(seq))
		}
	}
	if len(names) > 0 {
		w.log.Warn("wal: removing segments an interrupted compaction left", "dir", w.dir, "files", names)
	}
	// Temporary files are removed before creating a segment that may
	// reuse the name.
	for _, name := range append(names, l.tmps...) {
		if err := w.fs.Remove(filepath.Join(w.dir, name)); err != nil {
			return fmt.Errorf("wal: removing %s: %w", name, err)
		}
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// repairTail makes sure nothing follows the end of the log in the newest
// segment (of the given size): after a torn write, or when recovery did
// not look at all of the bytes past the end (beyond tailWindow), it cuts
// the file there and preallocates it again, durably. Later appends can
// then never be followed by stale bytes that decode as records, however
// far a torn write reached.
func (w *WAL) repairTail(size int64) error {
	r := w.recovery
	if r.TornTail {
		w.log.Warn("wal: discarding torn write at the end of the log",
			"file", r.File, "offset", r.Offset, "bytes", r.Discarded, "reason", r.Reason)
	}
	if !r.TornTail && size <= w.tailOff+tailWindow {
		return nil
	}
	f := w.active.f
	w.allocated = w.allocTarget(w.tailOff)
	err := f.Truncate(w.tailOff)
	if err == nil {
		err = f.Preallocate(w.allocated)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("wal: cutting %s at the end of the log (offset %d): %w", w.active.name, w.tailOff, err)
	}
	return nil
}
