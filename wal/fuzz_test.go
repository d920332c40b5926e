package wal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/raftline/raft"
)

// FuzzDecodeRecord feeds arbitrary bytes to the record decoder: it must
// never panic, must return a payload inside its input, and whatever it
// accepts must re-encode to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendEntry(nil, &raft.Entry{Index: 1, Term: 1, Data: []byte("x")}))
	f.Add(appendState(nil, raft.HardState{Term: 3, Vote: 1, Commit: 2}))
	f.Add(appendSegmentHeader(nil, segmentHeader{seq: 1}))
	f.Add(make([]byte, headerSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, payload, n, err := decodeRecord(b)
		if err != nil {
			if payload != nil {
				t.Fatal("payload returned with an error")
			}
			return
		}
		if n > len(b) || len(payload) != n-recordOverhead {
			t.Fatalf("record of %d bytes with payload %d from %d bytes of input", n, len(payload), len(b))
		}
		if typ == typeEntry {
			if e, err := decodeEntry(payload); err == nil {
				if re := appendEntry(nil, &e); !bytes.Equal(re, b[:n]) {
					t.Fatalf("entry %+v re-encodes differently", e)
				}
			}
		}
	})
}

// FuzzOpenDirectory writes arbitrary bytes as segment files (split at a
// marker) and opens the directory: Open must never panic, must fail only
// with ErrCorrupt, and a WAL it opens must answer reads consistently.
// Allocation is bounded by construction: recovery reads through a buffer
// that grows only to hold a record the file is long enough to contain.
func FuzzOpenDirectory(f *testing.F) {
	for _, seed := range fuzzDirSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fs := newMemFS()
		for i, part := range bytes.Split(b, []byte("|SEG|")) {
			name := "/wal/" + segmentName(uint64(i+1), firstIndexHint(part))
			// Copies: the WAL writes to its files, and part aliases the
			// fuzzer's input.
			fs.files[name] = &memFile{data: bytes.Clone(part), synced: bytes.Clone(part)}
		}
		w, err := Open("/wal", memOptions(fs, 1024))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open failed without ErrCorrupt: %v", err)
			}
			return
		}
		defer w.Close()
		first, _ := w.FirstIndex()
		last, _ := w.LastIndex()
		if last+1 < first {
			t.Fatalf("log [%d, %d]", first, last)
		}
		if _, err := w.Term(first - 1); err != nil {
			t.Fatalf("Term(first-1): %v", err)
		}
		if last >= first {
			got, err := w.Entries(first, last+1, 1<<20)
			if err != nil || len(got) == 0 || got[0].Index != first {
				t.Fatalf("Entries: %d, %v", len(got), err)
			}
		}
		if err := w.Save(raft.HardState{Term: 1}, []raft.Entry{{Index: last + 1, Term: 1}}); err != nil {
			t.Fatalf("Save after Open: %v", err)
		}
	})
}

// firstIndexHint takes the first index for a fuzzed file's name from its
// header when it has one, so inputs can get past the name check.
func firstIndexHint(part []byte) uint64 {
	typ, payload, _, err := decodeRecord(part)
	if err != nil || typ != typeSegment {
		return 1
	}
	h, err := decodeSegmentHeader(payload)
	if err != nil {
		return 1
	}
	return h.prevIndex + 1
}

// fuzzDirSeeds builds real WAL directories as seeds.
func fuzzDirSeeds() [][]byte {
	var seeds [][]byte
	for _, n := range []int{0, 3, 40, -40} {
		fs := newMemFS()
		w, err := Open("/wal", memOptions(fs, 1024))
		if err != nil {
			panic(err)
		}
		for i := 1; i <= max(n, -n); i++ {
			w.Save(raft.HardState{Term: 1, Commit: uint64(i - 1)}, []raft.Entry{{Index: uint64(i), Term: 1, Data: []byte("some data")}})
			if n < 0 && i%15 == 0 { // a log with snapshots installed over it
				w.InstallSnapshot(uint64(i+3), 2)
				i += 3
			}
		}
		w.Close()
		var parts [][]byte
		for _, name := range fs.segmentFiles() {
			d := fs.files[name].data
			parts = append(parts, d[:nonZeroExtent(d)])
		}
		seeds = append(seeds, bytes.Join(parts, []byte("|SEG|")))
	}
	return seeds
}
