package wal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/raftline/raft"
)

func TestRecordsRoundTrip(t *testing.T) {
	e := raft.Entry{Index: 7, Term: 3, Type: raft.EntryConfig, Data: []byte("conf")}
	hs := raft.HardState{Term: 9, Vote: 2, Commit: 5}
	h := segmentHeader{seq: 4, prevIndex: 100, prevTerm: 8, hs: hs}
	tests := []struct {
		name  string
		buf   []byte
		typ   byte
		check func(t *testing.T, p []byte)
	}{
		{"entry", appendEntry(nil, &e), typeEntry, func(t *testing.T, p []byte) {
			got, err := decodeEntry(p)
			if err != nil || !sameEntry(got, e) {
				t.Fatalf("decoded %+v, %v; want %+v", got, err, e)
			}
		}},
		{"entry without data", appendEntry(nil, &raft.Entry{Index: 1, Term: 1}), typeEntry, func(t *testing.T, p []byte) {
			got, err := decodeEntry(p)
			if err != nil || got.Data != nil || got.Index != 1 {
				t.Fatalf("decoded %+v, %v", got, err)
			}
		}},
		{"hard state", appendState(nil, hs), typeState, func(t *testing.T, p []byte) {
			got, err := decodeState(p)
			if err != nil || got != hs {
				t.Fatalf("decoded %+v, %v; want %+v", got, err, hs)
			}
		}},
		{"segment header", appendSegmentHeader(nil, h), typeSegment, func(t *testing.T, p []byte) {
			got, err := decodeSegmentHeader(p)
			if err != nil || got != h {
				t.Fatalf("decoded %+v, %v; want %+v", got, err, h)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, p, n, err := decodeRecord(tt.buf)
			if err != nil || typ != tt.typ || n != len(tt.buf) {
				t.Fatalf("decodeRecord = type %#x, size %d, %v; want %#x, %d", typ, n, err, tt.typ, len(tt.buf))
			}
			tt.check(t, p)
		})
	}
}

func TestDecodeRecordClassifiesDamage(t *testing.T) {
	rec := appendEntry(nil, &raft.Entry{Index: 1, Term: 1, Data: []byte("hello, world")})
	flip := func(i int) []byte {
		b := append([]byte(nil), rec...)
		b[i] ^= 0x10
		return b
	}
	tests := []struct {
		name string
		buf  []byte
		want error
	}{
		{"zero header is the end", make([]byte, 40), errEnd},
		{"empty is the end", nil, errEnd},
		{"partial header", rec[:5], errShort},
		{"partial payload", rec[:len(rec)-3], errShort},
		{"flipped length bit", flip(0), errBadHeader},
		{"flipped type bit", flip(4), errBadHeader},
		{"flipped header check", flip(9), errBadHeader},
		{"flipped payload bit", flip(headerSize + 3), errBadCRC},
		{"flipped checksum bit", flip(len(rec) - 3), errBadCRC},
		{"missing end marker", append(append([]byte(nil), rec[:len(rec)-1]...), 0), errBadCRC},
		{"declared length over the cap", withLength(rec, maxPayload+1), errBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := decodeRecord(tt.buf)
			if !errors.Is(err, tt.want) {
				t.Fatalf("decodeRecord error %v, want %v", err, tt.want)
			}
		})
	}
}

// withLength returns a header declaring length n with a valid header
// check, as a writer with a bug (not a bit flip) would produce.
func withLength(rec []byte, n uint32) []byte {
	h := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(h[0:4], n)
	h[4] = rec[4]
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(h[0:8], castagnoli))
	return h
}
