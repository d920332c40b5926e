package snapstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftline/raft"
)

func TestMetaRoundTrips(t *testing.T) {
	tests := []raft.SnapshotMeta{
		metaFor(7, 3, snapData(7, 100)),
		{Index: 1, Term: 1},
		{Index: 1<<64 - 1, Term: 1<<62 + 5, ConfigIndex: 9, Size: 1 << 40, Checksum: 0xffffffff, Config: testConfig},
	}
	for _, want := range tests {
		b, err := encodeMeta(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMeta(b)
		if err != nil || !got.Same(want) || got.ConfigIndex != want.ConfigIndex || len(got.Config.Servers) != len(want.Config.Servers) {
			t.Fatalf("decoded %+v, %v; want %+v", got, err, want)
		}
	}
}

// Every truncation and every single bit flip of a metadata file is refused
// with raft.ErrSnapshotCorrupt, never accepted as some other meta.
func TestDamagedMetaNeverDecodes(t *testing.T) {
	b, err := encodeMeta(metaFor(7, 3, snapData(7, 100)))
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n++ {
		if _, err := decodeMeta(b[:n]); !errors.Is(err, raft.ErrSnapshotCorrupt) {
			t.Fatalf("metadata cut to %d of %d bytes: %v, want ErrSnapshotCorrupt", n, len(b), err)
		}
	}
	for bit := 0; bit < 8*len(b); bit++ {
		c := bytes.Clone(b)
		c[bit/8] ^= 1 << (bit % 8)
		if _, err := decodeMeta(c); !errors.Is(err, raft.ErrSnapshotCorrupt) {
			t.Fatalf("bit %d flipped: %v, want ErrSnapshotCorrupt", bit, err)
		}
	}
}

// damageFixture is a store directory holding two snapshots, and the file
// names of the newer one.
type damageFixture struct {
	dir                string
	older, newer       raft.SnapshotMeta
	newerData          []byte
	dataFile, metaFile string
}

func newDamageFixture(t *testing.T) damageFixture {
	t.Helper()
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	f := damageFixture{dir: dir, older: commitSnap(t, s, 5, 1, snapData(5, 700))}
	f.newerData = snapData(9, 300)
	f.newer = commitSnap(t, s, 9, 2, f.newerData)
	s.Close()
	base := filepath.Join(dir, baseName(9, 2, 2))
	f.dataFile, f.metaFile = base+dataExt, base+metaExt
	return f
}

// listAfter opens the store, returning what it lists, whether a reader of
// the newer snapshot reads it back verified, and what was logged.
func (f damageFixture) listAfter(t *testing.T) (listed []raft.SnapshotMeta, newerErr error, logged string) {
	t.Helper()
	var log bytes.Buffer
	s := openT(t, f.dir, Options{Logger: slogTo(&log)})
	defer s.Close()
	listed = mustList(t, s)
	got, err := openVerified(s, f.newer)
	if err == nil && !bytes.Equal(got, f.newerData) {
		t.Fatal("the newer snapshot read back verified but with other bytes")
	}
	return listed, err, log.String()
}

// TestTruncatedDataFileIsNeverServed cuts the newest snapshot's data file
// at every length: the store must then skip it (a size check is a stat,
// cheap enough for every List) and list the older one, and never hand out
// bytes that do not match its meta.
func TestTruncatedDataFileIsNeverServed(t *testing.T) {
	f := newDamageFixture(t)
	for n := int64(0); n <= f.newer.Size; n++ {
		if err := os.WriteFile(f.dataFile, f.newerData[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		listed, newerErr, logged := f.listAfter(t)
		if n == f.newer.Size {
			// Cut to its own length: intact again.
			if newerErr != nil || len(listed) != 2 {
				t.Fatalf("intact snapshot: listed %v, read %v", indexes(listed), newerErr)
			}
			break
		}
		if !sameMetas(listed, []raft.SnapshotMeta{f.older}) {
			t.Fatalf("data cut to %d bytes: listed %v, want only the older snapshot", n, indexes(listed))
		}
		if !errors.Is(newerErr, raft.ErrSnapshotNotFound) {
			t.Fatalf("data cut to %d bytes: Open %v, want ErrSnapshotNotFound", n, newerErr)
		}
		if !strings.Contains(logged, "skipping snapshot") || !strings.Contains(logged, "bytes") {
			t.Fatalf("data cut to %d bytes: skip not logged: %s", n, logged)
		}
	}
}

// TestTruncatedMetaFileSkipsTheSnapshot cuts the newest snapshot's
// metadata at every length: it must be skipped (and logged) and the older
// one listed.
func TestTruncatedMetaFileSkipsTheSnapshot(t *testing.T) {
	f := newDamageFixture(t)
	full, err := os.ReadFile(f.metaFile)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(full); n++ {
		if err := os.WriteFile(f.metaFile, full[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		listed, newerErr, logged := f.listAfter(t)
		if !sameMetas(listed, []raft.SnapshotMeta{f.older}) || !errors.Is(newerErr, raft.ErrSnapshotNotFound) {
			t.Fatalf("metadata cut to %d bytes: listed %v, Open %v", n, indexes(listed), newerErr)
		}
		if !strings.Contains(logged, "level=WARN") || !strings.Contains(logged, "corrupt") {
			t.Fatalf("metadata cut to %d bytes: skip not logged: %s", n, logged)
		}
	}
}

func TestDamagedMetaOrMissingDataSkipsTheSnapshot(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, f damageFixture)
	}{
		{"flipped bit in the metadata", func(t *testing.T, f damageFixture) {
			b, _ := os.ReadFile(f.metaFile)
			b[10] ^= 0x40
			os.WriteFile(f.metaFile, b, 0o644)
		}},
		{"metadata of another snapshot under this name", func(t *testing.T, f damageFixture) {
			b, _ := encodeMeta(metaFor(8, 2, f.newerData))
			os.WriteFile(f.metaFile, b, 0o644)
		}},
		{"data file missing", func(t *testing.T, f damageFixture) { os.Remove(f.dataFile) }},
		{"data file longer than its meta says", func(t *testing.T, f damageFixture) {
			os.WriteFile(f.dataFile, append(bytes.Clone(f.newerData), 0), 0o644)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newDamageFixture(t)
			tt.damage(t, f)
			listed, newerErr, logged := f.listAfter(t)
			if !sameMetas(listed, []raft.SnapshotMeta{f.older}) || !errors.Is(newerErr, raft.ErrSnapshotNotFound) {
				t.Fatalf("listed %v, Open %v; want the older snapshot only", indexes(listed), newerErr)
			}
			if !strings.Contains(logged, "skipping snapshot") {
				t.Fatalf("skip not logged: %s", logged)
			}
			// A damaged snapshot is left for inspection until a newer
			// complete one is kept, then removed.
			if _, err := os.Stat(f.metaFile); err != nil {
				t.Fatalf("damaged snapshot removed while newest: %v", err)
			}
			s := openT(t, f.dir, Options{})
			defer s.Close()
			commitSnap(t, s, 12, 3, snapData(12, 10))
			if _, err := os.Stat(f.metaFile); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("damaged snapshot kept after a newer one: %v", err)
			}
		})
	}
}

// A flipped bit inside the data cannot be seen without reading it all, so
// the snapshot is still listed and opened; reading it with the library's
// check (CRC-32C over the bytes against meta.Checksum) fails.
func TestFlippedDataBitIsCaughtByTheChecksumOnRead(t *testing.T) {
	f := newDamageFixture(t)
	for _, off := range []int64{0, f.newer.Size / 2, f.newer.Size - 1} {
		t.Run("", func(t *testing.T) {
			b := bytes.Clone(f.newerData)
			b[off] ^= 0x08
			if err := os.WriteFile(f.dataFile, b, 0o644); err != nil {
				t.Fatal(err)
			}
			listed, newerErr, _ := f.listAfter(t)
			if len(listed) != 2 || !listed[0].Same(f.newer) {
				t.Fatalf("listed %v, want both snapshots", indexes(listed))
			}
			if !errors.Is(newerErr, raft.ErrSnapshotCorrupt) {
				t.Fatalf("reading a flipped bit at %d: %v, want ErrSnapshotCorrupt", off, newerErr)
			}
		})
	}
}

// readVerified, the check the tests above rely on, must accept the bytes
// of a snapshot and refuse any with a flipped bit or a wrong length.
func TestReadVerifiedDetectsEveryDamage(t *testing.T) {
	data := snapData(3, 5000)
	meta := metaFor(3, 1, data)
	if got, err := readVerified(bytes.NewReader(data), meta); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("intact data: %v", err)
	}
	for off := range data {
		b := bytes.Clone(data)
		b[off] ^= 1 << (off % 8)
		if _, err := readVerified(bytes.NewReader(b), meta); !errors.Is(err, raft.ErrSnapshotCorrupt) {
			t.Fatalf("bit flipped at %d: %v", off, err)
		}
	}
	if _, err := readVerified(bytes.NewReader(data[:len(data)-1]), meta); !errors.Is(err, raft.ErrSnapshotCorrupt) {
		t.Fatalf("short data: %v", err)
	}
}
