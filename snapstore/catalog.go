package snapstore

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/raftline/raft"
)

// snapFile is a snapshot found in the directory: a metadata file and,
// normally, its data file.
type snapFile struct {
	base             string
	index, term, seq uint64 // from the name
	meta             raft.SnapshotMeta
	// err is nil for a complete snapshot. Otherwise it says why the
	// snapshot is skipped: damage (wrapping raft.ErrSnapshotCorrupt), or
	// an I/O error that may pass.
	err error
}

// damaged reports whether sn is known to be unusable, as opposed to
// complete or unreadable for the moment.
func (sn snapFile) damaged() bool { return errors.Is(sn.err, raft.ErrSnapshotCorrupt) }

// dirState is what a scan of the directory found.
type dirState struct {
	snaps   []snapFile // every snapshot with a metadata file, newest first
	orphans []string   // bases of data files without metadata
	tmps    []string   // names of temporary files
	maxSeq  uint64     // highest sequence number in any name
}

// scan reads the directory and checks each snapshot whose name passes
// keep (all when keep is nil). Callers hold mu, or own the store.
func (s *Store) scan(keep func(index, term uint64) bool) (dirState, error) {
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return dirState{}, fmt.Errorf("snapstore: listing %s: %w", s.dir, err)
	}
	var st dirState
	const hasData, hasMeta = 1, 2
	found := map[string]int{}
	for _, name := range names {
		if rest, ok := strings.CutSuffix(name, tmpExt); ok {
			// Only the store's own: a file it does not know is left alone.
			if seq, ok := tmpSeq(rest); ok {
				st.tmps = append(st.tmps, name)
				st.maxSeq = max(st.maxSeq, seq)
			}
			continue
		}
		base, bit := strings.TrimSuffix(name, dataExt), hasData
		if base == name {
			base, bit = strings.TrimSuffix(name, metaExt), hasMeta
		}
		if _, _, seq, ok := parseBase(base); ok && base != name {
			found[base] |= bit
			st.maxSeq = max(st.maxSeq, seq)
		}
	}
	for base, bits := range found {
		index, term, seq, _ := parseBase(base)
		switch {
		case bits&hasMeta == 0:
			st.orphans = append(st.orphans, base)
		case keep == nil || keep(index, term):
			st.snaps = append(st.snaps, s.check(snapFile{base: base, index: index, term: term, seq: seq}))
		}
	}
	slices.SortFunc(st.snaps, newestFirst)
	slices.Sort(st.orphans)
	slices.Sort(st.tmps)
	return st, nil
}

// tmpSeq returns the sequence number in the name (without its .tmp) of
// one of the store's temporary files; ok is false for any other name.
func tmpSeq(name string) (seq uint64, ok bool) {
	if hex, found := strings.CutPrefix(name, createPrefix); found {
		seq, err := strconv.ParseUint(hex, 16, 64)
		return seq, err == nil && len(hex) == 16
	}
	base, found := strings.CutSuffix(name, metaExt)
	_, _, seq, ok = parseBase(base)
	return seq, found && ok
}

func newestFirst(a, b snapFile) int {
	return cmp.Or(cmp.Compare(b.index, a.index), cmp.Compare(b.seq, a.seq))
}

// check reads sn's metadata and checks it against the name and the data
// file's size.
func (s *Store) check(sn snapFile) snapFile {
	name := s.path(sn.base + metaExt)
	b, err := s.readMeta(name)
	if err == nil {
		sn.meta, err = decodeMeta(b)
	}
	if err == nil && (sn.meta.Index != sn.index || sn.meta.Term != sn.term) {
		err = fmt.Errorf("%w: metadata says index %d term %d", raft.ErrSnapshotCorrupt, sn.meta.Index, sn.meta.Term)
	}
	if err != nil {
		sn.err = fmt.Errorf("%s: %w", name, err)
		return sn
	}
	data := s.path(sn.base + dataExt)
	f, err := s.fs.Open(data)
	if errors.Is(err, fs.ErrNotExist) {
		sn.err = fmt.Errorf("%w: %s is missing", raft.ErrSnapshotCorrupt, data)
		return sn
	}
	if err != nil {
		sn.err = fmt.Errorf("opening %s: %w", data, err)
		return sn
	}
	defer f.Close()
	size, err := f.Size()
	switch {
	case err != nil:
		sn.err = fmt.Errorf("%s: %w", data, err)
	case size != sn.meta.Size:
		sn.err = fmt.Errorf("%w: %s has %d bytes, its metadata says %d", raft.ErrSnapshotCorrupt, data, size, sn.meta.Size)
	}
	return sn
}

// readMeta reads a metadata file whole; its size is bounded, so a damaged
// file cannot make the store allocate without limit.
func (s *Store) readMeta(name string) ([]byte, error) {
	f, err := s.fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size > maxMetaSize {
		return nil, fmt.Errorf("%w: %w: %d bytes, more than %d", raft.ErrSnapshotCorrupt, errBadMeta, size, maxMetaSize)
	}
	b := make([]byte, size)
	if n, err := f.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && int64(n) == size) {
		return nil, err
	}
	return b, nil
}

// logSkipped logs every snapshot in st that List does not return.
func (s *Store) logSkipped(st dirState) {
	for _, sn := range st.snaps {
		if sn.err != nil {
			s.log.Warn("snapstore: skipping snapshot", "snapshot", sn.base, "err", sn.err)
		}
	}
}

// applyRetention removes the complete snapshots beyond the newest Retain
// (and any older one at the same index and term: it was replaced), and the
// damaged snapshots older than a kept one. Metadata goes first, then a
// directory sync, then the data: a crash in between leaves only data files
// without metadata, which Open removes, never metadata that has lost its
// data. Snapshots unreadable for another reason (an I/O error) are left
// alone.
func (s *Store) applyRetention(st dirState) error {
	var drop []snapFile
	kept := 0
	seen := map[[2]uint64]bool{}
	for _, sn := range st.snaps {
		key := [2]uint64{sn.index, sn.term}
		switch {
		case sn.err == nil && !seen[key] && kept < s.retain:
			seen[key] = true
			kept++
		case sn.err == nil || (sn.damaged() && kept > 0):
			drop = append(drop, sn)
		}
	}
	slices.Reverse(drop) // oldest first
	return s.removeSnapshots(drop)
}

// removeSnapshots removes the files of drop: every metadata file, a
// directory sync, then the data files. Callers hold mu.
func (s *Store) removeSnapshots(drop []snapFile) error {
	if len(drop) == 0 {
		return nil
	}
	for _, sn := range drop {
		s.log.Info("snapstore: removing snapshot", "snapshot", sn.base, "damaged", sn.err != nil)
		if err := s.removeIfPresent(sn.base + metaExt); err != nil {
			return err
		}
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("snapstore: syncing %s: %w", s.dir, err)
	}
	for _, sn := range drop {
		if err := s.removeIfPresent(sn.base + dataExt); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) removeIfPresent(name string) error {
	if err := s.fs.Remove(s.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("snapstore: removing %s: %w", s.path(name), err)
	}
	return nil
}
