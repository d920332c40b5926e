package main

import (
	"bytes"
	"math"
	"strconv"
)

// This file holds the operations on keys: put, delete, append, CAS and
// incr. Every change goes through putItem or removeItem, which keep the
// expiry index and the change history (for watches) in step with the map.

// putItem stores it under key.
func (s *kvState) putItem(key string, it item) {
	if old, had := s.data.Get(key); had && old.expires != 0 && old.expires != it.expires {
		s.expiry.Delete(expiryKey(old.expires, expiringKey, key))
	}
	if it.expires != 0 {
		s.expiry.Set(expiryKey(it.expires, expiringKey, key), struct{}{})
	}
	s.data.Set(key, it)
	s.changes.record(s.applied, key, it.value, false)
}

// removeItem deletes key; deleting an absent key changes nothing, and so is
// not a change a watcher sees.
func (s *kvState) removeItem(key string) {
	old, had := s.data.Get(key)
	if !had {
		return
	}
	if old.expires != 0 {
		s.expiry.Delete(expiryKey(old.expires, expiringKey, key))
	}
	s.data.Delete(key)
	s.changes.record(s.applied, key, nil, true)
}

// appendValue appends to a key's value; an absent key counts as empty, and
// the key keeps its TTL.
func (s *kvState) appendValue(c command) result {
	old, _ := s.data.Get(c.Key)
	if len(old.value)+len(c.Value) > maxValueSize {
		return result{Code: resultTooLarge}
	}
	// A new slice, never append(old, ...): readers may hold old.
	v := make([]byte, 0, len(old.value)+len(c.Value))
	v = append(append(v, old.value...), c.Value...)
	s.putItem(c.Key, item{value: v, expires: old.expires})
	return result{Value: v, Found: true}
}

func (s *kvState) compareAndSwap(c command) result {
	cur, found := s.data.Get(c.Key)
	matches := found == c.HasOld && (!found || bytes.Equal(cur.value, c.Old))
	if !matches {
		return result{Value: cur.value, Found: found}
	}
	v := cloneValue(c.Value)
	s.putItem(c.Key, item{value: v, expires: cur.expires})
	return result{Swapped: true, Value: v, Found: true}
}

// increment adds c.Delta to a decimal integer value (an absent key counts
// as 0); the key keeps its TTL. A value that is not an integer, or a sum
// that does not fit in an int64, changes nothing.
func (s *kvState) increment(c command) result {
	cur, found := s.data.Get(c.Key)
	var n int64
	if found {
		var err error
		if n, err = strconv.ParseInt(string(cur.value), 10, 64); err != nil {
			return result{Code: resultNotInteger, Value: cur.value, Found: true}
		}
	}
	if (c.Delta > 0 && n > math.MaxInt64-c.Delta) || (c.Delta < 0 && n < math.MinInt64-c.Delta) {
		return result{Code: resultOverflow, Value: cur.value, Found: true}
	}
	v := strconv.AppendInt(nil, n+c.Delta, 10)
	s.putItem(c.Key, item{value: v, expires: cur.expires})
	return result{Value: v, Found: true}
}
