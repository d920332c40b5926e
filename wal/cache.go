package wal

import (
	"sort"

	"github.com/raftline/raft"
)

// entryCache holds the most recent entries, up to limit bytes, in chunks
// of cacheChunkLen appended in place. A filled slot is never written
// again: slices handed to readers alias the chunks, so truncation cuts a
// chunk's capacity (the next add starts a new chunk) and eviction drops
// whole chunks from the front. Unlike one sliding slice, which append
// had to copy into a new array every time it filled, no entry is ever
// copied (the copy and the zeroing of each new array were 4% of the CPU
// of a durable 3-node cluster at 256 clients).
type entryCache struct {
	limit  int64
	first  uint64 // index of the oldest cached entry
	chunks []cacheChunk
	bytes  int64
}

// cacheChunk holds entries first, first+1, ... in place.
type cacheChunk struct {
	first uint64
	ents  []raft.Entry
}

// cacheChunkLen is how many entries one chunk holds at most, and
// cacheChunkBytes about how many bytes of entries: an evicted entry's
// memory is freed only with its whole chunk, so with large entries a
// chunk of 1024 pinned megabytes past the cache's limit (4 MiB per
// chunk of 4 KiB commands).
const (
	cacheChunkLen   = 1024
	cacheChunkBytes = 256 << 10
)

// newChunkCap is the capacity of a chunk that starts with e: as many
// entries of e's size as fit in cacheChunkBytes, within [16, cacheChunkLen].
func newChunkCap(e *raft.Entry) int {
	return int(min(max(cacheChunkBytes/entrySize(e), 16), cacheChunkLen))
}

func (ch *cacheChunk) end() uint64 { return ch.first + uint64(len(ch.ents)) }

// end is the index after the newest cached entry (first when empty).
func (c *entryCache) end() uint64 {
	if len(c.chunks) == 0 {
		return c.first
	}
	return c.chunks[len(c.chunks)-1].end()
}

func (c *entryCache) reset() { c.chunks, c.bytes = nil, 0 }

// count is how many entries are cached.
func (c *entryCache) count() int { return int(c.end() - c.first) }

// chunkOf returns the position of the chunk holding index (cached).
func (c *entryCache) chunkOf(index uint64) int {
	return sort.Search(len(c.chunks), func(i int) bool { return c.chunks[i].end() > index })
}

// slice returns the cached entries [lo, hi) if all are cached: an alias
// of one chunk, or a copy when the range spans chunks.
func (c *entryCache) slice(lo, hi uint64) ([]raft.Entry, bool) {
	if len(c.chunks) == 0 || lo < c.first || hi > c.end() || lo >= hi {
		return nil, false
	}
	k := c.chunkOf(lo)
	ch := &c.chunks[k]
	if hi <= ch.end() {
		return ch.ents[lo-ch.first : hi-ch.first : hi-ch.first], true
	}
	out := make([]raft.Entry, 0, hi-lo)
	for ; len(out) < int(hi-lo); k++ {
		ch := &c.chunks[k]
		out = append(out, ch.ents[lo+uint64(len(out))-ch.first:min(hi, ch.end())-ch.first]...)
	}
	return out, true
}

// add appends e, which must follow the cached entries (or start a new run
// when the cache is empty), then evicts the oldest entries over the limit.
func (c *entryCache) add(e raft.Entry) {
	if c.limit < 0 {
		return
	}
	if len(c.chunks) == 0 || e.Index != c.end() {
		c.reset()
		c.first = e.Index
	}
	if n := len(c.chunks); n == 0 || len(c.chunks[n-1].ents) == cap(c.chunks[n-1].ents) {
		c.chunks = append(c.chunks, cacheChunk{first: e.Index, ents: make([]raft.Entry, 0, newChunkCap(&e))})
	}
	last := &c.chunks[len(c.chunks)-1]
	last.ents = append(last.ents, e)
	c.bytes += int64(entrySize(&e))
	for c.bytes > c.limit && len(c.chunks) > 0 {
		c.evictOldest()
	}
}

// evictOldest drops the oldest cached entry, and its chunk once empty.
func (c *entryCache) evictOldest() {
	ch := &c.chunks[0]
	c.bytes -= int64(entrySize(&ch.ents[c.first-ch.first]))
	c.first++
	if c.first == ch.end() {
		c.chunks[0] = cacheChunk{}
		c.chunks = c.chunks[1:]
	}
}

// truncateFrom drops the cached entries at index and after. The chunk
// holding index keeps its slots but loses its capacity, so the next add
// starts a new chunk instead of overwriting slots a reader may still hold.
func (c *entryCache) truncateFrom(index uint64) {
	if len(c.chunks) == 0 || index >= c.end() {
		return
	}
	if index <= c.first {
		c.reset()
		return
	}
	k := c.chunkOf(index)
	for i := k; i < len(c.chunks); i++ {
		ch := &c.chunks[i]
		for j := max(index, ch.first) - ch.first; j < uint64(len(ch.ents)); j++ {
			c.bytes -= int64(entrySize(&ch.ents[j]))
		}
	}
	ch := &c.chunks[k]
	keep := index - ch.first
	ch.ents = ch.ents[:keep:keep]
	if keep > 0 {
		k++
	}
	clear(c.chunks[k:]) // no chunk is left empty
	c.chunks = c.chunks[:k]
}

// dropBefore forgets the entries before index (compacted).
func (c *entryCache) dropBefore(index uint64) {
	for len(c.chunks) > 0 && c.first < index {
		c.evictOldest()
	}
	if len(c.chunks) == 0 {
		c.first = max(c.first, index)
	}
}
