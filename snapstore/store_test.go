package snapstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/raftline/raft"
)

// contractCases are promises of raft.SnapshotStore: each acts on a fresh
// store and returns the snapshots that must be listed afterwards, newest
// first.
var contractCases = []struct {
	name string
	run  func(t *testing.T, s *Store) []raft.SnapshotMeta
}{
	{"a committed snapshot is listed with its meta", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		return []raft.SnapshotMeta{commitSnap(t, s, 10, 2, snapData(10, 5000))}
	}},
	{"an empty snapshot is a snapshot", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		return []raft.SnapshotMeta{commitSnap(t, s, 1, 1, nil)}
	}},
	{"a meta without configuration round-trips", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		data := snapData(3, 10)
		meta := metaFor(3, 1, data)
		meta.Config, meta.ConfigIndex = raft.Configuration{}, 0
		k, _ := s.Create()
		k.Write(data)
		if err := k.Commit(meta); err != nil {
			t.Fatal(err)
		}
		return []raft.SnapshotMeta{meta}
	}},
	{"list is newest first whatever the commit order", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		b := commitSnap(t, s, 5, 1, snapData(5, 100))
		c := commitSnap(t, s, 3, 1, snapData(3, 100))
		a := commitSnap(t, s, 9, 2, snapData(9, 100))
		_ = c // beyond the two kept
		return []raft.SnapshotMeta{a, b}
	}},
	{"a snapshot at the same index and term replaces the old one", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		old := commitSnap(t, s, 4, 1, snapData(4, 100))
		commitSnap(t, s, 7, 2, snapData(7, 100))
		repl := commitSnap(t, s, 7, 2, snapData(8, 300))
		return []raft.SnapshotMeta{repl, old}
	}},
	{"commit refuses a size that does not match the bytes", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		data := snapData(2, 100)
		meta := metaFor(2, 1, data)
		meta.Size++
		k, _ := s.Create()
		k.Write(data)
		if err := k.Commit(meta); !errors.Is(err, raft.ErrSnapshotCorrupt) {
			t.Fatalf("Commit with a wrong size: %v, want ErrSnapshotCorrupt", err)
		}
		return nil
	}},
	{"commit refuses a checksum that does not match the bytes", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		prev := commitSnap(t, s, 1, 1, snapData(1, 100))
		data := snapData(2, 100)
		meta := metaFor(2, 1, data)
		meta.Checksum ^= 1
		k, _ := s.Create()
		k.Write(data)
		if err := k.Commit(meta); !errors.Is(err, raft.ErrSnapshotCorrupt) {
			t.Fatalf("Commit with a wrong checksum: %v, want ErrSnapshotCorrupt", err)
		}
		return []raft.SnapshotMeta{prev}
	}},
	{"commit refuses a configuration it could not read back", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		data := snapData(2, 100)
		meta := metaFor(2, 1, data)
		meta.Config = raft.Configuration{Servers: []raft.Server{{ID: 1, Suffrage: raft.Learner}}} // no voter
		k, _ := s.Create()
		k.Write(data)
		if err := k.Commit(meta); err == nil {
			t.Fatal("Commit of a configuration without voters succeeded")
		}
		return nil
	}},
	{"an aborted snapshot leaves nothing", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		k, _ := s.Create()
		k.Write(snapData(1, 100))
		if err := k.Abort(); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Write([]byte{1}); err == nil {
			t.Fatal("Write after Abort succeeded")
		}
		if err := k.Commit(metaFor(1, 1, nil)); err == nil {
			t.Fatal("Commit after Abort succeeded")
		}
		return nil
	}},
	{"a committed sink takes no more writes or commits and abort keeps it", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		data := snapData(6, 100)
		meta := metaFor(6, 3, data)
		k, _ := s.Create()
		k.Write(data)
		if err := k.Commit(meta); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Write([]byte{1}); err == nil {
			t.Fatal("Write after Commit succeeded")
		}
		if err := k.Commit(meta); err == nil {
			t.Fatal("second Commit succeeded")
		}
		if err := k.Abort(); err != nil {
			t.Fatalf("Abort after Commit: %v", err)
		}
		return []raft.SnapshotMeta{meta}
	}},
	{"nothing is visible before commit", func(t *testing.T, s *Store) []raft.SnapshotMeta {
		k, _ := s.Create()
		k.Write(snapData(1, 2<<20)) // past the sink's buffer: bytes are on disk
		if got := mustList(t, s); len(got) != 0 {
			t.Fatalf("List before Commit: %v", got)
		}
		k.Abort()
		return nil
	}},
}

// TestStoreKeepsTheSnapshotContract checks each of contractCases on a
// fresh store, then again after reopening it.
func TestStoreKeepsTheSnapshotContract(t *testing.T) {
	for _, tt := range contractCases {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, Options{})
			want := tt.run(t, s)
			checkListed(t, s, want)
			s.Close()
			s = openT(t, dir, Options{})
			defer s.Close()
			checkListed(t, s, want)
			checkOnlySnapshotFiles(t, dir, len(want))
		})
	}
}

// checkListed checks that s lists exactly want and that each reads back
// verified.
func checkListed(t *testing.T, s *Store, want []raft.SnapshotMeta) {
	t.Helper()
	got := mustList(t, s)
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("List (-want +got):\n%s", d)
	}
	for _, m := range want {
		if _, err := openVerified(s, m); err != nil {
			t.Fatalf("reading %v: %v", m, err)
		}
	}
}

// checkOnlySnapshotFiles checks that dir holds the lock and n snapshots'
// two files, and no temporary or leftover file.
func checkOnlySnapshotFiles(t *testing.T, dir string, n int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 1+2*n {
		t.Fatalf("directory holds %v, want LOCK and %d snapshots", names, n)
	}
}

func TestStoreOpensReadersOnlyOfSnapshotsItHolds(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	defer s.Close()
	meta := commitSnap(t, s, 5, 2, snapData(5, 100))
	tests := []struct {
		name   string
		change func(m *raft.SnapshotMeta)
	}{
		{"another index", func(m *raft.SnapshotMeta) { m.Index++ }},
		{"another term", func(m *raft.SnapshotMeta) { m.Term++ }},
		{"another size", func(m *raft.SnapshotMeta) { m.Size++ }},
		{"another checksum", func(m *raft.SnapshotMeta) { m.Checksum++ }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := meta
			tt.change(&m)
			if _, err := s.Open(m); !errors.Is(err, raft.ErrSnapshotNotFound) {
				t.Fatalf("Open(%v): %v, want ErrSnapshotNotFound", m, err)
			}
		})
	}
	// The configuration is not part of what names the bytes.
	m := meta
	m.Config = raft.Configuration{}
	if _, err := openVerified(s, m); err != nil {
		t.Fatalf("Open of a Same meta: %v", err)
	}
}

func TestRetentionKeepsTheNewestN(t *testing.T) {
	for _, retain := range []int{1, 2, 3} {
		t.Run(strings.Repeat("I", retain), func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, Options{Retain: retain})
			var metas []raft.SnapshotMeta
			for i := uint64(1); i <= 6; i++ {
				metas = append(metas, commitSnap(t, s, i*10, i, snapData(i, 1000)))
				if n := len(mustList(t, s)); n != min(int(i), retain) {
					t.Fatalf("after %d commits %d listed, want %d", i, n, min(int(i), retain))
				}
			}
			slices.Reverse(metas)
			checkListed(t, s, metas[:retain])
			checkOnlySnapshotFiles(t, dir, retain)
			s.Close()
			// A store reopened with a smaller Retain applies it at once.
			if retain > 1 {
				s = openT(t, dir, Options{Retain: 1})
				checkListed(t, s, metas[:1])
				checkOnlySnapshotFiles(t, dir, 1)
				s.Close()
			}
		})
	}
}

func TestOpenRefusesANegativeRetain(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{Retain: -1}); err == nil {
		t.Fatal("Open with Retain -1 succeeded")
	}
}

// An open reader keeps reading a snapshot retention removes: on Unix an
// unlinked file lives as long as a descriptor does.
func TestReaderOutlivesRetentionRemovingItsSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{Retain: 1})
	defer s.Close()
	data := snapData(1, 300_000)
	old := commitSnap(t, s, 1, 1, data)
	r, err := s.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	commitSnap(t, s, 2, 1, snapData(2, 1000))
	if _, err := os.Stat(filepath.Join(dir, baseName(1, 1, 1)+dataExt)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old snapshot's data file was not removed: %v", err)
	}
	if _, err := s.Open(old); !errors.Is(err, raft.ErrSnapshotNotFound) {
		t.Fatalf("Open of a removed snapshot: %v, want ErrSnapshotNotFound", err)
	}
	got, err := readVerified(r, old)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reading a removed snapshot through a reader opened before: %v", err)
	}
}

func TestOpenRemovesLeftoversOfInterruptedWrites(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	kept := commitSnap(t, s, 3, 1, snapData(3, 100))
	s.Close()
	leftovers := []string{
		createName(7),                         // data being written
		baseName(9, 2, 8) + dataExt,           // data renamed, no metadata yet
		baseName(9, 2, 8) + metaExt + tmpExt,  // metadata being written
		baseName(11, 2, 9) + metaExt + tmpExt, // metadata being written, data gone
	}
	for _, name := range leftovers {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.tmp"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	s = openT(t, dir, Options{Logger: slogTo(&logged)})
	defer s.Close()
	checkListed(t, s, []raft.SnapshotMeta{kept})
	if err := os.Remove(filepath.Join(dir, "notes.tmp")); err != nil {
		t.Errorf("a file the store does not know was touched: %v", err)
	}
	checkOnlySnapshotFiles(t, dir, 1)
	for _, name := range leftovers {
		if !strings.Contains(logged.String(), name) {
			t.Errorf("removal of %s not logged: %s", name, logged.String())
		}
	}

	// Sequence numbers continue past the leftovers', so a new snapshot
	// never reuses a leftover's name.
	m := commitSnap(t, s, 9, 2, snapData(9, 50))
	checkListed(t, s, []raft.SnapshotMeta{m, kept})
	if _, err := os.Stat(filepath.Join(dir, baseName(9, 2, 10)+metaExt)); err != nil {
		t.Fatalf("new snapshot not at sequence 10: %v", err)
	}
}

func TestOpenCreatesTheDirectoryAndLocksIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "snapshots")
	s := openT(t, dir, Options{})
	if _, err := Open(dir, Options{Logger: quietLogger()}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	s.Close()
	s2 := openT(t, dir, Options{})
	s2.Close()
}

func TestClosedStoreRefusesCalls(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	meta := commitSnap(t, s, 1, 1, snapData(1, 10))
	k, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	k.Write(snapData(2, 10))
	s.Close()
	if _, err := s.List(); !errors.Is(err, ErrClosed) {
		t.Fatalf("List after Close: %v", err)
	}
	if _, err := s.Open(meta); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
	if _, err := s.Create(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Create after Close: %v", err)
	}
	if err := k.Commit(metaFor(2, 1, snapData(2, 10))); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// A node removes a snapshot it found corrupt: it is no longer listed (nor
// after a reopen), no longer counts towards Retain, and a reader opened
// before keeps reading.
func TestRemoveDropsASnapshotForGood(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	good := commitSnap(t, s, 5, 1, snapData(5, 1000))
	data := snapData(9, 1000)
	bad := commitSnap(t, s, 9, 2, data)
	r, err := s.Open(bad)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	flipped := bytes.Clone(data)
	flipped[500] ^= 1
	if err := os.WriteFile(filepath.Join(dir, baseName(9, 2, 2)+dataExt), flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openVerified(s, bad); !errors.Is(err, raft.ErrSnapshotCorrupt) {
		t.Fatalf("reading the flipped snapshot: %v", err)
	}
	if err := s.Remove(bad); err != nil {
		t.Fatal(err)
	}
	checkListed(t, s, []raft.SnapshotMeta{good})
	checkOnlySnapshotFiles(t, dir, 1)
	if err := s.Remove(bad); err != nil {
		t.Fatalf("removing a snapshot the store does not hold: %v", err)
	}
	// The good one survives the next commit: the removed one no longer
	// counts towards the two kept.
	next := commitSnap(t, s, 12, 2, snapData(12, 100))
	checkListed(t, s, []raft.SnapshotMeta{next, good})
	s.Close()
	s = openT(t, dir, Options{})
	defer s.Close()
	checkListed(t, s, []raft.SnapshotMeta{next, good})
	if _, err := r.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatalf("a reader opened before Remove: %v", err)
	}
}
