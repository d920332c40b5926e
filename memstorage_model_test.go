package raft

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMemoryStorageModel checks the chunked MemoryStorage against a plain
// slice model under random appends, truncations and compactions that cross
// chunk boundaries, and that slices it returned never change afterwards.
func TestMemoryStorageModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := NewMemoryStorage()
	var model []Entry // model[i] is entry snap+1+i
	snap, snapTerm := uint64(0), uint64(0)
	term := uint64(1)
	type handed struct {
		got  []Entry
		want []Entry
	}
	var kept []handed
	for step := range 600 {
		switch op := rng.IntN(10); {
		case op < 6: // append, sometimes overwriting a suffix
			last := snap + uint64(len(model))
			first := last + 1
			if op == 0 && len(model) > 0 {
				first = snap + 1 + uint64(rng.IntN(len(model)))
				term++
			}
			n := 1 + rng.IntN(3*memChunk/2)
			ents := make([]Entry, n)
			for i := range ents {
				ents[i] = Entry{Index: first + uint64(i), Term: term, Data: []byte{byte(step), byte(i)}}
			}
			if err := s.Save(HardState{}, ents); err != nil {
				t.Fatalf("step %d: Save: %v", step, err)
			}
			model = append(model[:first-snap-1:first-snap-1], ents...)
		case op < 7 && len(model) > 0: // compact
			k := 1 + rng.IntN(len(model))
			if err := s.Compact(snap + uint64(k)); err != nil {
				t.Fatalf("step %d: Compact: %v", step, err)
			}
			snapTerm = model[k-1].Term
			snap += uint64(k)
			model = model[k:]
		default: // read a random range
			if len(model) == 0 {
				continue
			}
			lo := rng.IntN(len(model))
			hi := lo + 1 + rng.IntN(len(model)-lo)
			got, err := s.Entries(snap+1+uint64(lo), snap+1+uint64(hi), ^uint64(0))
			if err != nil {
				t.Fatalf("step %d: Entries: %v", step, err)
			}
			want := slices.Clone(model[lo:hi])
			if !entriesEqual(got, want) {
				t.Fatalf("step %d: Entries(%d, %d) differ from the model", step, lo, hi)
			}
			kept = append(kept, handed{got, want})
		}
		if fi, _ := s.FirstIndex(); fi != snap+1 {
			t.Fatalf("step %d: FirstIndex %d, want %d", step, fi, snap+1)
		}
		if li, _ := s.LastIndex(); li != snap+uint64(len(model)) {
			t.Fatalf("step %d: LastIndex %d, want %d", step, li, snap+uint64(len(model)))
		}
		if tm, err := s.Term(snap); err != nil || tm != snapTerm {
			t.Fatalf("step %d: Term(snap) = %d, %v; want %d", step, tm, err, snapTerm)
		}
		if _, err := s.Entries(snap, snap+1, 1); snap > 0 && !errors.Is(err, ErrCompacted) {
			t.Fatalf("step %d: Entries below first: %v", step, err)
		}
	}
	for i, h := range kept {
		if !entriesEqual(h.got, h.want) {
			t.Fatalf("slice %d returned earlier was modified", i)
		}
	}
}

// TestMemoryStorageEntriesLimit checks maxBytes across a chunk boundary.
func TestMemoryStorageEntriesLimit(t *testing.T) {
	s := NewMemoryStorage()
	ents := make([]Entry, memChunk+10)
	for i := range ents {
		ents[i] = Entry{Index: uint64(i + 1), Term: 1, Data: make([]byte, 76)} // 100 bytes each
	}
	if err := s.Save(HardState{}, ents); err != nil {
		t.Fatal(err)
	}
	got, err := s.Entries(memChunk-2, memChunk+8, 450)
	if err != nil || len(got) != 4 || got[0].Index != memChunk-2 {
		t.Fatalf("got %d entries from %v, err %v; want 4", len(got), got, err)
	}
	got, _ = s.Entries(memChunk, memChunk+8, 1)
	if len(got) != 1 {
		t.Fatalf("got %d entries, want at least one", len(got))
	}
}

func entriesEqual(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool {
		return x.Index == y.Index && x.Term == y.Term && x.Type == y.Type && string(x.Data) == string(y.Data)
	})
}
