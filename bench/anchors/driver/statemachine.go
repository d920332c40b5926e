package driver

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
)

// StateMachine is the trivial state machine every adapter applies commands
// to, the same as ./bench's: a counter and a copy of the last command, so
// that applying costs the same everywhere and only the consensus path is
// measured. Apply is called by one goroutine per node (the library's apply
// loop); Count may be read from any goroutine.
type StateMachine struct {
	count atomic.Uint64
	last  []byte
}

// Apply applies one command.
func (s *StateMachine) Apply(cmd []byte) {
	s.last = append(s.last[:0], cmd...)
	s.count.Add(1)
}

// Count returns the number of commands applied so far.
func (s *StateMachine) Count() uint64 { return s.count.Load() }

// Snapshot returns the state as bytes: the count (8 bytes, little endian)
// and the last command.
func (s *StateMachine) Snapshot() []byte {
	b := binary.LittleEndian.AppendUint64(nil, s.count.Load())
	return append(b, s.last...)
}

// Restore replaces the state with one returned by Snapshot.
func (s *StateMachine) Restore(b []byte) error {
	if len(b) < 8 {
		return errors.New("driver: snapshot too short")
	}
	s.count.Store(binary.LittleEndian.Uint64(b))
	s.last = append(s.last[:0], b[8:]...)
	return nil
}
