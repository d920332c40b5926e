package snapstore

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/raftline/raft"
)

// TestCrashAtEveryStepOfCommitLeavesBeforeOrAfter crashes a Commit after
// each of its file-system operations in turn (data writes, fsyncs,
// renames, directory fsyncs, retention removals) and reopens the store
// from what a killed process would leave and from each state a power cut
// may leave. Either way it must list exactly the snapshots it held before the
// Commit or exactly those after, every one reading back intact; and after
// a Commit that returned, those after.
func TestCrashAtEveryStepOfCommitLeavesBeforeOrAfter(t *testing.T) {
	tests := []struct {
		name        string
		index, term uint64
	}{
		{"a newer snapshot displacing the oldest", 4, 2},
		{"a snapshot replacing one at the same index and term", 3, 1},
		{"an older snapshot, removed at once by retention", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := newMemFS()
			s := openT(t, "/snap", Options{fs: base})
			var held []raft.SnapshotMeta // newest first
			for _, i := range []uint64{2, 3} {
				held = append([]raft.SnapshotMeta{commitSnap(t, s, i, 1, snapData(i, 3000))}, held...)
			}
			s.Close()
			data := snapData(tt.index+100, 2500)
			meta := metaFor(tt.index, tt.term, data)
			after := afterCommit(held, meta, 2)

			total := commitOps(t, base.image(false), data, meta)
			cases := 0
			for k := 0; k <= total; k++ {
				fs := base.image(false)
				s := openT(t, "/snap", Options{fs: fs})
				fs.crashAfter(k)
				k2, err := s.Create()
				if err == nil {
					if _, err = k2.Write(data); err == nil {
						err = k2.Commit(meta)
					}
				}
				s.Close()
				images := append([]*memFS{fs.image(false)}, fs.powerCutImages()...)
				for i, img := range images {
					got := reopenList(t, img)
					switch {
					case sameMetas(got, after):
					case err == nil:
						t.Fatalf("crash after %d of %d operations (image %d): Commit returned but the store lists %v, want %v",
							k, total, i, indexes(got), indexes(after))
					case sameMetas(got, held):
					default:
						t.Fatalf("crash after %d of %d operations (image %d): store lists %v, want %v or %v",
							k, total, i, indexes(got), indexes(held), indexes(after))
					}
					cases++
				}
			}
			t.Logf("%d crash images checked", cases)
		})
	}
}

// afterCommit is what a store keeping retain snapshots lists once meta is
// committed on top of held.
func afterCommit(held []raft.SnapshotMeta, meta raft.SnapshotMeta, retain int) []raft.SnapshotMeta {
	out := []raft.SnapshotMeta{meta}
	for _, m := range held {
		if m.Index != meta.Index || m.Term != meta.Term {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b raft.SnapshotMeta) int {
		return -strings.Compare(baseName(a.Index, 0, 0), baseName(b.Index, 0, 0))
	})
	return out[:min(len(out), retain)]
}

// commitOps returns how many mutating operations committing data takes on
// a store over fs.
func commitOps(t *testing.T, fs *memFS, data []byte, meta raft.SnapshotMeta) int {
	t.Helper()
	s := openT(t, "/snap", Options{fs: fs})
	defer s.Close()
	start := fs.opCount()
	k, _ := s.Create()
	k.Write(data)
	if err := k.Commit(meta); err != nil {
		t.Fatal(err)
	}
	return fs.opCount() - start
}

// reopenList opens a store over a crash image, checks that every snapshot
// it lists reads back intact, that none looked damaged (a crash leaves
// only leftovers, never a snapshot missing part of itself) and that no
// leftover file remains, and returns the list.
func reopenList(t *testing.T, fs *memFS) []raft.SnapshotMeta {
	t.Helper()
	var logged bytes.Buffer
	s := openT(t, "/snap", Options{fs: fs, Logger: slogTo(&logged)})
	defer s.Close()
	if strings.Contains(logged.String(), "level=WARN") {
		t.Fatalf("reopening after a crash found damage: %s", logged.String())
	}
	got := mustList(t, s)
	for _, m := range got {
		if _, err := openVerified(s, m); err != nil {
			t.Fatalf("listed %v does not read back: %v", m, err)
		}
	}
	if n := len(fs.names()); n != 2*len(got) {
		t.Fatalf("after reopening, files %v for %d snapshots", fs.names(), len(got))
	}
	return got
}

func sameMetas(a, b []raft.SnapshotMeta) bool { return slices.EqualFunc(a, b, raft.SnapshotMeta.Same) }

// TestCrashAtEveryStepOfRemoveLeavesBeforeOrAfter crashes Remove after
// each of its file-system operations: the store lists the snapshot or it
// does not, and never sees it half removed.
func TestCrashAtEveryStepOfRemoveLeavesBeforeOrAfter(t *testing.T) {
	base := newMemFS()
	s := openT(t, "/snap", Options{fs: base})
	older := commitSnap(t, s, 2, 1, snapData(2, 3000))
	newer := commitSnap(t, s, 3, 1, snapData(3, 3000))
	s.Close()
	held, after := []raft.SnapshotMeta{newer, older}, []raft.SnapshotMeta{older}
	for k := 0; ; k++ {
		fs := base.image(false)
		s := openT(t, "/snap", Options{fs: fs})
		fs.crashAfter(k)
		err := s.Remove(newer)
		s.Close()
		for i, img := range append([]*memFS{fs.image(false)}, fs.powerCutImages()...) {
			got := reopenList(t, img)
			if !sameMetas(got, after) && (err == nil || !sameMetas(got, held)) {
				t.Fatalf("crash after %d operations (image %d, Remove returned %v): store lists %v", k, i, err, indexes(got))
			}
		}
		if err == nil {
			break
		}
	}
}
