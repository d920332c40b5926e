package wal

import (
	"errors"

	"github.com/raftline/raft"
)

// InstallSnapshot implements raft.Storage for a log that holds the
// snapshot's last entry. Replacing a log that does not is being built.
func (w *WAL) InstallSnapshot(index, term uint64) error {
	if t, err := w.Term(index); err == nil && t == term {
		if err := w.Compact(index); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return err
		}
		return nil
	}
	return errors.New("wal: replacing the log by a snapshot is not supported yet")
}
