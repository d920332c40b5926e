package main

import "iter"

// This file is the data structure under all of the state machine's state:
// an ordered map from string keys that can be frozen in O(1).
//
// The library takes snapshots in two steps (raft.StateMachine): Snapshot
// runs on the applier goroutine and must be quick, and the snapshot's bytes
// are written on another goroutine while applies go on. A Go map cannot
// serve both: copying it is O(n) with applies stopped, and sharing it would
// race. Go's own maps face the same problem when they grow, and solve it by
// evacuating the old table a bucket at a time; this tree goes one step
// further and never evacuates at all. It is an AVL tree with path copying:
// freezing it only hands out the current root and bumps a generation
// number. Nodes older than the generation are never written again; a write
// that reaches one copies it (and so the path from the root to it) first,
// and every later write to that copy happens in place. The frozen root
// therefore keeps seeing exactly the state it was frozen with, the writer
// of a snapshot reads it without locks, and the cost of a snapshot is
// spread over the writes that follow it: one path copy per touched path.
//
// The tree is also what lets the store list keys by prefix in order, and
// write snapshots in sorted order (so that equal states give equal bytes)
// without sorting anything.

// cowTree is an ordered map whose frozen views cost O(1) to take (see the
// file comment). It is not safe for concurrent writes; frozen views may be
// read concurrently with writes to the tree.
type cowTree[V any] struct {
	root *cowNode[V]
	size int
	// gen marks the nodes this tree may still modify in place: only those
	// created since the last freeze.
	gen uint64
}

type cowNode[V any] struct {
	key         string
	val         V
	left, right *cowNode[V]
	gen         uint64
	height      int8 // AVL: at most ~1.44 log2(n), so 127 is ample
}

// frozenTree is a read-only view of a cowTree at the moment it was frozen.
type frozenTree[V any] struct {
	root *cowNode[V]
	size int
}

// freeze returns a view of the tree as it is now, which later writes to
// the tree do not change.
func (t *cowTree[V]) freeze() frozenTree[V] {
	t.gen++
	return frozenTree[V]{root: t.root, size: t.size}
}

// Len returns the number of keys.
func (t *cowTree[V]) Len() int { return t.size }

// Len returns the number of keys in the view.
func (f frozenTree[V]) Len() int { return f.size }

// Get returns the value stored under key.
func (t *cowTree[V]) Get(key string) (V, bool) { return lookup(t.root, key) }

// Get returns the value stored under key in the view.
func (f frozenTree[V]) Get(key string) (V, bool) { return lookup(f.root, key) }

// Ascend yields the keys from the first one at or after from, in order.
func (t *cowTree[V]) Ascend(from string) iter.Seq2[string, V] { return ascend(t.root, from) }

// Ascend yields the view's keys from the first one at or after from.
func (f frozenTree[V]) Ascend(from string) iter.Seq2[string, V] { return ascend(f.root, from) }

// Min returns the smallest key and its value.
func (t *cowTree[V]) Min() (string, V, bool) {
	n := t.root
	if n == nil {
		var zero V
		return "", zero, false
	}
	for n.left != nil {
		n = n.left
	}
	return n.key, n.val, true
}

func lookup[V any](n *cowNode[V], key string) (V, bool) {
	for n != nil {
		switch {
		case key < n.key:
			n = n.left
		case key > n.key:
			n = n.right
		default:
			return n.val, true
		}
	}
	var zero V
	return zero, false
}

// ascend walks in order with an explicit stack, so a caller may stop early
// (a bounded prefix listing) without walking the rest.
func ascend[V any](root *cowNode[V], from string) iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		var stack []*cowNode[V]
		for n := root; n != nil; {
			if n.key >= from {
				stack = append(stack, n)
				n = n.left
			} else {
				n = n.right
			}
		}
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if !yield(n.key, n.val) {
				return
			}
			for c := n.right; c != nil; c = c.left {
				stack = append(stack, c)
			}
		}
	}
}

// Set stores v under key.
func (t *cowTree[V]) Set(key string, v V) { t.root = t.insert(t.root, key, v) }

// Delete removes key, reporting whether it was there.
func (t *cowTree[V]) Delete(key string) bool {
	root, found := t.remove(t.root, key)
	if found {
		t.root = root
		t.size--
	}
	return found
}

// own returns n if this tree may modify it in place, else a copy it may.
func (t *cowTree[V]) own(n *cowNode[V]) *cowNode[V] {
	if n.gen == t.gen {
		return n
	}
	c := *n
	c.gen = t.gen
	return &c
}

func (t *cowTree[V]) insert(n *cowNode[V], key string, v V) *cowNode[V] {
	if n == nil {
		t.size++
		return &cowNode[V]{key: key, val: v, gen: t.gen, height: 1}
	}
	n = t.own(n)
	switch {
	case key < n.key:
		n.left = t.insert(n.left, key, v)
	case key > n.key:
		n.right = t.insert(n.right, key, v)
	default:
		n.val = v
		return n
	}
	return t.rebalance(n)
}

// remove copies nothing unless key is found: a delete of an absent key
// must not cost a path copy.
func (t *cowTree[V]) remove(n *cowNode[V], key string) (*cowNode[V], bool) {
	if n == nil {
		return nil, false
	}
	switch {
	case key < n.key:
		l, found := t.remove(n.left, key)
		if !found {
			return n, false
		}
		n = t.own(n)
		n.left = l
	case key > n.key:
		r, found := t.remove(n.right, key)
		if !found {
			return n, false
		}
		n = t.own(n)
		n.right = r
	default:
		if n.left == nil {
			return n.right, true
		}
		if n.right == nil {
			return n.left, true
		}
		r, successor := t.removeMin(n.right)
		n = t.own(n)
		n.key, n.val, n.right = successor.key, successor.val, r
	}
	return t.rebalance(n), true
}

func (t *cowTree[V]) removeMin(n *cowNode[V]) (rest, min *cowNode[V]) {
	if n.left == nil {
		return n.right, n
	}
	l, min := t.removeMin(n.left)
	n = t.own(n)
	n.left = l
	return t.rebalance(n), min
}

func height[V any](n *cowNode[V]) int8 {
	if n == nil {
		return 0
	}
	return n.height
}

func (n *cowNode[V]) fixHeight() { n.height = 1 + max(height(n.left), height(n.right)) }

// rebalance restores the AVL invariant at n, which this tree owns and
// whose subtrees are balanced.
func (t *cowTree[V]) rebalance(n *cowNode[V]) *cowNode[V] {
	n.fixHeight()
	switch balance := height(n.left) - height(n.right); {
	case balance > 1:
		if height(n.left.left) < height(n.left.right) {
			n.left = t.rotateLeft(t.own(n.left))
		}
		return t.rotateRight(n)
	case balance < -1:
		if height(n.right.right) < height(n.right.left) {
			n.right = t.rotateRight(t.own(n.right))
		}
		return t.rotateLeft(n)
	}
	return n
}

func (t *cowTree[V]) rotateRight(n *cowNode[V]) *cowNode[V] {
	l := t.own(n.left)
	n.left, l.right = l.right, n
	n.fixHeight()
	l.fixHeight()
	return l
}

func (t *cowTree[V]) rotateLeft(n *cowNode[V]) *cowNode[V] {
	r := t.own(n.right)
	n.right, r.left = r.left, n
	n.fixHeight()
	r.fixHeight()
	return r
}
