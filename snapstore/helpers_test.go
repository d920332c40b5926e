package snapstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"testing"

	"github.com/raftline/raft"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openT(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// snapData is the content of a test snapshot: size bytes that depend on
// index, and (every 4 KiB) on the position, so a snapshot read back can be
// told from any other and a misplaced block from its neighbours. It copies
// blocks rather than setting bytes one by one: under the race detector
// that is what keeps the crash tests fast.
func snapData(index uint64, size int) []byte {
	var block [4096]byte
	for i := range block {
		block[i] = byte(uint64(i)*7 + index*13 + uint64(i>>8))
	}
	b := make([]byte, size)
	for off := 0; off < size; off += len(block) {
		binary.LittleEndian.PutUint64(block[:], uint64(off)^index)
		copy(b[off:], block[:])
	}
	return b
}

// testConfig is the configuration test snapshots carry.
var testConfig = raft.Configuration{Servers: []raft.Server{
	{ID: 1, Address: "10.0.0.1:7001"}, {ID: 2, Address: "10.0.0.2:7001"}, {ID: 3, Suffrage: raft.Learner},
}}

// metaFor describes data as the library would: size and CRC-32C computed
// from the bytes.
func metaFor(index, term uint64, data []byte) raft.SnapshotMeta {
	return raft.SnapshotMeta{Index: index, Term: term, Config: testConfig, ConfigIndex: index / 2,
		Size: int64(len(data)), Checksum: crc32.Checksum(data, castagnoli)}
}

// commitSnap writes data as the snapshot (index, term) and commits it.
func commitSnap(t testing.TB, s *Store, index, term uint64, data []byte) raft.SnapshotMeta {
	t.Helper()
	meta := metaFor(index, term, data)
	k, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := k.Commit(meta); err != nil {
		t.Fatalf("Commit(%v): %v", meta, err)
	}
	return meta
}

// readVerified reads a snapshot start to end the way the library does:
// in chunks, checking the bytes' CRC-32C and count against meta, and fails
// with raft.ErrSnapshotCorrupt when they do not match.
func readVerified(r io.ReaderAt, meta raft.SnapshotMeta) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096)
	crc := uint32(0)
	for off := int64(0); off < meta.Size; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), meta.Size-off)], off)
		out = append(out, buf[:n]...)
		crc = crc32.Update(crc, castagnoli, buf[:n])
		off += int64(n)
		if errors.Is(err, io.EOF) && off < meta.Size {
			return nil, fmt.Errorf("%w: ends after %d of %d bytes", raft.ErrSnapshotCorrupt, off, meta.Size)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}
	if crc != meta.Checksum {
		return nil, fmt.Errorf("%w: checksum %08x, meta says %08x", raft.ErrSnapshotCorrupt, crc, meta.Checksum)
	}
	return out, nil
}

// openVerified opens meta in s and reads it with readVerified.
func openVerified(s *Store, meta raft.SnapshotMeta) ([]byte, error) {
	r, err := s.Open(meta)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readVerified(r, meta)
}

func mustList(t testing.TB, s *Store) []raft.SnapshotMeta {
	t.Helper()
	metas, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	return metas
}

func indexes(metas []raft.SnapshotMeta) []uint64 {
	out := make([]uint64, len(metas))
	for i, m := range metas {
		out[i] = m.Index
	}
	return out
}

// slogTo returns a logger writing text to w.
func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
