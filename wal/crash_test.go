package wal

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/raftline/raft"
)

// Crash-consistency tests: a generated workload runs on the fault-injecting
// memFS, a crash is simulated, and the WAL is reopened from what the crash
// left. Each case must either recover every synced record (and nothing
// that was never written) or refuse to open with a clear error.

const crashSegmentSize = 1024 // tiny, so workloads roll and compact often

var cutSeeds = flag.Int("wal.cut-seeds", 1, "workloads (of 25 operations) whose every write is cut at every byte")

// runOps runs ops on a fresh WAL over fs and returns the model after each
// (models[i] is the state after ops[:i]).
func runOps(t *testing.T, fs *memFS, ops []op) []*model {
	t.Helper()
	w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
	defer w.Close()
	m := newModel()
	models := []*model{m.clone()}
	for i, o := range ops {
		if err := apply(w, m, o); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		models = append(models, m.clone())
	}
	return models
}

// outcomes lists the states a Save cut short may legitimately leave: the
// state before it, or its hard state (written first) with any prefix of its
// entries. A Compact or InstallSnapshot cut short leaves the state before
// or after it.
func outcomes(before *model, o op) []*model {
	if o.compact != 0 || o.install != 0 {
		after := before.clone()
		after.apply(o)
		return []*model{before, after}
	}
	out := []*model{before}
	for n := 0; n <= len(o.ents); n++ {
		m := before.clone()
		m.save(o.hs, o.ents[:n])
		out = append(out, m)
	}
	return out
}

// writes reports whether o, run on the state m, writes to a segment: a
// Save, or an InstallSnapshot that drops every entry.
func writes(m *model, o op) bool {
	return o.compact == 0 && (o.install == 0 || m.installResets(o.install, o.installTerm))
}

// TestCrashCuttingAWriteAtEveryByteRecoversASyncedPrefix cuts writes at
// every byte offset (including the writes of a segment roll) and checks
// what reopening finds: every Save of a workload, and every
// InstallSnapshot that resets the log (with the Save after it) of a
// workload installing snapshots.
func TestCrashCuttingAWriteAtEveryByteRecoversASyncedPrefix(t *testing.T) {
	cases := 0
	for seed := uint64(1); seed <= uint64(*cutSeeds); seed++ {
		workloads := []struct {
			ops    []op
			cutAll bool // every write, or only resets and the Save after each
		}{{genOps(seed, 25), true}, {genInstallOps(seed, 60), false}}
		for _, wl := range workloads {
			fs := newMemFS()
			w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
			m := newModel()
			afterReset := false
			for j, o := range wl.ops {
				reset := o.install != 0 && m.installResets(o.install, o.installTerm)
				cut := writes(m, o) && (wl.cutAll || reset || afterReset)
				afterReset = reset
				if cut {
					// Measure what op j writes on a copy, then cut it everywhere.
					size := writeSize(t, fs.image(false), o)
					for cut := int64(0); cut <= size; cut++ {
						checkCut(t, fs.image(false), cut, m, o, j)
						cases++
					}
				}
				if err := apply(w, m, o); err != nil {
					t.Fatalf("op %d: %v", j, err)
				}
			}
			w.Close()
		}
	}
	t.Logf("%d cut points checked", cases)
}

// writeSize returns how many bytes o writes on a WAL opened on fs.
func writeSize(t *testing.T, fs *memFS, o op) int64 {
	t.Helper()
	w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
	defer w.Close()
	start := fs.written
	if err := run(w, o); err != nil {
		t.Fatal(err)
	}
	return fs.written - start
}

// checkCut opens the WAL on fs (holding the state before), lets last write
// only cut bytes, then reopens what the crash left.
func checkCut(t *testing.T, fs *memFS, cut int64, before *model, last op, j int) {
	t.Helper()
	w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
	fs.mu.Lock()
	fs.budget = cut
	fs.mu.Unlock()
	opErr := run(w, last)
	w.Close()
	checkRecovered(t, fs.image(false), before, last, opErr, fmt.Sprintf("op %d cut at byte %d", j, cut))
}

// checkRecovered opens the WAL a crash left on fs and checks that it holds
// the state after last if last returned (opErr nil), or one of last's
// outcomes if not.
func checkRecovered(t *testing.T, fs *memFS, before *model, last op, opErr error, where string) {
	t.Helper()
	w, err := Open("/wal", memOptions(fs, crashSegmentSize))
	if err != nil {
		t.Fatalf("%s: reopen refused what a crash left: %v", where, err)
	}
	defer w.Close()
	if opErr == nil {
		after := before.clone()
		after.apply(last)
		if d := after.diff(w); d != "" {
			t.Fatalf("%s: acknowledged operation not recovered: %s", where, d)
		}
		return
	}
	var diffs []string
	for _, c := range outcomes(before, last) {
		d := c.diff(w)
		if d == "" {
			return
		}
		diffs = append(diffs, d)
	}
	t.Fatalf("%s: recovered state is no outcome of the operation: %s", where, strings.Join(diffs, "; "))
}

// TestCrashAfterEveryFileOperationRecoversBeforeOrAfter crashes each
// operation of a workload with snapshots installed (Saves with their
// rolls, Compacts and InstallSnapshots with their segment deletions) after
// each of its file-system operations in turn, and reopens from what a
// killed process would leave and from what a power cut would (synced data
// under synced names only): the WAL must open, holding the state before
// the operation or after it (for a Save, possibly a prefix of it), and
// after it whenever the operation returned.
func TestCrashAfterEveryFileOperationRecoversBeforeOrAfter(t *testing.T) {
	cases := 0
	for _, seed := range []uint64{3, 4} {
		ops := genInstallOps(seed, 60)
		fs := newMemFS()
		w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
		m := newModel()
		for j, o := range ops {
			total := fileOps(t, fs.image(false), o)
			for k := 0; k <= total; k++ {
				img := fs.image(false)
				w2 := openT(t, "/wal", memOptions(img, crashSegmentSize))
				img.crashAfter(k)
				opErr := run(w2, o)
				w2.Close()
				for _, durable := range []bool{false, true} {
					where := fmt.Sprintf("seed %d op %d (%s) crashed after %d of %d file operations (durable only: %v)",
						seed, j, describe(o), k, total, durable)
					checkRecovered(t, img.image(durable), m, o, opErr, where)
					cases++
				}
			}
			if err := apply(w, m, o); err != nil {
				t.Fatalf("op %d: %v", j, err)
			}
		}
		w.Close()
	}
	t.Logf("%d crash images checked", cases)
}

// fileOps returns how many mutating file-system operations o runs on a
// WAL opened on fs.
func fileOps(t *testing.T, fs *memFS, o op) int {
	t.Helper()
	w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
	defer w.Close()
	start := fs.opCount()
	if err := run(w, o); err != nil {
		t.Fatal(err)
	}
	return fs.opCount() - start
}

func describe(o op) string {
	switch {
	case o.install != 0:
		return fmt.Sprintf("InstallSnapshot(%d, %d)", o.install, o.installTerm)
	case o.compact != 0:
		return fmt.Sprintf("Compact(%d)", o.compact)
	case len(o.ents) > 0:
		return fmt.Sprintf("Save of %d..%d", o.ents[0].Index, o.ents[len(o.ents)-1].Index)
	}
	return "Save of a hard state"
}

// TestCrashDroppingUnsyncedDataRecoversLastSyncedState fails the fsync of
// each Save in turn and reopens from only what was synced.
func TestCrashDroppingUnsyncedDataRecoversLastSyncedState(t *testing.T) {
	for _, ops := range [][]op{genOps(7, 60), genInstallOps(7, 60)} {
		m := newModel()
		for j, o := range ops {
			if !writes(m, o) {
				m.apply(o)
				continue
			}
			fs := newMemFS()
			models := runOps(t, fs, ops[:j])
			w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
			fs.mu.Lock()
			fs.failSync = true
			fs.mu.Unlock()
			if err := run(w, o); err == nil {
				t.Fatalf("op %d: %s succeeded although fsync failed", j, describe(o))
			}
			if err := w.Save(raft.HardState{Term: 99}, nil); !errors.Is(err, ErrFailed) {
				t.Fatalf("op %d: Save after failed fsync: %v, want ErrFailed", j, err)
			}
			w.Close()
			w2, err := Open("/wal", memOptions(fs.image(true), crashSegmentSize))
			if err != nil {
				t.Fatalf("op %d: reopen after losing unsynced data: %v", j, err)
			}
			if d := models[j].diff(w2); d != "" {
				t.Fatalf("op %d: %s", j, d)
			}
			w2.Close()
			m.apply(o)
		}
	}
}

// TestCrashBitFlipIsRecoveredOrRefused flips one bit at a random offset of
// a random segment of a synced log: reopening must refuse with ErrCorrupt
// or recover the whole log.
func TestCrashBitFlipIsRecoveredOrRefused(t *testing.T) {
	ops := genOps(11, 80)
	fs := newMemFS()
	models := runOps(t, fs, ops)
	want := models[len(models)-1]
	img := fs.image(true)
	r := rand.New(rand.NewPCG(3, 4))
	refused, recovered := 0, 0
	for range 600 {
		flipped := img.image(true)
		names := flipped.segmentFiles()
		f := flipped.files[names[r.IntN(len(names))]]
		// Bias half the flips to the written part, where it matters.
		n := len(f.data)
		if r.IntN(2) == 0 {
			n = min(n, int(nonZeroExtent(f.data))+8)
		}
		off := r.IntN(n)
		f.data[off] ^= 1 << r.IntN(8)
		f.synced = f.data
		w, err := Open("/wal", memOptions(flipped, crashSegmentSize))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), ".wal") {
				t.Fatalf("flip at %d: refused with an unclear error: %v", off, err)
			}
			refused++
			continue
		}
		if d := want.diff(w); d != "" {
			t.Fatalf("flip at %d: opened a different log: %s", off, d)
		}
		w.Close()
		recovered++
	}
	t.Logf("%d flips refused, %d recovered intact", refused, recovered)
}
