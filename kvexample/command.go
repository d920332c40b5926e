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
// bytes = uvarint length followed by that many bytes):
//
//	version byte   (commandVersion; lets the format change later)
//	op      byte   (opPut, opDelete, ...)
//	flags   byte   (flagSession, flagHasOld)
//	[bytes client, uvarint seq]          if flagSession
//	op-specific fields:
//	  put:      bytes key, bytes value
//	  delete:   bytes key
//	  append:   bytes key, bytes suffix
//	  cas:      bytes key, [bytes old if flagHasOld], bytes new
//	  register: uvarint node id, bytes http address

// commandVersion is the first byte of every encoded command.
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

	opLimit // keep last: bounds checks when decoding
)

// String returns the op's name, for logs and test failures.
func (o op) String() string {
	names := [...]string{opPut: "put", opDelete: "delete", opAppend: "append", opCAS: "cas", opRegister: "register"}
	if o > 0 && o < opLimit {
		return names[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

const (
	// flagSession: the command carries a client id and request sequence
	// number for exactly-once execution (see session.go).
	flagSession byte = 1 << iota
	// flagHasOld: a CAS command expects a present value (Old); without it
	// the CAS expects the key to be absent ("old": null in the API).
	flagHasOld
)

// command is one decoded write. Fields an op does not use are zero.
type command struct {
	Op    op
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
	// NodeID and Addr are opRegister's payload.
	NodeID   uint64
	HTTPAddr string
}

// encode returns the command's log payload.
func (c *command) encode() []byte {
	b := make([]byte, 0, 16+len(c.Key)+len(c.Value)+len(c.Old)+len(c.Client)+len(c.HTTPAddr))
	var flags byte
	if c.Client != "" {
		flags |= flagSession
	}
	if c.Op == opCAS && c.HasOld {
		flags |= flagHasOld
	}
	b = append(b, commandVersion, byte(c.Op), flags)
	if flags&flagSession != 0 {
		b = appendBytes(b, []byte(c.Client))
		b = binary.AppendUvarint(b, c.Seq)
	}
	switch c.Op {
	case opPut, opAppend:
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
	}
	return b
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
	if flags&^(flagSession|flagHasOld) != 0 || (flags&flagHasOld != 0 && c.Op != opCAS) {
		return command{}, fmt.Errorf("%w: bad flags %#x", errMalformed, flags)
	}
	if flags&flagSession != 0 {
		c.Client = string(d.bytes())
		c.Seq = d.uvarint()
		if d.err == nil && c.Client == "" {
			return command{}, fmt.Errorf("%w: empty client id", errMalformed)
		}
	}
	switch c.Op {
	case opPut, opAppend:
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
	}
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errMalformed, len(d.buf))
	}
	if d.err != nil {
		return command{}, d.err
	}
	return c, nil
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

// count reads the number of items that follow. Every item takes at least one
// byte, so a count larger than what is left is corrupt: rejecting it early
// keeps a bad count from driving a huge loop.
func (d *decoder) count() uint64 {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: %d items in %d bytes", errMalformed, n, len(d.buf))
		return 0
	}
	return n
}
