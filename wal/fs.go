package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/raftline/raft/internal/fsutil"
)

// fileSystem is the narrow set of file operations the WAL uses. It exists
// so tests can substitute a fault-injecting implementation that cuts writes
// short, fails syncs, drops unsynced data and flips bits; production code
// always uses osFS.
type fileSystem interface {
	// MkdirAll creates dir and its parents.
	MkdirAll(dir string) error
	// Lock takes an exclusive lock on dir held until the Closer is closed.
	Lock(dir string) (io.Closer, error)
	// ReadDir lists the names of the entries of dir.
	ReadDir(dir string) ([]string, error)
	// Create creates a new file, failing if it exists.
	Create(name string) (file, error)
	// Open opens an existing file for reading and writing.
	Open(name string) (file, error)
	// Rename atomically renames a file.
	Rename(from, to string) error
	// Remove deletes a file.
	Remove(name string) error
	// SyncDir makes creations, renames and removals in dir durable.
	SyncDir(dir string) error
}

// file is an open segment file.
type file interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync makes the file's written data durable.
	Sync() error
	// Size returns the file's current size.
	Size() (int64, error)
	// Preallocate reserves size bytes of zeros (never shrinking the file)
	// so appends need not allocate blocks or change the file size.
	Preallocate(size int64) error
	// Truncate sets the file's size; a following Sync makes it durable.
	Truncate(size int64) error
}

// osFS is the real file system.
type osFS struct{}

func (osFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// Lock takes the directory's flock (see fsutil.LockDir).
func (osFS) Lock(dir string) (io.Closer, error) {
	l, err := fsutil.LockDir(dir)
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, filepath.Join(dir, fsutil.LockFileName))
	}
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	return l, nil
}

func (osFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

func (osFS) Create(name string) (file, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Open(name string) (file, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Rename(from, to string) error { return os.Rename(from, to) }
func (osFS) Remove(name string) error     { return os.Remove(name) }

func (osFS) SyncDir(dir string) error { return fsutil.SyncDir(dir) }

// osFile adapts *os.File to file.
type osFile struct{ *os.File }

// Sync uses fdatasync where available: segments are preallocated, so most
// writes change no metadata that recovery needs, and when one does (the
// file grew by a preallocation step, or was cut at its data) fdatasync
// flushes the new size too, which is all recovery needs.
func (f osFile) Sync() error { return datasync(f.File) }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (f osFile) Preallocate(size int64) error { return preallocate(f.File, size) }

// extend grows f to size with zeros (a sparse preallocation).
func extend(f *os.File, size int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() >= size {
		return nil
	}
	return f.Truncate(size)
}
