package snapstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/raftline/raft"
)

// File names. A snapshot is two files sharing a base name
// <index>-<term>-<seq>, each part 16 hex digits: the data (.snap) and its
// metadata (.meta). seq numbers the store's writes, so a snapshot that
// replaces one at the same index and term gets files of its own and never
// overwrites the one it replaces. Sorting names sorts by index.
const (
	dataExt = ".snap"
	metaExt = ".meta"
	tmpExt  = ".tmp"
	// createPrefix names a sink's data file until Commit knows its index.
	createPrefix = "create-"
)

func baseName(index, term, seq uint64) string {
	return fmt.Sprintf("%016x-%016x-%016x", index, term, seq)
}

// parseBase returns the index, term and seq in a base name.
func parseBase(base string) (index, term, seq uint64, ok bool) {
	parts := strings.Split(base, "-")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var vals [3]uint64
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 16, 64)
		if len(p) != 16 || err != nil {
			return 0, 0, 0, false
		}
		vals[i] = v
	}
	return vals[0], vals[1], vals[2], true
}

func createName(seq uint64) string { return fmt.Sprintf("%s%016x%s", createPrefix, seq, tmpExt) }

// Metadata file format, little endian:
//
//	offset 0   u32  magic (metaMagic, which includes the format version)
//	offset 4   u64  index
//	offset 12  u64  term
//	offset 20  u64  config index
//	offset 28  u64  data size
//	offset 36  u32  data checksum (CRC-32C)
//	offset 40  u32  configuration length L
//	offset 44  L    configuration (raft.EncodeConfiguration; empty for none)
//	offset 44+L u32 CRC-32C of bytes 0..44+L
const (
	metaMagic = 0x524c5301 // "RLS" and format version 1
	metaFixed = 44
	metaSize  = metaFixed + 4 // without the configuration
	// maxMetaSize bounds what reading a metadata file may allocate; a
	// configuration of the most servers raft accepts with long addresses
	// fits many times over.
	maxMetaSize = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeMeta returns the metadata file for meta. It refuses a meta the
// store could not read back, so a commit never makes a snapshot that later
// lists as damaged.
func encodeMeta(meta raft.SnapshotMeta) ([]byte, error) {
	if meta.Size < 0 {
		return nil, fmt.Errorf("negative size %d", meta.Size)
	}
	var conf []byte
	if len(meta.Config.Servers) > 0 {
		conf = raft.EncodeConfiguration(meta.Config)
		if _, err := raft.DecodeConfiguration(conf); err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
	}
	if len(conf) > maxMetaSize-metaSize {
		return nil, fmt.Errorf("configuration of %d bytes is too large", len(conf))
	}
	b := make([]byte, metaFixed, metaSize+len(conf))
	binary.LittleEndian.PutUint32(b[0:], metaMagic)
	binary.LittleEndian.PutUint64(b[4:], meta.Index)
	binary.LittleEndian.PutUint64(b[12:], meta.Term)
	binary.LittleEndian.PutUint64(b[20:], meta.ConfigIndex)
	binary.LittleEndian.PutUint64(b[28:], uint64(meta.Size))
	binary.LittleEndian.PutUint32(b[36:], meta.Checksum)
	binary.LittleEndian.PutUint32(b[40:], uint32(len(conf)))
	b = append(b, conf...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// errBadMeta is wrapped (with raft.ErrSnapshotCorrupt) by every failure to
// decode a metadata file.
var errBadMeta = errors.New("bad metadata")

// decodeMeta parses a metadata file. It never panics on damaged input.
func decodeMeta(b []byte) (raft.SnapshotMeta, error) {
	bad := func(format string, args ...any) (raft.SnapshotMeta, error) {
		return raft.SnapshotMeta{}, fmt.Errorf("%w: %w: %s", raft.ErrSnapshotCorrupt, errBadMeta, fmt.Sprintf(format, args...))
	}
	if len(b) < metaSize {
		return bad("%d bytes, shorter than %d", len(b), metaSize)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return bad("checksum mismatch")
	}
	if m := binary.LittleEndian.Uint32(b[0:]); m != metaMagic {
		return bad("magic %#x, want %#x (unknown format)", m, metaMagic)
	}
	if n := binary.LittleEndian.Uint32(b[40:]); uint64(n) != uint64(len(body)-metaFixed) {
		return bad("configuration length %d in a file of %d bytes", n, len(b))
	}
	meta := raft.SnapshotMeta{
		Index:       binary.LittleEndian.Uint64(b[4:]),
		Term:        binary.LittleEndian.Uint64(b[12:]),
		ConfigIndex: binary.LittleEndian.Uint64(b[20:]),
		Size:        int64(binary.LittleEndian.Uint64(b[28:])),
		Checksum:    binary.LittleEndian.Uint32(b[36:]),
	}
	if meta.Size < 0 {
		return bad("negative size %d", meta.Size)
	}
	if conf := body[metaFixed:]; len(conf) > 0 {
		c, err := raft.DecodeConfiguration(conf)
		if err != nil {
			return bad("configuration: %v", err)
		}
		meta.Config = c
	}
	return meta, nil
}
