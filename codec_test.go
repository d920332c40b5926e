package raft

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"
)

// sampleMessages has one realistic message per type, every field used by
// that type set, plus edge cases of the encoding.
func sampleMessages() map[string]Message {
	ents := []Entry{
		{Index: 101, Term: 7, Type: EntryNormal, Data: []byte("set x=1")},
		{Index: 102, Term: 7, Type: EntryNoop},
		{Index: 103, Term: 7, Type: EntryConfig, Data: EncodeConfiguration(Configuration{Servers: []Server{{ID: 1}, {ID: 2}}})},
	}
	return map[string]Message{
		"Vote":          {Type: MsgVote, From: 1, To: 2, Term: 7, Index: 100, LogTerm: 6},
		"VoteResp":      {Type: MsgVoteResp, From: 2, To: 1, Term: 7, Reject: true},
		"PreVote":       {Type: MsgPreVote, From: 1, To: 2, Term: 8, Index: 100, LogTerm: 6},
		"PreVoteResp":   {Type: MsgPreVoteResp, From: 2, To: 1, Term: 8},
		"App":           {Type: MsgApp, Group: 3, From: 1, To: 2, Term: 7, Index: 100, LogTerm: 6, Commit: 99, Entries: ents},
		"AppProbe":      {Type: MsgApp, From: 1, To: 2, Term: 7, Index: 100, LogTerm: 6, Commit: 99},
		"AppResp":       {Type: MsgAppResp, From: 2, To: 1, Term: 7, Index: 103},
		"AppRespReject": {Type: MsgAppResp, From: 2, To: 1, Term: 7, Index: 100, Reject: true, ConflictIndex: 90, ConflictTerm: 5},
		"Heartbeat":     {Type: MsgHeartbeat, From: 1, To: 2, Term: 7, Commit: 103, ReadSeq: 42},
		"HeartbeatResp": {Type: MsgHeartbeatResp, From: 2, To: 1, Term: 7, ReadSeq: 42},
		"TimeoutNow":    {Type: MsgTimeoutNow, From: 1, To: 2, Term: 7},
		"Snap": {Type: MsgSnap, From: 1, To: 2, Term: 7, Chunk: &SnapshotChunk{
			Meta: SnapshotMeta{Index: 500, Term: 6, ConfigIndex: 3, Size: 1 << 20, Checksum: 0xdeadbeef,
				Config: Configuration{Servers: []Server{{ID: 1, Address: "10.0.0.1:7001"}, {ID: 2, Suffrage: Learner}}}},
			Offset: 8192, Data: bytes.Repeat([]byte{0xab}, 4096), Checksum: 0x12345678}},
		"SnapEmpty":   {Type: MsgSnap, From: 1, To: 2, Term: 7, Chunk: &SnapshotChunk{Meta: SnapshotMeta{Index: 1, Term: 1}}},
		"SnapResp":    {Type: MsgSnapResp, From: 2, To: 1, Term: 7, Index: 500, Chunk: &SnapshotChunk{Offset: 12288}},
		"SnapRespGap": {Type: MsgSnapResp, From: 2, To: 1, Term: 7, Index: 500, Reject: true, Chunk: &SnapshotChunk{}},
		"MaxValues": {Type: MsgApp, Group: ^uint64(0), From: NodeID(^uint64(0)), To: 1, Term: ^uint64(0),
			Index: ^uint64(0), LogTerm: ^uint64(0), Commit: ^uint64(0), ConflictIndex: ^uint64(0),
			ConflictTerm: ^uint64(0), ReadSeq: ^uint64(0), Reject: true,
			Entries: []Entry{{Index: ^uint64(0), Term: ^uint64(0), Type: EntryConfig, Data: []byte{0}}}},
	}
}

var equateEmpty = cmpopts.EquateEmpty()

// readOneMessage reads a single message frame from b.
func readOneMessage(t testing.TB, frame []byte) Message {
	t.Helper()
	fr := frameReader{r: bufio.NewReader(bytes.NewReader(frame)), max: DefaultMaxFrameSize}
	version, kind, body, err := fr.next()
	if err != nil {
		t.Fatal(err)
	}
	if version != wireVersion || kind != frameMessage {
		t.Fatalf("frame header has version %d kind %d", version, kind)
	}
	var m Message
	if err := decodeMessage(body, &m, true); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCodecRoundTripsEveryMessageType(t *testing.T) {
	for name, m := range sampleMessages() {
		t.Run(name, func(t *testing.T) {
			frame := appendMessageFrame(nil, &m)
			if bound := messageFrameSize(&m); len(frame) > bound {
				t.Fatalf("frame of %d bytes exceeds its computed bound %d", len(frame), bound)
			}
			got := readOneMessage(t, frame)
			if diff := cmp.Diff(m, got, equateEmpty); diff != "" {
				t.Fatalf("round trip changed the message (-sent +got):\n%s", diff)
			}
		})
	}
}

func TestCodecRoundTripsRandomMessages(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := genMessage(t)
		body := appendMessage(nil, &m)
		var got Message
		if err := decodeMessage(body, &got, true); err != nil {
			t.Fatalf("decoding %v: %v", m, err)
		}
		if diff := cmp.Diff(m, got, equateEmpty); diff != "" {
			t.Fatalf("round trip changed the message (-sent +got):\n%s", diff)
		}
	})
}

func genMessage(t *rapid.T) Message {
	u := func(label string) uint64 {
		return rapid.OneOf(rapid.Just(uint64(0)), rapid.Uint64Range(0, 300), rapid.Uint64()).Draw(t, label)
	}
	m := Message{
		Type:  MessageType(rapid.IntRange(1, int(msgTypeCount)-1).Draw(t, "type")),
		Group: u("group"), From: NodeID(u("from")), To: NodeID(u("to")), Term: u("term"),
		Index: u("index"), LogTerm: u("logterm"), Commit: u("commit"), Reject: rapid.Bool().Draw(t, "reject"),
		ConflictIndex: u("ci"), ConflictTerm: u("ct"), ReadSeq: u("rs"),
	}
	for i := range rapid.IntRange(0, 5).Draw(t, "n") {
		_ = i
		m.Entries = append(m.Entries, Entry{
			Index: u("ei"), Term: u("et"), Type: EntryType(rapid.IntRange(0, 2).Draw(t, "etype")),
			Data: rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "data"),
		})
	}
	switch m.Type {
	case MsgSnap:
		m.Chunk = &SnapshotChunk{
			Meta: SnapshotMeta{Index: u("si"), Term: u("st"), ConfigIndex: u("sci"),
				Size: int64(rapid.Uint64Range(0, 1<<62).Draw(t, "size")), Checksum: rapid.Uint32().Draw(t, "crc")},
			Offset: u("off"), Checksum: rapid.Uint32().Draw(t, "ccrc"),
			Data: rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "chunk"),
		}
		for i := range rapid.IntRange(0, 3).Draw(t, "servers") {
			m.Chunk.Meta.Config.Servers = append(m.Chunk.Meta.Config.Servers, Server{ID: NodeID(i + 1), Address: rapid.String().Draw(t, "addr")})
		}
	case MsgSnapResp:
		m.Chunk = &SnapshotChunk{Offset: u("held")}
	}
	return m
}

func TestCodecRejectsEveryTruncation(t *testing.T) {
	for name, m := range sampleMessages() {
		body := appendMessage(nil, &m)
		for n := range len(body) {
			var got Message
			if err := decodeMessage(body[:n], &got, true); !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("%s cut to %d of %d bytes: err = %v, want ErrMalformedFrame", name, n, len(body), err)
			}
		}
	}
}

func TestCodecRejectsMalformedBodies(t *testing.T) {
	hb := sampleMessages()["Heartbeat"]
	valid := appendMessage(nil, &hb)
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := map[string][]byte{
		"empty":             {},
		"type zero":         cat([]byte{0}, uv(0)),
		"type past the end": cat([]byte{byte(msgTypeCount)}, uv(0)),
		"unknown field bit": cat([]byte{byte(MsgHeartbeat)}, uv(1<<12)),
		"varint overflow":   cat([]byte{byte(MsgHeartbeat)}, uv(fTerm), bytes.Repeat([]byte{0xff}, 11)),
		"trailing byte":     cat(valid, []byte{0}),
		"zero entry count":  cat([]byte{byte(MsgApp)}, uv(fEntries), uv(0)),
		"entry count of 4 GiB entries in 4 bytes": cat([]byte{byte(MsgApp)}, uv(fEntries), uv(1<<32), []byte{1, 1, 0, 0}),
		"unknown entry type":                      cat([]byte{byte(MsgApp)}, uv(fEntries), uv(1), []byte{1, 1, 9, 0}),
		"entry data past the end":                 cat([]byte{byte(MsgApp)}, uv(fEntries), uv(1), []byte{1, 1, 0}, uv(1<<40), []byte{1, 2, 3}),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			var m Message
			if err := decodeMessage(body, &m, true); !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("err = %v, want ErrMalformedFrame", err)
			}
			if m.Entries != nil {
				t.Fatalf("failed decode left %d entries in the message", len(m.Entries))
			}
		})
	}
}

func TestCodecOwnedEntriesDoNotAliasTheFrameBuffer(t *testing.T) {
	m := sampleMessages()["App"]
	body := appendMessage(nil, &m)
	var got Message
	if err := decodeMessage(body, &got, true); err != nil {
		t.Fatal(err)
	}
	clear(body) // the reader reuses its buffer for the next frame
	if diff := cmp.Diff(m.Entries, got.Entries, equateEmpty); diff != "" {
		t.Fatalf("entries changed with the frame buffer (-want +got):\n%s", diff)
	}
}

func TestCodecHeartbeatEncodeAndDecodeDoNotAllocate(t *testing.T) {
	for _, name := range []string{"Heartbeat", "HeartbeatResp", "Vote", "AppResp"} {
		m := sampleMessages()[name]
		buf := make([]byte, 0, 128)
		if a := testing.AllocsPerRun(1000, func() { buf = appendMessageFrame(buf[:0], &m) }); a != 0 {
			t.Errorf("encoding %s: %v allocs/op, want 0", name, a)
		}
		body := buf[frameHeaderSize:]
		var got Message
		if a := testing.AllocsPerRun(1000, func() {
			if err := decodeMessage(body, &got, true); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("decoding %s: %v allocs/op, want 0", name, a)
		}
	}
}

func TestFrameReaderReusesItsBufferWithoutAllocating(t *testing.T) {
	m := sampleMessages()["Heartbeat"]
	stream := bytes.Repeat(appendMessageFrame(nil, &m), 2)
	src := bytes.NewReader(stream)
	fr := frameReader{r: bufio.NewReader(src), max: DefaultMaxFrameSize, buf: make([]byte, 0, 1024)}
	var got Message
	allocs := testing.AllocsPerRun(1000, func() {
		src.Reset(stream)
		fr.r.Reset(src)
		for range 2 {
			_, _, body, err := fr.next()
			if err != nil {
				t.Fatal(err)
			}
			if err := decodeMessage(body, &got, true); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("reading two heartbeat frames: %v allocs/op, want 0", allocs)
	}
}

func TestFrameReaderRefusesFrameOverMaxFrameSize(t *testing.T) {
	hdr := []byte{0xff, 0xff, 0xff, 0xff, wireVersion, frameMessage} // claims 4 GiB
	fr := frameReader{r: bufio.NewReader(bytes.NewReader(hdr)), max: DefaultMaxFrameSize}
	if _, _, _, err := fr.next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
}

func TestFrameReaderAllocatesOnlyForBytesThatArrive(t *testing.T) {
	// A frame claims 60 MiB (under the limit) but its sender stops after
	// 100 bytes: the reader must not have reserved the 60 MiB.
	stream := append([]byte{0, 0, 0, 0, wireVersion, frameMessage}, make([]byte, 100)...)
	binary.BigEndian.PutUint32(stream, 60<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fr := frameReader{r: bufio.NewReader(bytes.NewReader(stream)), max: DefaultMaxFrameSize}
	_, _, _, err := fr.next()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF for the truncated frame", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Fatalf("reading 100 bytes of a frame claiming 60 MiB allocated %d bytes", grew)
	}
}

func TestHandshakeHelloRoundTripsAndPolicyRefusesStrangers(t *testing.T) {
	h := hello{clusterID: 42, from: 2, to: 1, lane: laneBulk}
	frame := appendHelloFrame(nil, h)
	got, err := decodeHello(frame[4], frame[5], frame[frameHeaderSize:])
	if err != nil || got != h {
		t.Fatalf("decodeHello = %+v, %v; want %+v", got, err, h)
	}
	policy := helloPolicy{clusterID: 42, self: 1, known: func(id NodeID) bool { return id == 2 || id == 3 }}
	if err := policy.check(h); err != nil {
		t.Fatalf("valid hello refused: %v", err)
	}
	cases := map[ackStatus]hello{
		ackWrongCluster: {clusterID: 7, from: 2, to: 1},
		ackWrongTarget:  {clusterID: 42, from: 2, to: 3},
		ackUnknownNode:  {clusterID: 42, from: 9, to: 1},
	}
	for want, h := range cases {
		var he *HandshakeError
		if err := policy.check(h); !errors.As(err, &he) || he.status != want {
			t.Errorf("hello %+v: err = %v, want status %v", h, err, want)
		}
	}
	self := hello{clusterID: 42, from: 1, to: 1}
	if err := policy.check(self); !errors.Is(err, ErrHandshakeRefused) {
		t.Errorf("hello claiming to be the acceptor itself: err = %v, want refusal", err)
	}
}

func TestHandshakeRefusalCarriesTheAcceptorsReason(t *testing.T) {
	frame := appendAckFrame(nil, ackWrongCluster, "cluster ID 7, this node is in cluster 42")
	err := decodeAck(frame[4], frame[5], frame[frameHeaderSize:])
	var he *HandshakeError
	if !errors.As(err, &he) || he.status != ackWrongCluster || !bytes.Contains([]byte(he.Reason), []byte("cluster 42")) {
		t.Fatalf("decodeAck = %v; want a wrong-cluster refusal with the reason", err)
	}
	ok := appendAckFrame(nil, ackOK, "")
	if err := decodeAck(ok[4], ok[5], ok[frameHeaderSize:]); err != nil {
		t.Fatalf("accepting ack decoded as %v", err)
	}
	if err := decodeAck(wireVersion+1, frameHelloAck, ok[frameHeaderSize:]); !errors.Is(err, ErrHandshakeRefused) {
		t.Fatalf("ack in another version: err = %v, want refusal", err)
	}
	bad := appendHelloFrame(nil, hello{})
	if _, err := decodeHello(wireVersion+1, frameHello, bad[frameHeaderSize:]); !errors.Is(err, ErrHandshakeRefused) {
		t.Fatalf("hello in another version: err = %v, want refusal", err)
	}
}

// benchMessages are the messages benchmarked per type.
func benchMessages() []struct {
	name string
	m    Message
} {
	s := sampleMessages()
	ents := func(n, size int) []Entry {
		out := make([]Entry, n)
		for i := range out {
			out[i] = Entry{Index: uint64(1000 + i), Term: 9, Data: bytes.Repeat([]byte{'x'}, size)}
		}
		return out
	}
	return []struct {
		name string
		m    Message
	}{
		{"Heartbeat", s["Heartbeat"]},
		{"HeartbeatResp", s["HeartbeatResp"]},
		{"Vote", s["Vote"]},
		{"VoteResp", s["VoteResp"]},
		{"AppResp", s["AppResp"]},
		{"App1x128B", Message{Type: MsgApp, From: 1, To: 2, Term: 9, Index: 999, LogTerm: 9, Commit: 998, Entries: ents(1, 128)}},
		{"App64x1KiB", Message{Type: MsgApp, From: 1, To: 2, Term: 9, Index: 999, LogTerm: 9, Commit: 998, Entries: ents(64, 1024)}},
	}
}

func BenchmarkCodecEncode(b *testing.B) {
	for _, bm := range benchMessages() {
		b.Run(bm.name, func(b *testing.B) {
			buf := appendMessageFrame(nil, &bm.m)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = appendMessageFrame(buf[:0], &bm.m)
			}
		})
	}
}

func BenchmarkCodecDecode(b *testing.B) {
	for _, bm := range benchMessages() {
		body := appendMessage(nil, &bm.m)
		// owned: as the transport decodes, entries copied out of the frame.
		// reused: entries alias the frame and reuse the Message's slice.
		for _, own := range []bool{true, false} {
			mode := "owned"
			if !own {
				mode = "reused"
			}
			b.Run(bm.name+"/"+mode, func(b *testing.B) {
				var m Message
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if err := decodeMessage(body, &m, own); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestMessageBinaryEncodingRoundTripsAndRefusesGarbage(t *testing.T) {
	for name, m := range sampleMessages() {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Message
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(m, got, equateEmpty); diff != "" {
			t.Fatalf("%s: round trip changed the message (-sent +got):\n%s", name, diff)
		}
		appended, _ := m.AppendBinary([]byte("prefix"))
		if !bytes.Equal(appended[len("prefix"):], b) {
			t.Fatalf("%s: AppendBinary differs from MarshalBinary", name)
		}
		for _, bad := range [][]byte{b[:len(b)-1], append(slices.Clone(b), 0), {0xff, 0xff}} {
			if err := got.UnmarshalBinary(bad); !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("%s: decoding %d damaged bytes: %v, want ErrMalformedFrame", name, len(bad), err)
			}
		}
	}
}
