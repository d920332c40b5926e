package main

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// This file is the wire format of the commands that go into the raft log.
//
// Every write the HTTP API accepts becomes one command, encoded into the
// []byte handed to raft.Node.Propose. Raft treats it as opaque bytes; every
// node decodes the same bytes in StateMachine.Apply, so the format only has
// to be unambiguous and stable, not self-describing.
//
// Why binary and not JSON: values are arbitrary bytes of up to 1 MiB, and a
// JSON encoding would base64 them (a third larger, in the log and on the
// wire, forever). A hand-written length-prefixed format is small, costs no
// reflection, and its decoder is short enough to read in one sitting — and
// to check that malformed input yields an error, never a panic.
//
// Layout (uvarint = encoding/binary's variable-length unsigned integer;
// varint = its zig-zag signed one; bytes = uvarint length followed by that
// many bytes):
//
//	version byte   (commandVersion; lets the format change later)
//	op      byte   (opPut, opDelete, ...)
//	flags   byte   (flagSession, flagHasOld, flagTime, flagTTL, flagFence)
//	[bytes client, uvarint seq]          if flagSession
//	[uvarint time]                       if flagTime
//	[bytes lock, uvarint token]          if flagFence
//	op-specific fields:
//	  put:      bytes key, bytes value, [uvarint ttl if flagTTL]
//	  delete:   bytes key
//	  append:   bytes key, bytes suffix
//	  cas:      bytes key, [bytes old if flagHasOld], bytes new
//	  register: uvarint node id, bytes http address
//	  incr:     bytes key, varint delta
//	  acquire:  bytes lock, bytes holder, uvarint ttl
//	  renew:    bytes lock, bytes holder, uvarint token, uvarint ttl (0: the lock's own)
//	  release:  bytes lock, bytes holder, uvarint token
//	  tick:     nothing (it only carries the time)
//
// Every field is either present with a meaningful value or absent with its
// flag clear (no time 0, no TTL 0, no fence on an empty lock name), so each
// command has exactly one encoding.

// commandVersion is the first byte of every encoded command. Commands
// written before time, TTLs, fences and locks existed decode unchanged:
// those only add flags and ops.
const commandVersion = 1

// op names what a command does.
type op uint8

const (
	opPut op = iota + 1
	opDelete
	opAppend
	opCAS
	// opRegister records a node's HTTP address in the replicated state, so
	// followers can redirect clients to the leader (see cluster.go).
	opRegister
	opIncr
	opAcquire
	opRenew
	opRelease
	// opTick only moves the log's clock, so leases and TTLs expire while
	// nobody writes (see logclock.go).
	opTick
	// opRetire records that a server is being removed from the cluster, so
	// that its ID is never given to another server (handlers_cluster.go).
	opRetire

	opLimit // keep last: bounds checks when decoding
)

// String returns the op's name, for logs and test failures.
func (o op) String() string {
	names := [...]string{
		opPut: "put", opDelete: "delete", opAppend: "append", opCAS: "cas", opRegister: "register",
		opIncr: "incr", opAcquire: "acquire", opRenew: "renew", opRelease: "release", opTick: "tick",
		opRetire: "retire",
	}
	if o > 0 && o < opLimit {
		return names[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// writesKey reports whether o changes a key's value: the ops an X-Fence
// header may guard.
func (o op) writesKey() bool {
	return o == opPut || o == opDelete || o == opAppend || o == opCAS || o == opIncr
}

const (
	// flagSession: the command carries a client id and request sequence
	// number for exactly-once execution (see session.go).
	flagSession byte = 1 << iota
	// flagHasOld: a CAS command expects a present value (Old); without it
	// the CAS expects the key to be absent ("old": null in the API).
	flagHasOld
	// flagTime: the command carries the proposing leader's clock.
	flagTime
	// flagTTL: a put gives its key a time to live.
	flagTTL
	// flagFence: the write is refused unless a lock's token is current.
	flagFence

	knownFlags = flagSession | flagHasOld | flagTime | flagTTL | flagFence
)

// Bounds on the time fields, checked when decoding so that no arithmetic
// on them can overflow: a clock past the year 285,000 or a TTL of more than
// a year is a bug, not a request.
const (
	maxTimeMillis = 1 << 53
	maxTTLMillis  = 366 * 24 * 3600 * 1000
)

// command is one decoded write. Fields an op does not use are zero.
type command struct {
	Op op
	// Key is the key of a key op and the lock's name of a lock op.
	Key   string
	Value []byte // put: the value; append: the suffix; cas: the new value
	// Old and HasOld are the CAS expectation: HasOld false means "the key
	// must be absent".
	Old    []byte
	HasOld bool
	// Client and Seq identify the request for exactly-once execution;
	// Client == "" means the request has no session.
	Client string
	Seq    uint64
	// NodeID and HTTPAddr are opRegister's payload; NodeID is opRetire's.
	NodeID   uint64
	HTTPAddr string
	// Time is the proposer's clock in Unix milliseconds, 0 for none. The
	// state machine never reads a clock of its own (see logclock.go).
	Time uint64
	// TTL is in milliseconds: a put key's time to live, a lease's length.
	TTL uint64
	// Delta is what an incr adds.
	Delta int64
	// Holder names who acquires, renews or releases a lock, and Token is
	// the fencing token a renew or release presents.
	Holder string
	Token  uint64
	// FenceLock and FenceToken are the X-Fence header: the write happens
	// only if that lock's current token is FenceToken.
	FenceLock  string
	FenceToken uint64
}

// encode returns the command's log payload.
func (c *command) encode() []byte {
	b := make([]byte, 0, 48+len(c.Key)+len(c.Value)+len(c.Old)+len(c.Client)+len(c.HTTPAddr)+len(c.Holder)+len(c.FenceLock))
	flags := c.flags()
	b = append(b, commandVersion, byte(c.Op), flags)
	if flags&flagSession != 0 {
		b = appendBytes(b, []byte(c.Client))
		b = binary.AppendUvarint(b, c.Seq)
	}
	if flags&flagTime != 0 {
		b = binary.AppendUvarint(b, c.Time)
	}
	if flags&flagFence != 0 {
		b = appendBytes(b, []byte(c.FenceLock))
		b = binary.AppendUvarint(b, c.FenceToken)
	}
	switch c.Op {
	case opPut:
		b = appendBytes(b, []byte(c.Key))
		b = appendBytes(b, c.Value)
		if flags&flagTTL != 0 {
			b = binary.AppendUvarint(b, c.TTL)
		}
	case opAppend:
		b = appendBytes(b, []byte(c.Key))
		b = appendBytes(b, c.Value)
	case opDelete:
		b = appendBytes(b, []byte(c.Key))
	case opCAS:
		b = appendBytes(b, []byte(c.Key))
		if flags&flagHasOld != 0 {
			b = appendBytes(b, c.Old)
		}
		b = appendBytes(b, c.Value)
	case opRegister:
		b = binary.AppendUvarint(b, c.NodeID)
		b = appendBytes(b, []byte(c.HTTPAddr))
	case opRetire:
		b = binary.AppendUvarint(b, c.NodeID)
	case opIncr:
		b = appendBytes(b, []byte(c.Key))
		b = binary.AppendVarint(b, c.Delta)
	case opAcquire, opRenew, opRelease:
		b = appendBytes(b, []byte(c.Key))
		b = appendBytes(b, []byte(c.Holder))
		if c.Op != opAcquire {
			b = binary.AppendUvarint(b, c.Token)
		}
		if c.Op != opRelease {
			b = binary.AppendUvarint(b, c.TTL)
		}
	}
	return b
}

// flags returns the flag byte for the fields c carries.
func (c *command) flags() byte {
	var flags byte
	if c.Client != "" {
		flags |= flagSession
	}
	if c.Op == opCAS && c.HasOld {
		flags |= flagHasOld
	}
	if c.Time != 0 {
		flags |= flagTime
	}
	if c.Op == opPut && c.TTL != 0 {
		flags |= flagTTL
	}
	if c.FenceLock != "" && c.Op.writesKey() {
		flags |= flagFence
	}
	return flags
}

func appendBytes(b, field []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(field)))
	return append(b, field...)
}

// errMalformed is wrapped by every decoding failure, of a command or of a
// snapshot.
var errMalformed = errors.New("malformed encoding")

// decodeCommand parses an encoded command. It never panics: a log entry is
// input like any other, and a node must not crash on one it cannot read.
// Byte slices in the result alias data, which the caller must not modify.
func decodeCommand(data []byte) (command, error) {
	d := decoder{buf: data}
	version, opByte, flags := d.byte(), d.byte(), d.byte()
	if d.err != nil {
		return command{}, d.err
	}
	if version != commandVersion {
		return command{}, fmt.Errorf("%w: unknown version %d", errMalformed, version)
	}
	c := command{Op: op(opByte)}
	if c.Op == 0 || c.Op >= opLimit {
		return command{}, fmt.Errorf("%w: unknown op %d", errMalformed, opByte)
	}
	if flags&^knownFlags != 0 || (flags&flagHasOld != 0 && c.Op != opCAS) ||
		(flags&flagTTL != 0 && c.Op != opPut) || (flags&flagFence != 0 && !c.Op.writesKey()) {
		return command{}, fmt.Errorf("%w: bad flags %#x for %s", errMalformed, flags, c.Op)
	}
	if flags&flagSession != 0 {
		c.Client = string(d.bytes())
		c.Seq = d.uvarint()
		if d.err == nil && c.Client == "" {
			return command{}, fmt.Errorf("%w: empty client id", errMalformed)
		}
	}
	if flags&flagTime != 0 {
		c.Time = d.uvarint()
		d.check(c.Time != 0 && c.Time <= maxTimeMillis, "time out of range")
	}
	if flags&flagFence != 0 {
		c.FenceLock = string(d.bytes())
		c.FenceToken = d.uvarint()
		d.check(c.FenceLock != "", "fence on an empty lock name")
	}
	c.decodeFields(&d, flags)
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errMalformed, len(d.buf))
	}
	if d.err != nil {
		return command{}, d.err
	}
	return c, nil
}

// decodeFields reads the op-specific fields.
func (c *command) decodeFields(d *decoder, flags byte) {
	switch c.Op {
	case opPut:
		c.Key = string(d.bytes())
		c.Value = d.bytes()
		if flags&flagTTL != 0 {
			c.TTL = d.uvarint()
			d.check(c.TTL != 0 && c.TTL <= maxTTLMillis, "TTL out of range")
		}
	case opAppend:
		c.Key = string(d.bytes())
		c.Value = d.bytes()
	case opDelete:
		c.Key = string(d.bytes())
	case opCAS:
		c.Key = string(d.bytes())
		if flags&flagHasOld != 0 {
			c.Old, c.HasOld = d.bytes(), true
		}
		c.Value = d.bytes()
	case opRegister:
		c.NodeID = d.uvarint()
		c.HTTPAddr = string(d.bytes())
	case opRetire:
		c.NodeID = d.uvarint()
		d.check(c.NodeID != 0, "retiring node 0")
	case opIncr:
		c.Key = string(d.bytes())
		c.Delta = d.varint()
	case opAcquire, opRenew, opRelease:
		c.Key = string(d.bytes())
		c.Holder = string(d.bytes())
		if c.Op != opAcquire {
			c.Token = d.uvarint()
		}
		if c.Op != opRelease {
			c.TTL = d.uvarint()
			d.check(c.TTL <= maxTTLMillis && (c.TTL != 0 || c.Op == opRenew), "lease TTL out of range")
		}
		d.check(c.Key != "" && c.Holder != "", "lock operation without a lock name or holder")
	}
}

// decoder reads the fields of an encoded command or snapshot. Its first
// error sticks, so callers check once at the end instead of after every
// field.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.err = fmt.Errorf("%w: truncated", errMalformed)
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	// An overlong encoding (a last byte of 0 after continuation bytes, as
	// in 0x80 0x00 for 0) is rejected so each command has one encoding.
	if n <= 0 || (n > 1 && d.buf[n-1] == 0) {
		d.err = fmt.Errorf("%w: bad integer", errMalformed)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// bytes reads a length-prefixed field. The length is checked against what
// is left before anything is sliced, so a corrupt length cannot make the
// decoder allocate or read out of bounds.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: field of %d bytes, %d left", errMalformed, n, len(d.buf))
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

// varint reads a zig-zag signed integer, with uvarint's one-encoding rule.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// check records a malformed-input error unless ok.
func (d *decoder) check(ok bool, what string) {
	if d.err == nil && !ok {
		d.err = fmt.Errorf("%w: %s", errMalformed, what)
	}
}
