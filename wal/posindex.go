package wal

// posChunk is how many entry positions one posIndex chunk holds (128 KiB).
const posChunk = 4096

// posIndex holds the positions of the live entries in fixed-size chunks.
// A single growing array is copied whole at every growth, which for a
// million entries cost recovery more than reading them; chunks are never
// copied, and compaction frees whole chunks as it passes them, so memory
// follows the entries kept.
type posIndex struct {
	// chunks hold the positions in order; position i is at
	// chunks[(head+i)/posChunk][(head+i)%posChunk]. Every chunk but the
	// last is full.
	chunks [][]entryPos
	head   int // positions of chunks[0] dropped from the front
	n      int // positions held
}

func (x *posIndex) len() int { return x.n }

// at returns position i (0 ≤ i < len).
func (x *posIndex) at(i int) entryPos {
	q := x.head + i
	return x.chunks[q/posChunk][q%posChunk]
}

func (x *posIndex) append(p entryPos) {
	if (x.head+x.n)%posChunk == 0 && (x.head+x.n)/posChunk == len(x.chunks) {
		// The first chunk starts small (append grows it): a log of a few
		// entries should not hold a full chunk.
		c := posChunk
		if len(x.chunks) == 0 {
			c = 64
		}
		x.chunks = append(x.chunks, make([]entryPos, 0, c))
	}
	last := &x.chunks[len(x.chunks)-1]
	*last = append(*last, p)
	x.n++
}

// truncate keeps the first n positions (n ≤ len).
func (x *posIndex) truncate(n int) {
	if n == 0 {
		*x = posIndex{}
		return
	}
	q := x.head + n // positions kept, counted from the first chunk's start
	keep := (q + posChunk - 1) / posChunk
	clear(x.chunks[keep:])
	x.chunks = x.chunks[:keep]
	x.chunks[keep-1] = x.chunks[keep-1][:q-(keep-1)*posChunk]
	x.n = n
}

// dropFront forgets the first k positions (k ≤ len).
func (x *posIndex) dropFront(k int) {
	if k == x.n {
		*x = posIndex{}
		return
	}
	x.head += k
	x.n -= k
	drop := x.head / posChunk
	clear(x.chunks[:drop])
	x.chunks = x.chunks[drop:]
	x.head %= posChunk
}
