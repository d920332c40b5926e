package raft

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ents(terms ...uint64) []Entry {
	out := make([]Entry, len(terms))
	for i, t := range terms {
		out[i] = Entry{Index: uint64(i + 1), Term: t, Data: []byte{byte(i)}}
	}
	return out
}

func TestMemoryStorageSaveAppendsAndTruncatesConflictingSuffix(t *testing.T) {
	tests := []struct {
		name      string
		save      []Entry
		wantTerms []uint64
		wantErr   error
	}{
		{"append after the end", []Entry{{Index: 4, Term: 2}}, []uint64{1, 1, 2, 2}, nil},
		{"overwrite the tail", []Entry{{Index: 2, Term: 3}}, []uint64{1, 3}, nil},
		{"overwrite everything", []Entry{{Index: 1, Term: 4}, {Index: 2, Term: 4}}, []uint64{4, 4}, nil},
		{"gap", []Entry{{Index: 5, Term: 2}}, []uint64{1, 1, 2}, ErrLogGap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewMemoryStorage()
			if err := s.Save(HardState{}, ents(1, 1, 2)); err != nil {
				t.Fatal(err)
			}
			if err := s.Save(HardState{}, tt.save); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Save: %v, want %v", err, tt.wantErr)
			}
			last, _ := s.LastIndex()
			var terms []uint64
			for i := uint64(1); i <= last; i++ {
				term, err := s.Term(i)
				if err != nil {
					t.Fatal(err)
				}
				terms = append(terms, term)
			}
			if diff := cmp.Diff(tt.wantTerms, terms); diff != "" {
				t.Fatalf("terms after save (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMemoryStorageReturnedEntriesNeverChange(t *testing.T) {
	s := NewMemoryStorage()
	s.Save(HardState{}, ents(1, 1, 1))
	got, err := s.Entries(1, 4, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	before := append([]Entry(nil), got...)
	s.Save(HardState{}, []Entry{{Index: 2, Term: 9}, {Index: 3, Term: 9}, {Index: 4, Term: 9}})
	if diff := cmp.Diff(before, got); diff != "" {
		t.Fatalf("a truncating Save changed entries handed out earlier (-before +after):\n%s", diff)
	}
}

func TestMemoryStorageCompactKeepsTermOfCompactionPoint(t *testing.T) {
	s := NewMemoryStorage()
	s.Save(HardState{}, ents(1, 2, 3, 4))
	if err := s.Compact(2); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 3 {
		t.Fatalf("FirstIndex after Compact(2) = %d, want 3", first)
	}
	if term, err := s.Term(2); err != nil || term != 2 {
		t.Fatalf("Term(2) after compaction = %d, %v; want 2", term, err)
	}
	if _, err := s.Term(1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Term(1) after compaction: %v, want ErrCompacted", err)
	}
	if _, err := s.Entries(2, 4, 1<<20); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Entries(2, 4) after compaction: %v, want ErrCompacted", err)
	}
	if _, err := s.Entries(3, 6, 1<<20); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Entries past the end: %v, want ErrUnavailable", err)
	}
}

func TestEntriesAreLimitedBySizeButNeverEmpty(t *testing.T) {
	s := NewMemoryStorage()
	big := make([]byte, 100)
	s.Save(HardState{}, []Entry{{Index: 1, Term: 1, Data: big}, {Index: 2, Term: 1, Data: big}, {Index: 3, Term: 1, Data: big}})
	for _, tt := range []struct {
		max  uint64
		want int
	}{{1, 1}, {250, 2}, {1 << 20, 3}} {
		got, err := s.Entries(1, 4, tt.max)
		if err != nil || len(got) != tt.want {
			t.Fatalf("Entries with maxBytes %d: %d entries (%v), want %d", tt.max, len(got), err, tt.want)
		}
	}
}

func TestConfigurationRoundTripsAndRejectsMalformed(t *testing.T) {
	conf := Configuration{Servers: []Server{{ID: 1, Address: "a:1"}, {ID: 2, Address: "b:2", Suffrage: Learner}, {ID: 7}}}
	got, err := DecodeConfiguration(EncodeConfiguration(conf))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(conf, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	enc := EncodeConfiguration(conf)
	for _, bad := range [][]byte{nil, {0}, {2, 1}, enc[:len(enc)-1], append(append([]byte(nil), enc...), 0),
		EncodeConfiguration(Configuration{Servers: []Server{{ID: 1}, {ID: 1}}}),
		EncodeConfiguration(Configuration{Servers: []Server{{ID: 1, Suffrage: Learner}}})} {
		if _, err := DecodeConfiguration(bad); err == nil {
			t.Fatalf("malformed configuration %x accepted", bad)
		}
	}
}

func FuzzDecodeConfiguration(f *testing.F) {
	f.Add(EncodeConfiguration(Configuration{Servers: []Server{{ID: 1, Address: "x:1"}, {ID: 2}}}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		conf, err := DecodeConfiguration(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes and is valid.
		if err := conf.Validate(); err != nil {
			t.Fatalf("decoded an invalid configuration: %v", err)
		}
		again, err := DecodeConfiguration(EncodeConfiguration(conf))
		if err != nil || !cmp.Equal(conf, again) {
			t.Fatalf("re-encoding changed the configuration: %v", err)
		}
	})
}
