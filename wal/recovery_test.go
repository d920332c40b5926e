package wal

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/raftline/raft"
)

// A truncation written right after a roll reaches back before the new
// segment's header entry, so replay cannot start at that segment. When a
// compaction deletes the segments before a later one, a crash between two
// deletions used to leave exactly that segment oldest, and the WAL
// refused to open. The start marker, durable before any deletion, makes
// recovery skip what the interrupted deletion left.
func TestCrashBetweenSegmentDeletionsLeavesAnOpenableLog(t *testing.T) {
	fs := newMemFS()
	w := openT(t, "/wal", memOptions(fs, 1024))
	m := newModel()
	data := func(i uint64) []byte { return bytes.Repeat([]byte{byte(i)}, 100) }
	for i := uint64(1); len(fs.segmentFiles()) < 2; i++ {
		apply(w, m, op{ents: []raft.Entry{{Index: i, Term: 1, Data: data(i)}}})
	}
	// The newest segment was just created after entry last; overwrite
	// from two entries before it.
	last := m.last()
	apply(w, m, op{hs: raft.HardState{Term: 2, Vote: 1}, ents: []raft.Entry{{Index: last - 2, Term: 2, Data: data(0)}}})
	if s := w.segs[len(w.segs)-1]; validStart(s) {
		t.Fatalf("setup: segment %d (header entry %d, lowest entry %d) is a valid start", s.seq, s.prevIndex, s.minIndex)
	}
	for i := last - 1; len(fs.segmentFiles()) < 5; i++ {
		apply(w, m, op{ents: []raft.Entry{{Index: i, Term: 2, Data: data(i)}}})
	}
	w.Close()
	compact := op{compact: m.last() - 1}
	total := fileOps(t, fs.image(false), compact)
	for k := 0; k <= total; k++ {
		img := fs.image(false)
		w := openT(t, "/wal", memOptions(img, 1024))
		img.crashAfter(k)
		err := run(w, compact)
		w.Close()
		for _, durable := range []bool{false, true} {
			checkRecovered(t, img.image(durable), m, compact, err, fmt.Sprintf("crash after %d of %d file operations (durable only: %v)", k, total, durable))
		}
	}
}

func TestOpenRemovesWhatAnInterruptedCompactionLeft(t *testing.T) {
	fs := newMemFS()
	w := openT(t, "/wal", memOptions(fs, 1024))
	m := newModel()
	for i := uint64(1); i <= 60; i++ {
		apply(w, m, op{ents: []raft.Entry{{Index: i, Term: 1, Data: make([]byte, 100)}}})
	}
	if err := apply(w, m, op{compact: 30}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// Bring back the segments the compaction deleted (as a crash before
	// the deletions were durable could) and an older marker.
	before := newMemFS()
	w = openT(t, "/wal", memOptions(before, 1024))
	for i := uint64(1); i <= 60; i++ {
		mustSave(t, w, raft.HardState{}, []raft.Entry{{Index: i, Term: 1, Data: make([]byte, 100)}})
	}
	w.Close()
	var resurrected []string
	for _, name := range before.segmentFiles() {
		if _, ok := fs.files[name]; !ok {
			fs.files[name] = before.files[name]
			resurrected = append(resurrected, filepath.Base(name))
		}
	}
	fs.files["/wal/"+markerName(1)] = &memFile{}
	if len(resurrected) == 0 {
		t.Fatal("setup: the compaction deleted nothing")
	}
	var logged bytes.Buffer
	opts := memOptions(fs, 1024)
	opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	w = openT(t, "/wal", opts)
	defer w.Close()
	if d := m.diff(w); d != "" {
		t.Fatal(d)
	}
	for _, name := range resurrected {
		if _, ok := fs.files["/wal/"+name]; ok {
			t.Errorf("%s, left by the compaction, not removed", name)
		}
		if !strings.Contains(logged.String(), name) {
			t.Errorf("removal of %s not logged", name)
		}
	}
	if _, ok := fs.files["/wal/"+markerName(1)]; ok {
		t.Error("stale start marker not removed")
	}
}

func TestOpenRefusesAStartMarkerWhoseSegmentIsMissing(t *testing.T) {
	fs := newMemFS()
	w := openT(t, "/wal", memOptions(fs, 1024))
	for i := uint64(1); i <= 40; i++ {
		mustSave(t, w, raft.HardState{}, []raft.Entry{{Index: i, Term: 1, Data: make([]byte, 100)}})
	}
	if err := w.Compact(30); err != nil {
		t.Fatal(err)
	}
	w.Close()
	delete(fs.files, fs.segmentFiles()[0]) // the segment the marker names
	_, err := Open("/wal", memOptions(fs, 1024))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "start marker") {
		t.Fatalf("Open with the oldest segment missing: %v, want ErrCorrupt naming the start marker", err)
	}
}

// Recovery looks only tailWindow past the end of the log; whatever lies
// further in the newest segment (here a well-formed record, as a torn
// write could leave with its later pages written first) is cut off, so it
// can never be read as part of the log after new records reach it.
func TestOpenCutsTheNewestSegmentBeyondTheWindowItLookedAt(t *testing.T) {
	fs := newMemFS()
	w := openT(t, "/wal", memOptions(fs, 64<<20))
	mustSave(t, w, raft.HardState{Term: 1}, ents(1, 3, 1))
	tail := w.tailOff
	w.Close()
	name := fs.segmentFiles()[0]
	stale := appendEntry(nil, &raft.Entry{Index: 4, Term: 1, Data: []byte("never acknowledged")})
	f := fs.files[name]
	f.data = append(f.data, make([]byte, tail+tailWindow+100-int64(len(f.data)))...)
	f.data = append(f.data, stale...)
	w = openT(t, "/wal", memOptions(fs, 64<<20))
	if n := int64(len(fs.files[name].data)); n > w.allocTarget(tail) {
		t.Fatalf("newest segment still %d bytes after Open, want it cut at %d and preallocated to %d", n, tail, w.allocTarget(tail))
	}
	// Fill the log up to where the stale record was, then reopen.
	m := newModel()
	m.save(raft.HardState{Term: 1}, ents(1, 3, 1))
	for i := uint64(4); w.tailOff < tail+tailWindow+200; i += 64 {
		batch := make([]raft.Entry, 64)
		for j := range batch {
			batch[j] = raft.Entry{Index: i + uint64(j), Term: 2, Data: make([]byte, 4000)}
		}
		apply(w, m, op{ents: batch})
	}
	w.Close()
	w = openT(t, "/wal", memOptions(fs, 64<<20))
	defer w.Close()
	if d := m.diff(w); d != "" {
		t.Fatal(d)
	}
}

// With the default options a new WAL occupies one preallocation step of
// disk, not a whole segment.
func TestSmallLogOccupiesOnePreallocationStep(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{})
	for i := uint64(1); i <= 300; i++ {
		mustSave(t, w, raft.HardState{Term: 1, Commit: i - 1}, ents(i, i, 1))
	}
	w.Close()
	var blocks int64
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, name := range names {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		blocks += st.Sys().(*syscall.Stat_t).Blocks * 512
	}
	if blocks > preallocStep+64<<10 {
		t.Fatalf("300 small entries occupy %d bytes of disk, want at most one %d-byte step", blocks, preallocStep)
	}
}

// Compaction frees the positions of the entries it drops (whole chunks at
// a time), so the index's memory follows the entries kept.
func TestCompactionReturnsTheIndexMemory(t *testing.T) {
	const n, keep = 100_000, 1000
	w := openT(t, t.TempDir(), Options{CacheBytes: -1})
	defer w.Close()
	batch := make([]raft.Entry, 0, 5000)
	for i := uint64(1); i <= n; {
		batch = batch[:0]
		for ; len(batch) < cap(batch); i++ {
			batch = append(batch, raft.Entry{Index: i, Term: 1})
		}
		mustSave(t, w, raft.HardState{}, batch)
	}
	held := heapInUse()
	if err := w.Compact(n - keep); err != nil {
		t.Fatal(err)
	}
	freed := held - heapInUse()
	perEntry := float64(held-heapAfterClearing(t, w)) / n
	if want := int64(0.9 * (n - keep) * 32); freed < want {
		t.Fatalf("compacting %d of %d entries freed %d bytes, want at least %d", n-keep, n, freed, want)
	}
	t.Logf("index: %.1f bytes per entry; compaction freed %d bytes", perEntry, freed)
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// heapAfterClearing measures the heap with w's index emptied (restored
// after), to tell how much the index held.
func heapAfterClearing(t *testing.T, w *WAL) int64 {
	t.Helper()
	saved := w.ents
	w.ents = posIndex{}
	h := heapInUse()
	w.ents = saved
	return h
}

// Opening a small log costs memory for its data, not for the space its
// segment preallocates: here 30 KB of entries in a segment preallocated
// in one 4 MiB step, and in one preallocated whole (64 MiB, as the first
// format did).
func TestOpeningASmallLogAllocatesLittle(t *testing.T) {
	for _, step := range []int64{preallocStep, DefaultSegmentSize} {
		t.Run(fmt.Sprintf("preallocated=%d", step), func(t *testing.T) {
			dir := t.TempDir()
			w := openT(t, dir, Options{preallocStep: step})
			for i := uint64(1); i <= 240; i++ {
				mustSave(t, w, raft.HardState{Term: 1}, []raft.Entry{{Index: i, Term: 1, Data: make([]byte, 128)}})
			}
			w.Close()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			w = openT(t, dir, Options{preallocStep: step})
			runtime.ReadMemStats(&after)
			w.Close()
			if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
				t.Fatalf("Open of a 30 KB log allocated %d bytes", got)
			}
		})
	}
}
