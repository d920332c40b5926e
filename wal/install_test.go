package wal

import (
	"errors"
	"testing"

	"github.com/raftline/raft"
)

// TestInstallSnapshotMatchesStorageSemantics checks each case of
// InstallSnapshot against the model, live and after a reopen.
func TestInstallSnapshotMatchesStorageSemantics(t *testing.T) {
	base := []op{{ents: ents(1, 20, 1)}, {ents: ents(21, 30, 2)}, {compact: 5}}
	tests := []struct {
		name  string
		ops   []op
		reset bool // every entry dropped
	}{
		{"at an entry the log holds: compaction", []op{{install: 25, installTerm: 2}}, false},
		{"at the compaction point: nothing to do", []op{{install: 5, installTerm: 1}}, false},
		{"at the last entry", []op{{install: 30, installTerm: 2}}, false},
		{"past the end of the log", []op{{install: 40, installTerm: 3}}, true},
		{"right after the last entry", []op{{install: 31, installTerm: 2}}, true},
		{"over entries of another term", []op{{install: 25, installTerm: 3}}, true},
		{"at the compaction point with another term", []op{{install: 5, installTerm: 4}}, true},
		{"then appends after the snapshot", []op{{install: 40, installTerm: 3}, {ents: ents(41, 45, 3)}}, true},
		{"then a second reset", []op{{install: 40, installTerm: 3}, {ents: ents(41, 45, 3)}, {install: 43, installTerm: 4}}, true},
		{"then a compaction", []op{{install: 40, installTerm: 3}, {ents: ents(41, 60, 3)}, {compact: 50}}, true},
		{"then a truncation", []op{{install: 40, installTerm: 3}, {ents: ents(41, 60, 3)}, {ents: ents(45, 46, 4)}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newMemFS()
			w := openT(t, "/wal", memOptions(fs, 1024))
			m := newModel()
			for i, o := range append(append([]op(nil), base...), tt.ops...) {
				if err := apply(w, m, o); err != nil {
					t.Fatalf("op %d: %v", i, err)
				}
				if d := m.diff(w); d != "" {
					t.Fatalf("after op %d: %s", i, d)
				}
			}
			// Right after dropping every entry only the segment holding the
			// reset remains, and a reopen starts exactly after the snapshot.
			exact := tt.reset && tt.ops[len(tt.ops)-1].install != 0
			if segs := len(fs.segmentFiles()); exact && segs != 1 {
				t.Fatalf("%d segments after dropping every entry, want 1", segs)
			}
			w.Close()
			w = openT(t, "/wal", memOptions(fs, 1024))
			defer w.Close()
			if d := m.diff(w); d != "" {
				t.Fatalf("after reopen: %s", d)
			}
			if first, _ := w.FirstIndex(); exact && first != m.first {
				t.Fatalf("FirstIndex %d after reopen, want %d: a reset is exact", first, m.first)
			}
		})
	}
}

func TestInstallSnapshotRefusesWhatItCannotDo(t *testing.T) {
	fs := newMemFS()
	w := openT(t, "/wal", memOptions(fs, 1024))
	defer w.Close()
	mustSave(t, w, raft.HardState{Term: 1}, ents(1, 20, 1))
	if err := w.Compact(10); err != nil {
		t.Fatal(err)
	}
	if err := w.InstallSnapshot(8, 1); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("InstallSnapshot older than the compaction point: %v, want ErrCompacted", err)
	}
	if err := w.InstallSnapshot(0, 1); err == nil {
		t.Fatal("InstallSnapshot at index 0 succeeded")
	}
	if first, _ := w.FirstIndex(); first != 11 {
		t.Fatalf("a refused InstallSnapshot changed the log: FirstIndex %d", first)
	}
	fs.mu.Lock()
	fs.failSync = true
	fs.mu.Unlock()
	if err := w.InstallSnapshot(30, 2); !errors.Is(err, errSyncFault) {
		t.Fatalf("InstallSnapshot with failing fsync: %v", err)
	}
	if err := w.InstallSnapshot(30, 2); !errors.Is(err, ErrFailed) {
		t.Fatalf("InstallSnapshot after a failed fsync: %v, want ErrFailed", err)
	}
	if last, _ := w.LastIndex(); last != 20 {
		t.Fatalf("LastIndex %d after a failed InstallSnapshot, want 20", last)
	}
}

// TestWorkloadsWithInstallSnapshotMatchTheModel runs generated workloads
// mixing Saves (appends and truncations), Compacts and InstallSnapshots
// (compacting or dropping everything) on a WAL with tiny segments,
// comparing it with the model after every operation and after reopening
// every few operations.
func TestWorkloadsWithInstallSnapshotMatchTheModel(t *testing.T) {
	installs, resets := 0, 0
	for seed := uint64(1); seed <= 40; seed++ {
		fs := newMemFS()
		w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
		m := newModel()
		for i, o := range genInstallOps(seed, 120) {
			if o.install != 0 {
				installs++
				if m.installResets(o.install, o.installTerm) {
					resets++
				}
			}
			if err := apply(w, m, o); err != nil {
				t.Fatalf("seed %d op %d: %v", seed, i, err)
			}
			if d := m.diff(w); d != "" {
				t.Fatalf("seed %d after op %d (%+v): %s", seed, i, o, d)
			}
			if i%7 == 6 {
				w.Close()
				w = openT(t, "/wal", memOptions(fs, crashSegmentSize))
				if d := m.diff(w); d != "" {
					t.Fatalf("seed %d after op %d and a reopen: %s", seed, i, d)
				}
			}
		}
		w.Close()
	}
	if resets < 20 || installs-resets < 20 {
		t.Fatalf("workloads installed %d snapshots of which %d reset the log: too few of one kind", installs, resets)
	}
	t.Logf("%d installs, %d of which dropped every entry", installs, resets)
}
