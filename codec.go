package raft

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// This file is the TCP transport's wire format: a hand-written encoder and
// decoder for frames and Messages. No reflection, no allocation on the hot
// path, and every length read from the network is checked against what the
// frame can actually hold before anything is allocated.
//
// Frame (all integers big-endian or unsigned varints):
//
//	0..3   body length, uint32 (the header is not counted)
//	4      protocol version (wireVersion)
//	5      frame kind: frameHello, frameHelloAck or frameMessage
//	6..    body
//
// Message body:
//
//	type     1 byte, a valid MessageType
//	mask     uvarint; bit i set means field i follows (zero fields are omitted)
//	fields   uvarint each, in bit order: Group, From, To, Term, Index,
//	         LogTerm, Commit, ConflictIndex, ConflictTerm, ReadSeq
//	         (bits 10 and 13, Reject and Transfer, carry no value)
//	entries  if bit 11: uvarint count, then per entry uvarint Index,
//	         uvarint Term, 1 byte EntryType, uvarint data length, data
//	chunk    if bit 12 (MsgSnap, MsgSnapResp): uvarint Offset, 1 byte
//	         whether a snapshot follows; if so its uvarint Index, Term,
//	         ConfigIndex, Size, 4-byte Checksum, uvarint length and encoded
//	         Configuration, then the chunk's 4-byte Checksum, uvarint data
//	         length and data
//
// The body must be consumed exactly: trailing bytes are an error, so a
// frame has one meaning only.

// wireVersion is the protocol version this build speaks. A peer with
// another version is refused at the handshake: bump it on any change to the
// frame or body layout.
const wireVersion = 2

// frameHeaderSize is the fixed size of a frame header.
const frameHeaderSize = 6

// Frame kinds.
const (
	frameHello    = 1 // dialer → acceptor: who I am, whom I want
	frameHelloAck = 2 // acceptor → dialer: accepted, or why not
	frameMessage  = 3 // one Message
)

// DefaultMaxFrameSize bounds a frame's body unless TCPConfig.MaxFrameSize
// says otherwise.
const DefaultMaxFrameSize = 64 << 20

// Message field presence bits.
const (
	fGroup = 1 << iota
	fFrom
	fTo
	fTerm
	fIndex
	fLogTerm
	fCommit
	fConflictIndex
	fConflictTerm
	fReadSeq
	fReject
	fEntries
	fChunk
	fTransfer

	fAll = fTransfer<<1 - 1
)

// minEntryWireSize is the smallest encoded entry (four one-byte fields); it
// bounds how many entries a body of a given size can claim.
const minEntryWireSize = 4

// entryTypeCount bounds EntryType values accepted from the network.
const entryTypeCount = EntryConfig + 1

var (
	// ErrFrameTooLarge is returned when a frame's declared body exceeds the
	// allowed size; the transport closes the connection that sent it.
	ErrFrameTooLarge = errors.New("raft: frame larger than MaxFrameSize")
	// ErrMalformedFrame is returned for a frame or message that does not
	// decode; the transport closes the connection that sent it.
	ErrMalformedFrame = errors.New("raft: malformed frame")
)

// malformed wraps ErrMalformedFrame with what was wrong.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedFrame, fmt.Sprintf(format, args...))
}

// appendFrameHeader appends a header with a zero length, to be patched by
// finishFrame once the body is written.
func appendFrameHeader(dst []byte, kind byte) []byte {
	return append(dst, 0, 0, 0, 0, wireVersion, kind)
}

// finishFrame patches the length of the frame starting at start.
func finishFrame(frame []byte, start int) {
	binary.BigEndian.PutUint32(frame[start:], uint32(len(frame)-start-frameHeaderSize))
}

// appendMessageFrame appends m as one complete frame to dst. It does not
// allocate when dst has room.
func appendMessageFrame(dst []byte, m *Message) []byte {
	start := len(dst)
	dst = appendFrameHeader(dst, frameMessage)
	dst = appendMessage(dst, m)
	finishFrame(dst, start)
	return dst
}

// appendMessage appends m's body encoding to dst.
func appendMessage(dst []byte, m *Message) []byte {
	vals := [...]uint64{m.Group, uint64(m.From), uint64(m.To), m.Term, m.Index,
		m.LogTerm, m.Commit, m.ConflictIndex, m.ConflictTerm, m.ReadSeq}
	var mask uint64
	for i, v := range vals {
		if v != 0 {
			mask |= 1 << i
		}
	}
	if m.Reject {
		mask |= fReject
	}
	if len(m.Entries) > 0 {
		mask |= fEntries
	}
	if m.Chunk != nil {
		mask |= fChunk
	}
	if m.Transfer {
		mask |= fTransfer
	}
	dst = append(dst, byte(m.Type))
	dst = binary.AppendUvarint(dst, mask)
	for _, v := range vals {
		if v != 0 {
			dst = binary.AppendUvarint(dst, v)
		}
	}
	if len(m.Entries) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(m.Entries)))
		for i := range m.Entries {
			e := &m.Entries[i]
			dst = binary.AppendUvarint(dst, e.Index)
			dst = binary.AppendUvarint(dst, e.Term)
			dst = append(dst, byte(e.Type))
			dst = binary.AppendUvarint(dst, uint64(len(e.Data)))
			dst = append(dst, e.Data...)
		}
	}
	if m.Chunk != nil {
		dst = appendChunk(dst, m.Type == MsgSnap, m.Chunk)
	}
	return dst
}

// appendChunk encodes a snapshot chunk; a MsgSnapResp carries only the
// offset.
func appendChunk(dst []byte, withMeta bool, k *SnapshotChunk) []byte {
	dst = binary.AppendUvarint(dst, k.Offset)
	if !withMeta {
		return append(dst, 0)
	}
	sn := &k.Meta
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, sn.Index)
	dst = binary.AppendUvarint(dst, sn.Term)
	dst = binary.AppendUvarint(dst, sn.ConfigIndex)
	dst = binary.AppendUvarint(dst, uint64(sn.Size))
	dst = binary.BigEndian.AppendUint32(dst, sn.Checksum)
	var conf []byte // an empty configuration travels as no bytes
	if len(sn.Config.Servers) > 0 {
		conf = EncodeConfiguration(sn.Config)
	}
	dst = binary.AppendUvarint(dst, uint64(len(conf)))
	dst = append(dst, conf...)
	dst = binary.BigEndian.AppendUint32(dst, k.Checksum)
	dst = binary.AppendUvarint(dst, uint64(len(k.Data)))
	return append(dst, k.Data...)
}

// MarshalBinary encodes m in the wire format the TCP transport uses (the
// message body, without a frame header), for custom transports.
func (m Message) MarshalBinary() ([]byte, error) { return appendMessage(nil, &m), nil }

// AppendBinary appends m's encoding to b (encoding.BinaryAppender).
func (m Message) AppendBinary(b []byte) ([]byte, error) { return appendMessage(b, &m), nil }

// UnmarshalBinary decodes a message MarshalBinary encoded, as strictly as
// the TCP transport does: every length is checked against the bytes
// present before anything is allocated, unknown types and fields are
// refused, and trailing bytes are an error. The message owns its data (it
// does not alias b). It never panics; errors wrap ErrMalformedFrame. Bound
// len(b) before calling, as the transport bounds frames.
func (m *Message) UnmarshalBinary(b []byte) error { return decodeMessage(b, m, true) }

// messageFrameSize returns an upper bound of m's frame size, header
// included, so a sender can refuse a message its peer would refuse before
// writing it; the bound is cheap and never lower than the real size.
func messageFrameSize(m *Message) int {
	n := frameHeaderSize + 1 + 2 + 10*binary.MaxVarintLen64
	if k := m.Chunk; k != nil {
		n += 9*binary.MaxVarintLen64 + 9 + len(k.Data)
		n += 2*binary.MaxVarintLen64 + len(k.Meta.Config.Servers)*(2*binary.MaxVarintLen64+1)
		for _, sv := range k.Meta.Config.Servers {
			n += len(sv.Address)
		}
	}
	if len(m.Entries) == 0 {
		return n
	}
	n += binary.MaxVarintLen64
	for i := range m.Entries {
		n += 3*binary.MaxVarintLen64 + 1 + len(m.Entries[i].Data)
	}
	return n
}

// wireReader consumes a body, remembering the first error so decoders can
// read a whole record and check once.
type wireReader struct {
	b   []byte
	off int
	err error
}

func (r *wireReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *wireReader) remaining() int { return len(r.b) - r.off }

func (r *wireReader) uvarint(field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail(malformed("bad varint for %s at offset %d", field, r.off))
		return 0
	}
	r.off += n
	return v
}

func (r *wireReader) byte(field string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail(malformed("truncated at %s", field))
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *wireReader) bytes(n uint64, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(r.remaining()) {
		r.fail(malformed("%s of %d bytes exceeds the %d left", field, n, r.remaining()))
		return nil
	}
	b := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return b
}

func (r *wireReader) uint32(field string) uint32 {
	b := r.bytes(4, field)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *wireReader) uint64(field string) uint64 {
	b := r.bytes(8, field)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// decodeMessage decodes a message body into m, overwriting every field.
//
// With own set, m's entries get a fresh slice and their data is copied into
// one fresh buffer of exactly the bytes they carry, so m may outlive body:
// entries reach the node's log and must never alias a reused read buffer.
// Without own, m.Entries reuses its capacity and Data aliases body; that is
// for callers that consume m before body is reused (and allocates nothing).
func decodeMessage(body []byte, m *Message, own bool) error {
	r := wireReader{b: body}
	t := MessageType(r.byte("type"))
	mask := r.uvarint("mask")
	if r.err != nil {
		return r.err
	}
	if !t.Valid() {
		return malformed("unknown message type %d", uint8(t))
	}
	if mask&^fAll != 0 {
		return malformed("unknown field bits %#x", mask&^fAll)
	}
	var vals [10]uint64
	for i := range vals {
		if mask&(1<<i) != 0 {
			vals[i] = r.uvarint("field")
		}
	}
	ents := m.Entries[:0]
	if own {
		ents = nil
	}
	*m = Message{
		Type: t, Group: vals[0], From: NodeID(vals[1]), To: NodeID(vals[2]), Term: vals[3],
		Index: vals[4], LogTerm: vals[5], Commit: vals[6], ConflictIndex: vals[7],
		ConflictTerm: vals[8], ReadSeq: vals[9], Reject: mask&fReject != 0, Transfer: mask&fTransfer != 0,
	}
	if mask&fEntries != 0 {
		ents = decodeEntries(&r, ents, own)
		m.Entries = ents
	}
	if mask&fChunk != 0 {
		if t != MsgSnap && t != MsgSnapResp {
			return malformed("a %s carries a snapshot chunk", t)
		}
		m.Chunk = decodeChunk(&r, own)
	}
	if r.err != nil {
		m.Entries = nil
		return r.err
	}
	if r.remaining() != 0 {
		m.Entries = nil
		return malformed("%d trailing bytes", r.remaining())
	}
	return nil
}

// decodeChunk reads a snapshot chunk. With own, its data is copied out of
// the body (the chunk outlives it: a writer goroutine writes it later).
func decodeChunk(r *wireReader, own bool) *SnapshotChunk {
	k := &SnapshotChunk{Offset: r.uvarint("chunk offset")}
	if r.byte("chunk meta flag") == 0 {
		return k
	}
	sn := &k.Meta
	sn.Index = r.uvarint("snapshot index")
	sn.Term = r.uvarint("snapshot term")
	sn.ConfigIndex = r.uvarint("snapshot config index")
	size := r.uvarint("snapshot size")
	if size > math.MaxInt64 {
		r.fail(malformed("snapshot size %d", size))
		return k
	}
	sn.Size = int64(size)
	sn.Checksum = r.uint32("snapshot checksum")
	conf := r.bytes(r.uvarint("config length"), "snapshot config")
	if r.err != nil {
		return k
	}
	if len(conf) > 0 {
		c, err := DecodeConfiguration(conf)
		if err != nil {
			r.fail(malformed("snapshot configuration: %v", err))
			return k
		}
		sn.Config = c
	}
	k.Checksum = r.uint32("chunk checksum")
	k.Data = r.bytes(r.uvarint("chunk length"), "chunk data")
	if own && len(k.Data) > 0 {
		k.Data = bytes.Clone(k.Data)
	}
	if len(k.Data) == 0 {
		k.Data = nil
	}
	return k
}

// decodeEntries reads a count and that many entries. The count is checked
// against the bytes left before anything is allocated.
func decodeEntries(r *wireReader, ents []Entry, own bool) []Entry {
	n := r.uvarint("entry count")
	if r.err != nil {
		return ents
	}
	if n == 0 || n > uint64(r.remaining()/minEntryWireSize) {
		r.fail(malformed("entry count %d impossible in %d bytes", n, r.remaining()))
		return ents
	}
	if own || uint64(cap(ents)) < n {
		ents = make([]Entry, 0, n)
	}
	var total uint64
	for range n {
		var e Entry
		e.Index = r.uvarint("entry index")
		e.Term = r.uvarint("entry term")
		e.Type = EntryType(r.byte("entry type"))
		e.Data = r.bytes(r.uvarint("entry length"), "entry data")
		if r.err != nil {
			return ents
		}
		if e.Type >= entryTypeCount {
			r.fail(malformed("unknown entry type %d", uint8(e.Type)))
			return ents
		}
		if len(e.Data) == 0 {
			e.Data = nil // one canonical form for empty data
		}
		total += uint64(len(e.Data))
		ents = append(ents, e)
	}
	if own && total > 0 {
		// One allocation for every entry's data, bounded by the body size.
		arena := make([]byte, 0, total)
		for i := range ents {
			if d := ents[i].Data; d != nil {
				arena = append(arena, d...)
				ents[i].Data = arena[len(arena)-len(d) : len(arena) : len(arena)]
			}
		}
	}
	return ents
}

// frameReader reads frames from a stream, reusing its buffer between
// frames. A body is allocated no larger than its declared length, which is
// checked against max first, and grown only as bytes actually arrive, so a
// peer that lies about a length costs memory only for what it sends.
type frameReader struct {
	r   *bufio.Reader
	hdr [frameHeaderSize]byte
	buf []byte
	max uint32
}

// retainLimit is the largest buffer a frameReader keeps between frames; a
// rare huge frame does not pin its memory for the connection's lifetime.
const retainLimit = 1 << 20

// readChunk is how much a body grows per read when its declared length is
// larger than the buffer at hand.
const readChunk = 64 << 10

// next reads one frame. The body is valid until the next call.
func (fr *frameReader) next() (version, kind byte, body []byte, err error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:4])
	version, kind = fr.hdr[4], fr.hdr[5]
	if n > fr.max {
		return version, kind, nil, fmt.Errorf("%w: %d bytes declared, limit %d", ErrFrameTooLarge, n, fr.max)
	}
	if int(n) <= cap(fr.buf) {
		body = fr.buf[:n]
		_, err = io.ReadFull(fr.r, body)
		return version, kind, body, err
	}
	body = make([]byte, 0, min(int(n), max(readChunk, cap(fr.buf))))
	for len(body) < int(n) {
		if len(body) == cap(body) {
			grown := make([]byte, len(body), min(int(n), 2*cap(body)))
			copy(grown, body)
			body = grown
		}
		k, err := io.ReadFull(fr.r, body[len(body):cap(body)])
		body = body[:len(body)+k]
		if err != nil {
			return version, kind, nil, err
		}
	}
	if cap(body) <= retainLimit {
		fr.buf = body
	}
	return version, kind, body, nil
}
