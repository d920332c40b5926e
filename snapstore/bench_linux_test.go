//go:build linux

package snapstore

import (
	"hash/crc32"
	"syscall"
	"testing"

	"github.com/raftline/raft"
)

// BenchmarkSnapshot256MiB writes a 256 MiB snapshot in 1 MiB writes and
// commits it (write), then reads it back in 1 MiB chunks checking its
// CRC-32C, as a restore does: straight after writing, from the page cache
// (read-warm), and after asking the kernel to drop the file's cached pages
// (read-cold, from the disk):
//
//	go test -run '^$' -bench Snapshot256MiB -benchtime 3x ./snapstore/
func BenchmarkSnapshot256MiB(b *testing.B) {
	const size, chunk = 256 << 20, 1 << 20
	s := openT(b, b.TempDir(), Options{Retain: 1})
	defer s.Close()
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i * 31)
	}
	var meta raft.SnapshotMeta
	b.Run("write", func(b *testing.B) {
		b.SetBytes(size)
		for i := uint64(1); b.Loop(); i++ {
			k, err := s.Create()
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < size; off += chunk {
				if _, err := k.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			meta = raft.SnapshotMeta{Index: i, Term: 1, Size: size, Checksum: k.(*sink).crc}
			if err := k.Commit(meta); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, cold := range []bool{false, true} {
		name := "read-warm"
		if cold {
			name = "read-cold"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				r, err := s.Open(meta)
				if err != nil {
					b.Fatal(err)
				}
				if cold {
					b.StopTimer()
					dropCache(b, r)
					b.StartTimer()
				}
				crc := uint32(0)
				for off := int64(0); off < size; off += chunk {
					n, err := r.ReadAt(buf, off)
					if err != nil {
						b.Fatal(err)
					}
					crc = crc32.Update(crc, castagnoli, buf[:n])
				}
				r.Close()
				if crc != meta.Checksum {
					b.Fatal("checksum mismatch")
				}
			}
		})
	}
}

// dropCache asks the kernel to evict the file's (clean) cached pages.
func dropCache(b *testing.B, r raft.SnapshotReader) {
	const fadvDontNeed = 4
	f := r.(osReadFile)
	if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
		b.Fatal(errno)
	}
}
