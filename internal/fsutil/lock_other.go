//go:build !unix

package fsutil

import (
	"errors"
	"io"
)

// LockDir refuses: without flock a store cannot keep two processes out of
// one directory, and running unlocked would risk exactly that.
func LockDir(string) (io.Closer, error) {
	return nil, errors.New("directory locking is not supported on this platform")
}
