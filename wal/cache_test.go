package wal

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/raftline/raft"
)

// The chunked cache against a model (a map of what must be cached): random
// appends, restarts, truncations, compactions and evictions over a small
// limit, so runs cross chunk boundaries often. Slices handed out earlier
// must never change.
func TestEntryCacheMatchesAModelAndNeverChangesWhatItHandedOut(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	type handed struct {
		ents []raft.Entry
		want []uint64 // terms
	}
	for run := range 20 {
		c := entryCache{limit: int64(50+rng.IntN(400)) * int64(entrySize(&raft.Entry{Data: make([]byte, 8)}))}
		model := map[uint64]uint64{} // index -> term of what the log holds
		next, term := uint64(1), uint64(1)
		var kept []handed
		for step := range 5000 {
			switch op := rng.IntN(100); {
			case op < 80: // append the next entry
				c.add(raft.Entry{Index: next, Term: term, Data: make([]byte, 8)})
				model[next] = term
				next++
			case op < 88 && next > 1: // a new leader overwrites a suffix
				at := next - uint64(rng.IntN(int(min(next-1, 50)))+1)
				c.truncateFrom(at)
				for i := at; i < next; i++ {
					delete(model, i)
				}
				next, term = at, term+1
			case op < 94: // compaction
				c.dropBefore(next - uint64(rng.IntN(int(next))))
			default: // read a range and keep it
				if c.count() == 0 {
					continue
				}
				lo := c.first + uint64(rng.IntN(c.count()))
				hi := lo + 1 + uint64(rng.IntN(int(c.end()-lo)))
				ents, ok := c.slice(lo, hi)
				if !ok {
					t.Fatalf("run %d step %d: [%d,%d) inside the cache [%d,%d) not served", run, step, lo, hi, c.first, c.end())
				}
				h := handed{ents: ents}
				for i, e := range ents {
					if e.Index != lo+uint64(i) || e.Term != model[e.Index] {
						t.Fatalf("run %d step %d: entry %d of [%d,%d) is %d/%d, want %d/%d", run, step, i, lo, hi, e.Index, e.Term, lo+uint64(i), model[lo+uint64(i)])
					}
					h.want = append(h.want, e.Term)
				}
				kept = append(kept, h)
			}
			if c.bytes > c.limit || c.bytes < 0 {
				t.Fatalf("run %d step %d: %d bytes cached, limit %d", run, step, c.bytes, c.limit)
			}
			var sum int64
			for _, ch := range c.chunks {
				for i := range ch.ents {
					if ch.first+uint64(i) >= c.first {
						sum += int64(entrySize(&ch.ents[i]))
					}
				}
			}
			if sum != c.bytes {
				t.Fatalf("run %d step %d: counted %d bytes, holds %d", run, step, c.bytes, sum)
			}
		}
		for _, h := range kept {
			for i, e := range h.ents {
				if e.Term != h.want[i] {
					t.Fatalf("run %d: a slice handed out changed afterwards (entry %d: term %d, was %d)", run, e.Index, e.Term, h.want[i])
				}
			}
		}
	}
}

// ReleaseCached drops entries from memory only: they are still read,
// from disk, and later saves keep the cache going.
func TestReleaseCachedForgetsOnlyTheCacheNotTheLog(t *testing.T) {
	w := openT(t, t.TempDir(), Options{})
	defer w.Close()
	mustSave(t, w, raft.HardState{Term: 1}, ents(1, 3000, 1))
	w.ReleaseCached(2001)
	if got := w.cache.first; got != 2001 {
		t.Fatalf("cache starts at %d after ReleaseCached(2001), want 2001", got)
	}
	got, err := w.Entries(1, 3001, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ents(1, 3000, 1), got); diff != "" {
		t.Fatalf("entries after releasing the cache (-want +got):\n%s", diff)
	}
	w.ReleaseCached(5000) // past the end: the cache empties
	if n := w.cache.count(); n != 0 {
		t.Fatalf("%d entries cached after releasing past the end", n)
	}
	mustSave(t, w, raft.HardState{}, ents(3001, 3010, 1))
	if c, ok := w.cache.slice(3001, 3011); !ok || len(c) != 10 {
		t.Fatalf("new entries are not cached after a release (%d, %v)", len(c), ok)
	}
}

// An evicted entry's memory goes with its whole chunk, so with large
// entries chunks must be small: what the cache still references, evicted
// slots included, stays within its limit plus one chunk of about
// cacheChunkBytes.
func TestEntryCacheOfLargeEntriesPinsAtMostOneChunkPastItsLimit(t *testing.T) {
	for _, size := range []int{8, 512, 4096, 64 << 10} {
		limit := int64(1 << 20)
		c := entryCache{limit: limit}
		for i := uint64(1); i <= 2000; i++ {
			c.add(raft.Entry{Index: i, Term: 1, Data: make([]byte, size)})
			referenced := int64(0)
			for _, ch := range c.chunks {
				for k := range ch.ents {
					referenced += int64(entrySize(&ch.ents[k]))
				}
			}
			one := int64(entrySize(&raft.Entry{Data: make([]byte, size)}))
			bound := limit + max(cacheChunkBytes, 16*one) + one // a chunk holds at least 16
			if referenced > bound {
				t.Fatalf("%d-byte entries: after %d adds the cache references %d bytes, over %d (limit %d)", size, i, referenced, bound, limit)
			}
		}
	}
}
