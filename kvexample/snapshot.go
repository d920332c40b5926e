package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/raftline/raft"
)

// This file takes and restores snapshots of the state machine.
//
// Snapshot runs on the applier goroutine, so it must not make applies wait:
// it freezes the copy-on-write trees (cowtree.go), O(1) whatever the number
// of keys, and the frozen trees are written out by WriteTo on another
// goroutine while applies go on. WriteTo streams through a bufio.Writer in
// key order, so equal states write equal bytes; Restore streams too, reading
// at most one bounded field at a time, and swaps the state in only once
// the whole snapshot, checksum included, has been read and checked.
//
// Layout (uvarint and bytes as in command.go; every section sorted by key):
//
//	version byte (snapshotVersion)
//	uvarint applied, uvarint now (the log's clock)
//	uvarint n, n × (bytes key, bytes value, uvarint expires)
//	uvarint n, n × (bytes lock, lease)
//	uvarint n, n × (uvarint node id, bytes http address)
//	uvarint n, n × (bytes client, uvarint seq, uvarint last index,
//	                16 bytes fingerprint, result)
//	uvarint n, n × uvarint retired node id    (version 3 on)
//	4 bytes CRC-32C (Castagnoli) of everything before, big-endian
//
// where lease is bytes holder, uvarint token, ttl, expires, set index, and
// result is byte code, byte flags (1 found, 2 swapped), bytes value,
// uvarint now, lease.

// snapshotVersion is the first byte of an encoded snapshot. Version 3
// added the retired IDs; a version 2 snapshot (from a node that ran before
// membership changes existed) restores with none.
const (
	snapshotVersion   = 3
	snapshotVersionV2 = 2
)

// maxSnapshotField bounds any one field a restore reads, and so what a
// corrupt length can make it allocate. A log entry holds at most 8 MiB by
// default (raft.Config.MaxEntrySize), so no key or value the log can
// create is longer.
const maxSnapshotField = 16 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// kvSnapshot is a frozen view of the state.
type kvSnapshot struct {
	applied, now uint64
	data         frozenTree[item]
	locks        frozenTree[lockState]
	addrs        frozenTree[string]
	sessions     frozenTree[session]
	retired      frozenTree[struct{}]
}

// Snapshot implements raft.StateMachine in O(1): see the file comment.
func (s *kvStateMachine) Snapshot() (raft.StateSnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &kvSnapshot{
		applied: s.st.applied, now: s.st.now,
		data: s.st.data.freeze(), locks: s.st.locks.freeze(),
		addrs: s.st.addrs.freeze(), sessions: s.st.sessions.byClient.freeze(),
		retired: s.st.retired.freeze(),
	}, nil
}

// Release implements raft.StateSnapshot: the frozen trees are garbage once
// nothing refers to them.
func (k *kvSnapshot) Release() { *k = kvSnapshot{} }

// WriteTo implements raft.StateSnapshot. It may run concurrently with
// Apply: it reads only frozen trees.
func (k *kvSnapshot) WriteTo(w io.Writer) (int64, error) {
	sum := &summingWriter{w: w}
	sw := &snapWriter{w: bufio.NewWriterSize(sum, 64<<10)}
	sw.byte(snapshotVersion)
	sw.uvarint(k.applied)
	sw.uvarint(k.now)
	sw.uvarint(uint64(k.data.Len()))
	for key, it := range k.data.Ascend("") {
		sw.str(key)
		sw.bytes(it.value)
		sw.uvarint(it.expires)
	}
	sw.uvarint(uint64(k.locks.Len()))
	for name, l := range k.locks.Ascend("") {
		sw.str(name)
		sw.lease(l)
	}
	sw.uvarint(uint64(k.addrs.Len()))
	for id, addr := range k.addrs.Ascend("") {
		sw.uvarint(binary.BigEndian.Uint64([]byte(id)))
		sw.str(addr)
	}
	sw.uvarint(uint64(k.sessions.Len()))
	for client, ss := range k.sessions.Ascend("") {
		sw.str(client)
		sw.uvarint(ss.seq)
		sw.uvarint(ss.lastIndex)
		_, _ = sw.w.Write(ss.fp[:])
		sw.result(ss.res)
	}
	sw.uvarint(uint64(k.retired.Len()))
	for id := range k.retired.Ascend("") {
		sw.uvarint(binary.BigEndian.Uint64([]byte(id)))
	}
	// The checksum covers what reached w, so the buffer goes first.
	if err := sw.w.Flush(); err != nil {
		return sum.n, err
	}
	_, err := sum.w.Write(binary.BigEndian.AppendUint32(nil, sum.crc))
	if err == nil {
		sum.n += 4
	}
	return sum.n, err
}

// summingWriter counts and checksums the bytes that reach w.
type summingWriter struct {
	w   io.Writer
	n   int64
	crc uint32
}

// Write passes p on to w, counting and checksumming what w took.
func (s *summingWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.crc = crc32.Update(s.crc, castagnoli, p[:n])
	s.n += int64(n)
	return n, err
}

// snapWriter writes a snapshot's fields into a bufio.Writer, whose first
// error sticks (and is returned by its Flush). Fields are appended to the
// buffer in place, so writing a key allocates nothing.
type snapWriter struct {
	w *bufio.Writer
}

func (sw *snapWriter) byte(b byte) { _ = sw.w.WriteByte(b) }

func (sw *snapWriter) uvarint(v uint64) {
	_, _ = sw.w.Write(binary.AppendUvarint(sw.w.AvailableBuffer(), v))
}

func (sw *snapWriter) bytes(b []byte) {
	sw.uvarint(uint64(len(b)))
	_, _ = sw.w.Write(b)
}

func (sw *snapWriter) str(s string) {
	sw.uvarint(uint64(len(s)))
	_, _ = sw.w.WriteString(s)
}

func (sw *snapWriter) lease(l lockState) {
	sw.str(l.Holder)
	for _, v := range [...]uint64{l.Token, l.TTL, l.Expires, l.SetIndex} {
		sw.uvarint(v)
	}
}

func (sw *snapWriter) result(r result) {
	sw.byte(byte(r.Code))
	sw.byte(boolByte(r.Found) | boolByte(r.Swapped)<<1)
	sw.bytes(r.Value)
	sw.uvarint(r.Now)
	sw.lease(r.Lock)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// Restore implements raft.StateMachine: it replaces the state with a
// snapshot written by WriteTo. A corrupt or truncated snapshot returns an
// error wrapping errMalformed and leaves the state untouched.
func (s *kvStateMachine) Restore(r io.Reader) error {
	s.mu.RLock()
	ttl := s.st.sessions.ttl
	s.mu.RUnlock()
	next, err := decodeSnapshot(r, ttl)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next.changes = &s.changes
	s.st = next
	s.changes.reset(next.applied)
	// Waiters look again: a watch whose index the history no longer
	// reaches is told so, a lock waiter sees the restored lock.
	s.watchers.wakeAll()
	return nil
}

// outOfOrder is the error for a snapshot whose keys are not strictly
// ascending: WriteTo never writes that, and accepting it would let two byte
// strings stand for one state.
const outOfOrder = "keys out of order"

// decodeSnapshot reads a whole snapshot into a new state.
func decodeSnapshot(r io.Reader, sessionTTL uint64) (kvState, error) {
	sr := &snapReader{r: bufio.NewReaderSize(r, 64<<10)}
	st := newKVState(sessionTTL)
	v := sr.byte()
	if sr.err == nil && v != snapshotVersion && v != snapshotVersionV2 {
		return kvState{}, fmt.Errorf("%w: unknown snapshot version %d", errMalformed, v)
	}
	st.applied, st.now = sr.uvarint(), sr.uvarint()
	sr.readItems(&st)
	sr.readLocks(&st)
	sr.readAddrs(&st)
	sr.readSessions(&st)
	if v == snapshotVersion {
		sr.readRetired(&st)
	}
	sr.finish()
	if sr.err != nil {
		return kvState{}, sr.err
	}
	return st, nil
}

func (sr *snapReader) readItems(st *kvState) {
	prev := ""
	for n := sr.uvarint(); n > 0 && sr.err == nil; n-- {
		key := sr.str()
		it := item{value: sr.bytes(), expires: sr.uvarint()}
		sr.check(key > prev || st.data.Len() == 0, outOfOrder)
		sr.check(it.expires == 0 || it.expires > st.now, "a key past its expiry")
		if sr.err == nil {
			st.data.Set(key, it)
			if it.expires != 0 {
				st.expiry.Set(expiryKey(it.expires, expiringKey, key), struct{}{})
			}
		}
		prev = key
	}
}

func (sr *snapReader) readLocks(st *kvState) {
	prev := ""
	for n := sr.uvarint(); n > 0 && sr.err == nil; n-- {
		name := sr.str()
		l := sr.lease()
		sr.check(name != "" && name > prev, outOfOrder)
		sr.check(l.Holder != "" && l.Expires > st.now && l.Token <= st.applied && l.SetIndex <= st.applied,
			"an impossible lease")
		if sr.err == nil {
			st.locks.Set(name, l)
			st.expiry.Set(expiryKey(l.Expires, expiringLock, name), struct{}{})
		}
		prev = name
	}
}

func (sr *snapReader) readAddrs(st *kvState) {
	var prev uint64
	for n := sr.uvarint(); n > 0 && sr.err == nil; n-- {
		id, addr := sr.uvarint(), sr.str()
		sr.check(st.addrs.Len() == 0 || id > prev, outOfOrder)
		if sr.err == nil {
			st.addrs.Set(addrKey(id), addr)
		}
		prev = id
	}
}

func (sr *snapReader) readRetired(st *kvState) {
	var prev uint64
	for n := sr.uvarint(); n > 0 && sr.err == nil; n-- {
		id := sr.uvarint()
		sr.check(id != 0 && id > prev, outOfOrder)
		if sr.err == nil {
			st.retired.Set(addrKey(id), struct{}{})
		}
		prev = id
	}
}

func (sr *snapReader) readSessions(st *kvState) {
	prev := ""
	for n := sr.uvarint(); n > 0 && sr.err == nil; n-- {
		client := sr.str()
		var ss session
		ss.seq, ss.lastIndex = sr.uvarint(), sr.uvarint()
		sr.raw(ss.fp[:])
		ss.res = sr.result()
		sr.check(client != "" && client > prev, outOfOrder)
		sr.check(ss.lastIndex != 0 && ss.lastIndex <= st.applied, "a session used after the snapshot")
		if sr.err == nil {
			st.sessions.byClient.Set(client, ss)
			st.sessions.byAge.Set(ageKey(ss.lastIndex, client), struct{}{})
		}
		prev = client
	}
}

// snapReader reads a snapshot's fields, checksumming them; its first error
// sticks.
type snapReader struct {
	r       *bufio.Reader
	crc     uint32
	err     error
	scratch []byte
}

// check records a malformed-snapshot error saying what is wrong unless ok.
// It takes a constant string, not an error, so that checking each of a
// million keys allocates nothing.
func (sr *snapReader) check(ok bool, what string) {
	if sr.err == nil && !ok {
		sr.err = fmt.Errorf("%w: snapshot: %s", errMalformed, what)
	}
}

// raw fills b from the snapshot.
func (sr *snapReader) raw(b []byte) {
	if sr.err != nil {
		return
	}
	if _, err := io.ReadFull(sr.r, b); err != nil {
		sr.fail(err)
		return
	}
	sr.crc = crc32.Update(sr.crc, castagnoli, b)
}

func (sr *snapReader) fail(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		sr.err = fmt.Errorf("%w: snapshot truncated", errMalformed)
	} else {
		sr.err = fmt.Errorf("reading snapshot: %w", err)
	}
}

func (sr *snapReader) byte() byte {
	if sr.err != nil {
		return 0
	}
	b, err := sr.r.ReadByte()
	if err != nil {
		sr.fail(err)
		return 0
	}
	// crc32.Update on a one-byte slice would allocate it (the slice escapes
	// into the table-driven update), once per byte of every integer.
	c := ^sr.crc
	sr.crc = ^(castagnoli[byte(c)^b] ^ c>>8)
	return b
}

// uvarint reads a uvarint a byte at a time, refusing the encodings
// binary.AppendUvarint never writes (overlong or overflowing), as the
// command decoder does.
func (sr *snapReader) uvarint() uint64 {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64 && sr.err == nil; i++ {
		b := sr.byte()
		if b < 0x80 {
			sr.check(!(i > 0 && b == 0) && !(i == binary.MaxVarintLen64-1 && b > 1), "bad integer")
			return v | uint64(b)<<(7*i)
		}
		v |= uint64(b&0x7f) << (7 * i)
	}
	sr.check(false, "bad integer")
	return 0
}

// bytes reads a length-prefixed field of at most maxSnapshotField bytes.
func (sr *snapReader) bytes() []byte {
	n := sr.uvarint()
	sr.check(n <= maxSnapshotField, "a field longer than 16 MiB")
	if sr.err != nil {
		return nil
	}
	b := make([]byte, n)
	sr.raw(b)
	return b
}

// str reads a length-prefixed string field, through a scratch buffer so
// that the string is the only allocation.
func (sr *snapReader) str() string {
	n := sr.uvarint()
	sr.check(n <= maxSnapshotField, "a field longer than 16 MiB")
	if sr.err != nil {
		return ""
	}
	if uint64(cap(sr.scratch)) < n {
		sr.scratch = make([]byte, n)
	}
	b := sr.scratch[:n]
	sr.raw(b)
	return string(b)
}

func (sr *snapReader) lease() lockState {
	l := lockState{Holder: sr.str()}
	l.Token, l.TTL, l.Expires, l.SetIndex = sr.uvarint(), sr.uvarint(), sr.uvarint(), sr.uvarint()
	return l
}

func (sr *snapReader) result() result {
	code, flags := sr.byte(), sr.byte()
	sr.check(code < byte(resultLimit) && flags <= 3, "a bad session result")
	r := result{Code: resultCode(code), Found: flags&1 != 0, Swapped: flags&2 != 0}
	r.Value, r.Now, r.Lock = sr.bytes(), sr.uvarint(), sr.lease()
	return r
}

// finish checks the checksum and that nothing follows it.
func (sr *snapReader) finish() {
	want := sr.crc
	var sum [4]byte
	sr.raw(sum[:])
	sr.check(binary.BigEndian.Uint32(sum[:]) == want, "checksum mismatch")
	if sr.err == nil {
		if _, err := sr.r.ReadByte(); err != io.EOF {
			sr.err = fmt.Errorf("%w: data after the snapshot's checksum", errMalformed)
		}
	}
}
