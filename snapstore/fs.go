package snapstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/raftline/raft/internal/fsutil"
)

// fileSystem is the narrow set of file operations the store uses, so tests
// can substitute one that crashes after any operation and keeps what a
// power cut would leave; production code always uses osFS.
type fileSystem interface {
	// MkdirAll creates dir and its parents.
	MkdirAll(dir string) error
	// Lock takes an exclusive lock on dir held until the Closer is closed.
	Lock(dir string) (io.Closer, error)
	// ReadDir lists the names of the entries of dir.
	ReadDir(dir string) ([]string, error)
	// Create creates a new file for writing, failing if it exists.
	Create(name string) (writeFile, error)
	// Open opens an existing file for reading.
	Open(name string) (readFile, error)
	// Rename atomically renames a file, replacing any file named to.
	Rename(from, to string) error
	// Remove deletes a file.
	Remove(name string) error
	// SyncDir makes creations, renames and removals in dir durable.
	SyncDir(dir string) error
}

// writeFile is a file being written start to end.
type writeFile interface {
	io.Writer
	// Sync makes the written data durable.
	Sync() error
	Close() error
}

// readFile is an open file read at any offset; it is what Store.Open
// hands out as a raft.SnapshotReader.
type readFile interface {
	io.ReaderAt
	io.Closer
	// Size returns the file's size.
	Size() (int64, error)
}

// osFS is the real file system.
type osFS struct{}

func (osFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

func (osFS) Lock(dir string) (io.Closer, error) {
	l, err := fsutil.LockDir(dir)
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, filepath.Join(dir, fsutil.LockFileName))
	}
	if err != nil {
		return nil, fmt.Errorf("snapstore: %w", err)
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

func (osFS) Create(name string) (writeFile, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err // not f: a nil *os.File would make a non-nil writeFile
	}
	return f, nil
}

func (osFS) Open(name string) (readFile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osReadFile{f}, nil
}

func (osFS) Rename(from, to string) error { return os.Rename(from, to) }
func (osFS) Remove(name string) error     { return os.Remove(name) }
func (osFS) SyncDir(dir string) error     { return fsutil.SyncDir(dir) }

// osReadFile adds Size to *os.File.
type osReadFile struct{ *os.File }

func (f osReadFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
