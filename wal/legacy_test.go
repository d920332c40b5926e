package wal

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/raftline/raft"
)

// testdata/legacy-v1 holds WAL directories written by the first format
// (commit 469e36f: every segment preallocated whole, no reset records, no
// start marker) with 1 KiB segments: "clean" after the workload
// genOps(5, 40), "torn" after the same workload and a Save of
// legacyTornOp cut after 100 bytes. Later versions must open both.

// legacyTornOp is the Save cut short in the "torn" fixture.
func legacyTornOp(last uint64) op {
	return op{hs: raft.HardState{Term: 50, Vote: 2}, ents: ents(last+1, last+3, 50)}
}

func TestOpenReadsDirectoriesOfTheFirstFormat(t *testing.T) {
	for _, kind := range []string{"clean", "torn"} {
		t.Run(kind, func(t *testing.T) {
			dir := copyDir(t, filepath.Join("testdata", "legacy-v1", kind))
			m := newModel()
			for _, o := range genOps(5, 40) {
				if o.compact != 0 {
					m.compact(o.compact)
				} else {
					m.save(o.hs, o.ents)
				}
			}
			wants := []*model{m}
			if kind == "torn" {
				wants = outcomes(m, legacyTornOp(m.last()))
			}
			opts := Options{SegmentSize: crashSegmentSize}
			w := openT(t, dir, opts)
			if got := w.Recovery().TornTail; got != (kind == "torn") {
				t.Fatalf("Recovery().TornTail = %v", got)
			}
			want := matchOne(t, w, wants)
			// The reopened log takes writes in the new format and reads
			// back after another reopen.
			o := op{hs: raft.HardState{Term: 60, Vote: 1}, ents: ents(want.last()+1, want.last()+2, 60)}
			if err := apply(w, want, o); err != nil {
				t.Fatal(err)
			}
			w.Close()
			w = openT(t, dir, opts)
			defer w.Close()
			if d := want.diff(w); d != "" {
				t.Fatalf("after writing and reopening: %s", d)
			}
		})
	}
}

// matchOne returns the model among wants that w matches, failing the test
// when there is none.
func matchOne(t *testing.T, w *WAL, wants []*model) *model {
	t.Helper()
	var diffs []string
	for _, m := range wants {
		d := m.diff(w)
		if d == "" {
			return m.clone()
		}
		diffs = append(diffs, d)
	}
	t.Fatalf("opened log matches no expected state: %v", diffs)
	return nil
}

// copyDir copies the files of src into a fresh temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	names, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range names {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
