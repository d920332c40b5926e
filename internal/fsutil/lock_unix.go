//go:build unix

package fsutil

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// dirLock is a held flock on a directory's lock file.
type dirLock struct{ f *os.File }

// LockDir takes a non-blocking exclusive flock on dir/LOCK, failing with
// an error wrapping ErrLocked when it is held. flock locks belong to the
// open file description, so a second LockDir in the same process is
// refused too, and the kernel drops the lock when the process dies, so a
// crash never leaves the directory locked.
func LockDir(dir string) (io.Closer, error) {
	name := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, fmt.Errorf("%w: %s", ErrLocked, name)
		}
		return nil, fmt.Errorf("locking %s: %w", name, err)
	}
	return dirLock{f}, nil
}

func (l dirLock) Close() error { return l.f.Close() }
