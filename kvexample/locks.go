package main

// This file holds the locks: leases on the log's clock, with fencing
// tokens.
//
// A lock is held by a named holder until its lease ends, measured on the
// log's clock (logclock.go), unless the holder renews or releases it first.
// Every grant gets a fencing token: the index of the log entry that granted
// it. Log indexes only grow, so each grant of a lock has a larger token
// than the one before, and a write that presents the token (X-Fence) can be
// refused once the lock has moved on. That is what makes the lock safe to
// rely on: a holder cannot know that its lease has not ended (it may have
// been paused, or its clock may run slow against the leader's), but the
// store knows exactly which token is current at every point of the log.

// lockState is a held lock. It is stored by value in a copy-on-write tree.
type lockState struct {
	Holder string
	// Token is the fencing token: the log index of the grant.
	Token uint64
	// TTL is the lease's length in milliseconds; Expires is the log time it
	// ends at, unless renewed; SetIndex is the log index of the entry that
	// set Expires (the grant or the last renewal).
	TTL      uint64
	Expires  uint64
	SetIndex uint64
}

// acquire grants lock c.Key to c.Holder if it is free (a lock whose lease
// ended is free: it was removed when the log's clock passed its end). The
// holder acquiring again gets its lease renewed and keeps its token, so a
// retried acquire is harmless even without a session.
func (s *kvState) acquire(c command) result {
	l, held := s.locks.Get(c.Key)
	if held && l.Holder != c.Holder {
		return result{Code: resultLockHeld, Lock: l}
	}
	if !held {
		l = lockState{Holder: c.Holder, Token: s.applied}
	}
	l.TTL = c.TTL
	s.setLease(c.Key, l)
	l, _ = s.locks.Get(c.Key)
	return result{Lock: l}
}

// renew extends the lease of its holder, with a new TTL if c.TTL is set.
func (s *kvState) renew(c command) result {
	l, held := s.locks.Get(c.Key)
	if !held || l.Holder != c.Holder || l.Token != c.Token {
		return result{Code: resultNotHolder, Lock: l}
	}
	if c.TTL != 0 {
		l.TTL = c.TTL
	}
	s.setLease(c.Key, l)
	l, _ = s.locks.Get(c.Key)
	return result{Lock: l}
}

// release frees a lock its holder presents the token of.
func (s *kvState) release(c command) result {
	l, held := s.locks.Get(c.Key)
	if !held || l.Holder != c.Holder || l.Token != c.Token {
		return result{Code: resultNotHolder, Lock: l}
	}
	s.removeLock(c.Key)
	return result{Lock: l}
}

// setLease stores l with its lease starting now.
func (s *kvState) setLease(name string, l lockState) {
	if l.Expires != 0 {
		s.expiry.Delete(expiryKey(l.Expires, expiringLock, name))
	}
	l.Expires, l.SetIndex = s.now+l.TTL, s.applied
	s.expiry.Set(expiryKey(l.Expires, expiringLock, name), struct{}{})
	s.locks.Set(name, l)
}

// removeLock frees lock name.
func (s *kvState) removeLock(name string) {
	l, held := s.locks.Get(name)
	if !held {
		return
	}
	s.expiry.Delete(expiryKey(l.Expires, expiringLock, name))
	s.locks.Delete(name)
	s.freedLocks = append(s.freedLocks, name)
}
