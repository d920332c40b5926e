//go:build !unix

package wal

import (
	"errors"
	"io"
)

// lockDir refuses: without flock the WAL cannot keep two processes out of
// one directory, and running unlocked would risk exactly that.
func lockDir(string) (io.Closer, error) {
	return nil, errors.New("wal: directory locking is not supported on this platform")
}
