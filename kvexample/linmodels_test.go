package main

import (
	"fmt"
	"strconv"

	"github.com/anishathalye/porcupine"
)

// This file holds the sequential specifications porcupine checks the
// coordination operations against: a counter, a lock with a lease and
// fencing tokens, and a key with a TTL. Operations that depend on time
// report the log's clock they ran at (Now), and the models check that the
// answers are right for that time and that time never went back: the
// models know nothing of wall clocks, only of the log's.

// counterIn is an incr (Delta) or a read.
type counterIn struct {
	Read  bool
	Delta int64
}

var counterModel = porcupine.Model{
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		v, in, out := state.(int64), input.(counterIn), output.(int64)
		if in.Read {
			return out == v, v
		}
		return out == v+in.Delta, v + in.Delta
	},
	DescribeOperation: func(input, output any) string {
		in := input.(counterIn)
		if in.Read {
			return fmt.Sprintf("read → %d", output)
		}
		return fmt.Sprintf("incr(%+d) → %d", in.Delta, output)
	},
}

// lockIn is one lock operation of holder Holder.
type lockIn struct {
	Op     string // acquire, renew, release, read
	Holder string
	TTL    uint64
	Token  uint64
}

// lockOut is what the store answered: the lock after the operation (or
// the lock that refused it), at log time Now.
type lockOut struct {
	Code resultCode
	Lock lockState
	Now  uint64
}

// lockModelState is the lock as the model knows it. MaxToken is the
// largest token ever granted: the next grant to a new holder must exceed
// it.
type lockModelState struct {
	Lock     lockState
	Now      uint64
	MaxToken uint64
}

var lockModel = porcupine.Model{
	Init: func() any { return lockModelState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(lockModelState), input.(lockIn), output.(lockOut)
		if out.Now < st.Now {
			return false, st // the log's clock went back
		}
		cur := st.Lock
		if cur.Holder != "" && out.Now >= cur.Expires {
			cur = lockState{} // the lease ended: free at this log time
		}
		next := lockModelState{Lock: cur, Now: out.Now, MaxToken: st.MaxToken}
		isHolder := cur.Holder != "" && cur.Holder == in.Holder
		switch in.Op {
		case "read":
			return out.Lock == cur, next
		case "acquire":
			if cur.Holder != "" && !isHolder {
				return out.Code == resultLockHeld && out.Lock == cur, next
			}
			granted := out.Code == resultOK && out.Lock.Holder == in.Holder && out.Lock.TTL == in.TTL &&
				out.Lock.Expires == out.Now+in.TTL
			if isHolder { // acquiring again renews, same token
				granted = granted && out.Lock.Token == cur.Token && out.Lock.SetIndex > cur.SetIndex
			} else { // a new grant: a token larger than any before
				granted = granted && out.Lock.Token > st.MaxToken && out.Lock.SetIndex == out.Lock.Token
			}
			next.Lock, next.MaxToken = out.Lock, max(st.MaxToken, out.Lock.Token)
			return granted, next
		}
		if !isHolder || cur.Token != in.Token {
			return out.Code == resultNotHolder && out.Lock == cur, next
		}
		if in.Op == "release" {
			next.Lock = lockState{}
			return out.Code == resultOK, next
		}
		want := cur
		if in.TTL != 0 {
			want.TTL = in.TTL
		}
		want.Expires, want.SetIndex = out.Now+want.TTL, out.Lock.SetIndex
		next.Lock = out.Lock
		return out.Code == resultOK && out.Lock == want && out.Lock.SetIndex > cur.SetIndex, next
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(lockIn), output.(lockOut)
		return fmt.Sprintf("%s(%s, ttl %d, token %d) → code %d %s/%d until %d, at %d",
			in.Op, in.Holder, in.TTL, in.Token, out.Code, out.Lock.Holder, out.Lock.Token, out.Lock.Expires, out.Now)
	},
}

// ttlIn is a put with a TTL, or a read.
type ttlIn struct {
	Read  bool
	Value string
	TTL   uint64
}

// ttlOut is the key as a read saw it (or nothing, for a put), at log time
// Now.
type ttlOut struct {
	Value  string
	Exists bool
	Now    uint64
}

type ttlModelState struct {
	Value   string
	Exists  bool
	Expires uint64
	Now     uint64
}

var ttlModel = porcupine.Model{
	Init: func() any { return ttlModelState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(ttlModelState), input.(ttlIn), output.(ttlOut)
		if out.Now < st.Now {
			return false, st
		}
		if !in.Read {
			return true, ttlModelState{Value: in.Value, Exists: true, Expires: out.Now + in.TTL, Now: out.Now}
		}
		exists := st.Exists && out.Now < st.Expires
		next := st
		next.Now = out.Now
		return out.Exists == exists && (!exists || out.Value == st.Value), next
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(ttlIn), output.(ttlOut)
		if in.Read {
			return fmt.Sprintf("read → %q exists=%v, at %d", out.Value, out.Exists, out.Now)
		}
		return fmt.Sprintf("put(%q, ttl %d) at %d", in.Value, in.TTL, out.Now)
	},
}

// parseCounter reads a counter's value as the store answered it.
func parseCounter(v []byte, found bool) int64 {
	if !found {
		return 0
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return -1 << 63 // no model state matches: the check fails
	}
	return n
}
