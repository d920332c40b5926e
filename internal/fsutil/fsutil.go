// Package fsutil holds the two file-system operations that both durable
// stores (package wal and package snapstore) need and that differ by
// platform: locking a directory against a second user, and making a
// directory's entries durable.
package fsutil

import (
	"errors"
	"os"
	"path/filepath"
)

// ErrLocked: another user (in this or another process) holds the
// directory's lock.
var ErrLocked = errors.New("directory is locked by another user")

// LockFileName is the lock file LockDir creates inside a directory.
const LockFileName = "LOCK"

// SyncDir makes the creations, renames and removals of entries in dir
// durable: without it a crash can undo a rename whose file was synced.
func SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
