//go:build unix

package wal

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// lockFileName is the lock file inside a WAL directory.
const lockFileName = "LOCK"

// dirLock is a held flock on a directory's lock file.
type dirLock struct{ f *os.File }

// lockDir takes a non-blocking exclusive flock on dir/LOCK. flock locks
// belong to the open file description, so a second Open in the same
// process is refused too, and the kernel drops the lock when the process
// dies, so a crash never leaves the directory locked.
func lockDir(dir string) (io.Closer, error) {
	name := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, fmt.Errorf("%w: %s", ErrLocked, name)
		}
		return nil, fmt.Errorf("wal: locking %s: %w", name, err)
	}
	return dirLock{f}, nil
}

func (l dirLock) Close() error { return l.f.Close() }
