package wal

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftline/raft"
)

func ents(first, last, term uint64) []raft.Entry {
	var out []raft.Entry
	for i := first; i <= last; i++ {
		out = append(out, raft.Entry{Index: i, Term: term, Data: []byte(fmt.Sprintf("e%d-t%d", i, term))})
	}
	return out
}

func openT(t *testing.T, dir string, opts Options) *WAL {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustSave(t *testing.T, w *WAL, hs raft.HardState, es []raft.Entry) {
	t.Helper()
	if err := w.Save(hs, es); err != nil {
		t.Fatal(err)
	}
}

func segmentCount(t *testing.T, dir string) int {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}

func TestEmptyWALLooksLikeNewStorage(t *testing.T) {
	w := openT(t, t.TempDir(), Options{})
	defer w.Close()
	m := newModel()
	if d := m.diff(w); d != "" {
		t.Fatal(d)
	}
	if _, err := w.Term(1); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("Term(1) on empty log: %v, want ErrUnavailable", err)
	}
}

// TestSaveMatchesStorageSemantics runs the same operations on a WAL and
// the model, checking after each and again after a reopen.
func TestSaveMatchesStorageSemantics(t *testing.T) {
	hs := raft.HardState{Term: 2, Vote: 1, Commit: 3}
	tests := []struct {
		name string
		ops  []op
	}{
		{"append", []op{{ents: ents(1, 5, 1)}, {ents: ents(6, 9, 1)}}},
		{"hard state only", []op{{hs: hs}}},
		{"hard state with entries", []op{{hs: hs, ents: ents(1, 3, 2)}}},
		{"truncate conflicting suffix", []op{{ents: ents(1, 9, 1)}, {hs: hs, ents: ents(4, 5, 2)}}},
		{"truncate everything", []op{{ents: ents(1, 9, 1)}, {ents: ents(1, 2, 2)}}},
		{"overwrite with same length", []op{{ents: ents(1, 5, 1)}, {ents: ents(5, 5, 2)}}},
		{"compact then append", []op{{ents: ents(1, 9, 1)}, {compact: 4}, {ents: ents(10, 12, 1)}}},
		{"save below compaction point skips compacted", []op{{ents: ents(1, 9, 1)}, {compact: 6}, {ents: ents(5, 11, 1)}}},
		{"compact everything", []op{{ents: ents(1, 9, 1)}, {compact: 9}, {ents: ents(10, 10, 2)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			w := openT(t, dir, Options{SegmentSize: 1024})
			m := newModel()
			for i, o := range tt.ops {
				if err := apply(w, m, o); err != nil {
					t.Fatalf("op %d: %v", i, err)
				}
				if d := m.diff(w); d != "" {
					t.Fatalf("after op %d: %s", i, d)
				}
			}
			w.Close()
			w = openT(t, dir, Options{SegmentSize: 1024})
			defer w.Close()
			if d := m.diff(w); d != "" {
				t.Fatalf("after reopen: %s", d)
			}
		})
	}
}

func TestSaveRefusesGapAndKeepsWorking(t *testing.T) {
	w := openT(t, t.TempDir(), Options{})
	defer w.Close()
	mustSave(t, w, raft.HardState{}, ents(1, 3, 1))
	if err := w.Save(raft.HardState{}, ents(5, 6, 1)); !errors.Is(err, raft.ErrLogGap) {
		t.Fatalf("Save leaving a gap: %v, want ErrLogGap", err)
	}
	if err := w.Save(raft.HardState{}, []raft.Entry{{Index: 4, Term: 1}, {Index: 6, Term: 1}}); err == nil {
		t.Fatal("Save with non-contiguous entries succeeded")
	}
	mustSave(t, w, raft.HardState{}, ents(4, 4, 1))
	if last, _ := w.LastIndex(); last != 4 {
		t.Fatalf("LastIndex %d, want 4", last)
	}
}

func TestRolloverSpreadsLogOverSegmentsAndSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{SegmentSize: 2048})
	m := newModel()
	for i := uint64(0); i < 50; i++ {
		o := op{ents: []raft.Entry{{Index: i + 1, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, 100)}}}
		if err := apply(w, m, o); err != nil {
			t.Fatal(err)
		}
	}
	if n := segmentCount(t, dir); n < 3 {
		t.Fatalf("%d segments after 50×100 bytes with 2 KiB segments, want ≥ 3", n)
	}
	// A rolled segment ends where its data ends; the active one is
	// preallocated.
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	for i, name := range segs {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if active := i == len(segs)-1; active != (st.Size() == 2048) {
			t.Fatalf("segment %s (active: %v) has %d bytes", filepath.Base(name), active, st.Size())
		}
		if i < len(segs)-1 {
			b, _ := os.ReadFile(name)
			if b[len(b)-1] != endMarker {
				t.Fatalf("rolled segment %s does not end with a record", filepath.Base(name))
			}
		}
	}
	w.Close()
	w = openT(t, dir, Options{SegmentSize: 2048})
	defer w.Close()
	if d := m.diff(w); d != "" {
		t.Fatal(d)
	}
}

func TestBatchLargerThanSegmentGoesWholeIntoOne(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{SegmentSize: 1024})
	m := newModel()
	big := op{ents: []raft.Entry{{Index: 1, Term: 1, Data: make([]byte, 5000)}, {Index: 2, Term: 1}}}
	for _, o := range []op{big, {ents: ents(3, 4, 1)}} {
		if err := apply(w, m, o); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	w = openT(t, dir, Options{SegmentSize: 1024})
	defer w.Close()
	if d := m.diff(w); d != "" {
		t.Fatal(d)
	}
}

func TestBatchOfManyWriteChunksReadsBackWholeAndKeepsNoLargeBuffer(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{CacheBytes: -1}) // every read from disk
	m := newModel()
	var batch []raft.Entry
	for i := uint64(1); i <= 3*writeChunk/4096+7; i++ { // over three chunks
		data := bytes.Repeat([]byte{byte(i)}, 4096)
		batch = append(batch, raft.Entry{Index: i, Term: 1, Data: data})
	}
	steps := []op{
		{hs: raft.HardState{Term: 1, Vote: 1, Commit: 1}, ents: batch},
		{ents: ents(uint64(len(batch))+1, uint64(len(batch))+3, 1)},
	}
	for _, o := range steps {
		if err := apply(w, m, o); err != nil {
			t.Fatal(err)
		}
	}
	if d := m.diff(w); d != "" {
		t.Fatalf("before reopen: %s", d)
	}
	if c := cap(w.buf); c > maxKeptBuffer {
		t.Fatalf("kept a %d-byte encoding buffer after the large Save; at most %d", c, maxKeptBuffer)
	}
	w.Close()
	w = openT(t, dir, Options{})
	defer w.Close()
	if d := m.diff(w); d != "" {
		t.Fatalf("after reopen: %s", d)
	}
}

func TestCompactDeletesWholeSegmentsAndKeepsCompactionTerm(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1024}
	w := openT(t, dir, opts)
	for i := uint64(1); i <= 60; i++ {
		mustSave(t, w, raft.HardState{Term: i/10 + 1}, []raft.Entry{{Index: i, Term: i/10 + 1, Data: make([]byte, 100)}})
	}
	before := segmentCount(t, dir)
	if err := w.Compact(45); err != nil {
		t.Fatal(err)
	}
	w.rm.flush()
	after := segmentCount(t, dir)
	if after >= before || after < 1 {
		t.Fatalf("segments %d → %d after compacting 45 of 60 entries", before, after)
	}
	if first, _ := w.FirstIndex(); first != 46 {
		t.Fatalf("FirstIndex %d, want 46", first)
	}
	if term, err := w.Term(45); err != nil || term != 5 {
		t.Fatalf("Term(45) = %d, %v; want 5", term, err)
	}
	if _, err := w.Term(44); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Term(44): %v, want ErrCompacted", err)
	}
	if _, err := w.Entries(45, 50, 1<<20); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Entries(45, 50): %v, want ErrCompacted", err)
	}
	if err := w.Compact(40); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Compact(40) after 45: %v, want ErrCompacted", err)
	}
	if err := w.Compact(61); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("Compact(61) beyond the log: %v, want ErrUnavailable", err)
	}
	w.Close()
	w = openT(t, dir, opts)
	defer w.Close()
	first, _ := w.FirstIndex()
	if first > 46 || first < 2 {
		t.Fatalf("FirstIndex after reopen %d, want within [2, 46]", first)
	}
	term, err := w.Term(first - 1)
	if err != nil || term != (first-1)/10+1 {
		t.Fatalf("Term(%d) after reopen = %d, %v", first-1, term, err)
	}
	if got, err := w.Entries(46, 61, 1<<20); err != nil || len(got) != 15 || got[0].Index != 46 {
		t.Fatalf("Entries(46, 61) after reopen: %d entries, %v", len(got), err)
	}
}

// openSegmented opens a WAL on fs with 1 KiB segments and saves 60
// entries of 100 bytes across several of them.
func openSegmented(t *testing.T, fs *memFS) *WAL {
	t.Helper()
	w := openT(t, "/wal", memOptions(fs, 1024))
	for i := uint64(1); i <= 60; i++ {
		mustSave(t, w, raft.HardState{Term: 1}, []raft.Entry{{Index: i, Term: 1, Data: make([]byte, 100)}})
	}
	return w
}

// Deleting a compaction's segments (unlinks and a directory fsync, slow on
// a busy disk) must not hold up the writes after it: Compact and the next
// Save return while the deletion is still blocked, and the segments go
// once it is let through.
func TestWritesDoNotWaitForACompactionsDeletions(t *testing.T) {
	fs := newMemFS()
	w := openSegmented(t, fs)
	defer w.Close()
	segments := func() int {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		n := 0
		for name := range fs.files {
			if strings.HasSuffix(name, segmentExt) {
				n++
			}
		}
		return n
	}
	before := segments()
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	defer release() // before Close, which waits for the removals
	fs.mu.Lock()
	fs.removeGate = gate
	fs.mu.Unlock()
	wrote := make(chan error, 1)
	go func() {
		if err := w.Compact(45); err != nil {
			wrote <- err
			return
		}
		wrote <- w.Save(raft.HardState{Term: 1}, []raft.Entry{{Index: 61, Term: 1}})
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Compact or the Save after it waited for the segments to be deleted")
	}
	if n := segments(); n < before { // the Save may have started one
		t.Fatalf("%d segments of %d gone while every removal was held", before-n, before)
	}
	release()
	w.rm.flush()
	if n := segments(); n >= before {
		t.Fatalf("segments %d -> %d once the removals were let through", before, n)
	}
	if got, err := w.Entries(46, 62, 1<<20); err != nil || len(got) != 16 {
		t.Fatalf("Entries(46, 62): %d entries, %v", len(got), err)
	}
}

// A deletion that fails in the background is not lost: the log fails on
// its next write, as it did when Compact deleted inline.
func TestFailedBackgroundDeletionFailsTheNextWrite(t *testing.T) {
	fs := newMemFS()
	w := openSegmented(t, fs)
	defer w.Close()
	fs.mu.Lock()
	fs.failRemove = true
	fs.mu.Unlock()
	if err := w.Compact(45); err != nil {
		t.Fatalf("Compact: %v (the deletion runs after it)", err)
	}
	w.rm.flush()
	err := w.Save(raft.HardState{Term: 1}, []raft.Entry{{Index: 61, Term: 1}})
	if !errors.Is(err, ErrFailed) || !errors.Is(err, errRemoveFault) {
		t.Fatalf("Save after a failed deletion: %v, want ErrFailed wrapping the removal's error", err)
	}
}

func TestCompactKeepsSegmentsATruncationReachesBackInto(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1024}
	w := openT(t, dir, opts)
	m := newModel()
	for i := uint64(1); i <= 20; i++ {
		apply(w, m, op{ents: []raft.Entry{{Index: i, Term: 1, Data: make([]byte, 100)}}})
	}
	// A new term overwrites 15.. right after a roll: the newest segment's
	// records then reach back before its header's previous entry.
	apply(w, m, op{ents: []raft.Entry{{Index: 15, Term: 2, Data: make([]byte, 500)}}})
	apply(w, m, op{ents: ents(16, 25, 2)})
	// Segment S (header previous entry 20) now starts the compacted-away
	// part, but replay cannot start at S: its entry 15 needs 14 before it.
	if err := apply(w, m, op{compact: 22}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w = openT(t, dir, opts)
	defer w.Close()
	if d := m.diff(w); d != "" {
		t.Fatal(d)
	}
}

func TestSecondOpenOfDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{})
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	w.Close()
	w2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	w2.Close()
}

func TestClosedWALRefusesCalls(t *testing.T) {
	w := openT(t, t.TempDir(), Options{})
	w.Close()
	if err := w.Save(raft.HardState{Term: 1}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}
	if _, err := w.LastIndex(); !errors.Is(err, ErrClosed) {
		t.Fatalf("LastIndex after Close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCacheIsBoundedAndOlderEntriesComeFromDisk(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4096, CacheBytes: 1000}
	w := openT(t, dir, opts)
	defer w.Close()
	m := newModel()
	for i := uint64(1); i <= 100; i++ {
		apply(w, m, op{ents: []raft.Entry{{Index: i, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, 76)}}})
	}
	if w.cache.bytes > 1000 || w.cache.count() != 10 {
		t.Fatalf("cache holds %d entries, %d bytes; want 10 entries within 1000 bytes", w.cache.count(), w.cache.bytes)
	}
	if d := m.diff(w); d != "" { // reads 1..90 from disk
		t.Fatal(d)
	}
	got, err := w.Entries(1, 101, 250)
	if err != nil || len(got) != 2 {
		t.Fatalf("Entries with maxBytes 250 returned %d entries, %v; want 2", len(got), err)
	}
	if got, _ := w.Entries(5, 6, 0); len(got) != 1 {
		t.Fatalf("Entries with maxBytes 0 returned %d entries, want 1", len(got))
	}
}

func TestReturnedEntriesNeverChangeAfterTruncation(t *testing.T) {
	w := openT(t, t.TempDir(), Options{})
	defer w.Close()
	mustSave(t, w, raft.HardState{}, ents(1, 5, 1))
	held, err := w.Entries(2, 6, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]raft.Entry(nil), held...)
	mustSave(t, w, raft.HardState{}, ents(3, 8, 2))
	mustSave(t, w, raft.HardState{}, ents(9, 12, 2))
	for i := range want {
		if !sameEntry(held[i], want[i]) {
			t.Fatalf("held entry %d changed to %+v", want[i].Index, held[i])
		}
	}
}

func TestFailedSyncIsStickyAndLosesNothingAcknowledged(t *testing.T) {
	fs := newMemFS()
	w := openT(t, "/wal", memOptions(fs, 4096))
	mustSave(t, w, raft.HardState{Term: 1}, ents(1, 3, 1))
	fs.mu.Lock()
	fs.failSync = true
	fs.mu.Unlock()
	if err := w.Save(raft.HardState{}, ents(4, 5, 1)); !errors.Is(err, errSyncFault) {
		t.Fatalf("Save with failing fsync: %v", err)
	}
	fs.mu.Lock()
	fs.failSync = false // the disk "recovers": the WAL must still refuse
	fs.mu.Unlock()
	if err := w.Save(raft.HardState{}, ents(4, 5, 1)); !errors.Is(err, ErrFailed) || !errors.Is(err, errSyncFault) {
		t.Fatalf("Save after a failed fsync: %v, want ErrFailed wrapping the fault", err)
	}
	if err := w.Compact(1); !errors.Is(err, ErrFailed) {
		t.Fatalf("Compact after a failed fsync: %v, want ErrFailed", err)
	}
	if last, _ := w.LastIndex(); last != 3 {
		t.Fatalf("LastIndex %d after failed Save, want 3", last)
	}
	w.Close()
}

func TestOpenDiscardsAndReportsTornTail(t *testing.T) {
	fs := newMemFS()
	w := openT(t, "/wal", memOptions(fs, 4096))
	mustSave(t, w, raft.HardState{Term: 1}, ents(1, 3, 1))
	fs.mu.Lock()
	fs.budget = 30 // the next write is cut after 30 bytes
	fs.mu.Unlock()
	if err := w.Save(raft.HardState{}, ents(4, 6, 1)); err == nil {
		t.Fatal("cut write succeeded")
	}
	w.Close()
	var logged bytes.Buffer
	img := fs.image(false)
	opts := memOptions(img, 4096)
	opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	w = openT(t, "/wal", opts)
	defer w.Close()
	r := w.Recovery()
	if !r.TornTail || r.Discarded != 30 || !strings.HasSuffix(r.File, segmentName(1, 1)) {
		t.Fatalf("Recovery %+v, want a 30-byte torn tail in the first segment", r)
	}
	if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "torn") {
		t.Fatalf("no warning logged: %q", logged.String())
	}
	if last, _ := w.LastIndex(); last != 3 {
		t.Fatalf("LastIndex %d, want 3", last)
	}
	mustSave(t, w, raft.HardState{}, ents(4, 4, 1)) // the repaired tail takes writes
}

func TestOpenRefusesCorruptionWithFileAndOffset(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, fs *memFS)
		want   string
	}{
		{"bad checksum before the tail", func(t *testing.T, fs *memFS) {
			f := fs.files[fs.segmentFiles()[0]]
			f.data[segHeaderLen+headerSize+20] ^= 1 // payload of the first entry
		}, fmt.Sprintf("%s offset %d", segmentName(1, 1), segHeaderLen)},
		{"bad checksum in an older segment", func(t *testing.T, fs *memFS) {
			f := fs.files[fs.segmentFiles()[0]]
			f.data[segHeaderLen+headerSize+20] ^= 1
			if len(fs.segmentFiles()) < 3 {
				t.Fatal("need several segments")
			}
		}, "not the newest"},
		{"missing segment", func(t *testing.T, fs *memFS) {
			delete(fs.files, fs.segmentFiles()[1])
		}, "segment 2 is missing"},
		{"bad segment header", func(t *testing.T, fs *memFS) {
			fs.files[fs.segmentFiles()[1]].data[2] ^= 4
		}, "segment header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newMemFS()
			w := openT(t, "/wal", memOptions(fs, 1024))
			for i := uint64(1); i <= 30; i++ {
				mustSave(t, w, raft.HardState{}, []raft.Entry{{Index: i, Term: 1, Data: make([]byte, 100)}})
			}
			w.Close()
			tt.damage(t, fs)
			before := fs.image(false)
			_, err := Open("/wal", memOptions(fs, 1024))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open: %v; want ErrCorrupt mentioning %q", err, tt.want)
			}
			for name, f := range before.files {
				if !bytes.Equal(fs.files[name].data, f.data) {
					t.Fatalf("Open changed %s although it refused", name)
				}
			}
		})
	}
}

// TestReadsRunConcurrentlyWithSave is mostly for the race detector: reads
// must see either the state before or after each Save, never a mix.
func TestReadsRunConcurrentlyWithSave(t *testing.T) {
	w := openT(t, t.TempDir(), Options{SegmentSize: 8192, CacheBytes: 2000})
	defer w.Close()
	mustSave(t, w, raft.HardState{}, ents(1, 1, 1))
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			first, _ := w.FirstIndex()
			last, _ := w.LastIndex()
			got, err := w.Entries(first, last+1, 1<<20)
			if err == nil && got[len(got)-1].Index > last {
				err = fmt.Errorf("entries past LastIndex")
			}
			if _, terr := w.Term(last); err == nil && terr != nil && !errors.Is(terr, raft.ErrCompacted) {
				err = terr
			}
			if err != nil && !errors.Is(err, raft.ErrCompacted) {
				select {
				case errc <- err:
				default:
				}
				return
			}
		}
	}()
	for i := uint64(2); i <= 200; i++ {
		mustSave(t, w, raft.HardState{Term: 1, Commit: i - 1}, ents(i, i, 1))
		if i%50 == 0 {
			if err := w.Compact(i - 20); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

// A crash while the very first segment was being created leaves only its
// temporary file; reopening must clear it and start the log.
func TestOpenAfterCrashCreatingFirstSegment(t *testing.T) {
	fs := newMemFS()
	tmp := "/wal/" + segmentName(1, 1) + tmpSuffix
	fs.files[tmp] = &memFile{data: []byte{1, 2, 3}}
	w := openT(t, "/wal", memOptions(fs, 4096))
	defer w.Close()
	if _, ok := fs.files[tmp]; ok {
		t.Fatal("temporary file left behind")
	}
	mustSave(t, w, raft.HardState{Term: 1}, ents(1, 1, 1))
}

// sizeRecorder is a file that records the sizes it is truncated to.
type sizeRecorder struct {
	file
	size  int64
	sizes []int64
}

func (f *sizeRecorder) Size() (int64, error) { return f.size, nil }
func (f *sizeRecorder) Truncate(size int64) error {
	f.size = size
	f.sizes = append(f.sizes, size)
	return nil
}

// A segment about to be deleted is cut down a step at a time, so that no
// one commit of the file system frees (and discards) all of it.
func TestSegmentIsShrunkInStepsBeforeItIsDeleted(t *testing.T) {
	f := &sizeRecorder{size: 2*shrinkStep + 1000}
	shrink(f)
	want := []int64{shrinkStep + 1000, 1000}
	if !slices.Equal(f.sizes, want) {
		t.Fatalf("truncated to %v, want %v", f.sizes, want)
	}
	small := &sizeRecorder{size: shrinkStep}
	shrink(small)
	if len(small.sizes) != 0 {
		t.Fatalf("a segment of one step was truncated to %v before its unlink", small.sizes)
	}
}
