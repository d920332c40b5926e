package main

import "encoding/binary"

// This file moves the log's clock and expires what is due: keys whose TTL
// ended and leases nobody renewed.
//
// Everything that can expire has an entry in kvState.expiry, keyed by when
// it ends, so that each step of the clock only looks at what is due:
// O(log n) per expiry, nothing per entry when nothing is due. Expiry is
// exact: when an entry moves the clock to t, everything ending at or before
// t is gone before the entry's own command runs, so no read, fence check or
// acquire ever sees a key or lease past its end.

// What an expiry entry is for.
const (
	expiringKey  byte = 'k'
	expiringLock byte = 'l'
)

// expiryKey orders expiries by time, then kind, then name: one total order,
// so every node expires the same things in the same order.
func expiryKey(at uint64, kind byte, name string) string {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 9+len(name)), at)
	return string(append(append(b, kind), name...))
}

// advance moves the log's clock to t, if t is later, and expires everything
// that ends by then. The clock never goes back: an entry stamped by a leader
// whose clock is behind the previous leader's leaves it where it is (see
// logclock.go for why that is safe).
func (s *kvState) advance(t uint64) {
	if t <= s.now {
		return
	}
	s.now = t
	for {
		k, _, ok := s.expiry.Min()
		if !ok || binary.BigEndian.Uint64([]byte(k[:8])) > s.now {
			return
		}
		// Delete the entry itself first, so the loop moves on even if the
		// key or lock it names were somehow gone.
		s.expiry.Delete(k)
		if name := k[9:]; k[8] == expiringKey {
			s.removeItem(name)
		} else {
			s.removeLock(name)
		}
	}
}
