package raft

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countingStorage records the lowest index a caller asked Entries for.
type countingStorage struct {
	*MemoryStorage
	lowest uint64
	read   int
}

func (s *countingStorage) Entries(lo, hi, maxBytes uint64) ([]Entry, error) {
	if s.read == 0 || lo < s.lowest {
		s.lowest = lo
	}
	ents, err := s.MemoryStorage.Entries(lo, hi, maxBytes)
	s.read += len(ents)
	return ents, err
}

// A restart must not read the entries a snapshot already covers to find the
// configuration: the log kept behind a snapshot may be very long.
func TestLatestConfigurationsReadsOnlyEntriesAfterTheSnapshot(t *testing.T) {
	three := Configuration{Servers: []Server{{ID: 1}, {ID: 2}, {ID: 3}}}
	four := Configuration{Servers: append(append([]Server(nil), three.Servers...), Server{ID: 4, Suffrage: Learner})}
	tests := []struct {
		name         string
		configAfter  bool // a configuration entry after the snapshot
		wantLatest   Configuration
		wantLatestAt uint64
		wantPrevAt   uint64
	}{
		{"snapshot's configuration in force", false, three, 1, 1},
		{"a later configuration entry wins", true, four, 9500, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &countingStorage{MemoryStorage: NewMemoryStorage()}
			ents := make([]Entry, 10_000)
			for i := range ents {
				ents[i] = Entry{Index: uint64(i + 1), Term: 1, Type: EntryNormal}
			}
			ents[0] = Entry{Index: 1, Term: 1, Type: EntryConfig, Data: EncodeConfiguration(three)}
			if tt.configAfter {
				ents[9499] = Entry{Index: 9500, Term: 1, Type: EntryConfig, Data: EncodeConfiguration(four)}
			}
			require.NoError(t, s.Save(HardState{Term: 1, Commit: 10_000}, ents))
			snap := SnapshotMeta{Index: 9000, Term: 1, Config: three, ConfigIndex: 1}

			latest, prev, err := latestConfigurations(s, snap)
			require.NoError(t, err)
			require.Equal(t, tt.wantLatest, latest.conf)
			require.Equal(t, tt.wantLatestAt, latest.index)
			require.Equal(t, tt.wantPrevAt, prev.index)
			require.Greater(t, s.lowest, snap.Index, "read entries the snapshot covers")
			require.LessOrEqual(t, s.read, 1000)
		})
	}
}

// The automatic snapshot policy: a threshold makes a snapshot due, the
// size ratio holds it back while the commands since the last snapshot are
// small next to that snapshot, so a large state is not rewritten for every
// few thousand writes, and the interval holds it back until enough time
// has passed, unless SnapshotIntervalOverrun thresholds have piled up.
func TestSnapshotPolicyDue(t *testing.T) {
	tests := []struct {
		name     string
		policy   snapshotPolicy
		entries  int
		bytes    int // per entry
		lastSize int64
		since    time.Duration // since the last snapshot
		want     bool
	}{
		{"below the entry threshold", snapshotPolicy{entries: 100, ratio: 4}, 99, 10, 0, 0, false},
		{"entry threshold, no snapshot yet", snapshotPolicy{entries: 100, ratio: 4}, 100, 10, 0, 0, true},
		{"entry threshold, small snapshot", snapshotPolicy{entries: 100, ratio: 4}, 100, 10, 4000, 0, true},
		{"entry threshold, large snapshot holds it back", snapshotPolicy{entries: 100, ratio: 4}, 100, 10, 4004, 0, false},
		{"enough commands next to the large snapshot", snapshotPolicy{entries: 100, ratio: 4}, 1000, 10, 40000, 0, true},
		{"ratio off", snapshotPolicy{entries: 100}, 100, 10, 1 << 30, 0, true},
		{"byte threshold", snapshotPolicy{bytes: 500, ratio: 4}, 50, 10, 2000, 0, true},
		{"byte threshold, large snapshot holds it back", snapshotPolicy{bytes: 500, ratio: 4}, 50, 10, 2004, 0, false},
		{"automatic snapshots off", snapshotPolicy{entries: -1, ratio: 4}, 1 << 20, 10, 0, time.Hour, false},
		{"interval holds a due snapshot back", snapshotPolicy{entries: 100, interval: time.Second}, 100, 10, 0, 999 * time.Millisecond, false},
		{"interval passed", snapshotPolicy{entries: 100, interval: time.Second}, 100, 10, 0, time.Second, true},
		{"interval alone does not make a snapshot due", snapshotPolicy{entries: 100, interval: time.Second}, 99, 10, 0, time.Hour, false},
		{"entries just short of the overrun wait", snapshotPolicy{entries: 100, interval: time.Second}, SnapshotIntervalOverrun*100 - 1, 10, 0, time.Millisecond, false},
		{"entry overrun ends the wait", snapshotPolicy{entries: 100, interval: time.Second}, SnapshotIntervalOverrun * 100, 10, 0, time.Millisecond, true},
		{"byte overrun ends the wait", snapshotPolicy{bytes: 500, interval: time.Second}, SnapshotIntervalOverrun * 50, 10, 0, time.Millisecond, true},
		{"the ratio still holds an overrun back", snapshotPolicy{entries: 100, ratio: 4, interval: time.Second}, SnapshotIntervalOverrun * 100, 10, 1 << 30, time.Hour, false},
	}
	t0 := time.Unix(1_000_000, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.policy
			p.last = t0
			ents := make([]Entry, tt.entries)
			for i := range ents {
				ents[i].Data = make([]byte, tt.bytes)
			}
			p.applied(ents)
			require.Equal(t, tt.want, p.due(tt.lastSize, fixedClock{t0.Add(tt.since)}))
		})
	}
}

// fixedClock is a Clock that always says the same time.
type fixedClock struct{ now time.Time }

func (c fixedClock) Now() time.Time                   { return c.now }
func (c fixedClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }
