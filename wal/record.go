package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/raftline/raft"
)

// Record framing. Every record is
//
//	offset 0  u32  payload length L (little endian)
//	offset 4  u8   record type (a value with at least two bits set)
//	offset 5  3B   reserved, zero
//	offset 8  u32  CRC32C of bytes 0..8 (the header check)
//	offset 12 L    payload
//	12+L      u32  CRC32C of bytes 0..8 followed by the payload
//	16+L      u8   end marker (endMarker)
//
// The header has its own checksum so a flipped bit in the length cannot
// make recovery misjudge where a record ends. The end marker and the type
// have several bits set so no single flipped bit can turn a complete record
// into something that looks like a write cut short (whose missing bytes are
// the zeros of the preallocated segment): recovery relies on that to tell a
// torn tail, which it may drop, from corruption, which it must refuse.
const (
	headerSize  = 12
	trailerSize = 5
	// recordOverhead is the framing cost of one record.
	recordOverhead = headerSize + trailerSize
	endMarker      = 0xA5

	// maxPayload caps a declared length so a corrupt header can never make
	// a reader trust (or allocate) an absurd size.
	maxPayload = 1 << 30
)

// Record types. Zero is never a type: a zeroed header is the end of data.
const (
	typeEntry   byte = 0x11 // one raft.Entry
	typeState   byte = 0x22 // a raft.HardState
	typeSegment byte = 0x44 // segment header, first record of every segment
	// typeReset drops every entry: the log restarts after (index, term),
	// the last entry of an installed snapshot.
	typeReset byte = 0x88
)

// castagnoli is the CRC32C table; hardware accelerated on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sizes of the fixed payloads.
const (
	entryFixed = 8 + 8 + 1 // index, term, type, then data
	stateSize  = 8 + 8 + 8 // term, vote, commit
	// segHeaderFixed: magic, seq, prevIndex, prevTerm, reserved; a state follows.
	segHeaderFixed = 4 + 8 + 8 + 8 + 8
	segmentMagic   = 0x524c5701 // "RLW" and format version 1
	resetSize      = 8 + 8      // index, term
)

// appendRecord reserves a record of payload length n on buf and writes its
// header; the caller fills the payload (buf[start+headerSize:][:n]) and
// then calls sealRecord. Splitting it this way keeps encoding free of
// per-record allocations.
func appendRecord(buf []byte, typ byte, n int) (out []byte, start int) {
	start = len(buf)
	buf = slices.Grow(buf, recordOverhead+n)[:start+recordOverhead+n]
	h := buf[start : start+headerSize]
	binary.LittleEndian.PutUint32(h[0:4], uint32(n))
	h[4], h[5], h[6], h[7] = typ, 0, 0, 0
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(h[0:8], castagnoli))
	return buf, start
}

// sealRecord writes the trailer of the record rec (exactly one record).
func sealRecord(rec []byte) {
	n := len(rec) - recordOverhead
	crc := crc32.Update(crc32.Checksum(rec[0:8], castagnoli), castagnoli, rec[headerSize:headerSize+n])
	binary.LittleEndian.PutUint32(rec[headerSize+n:], crc)
	rec[headerSize+n+4] = endMarker
}

// appendEntry frames one entry onto buf.
func appendEntry(buf []byte, e *raft.Entry) []byte {
	n := entryFixed + len(e.Data)
	buf, start := appendRecord(buf, typeEntry, n)
	p := buf[start+headerSize:]
	binary.LittleEndian.PutUint64(p[0:], e.Index)
	binary.LittleEndian.PutUint64(p[8:], e.Term)
	p[16] = byte(e.Type)
	copy(p[entryFixed:], e.Data)
	sealRecord(buf[start:])
	return buf
}

// appendState frames a hard state onto buf.
func appendState(buf []byte, hs raft.HardState) []byte {
	buf, start := appendRecord(buf, typeState, stateSize)
	putState(buf[start+headerSize:], hs)
	sealRecord(buf[start:])
	return buf
}

func putState(p []byte, hs raft.HardState) {
	binary.LittleEndian.PutUint64(p[0:], hs.Term)
	binary.LittleEndian.PutUint64(p[8:], uint64(hs.Vote))
	binary.LittleEndian.PutUint64(p[16:], hs.Commit)
}

// segmentHeader is the first record of a segment. It repeats the hard state
// and names the entry before the segment's first one, so the segments
// before it can be deleted by compaction without losing either.
type segmentHeader struct {
	seq       uint64
	prevIndex uint64
	prevTerm  uint64
	hs        raft.HardState
}

func appendSegmentHeader(buf []byte, h segmentHeader) []byte {
	buf, start := appendRecord(buf, typeSegment, segHeaderFixed+stateSize)
	p := buf[start+headerSize:]
	binary.LittleEndian.PutUint32(p[0:], segmentMagic)
	binary.LittleEndian.PutUint64(p[4:], h.seq)
	binary.LittleEndian.PutUint64(p[12:], h.prevIndex)
	binary.LittleEndian.PutUint64(p[20:], h.prevTerm)
	// bytes 28..36 are reserved for a future flag word and must be zero
	clear(p[28:36])
	putState(p[segHeaderFixed:], h.hs)
	sealRecord(buf[start:])
	return buf
}

// appendReset frames a log reset to (index, term) onto buf.
func appendReset(buf []byte, index, term uint64) []byte {
	buf, start := appendRecord(buf, typeReset, resetSize)
	p := buf[start+headerSize:]
	binary.LittleEndian.PutUint64(p[0:], index)
	binary.LittleEndian.PutUint64(p[8:], term)
	sealRecord(buf[start:])
	return buf
}

// decodeReset parses a reset payload.
func decodeReset(p []byte) (index, term uint64, err error) {
	if len(p) != resetSize {
		return 0, 0, fmt.Errorf("reset payload of %d bytes, want %d", len(p), resetSize)
	}
	index, term = binary.LittleEndian.Uint64(p[0:]), binary.LittleEndian.Uint64(p[8:])
	if index == 0 {
		return 0, 0, errors.New("reset to index 0")
	}
	return index, term, nil
}

// Decoding outcomes other than success. Recovery uses them to tell the end
// of data and a torn write from corruption.
var (
	// errEnd: the header is all zeros, the end of the data written.
	errEnd = errors.New("end of records")
	// errShort: the buffer ends inside the record.
	errShort = errors.New("record cut short")
	// errBadHeader: the header check fails or the header is malformed.
	errBadHeader = errors.New("bad record header")
	// errBadCRC: the header is sound and the record complete, but the
	// payload checksum does not match.
	errBadCRC = errors.New("record checksum mismatch")
)

// decodeRecord decodes the record at the start of b, returning its type,
// its payload (a subslice of b: nothing is allocated) and its framed size.
func decodeRecord(b []byte) (typ byte, payload []byte, n int, err error) {
	if len(b) < headerSize {
		if allZero(b) {
			return 0, nil, 0, errEnd
		}
		return 0, nil, 0, errShort
	}
	h := b[:headerSize]
	if allZero(h) {
		return 0, nil, 0, errEnd
	}
	if binary.LittleEndian.Uint32(h[8:12]) != crc32.Checksum(h[0:8], castagnoli) ||
		h[5] != 0 || h[6] != 0 || h[7] != 0 {
		return 0, nil, 0, errBadHeader
	}
	length := binary.LittleEndian.Uint32(h[0:4])
	if length > maxPayload {
		return 0, nil, 0, fmt.Errorf("%w: declared length %d exceeds %d", errBadHeader, length, maxPayload)
	}
	typ = h[4]
	n = recordOverhead + int(length)
	if len(b) < n {
		return typ, nil, n, errShort
	}
	payload = b[headerSize : headerSize+int(length)]
	crc := crc32.Update(crc32.Checksum(h[0:8], castagnoli), castagnoli, payload)
	if binary.LittleEndian.Uint32(b[headerSize+int(length):]) != crc || b[n-1] != endMarker {
		return typ, nil, n, errBadCRC
	}
	return typ, payload, n, nil
}

// decodeEntry parses an entry payload. The entry's Data aliases p.
func decodeEntry(p []byte) (raft.Entry, error) {
	if len(p) < entryFixed {
		return raft.Entry{}, fmt.Errorf("entry payload of %d bytes is shorter than %d", len(p), entryFixed)
	}
	e := raft.Entry{
		Index: binary.LittleEndian.Uint64(p[0:]),
		Term:  binary.LittleEndian.Uint64(p[8:]),
		Type:  raft.EntryType(p[16]),
	}
	if len(p) > entryFixed {
		e.Data = p[entryFixed:]
	}
	if e.Index == 0 {
		return raft.Entry{}, errors.New("entry with index 0")
	}
	return e, nil
}

func decodeState(p []byte) (raft.HardState, error) {
	if len(p) != stateSize {
		return raft.HardState{}, fmt.Errorf("hard state payload of %d bytes, want %d", len(p), stateSize)
	}
	return raft.HardState{
		Term:   binary.LittleEndian.Uint64(p[0:]),
		Vote:   raft.NodeID(binary.LittleEndian.Uint64(p[8:])),
		Commit: binary.LittleEndian.Uint64(p[16:]),
	}, nil
}

func decodeSegmentHeader(p []byte) (segmentHeader, error) {
	if len(p) != segHeaderFixed+stateSize {
		return segmentHeader{}, fmt.Errorf("segment header payload of %d bytes, want %d", len(p), segHeaderFixed+stateSize)
	}
	if m := binary.LittleEndian.Uint32(p[0:]); m != segmentMagic {
		return segmentHeader{}, fmt.Errorf("segment magic %#x, want %#x (unknown format)", m, segmentMagic)
	}
	hs, err := decodeState(p[segHeaderFixed:])
	if err != nil {
		return segmentHeader{}, err
	}
	return segmentHeader{
		seq:       binary.LittleEndian.Uint64(p[4:]),
		prevIndex: binary.LittleEndian.Uint64(p[12:]),
		prevTerm:  binary.LittleEndian.Uint64(p[20:]),
		hs:        hs,
	}, nil
}

func allZero(b []byte) bool {
	for len(b) >= len(zeroBlock) {
		if !bytes.Equal(b[:len(zeroBlock)], zeroBlock[:]) {
			return false
		}
		b = b[len(zeroBlock):]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// zeroBlock lets zero checks of preallocated space compare whole blocks
// (bytes.Equal is vectorized) instead of looping over every byte: recovery
// scans up to tailWindow of preallocated space.
var zeroBlock [4096]byte

// nonZeroExtent returns how far non-zero bytes reach into b.
func nonZeroExtent(b []byte) int64 {
	i := len(b)
	for i >= len(zeroBlock) && bytes.Equal(b[i-len(zeroBlock):i], zeroBlock[:]) {
		i -= len(zeroBlock)
	}
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return int64(i)
}
