package raft

import (
	"errors"
	"fmt"
	"math"
)

// NodeID identifies a server in a cluster. Zero is never a valid ID: it means
// "none" (no vote cast, no leader known).
type NodeID uint64

// None is the zero NodeID: no node.
const None NodeID = 0

// EntryType says what a log entry holds, and so whether the StateMachine
// sees it.
type EntryType uint8

const (
	// EntryNormal carries a user command for the StateMachine.
	EntryNormal EntryType = iota
	// EntryNoop is appended by a new leader to commit entries of earlier
	// terms (Raft §5.4.2); it is never given to the StateMachine.
	EntryNoop
	// EntryConfig carries a cluster Configuration (see EncodeConfiguration).
	// A configuration takes effect as soon as it is in a node's log.
	EntryConfig
)

// String returns the entry type's name.
func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "normal"
	case EntryNoop:
		return "noop"
	case EntryConfig:
		return "config"
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is one record of the replicated log. Entries are immutable once
// created: the library shares them between goroutines without copying.
type Entry struct {
	Index uint64
	Term  uint64
	Type  EntryType
	Data  []byte
}

// size is the entry's approximate encoded size, used for batching limits.
func (e *Entry) size() uint64 { return uint64(len(e.Data)) + entryOverhead }

// entryOverhead approximates the fixed per-entry cost of an encoded entry.
const entryOverhead = 24

// HardState is the part of a node's state that must be durable before the
// node answers a vote or an append: its term, its vote in that term, and a
// commit hint (the commit index may be recovered lower; it is only a hint).
type HardState struct {
	Term   uint64
	Vote   NodeID
	Commit uint64
}

// IsZero reports whether hs is the empty hard state of a fresh node.
func (hs HardState) IsZero() bool { return hs == HardState{} }

// MessageType is the kind of a Raft RPC.
type MessageType uint8

const (
	// MsgVote is RequestVote (Raft §5.2).
	MsgVote MessageType = iota + 1
	// MsgVoteResp answers MsgVote.
	MsgVoteResp
	// MsgPreVote asks whether a vote would be granted, without changing
	// anyone's term (Raft thesis §9.6).
	MsgPreVote
	// MsgPreVoteResp answers MsgPreVote.
	MsgPreVoteResp
	// MsgApp is AppendEntries carrying entries (or a probe with none).
	MsgApp
	// MsgAppResp answers MsgApp.
	MsgAppResp
	// MsgHeartbeat is an empty AppendEntries, sent apart from appends so it
	// never waits behind one: it asserts leadership, carries the commit
	// index and a read sequence.
	MsgHeartbeat
	// MsgHeartbeatResp answers MsgHeartbeat.
	MsgHeartbeatResp
	// MsgTimeoutNow tells a follower to campaign at once (leadership
	// transfer); reserved for that feature.
	MsgTimeoutNow
	// MsgSnap carries one chunk of a snapshot (InstallSnapshot) to a
	// follower that needs entries the leader has compacted away.
	MsgSnap
	// MsgSnapResp answers MsgSnap with how many bytes of the snapshot the
	// follower holds; once installed, the follower answers MsgAppResp.
	MsgSnapResp
	// MsgReadIndex is a follower asking the leader for a read index for
	// its linearizable reads (ReadSeq numbers the request).
	MsgReadIndex
	// MsgReadIndexResp answers MsgReadIndex with the index (Index), or
	// Reject when the leader lost leadership before confirming it.
	MsgReadIndexResp

	msgTypeCount // keep last: bounds checks when decoding
)

var msgTypeNames = [...]string{
	MsgVote: "Vote", MsgVoteResp: "VoteResp", MsgPreVote: "PreVote",
	MsgPreVoteResp: "PreVoteResp", MsgApp: "App", MsgAppResp: "AppResp",
	MsgHeartbeat: "Heartbeat", MsgHeartbeatResp: "HeartbeatResp",
	MsgTimeoutNow: "TimeoutNow", MsgSnap: "Snap", MsgSnapResp: "SnapResp",
	MsgReadIndex: "ReadIndex", MsgReadIndexResp: "ReadIndexResp",
}

// String returns the message type's name.
func (t MessageType) String() string {
	if t > 0 && t < msgTypeCount {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Valid reports whether t is a known message type. Transports use it to
// reject garbage before it reaches a node.
func (t MessageType) Valid() bool { return t > 0 && t < msgTypeCount }

// Message is every Raft RPC in one flat struct, as in etcd raft: a flat
// value is cheap to pass through channels and to encode without reflection.
// Fields a type does not use are zero.
type Message struct {
	Type MessageType
	// Group identifies the raft group when many share one transport; it is
	// zero for a single group.
	Group uint64
	From  NodeID
	To    NodeID
	Term  uint64

	// Index and LogTerm: for MsgApp the index and term of the entry
	// preceding Entries; for votes the candidate's last index and term; for
	// MsgAppResp the follower's last matching index (success) or the
	// rejected index (failure).
	Index   uint64
	LogTerm uint64
	Entries []Entry
	// Commit is the leader's commit index (MsgApp, MsgHeartbeat).
	Commit uint64

	// Reject marks a refused vote or append.
	Reject bool
	// Transfer marks a MsgVote of a campaign the leader asked for
	// (MsgTimeoutNow): voters grant it even while they hear from that
	// leader, which leader stickiness would otherwise refuse.
	Transfer bool
	// ConflictIndex and ConflictTerm let a rejected append skip a whole
	// conflicting term at once (Raft §5.3, "fast backtracking"): the
	// follower's term at the probed index and the first index it holds of
	// that term, or ConflictTerm 0 and its last index + 1 when its log is
	// shorter.
	ConflictIndex uint64
	ConflictTerm  uint64

	// ReadSeq numbers heartbeat rounds; a response echoes it, so the leader
	// knows which rounds a quorum confirmed (ReadIndex).
	ReadSeq uint64

	// Chunk is a MsgSnap's piece of a snapshot; in a MsgSnapResp it says
	// how many bytes of the snapshot at Index the follower holds. A pointer
	// keeps Message small on the hot path, where it is always nil.
	Chunk *SnapshotChunk
}

// SnapshotChunk is one piece of a snapshot in transfer.
type SnapshotChunk struct {
	// Meta names the snapshot (MsgSnap only).
	Meta SnapshotMeta
	// Offset is where the chunk starts in the snapshot's bytes; in a
	// MsgSnapResp, how many bytes the follower holds, which is where it
	// wants the next chunk to start.
	Offset uint64
	// Length is the size of the chunk a MsgSnap from a Core asks its
	// driver to read into Data before sending; it does not travel.
	Length uint64
	// Data is the chunk's bytes and Checksum their CRC-32C.
	Data     []byte
	Checksum uint32
}

// String formats the message for logs and traces.
func (m Message) String() string {
	s := fmt.Sprintf("%s %d->%d t%d i%d lt%d c%d", m.Type, m.From, m.To, m.Term, m.Index, m.LogTerm, m.Commit)
	if len(m.Entries) > 0 {
		s += fmt.Sprintf(" n%d[%d..%d]", len(m.Entries), m.Entries[0].Index, m.Entries[len(m.Entries)-1].Index)
	}
	if m.Reject {
		s += fmt.Sprintf(" reject(ci%d ct%d)", m.ConflictIndex, m.ConflictTerm)
	}
	if m.Transfer {
		s += " transfer"
	}
	if m.ReadSeq != 0 {
		s += fmt.Sprintf(" rs%d", m.ReadSeq)
	}
	if k := m.Chunk; k != nil && m.Type == MsgSnap {
		s += fmt.Sprintf(" snap%d/%d@%d+%d", k.Meta.Index, k.Meta.Term, k.Offset, max(k.Length, uint64(len(k.Data))))
	} else if k != nil {
		s += fmt.Sprintf(" snap%d@%d", m.Index, k.Offset)
	}
	return s
}

// isResponse reports whether the message answers another one.
func (t MessageType) isResponse() bool {
	switch t {
	case MsgVoteResp, MsgPreVoteResp, MsgAppResp, MsgHeartbeatResp, MsgSnapResp, MsgReadIndexResp:
		return true
	}
	return false
}

// maxTerm bounds the terms a peer may claim. No cluster holds 2^62
// elections, and a node that adopted a term near 2^64 could never campaign
// again without the term wrapping to zero: one forged heartbeat would take
// it out of the cluster for good.
const maxTerm = 1 << 62

// errMalformedMessage: a message no correct peer can send. The core drops
// it, counts it (Metrics.RecvRejected) and logs why.
var errMalformedMessage = errors.New("raft: malformed message")

// check rejects what no correct peer sends, whatever this node's state:
// entries that do not follow the append's previous index one by one, terms
// that go back or run ahead of the sender's term, unknown entry types. The
// core can then trust an append's shape and never panic or wedge its log
// on a buggy or hostile peer's message.
func (m *Message) check() error {
	if m.Term > maxTerm {
		return fmt.Errorf("%w: term %d beyond any real cluster's", errMalformedMessage, m.Term)
	}
	switch m.Type {
	case MsgVote, MsgPreVote:
		if m.LogTerm > m.Term {
			return fmt.Errorf("%w: candidate's last log term %d beyond its term %d", errMalformedMessage, m.LogTerm, m.Term)
		}
	case MsgApp:
		if m.LogTerm > m.Term {
			return fmt.Errorf("%w: append's previous term %d beyond its term %d", errMalformedMessage, m.LogTerm, m.Term)
		}
		if err := checkConfigEntries(m.Entries); err != nil {
			return err
		}
		if uint64(len(m.Entries)) > math.MaxUint64-m.Index {
			return fmt.Errorf("%w: %d entries after index %d overflow", errMalformedMessage, len(m.Entries), m.Index)
		}
		prevTerm := m.LogTerm
		for i := range m.Entries {
			e := &m.Entries[i]
			switch {
			case e.Index != m.Index+1+uint64(i):
				return fmt.Errorf("%w: entry %d of an append after index %d has index %d", errMalformedMessage, i, m.Index, e.Index)
			case e.Term == 0 || e.Term < prevTerm || e.Term > m.Term:
				return fmt.Errorf("%w: entry %d has term %d, outside [%d, %d]", errMalformedMessage, e.Index, e.Term, prevTerm, m.Term)
			case e.Type > EntryConfig:
				return fmt.Errorf("%w: entry %d has unknown type %d", errMalformedMessage, e.Index, e.Type)
			}
			prevTerm = e.Term
		}
	case MsgSnap:
		return m.checkSnapshot()
	case MsgSnapResp:
		if m.Chunk == nil {
			return fmt.Errorf("%w: snapshot answer without progress", errMalformedMessage)
		}
	}
	return nil
}

// checkConfigEntries refuses configuration entries that do not decode: a
// configuration takes effect as soon as it is in the log, so a bad one
// must never get there.
func checkConfigEntries(ents []Entry) error {
	for i := range ents {
		if ents[i].Type != EntryConfig {
			continue
		}
		if _, err := DecodeConfiguration(ents[i].Data); err != nil {
			return fmt.Errorf("%w: configuration entry %d: %v", errMalformedMessage, ents[i].Index, err)
		}
	}
	return nil
}

// checkSnapshot refuses a chunk no correct leader sends: one without a
// snapshot, of a snapshot from a later term than the leader's, or lying
// outside the snapshot's bytes.
func (m *Message) checkSnapshot() error {
	if m.Chunk == nil {
		return fmt.Errorf("%w: snapshot message without a chunk", errMalformedMessage)
	}
	k, sn := m.Chunk, &m.Chunk.Meta
	switch {
	case sn.Index == 0 || sn.Term == 0 || sn.Term > m.Term:
		return fmt.Errorf("%w: snapshot at index %d of term %d from a leader of term %d", errMalformedMessage, sn.Index, sn.Term, m.Term)
	case sn.Size < 0 || k.Offset > uint64(sn.Size) || uint64(len(k.Data)) > uint64(sn.Size)-k.Offset:
		return fmt.Errorf("%w: chunk [%d, +%d) outside a snapshot of %d bytes", errMalformedMessage, k.Offset, len(k.Data), sn.Size)
	case sn.ConfigIndex > sn.Index:
		return fmt.Errorf("%w: snapshot at %d holds a configuration from %d", errMalformedMessage, sn.Index, sn.ConfigIndex)
	}
	return nil
}
