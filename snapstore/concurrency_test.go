package snapstore

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/raftline/raft"
)

// TestConcurrentWritersAndReadersSeeOnlyCompleteSnapshots runs several
// writers and readers at once (mostly for the race detector): readers must
// only ever read intact snapshots (a snapshot removed between List and
// Open is reported not found, never half there), and the store ends with
// the newest two.
func TestConcurrentWritersAndReadersSeeOnlyCompleteSnapshots(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	defer s.Close()
	const writers, perWriter = 3, 8
	done := make(chan struct{})
	errc := make(chan error, 8)
	var readers sync.WaitGroup
	for range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := readAllListed(s); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var ws sync.WaitGroup
	for w := range writers {
		ws.Add(1)
		go func() {
			defer ws.Done()
			for i := range perWriter {
				index := uint64(100*(w+1) + i)
				data := snapData(index, 20_000+1000*i)
				k, err := s.Create()
				if err == nil {
					_, err = k.Write(data)
				}
				if err == nil {
					err = k.Commit(metaFor(index, 1, data))
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	ws.Wait()
	close(done)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	got := mustList(t, s)
	if want := []uint64{100*writers + perWriter - 1, 100*writers + perWriter - 2}; fmt.Sprint(indexes(got)) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want %v", indexes(got), want)
	}
	checkOnlySnapshotFiles(t, dir, 2)
}

// readAllListed reads every snapshot s lists, verified.
func readAllListed(s *Store) error {
	metas, err := s.List()
	if err != nil {
		return err
	}
	for _, m := range metas {
		data, err := openVerified(s, m)
		if errors.Is(err, raft.ErrSnapshotNotFound) {
			continue // removed by retention since List
		}
		if err != nil {
			return fmt.Errorf("reading %v: %w", m, err)
		}
		if !bytes.Equal(data, snapData(m.Index, int(m.Size))) {
			return fmt.Errorf("snapshot %d holds other bytes", m.Index)
		}
	}
	return nil
}

// Writers racing to commit the same index and term leave exactly one of
// their snapshots, intact.
func TestConcurrentCommitsAtOneIndexLeaveOneIntactSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	defer s.Close()
	var wg sync.WaitGroup
	datas := make([][]byte, 4)
	for i := range datas {
		datas[i] = snapData(uint64(50+i), 10_000+i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, _ := s.Create()
			k.Write(datas[i])
			if err := k.Commit(metaFor(7, 2, datas[i])); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got := mustList(t, s)
	if len(got) != 1 {
		t.Fatalf("listed %d snapshots at one index and term, want 1", len(got))
	}
	data, err := openVerified(s, got[0])
	if err != nil || !bytes.Equal(data, datas[got[0].Size-10_000]) {
		t.Fatalf("the kept snapshot does not read back: %v", err)
	}
	checkOnlySnapshotFiles(t, dir, 1)
}

// Writing and reading a snapshot stream it: the heap allocated stays far
// below the snapshot's size.
func TestWritingAndReadingDoNotHoldTheSnapshotInMemory(t *testing.T) {
	const size, chunk = 32 << 20, 1 << 20
	s := openT(t, t.TempDir(), Options{})
	defer s.Close()
	buf := make([]byte, chunk)
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var meta raft.SnapshotMeta
	wrote := allocated(func() {
		k, err := s.Create()
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < size; off += chunk {
			if _, err := k.Write(buf); err != nil {
				t.Fatal(err)
			}
		}
		meta = metaFor(1, 1, nil)
		meta.Size, meta.Checksum = size, k.(*sink).crc
		if err := k.Commit(meta); err != nil {
			t.Fatal(err)
		}
	})
	read := allocated(func() {
		r, err := s.Open(meta)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for off := int64(0); off < size; off += chunk {
			if _, err := r.ReadAt(buf, off); err != nil {
				t.Fatal(err)
			}
		}
	})
	if wrote > 4<<20 || read > 1<<20 {
		t.Fatalf("a %d MiB snapshot allocated %d bytes to write and %d to read", size>>20, wrote, read)
	}
	t.Logf("%d MiB snapshot: %d bytes allocated writing, %d reading", size>>20, wrote, read)
}
