package wal

import (
	"errors"
	"flag"
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
// entries.
func outcomes(before *model, o op) []*model {
	out := []*model{before}
	for n := 0; n <= len(o.ents); n++ {
		m := before.clone()
		m.save(o.hs, o.ents[:n])
		out = append(out, m)
	}
	return out
}

// TestCrashCuttingAWriteAtEveryByteRecoversASyncedPrefix cuts the write of
// every Save of a workload at every byte offset (including the writes of a
// segment roll) and checks what reopening finds.
func TestCrashCuttingAWriteAtEveryByteRecoversASyncedPrefix(t *testing.T) {
	cases := 0
	for seed := uint64(1); seed <= uint64(*cutSeeds); seed++ {
		ops := genOps(seed, 25)
		fs := newMemFS()
		w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
		m := newModel()
		for j, o := range ops {
			if o.compact == 0 {
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
	t.Logf("%d cut points checked", cases)
}

// writeSize returns how many bytes Save(o) writes on a WAL opened on fs.
func writeSize(t *testing.T, fs *memFS, o op) int64 {
	t.Helper()
	w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
	defer w.Close()
	start := fs.written
	if err := w.Save(o.hs, o.ents); err != nil {
		t.Fatal(err)
	}
	return fs.written - start
}

// checkCut opens the WAL on fs (holding the state before), lets Save(last)
// write only cut bytes, then reopens what the crash left.
func checkCut(t *testing.T, fs *memFS, cut int64, before *model, last op, j int) {
	t.Helper()
	w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
	fs.mu.Lock()
	fs.budget = cut
	fs.mu.Unlock()
	saveErr := w.Save(last.hs, last.ents)
	w.Close()
	w2, err := Open("/wal", memOptions(fs.image(false), crashSegmentSize))
	if err != nil {
		t.Fatalf("op %d cut at byte %d: reopen refused a crash-cut write: %v", j, cut, err)
	}
	defer w2.Close()
	if saveErr == nil {
		after := before.clone()
		after.save(last.hs, last.ents)
		if d := after.diff(w2); d != "" {
			t.Fatalf("op %d cut at byte %d: acknowledged Save not recovered: %s", j, cut, d)
		}
		return
	}
	var diffs []string
	for _, c := range outcomes(before, last) {
		d := c.diff(w2)
		if d == "" {
			return
		}
		diffs = append(diffs, d)
	}
	t.Fatalf("op %d cut at byte %d: recovered state is no prefix of the write: %s", j, cut, strings.Join(diffs, "; "))
}

// TestCrashDroppingUnsyncedDataRecoversLastSyncedState fails the fsync of
// each Save in turn and reopens from only what was synced.
func TestCrashDroppingUnsyncedDataRecoversLastSyncedState(t *testing.T) {
	ops := genOps(7, 60)
	for j, o := range ops {
		if o.compact != 0 {
			continue
		}
		fs := newMemFS()
		models := runOps(t, fs, ops[:j])
		w := openT(t, "/wal", memOptions(fs, crashSegmentSize))
		fs.mu.Lock()
		fs.failSync = true
		fs.mu.Unlock()
		if err := w.Save(o.hs, o.ents); err == nil {
			t.Fatalf("op %d: Save succeeded although fsync failed", j)
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
