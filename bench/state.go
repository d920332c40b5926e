package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// pagedTable is the optional state of the bench's state machine (-state-mb):
// a table of fixed-size slots, each command stored in the slot its client
// and sequence number hash to, so a run of N distinct commands fills about
// N slots, as N distinct keys would. It lives in pages that are copied on
// write, so taking a snapshot is O(pages) pointer copies and applying goes
// on while the frozen pages are written out: the contract
// raft.StateMachine asks for.
type pagedTable struct {
	slotSize int
	slots    uint64
	pages    [][]byte
	// gens holds the generation each page was last copied in; a page of an
	// older generation may be shared with a snapshot and is copied before
	// it is written.
	gens []uint32
	gen  uint32
}

const tablePageSize = 4096

func newPagedTable(bytes, slotSize int) *pagedTable {
	perPage := tablePageSize / slotSize
	if perPage < 1 {
		perPage = 1
	}
	pageBytes := perPage * slotSize
	npages := (bytes + pageBytes - 1) / pageBytes
	t := &pagedTable{slotSize: slotSize, slots: uint64(npages * perPage),
		pages: make([][]byte, npages), gens: make([]uint32, npages), gen: 1}
	for i := range t.pages {
		t.pages[i] = make([]byte, pageBytes)
		t.gens[i] = t.gen
	}
	return t
}

// put stores cmd (truncated or zero-padded to a slot) in the slot its
// first 16 bytes (client id, sequence) hash to.
func (t *pagedTable) put(cmd []byte) {
	var h uint64 = 14695981039346656037
	for _, b := range cmd[:min(len(cmd), 16)] {
		h ^= uint64(b)
		h *= 1099511628211
	}
	slot := h % t.slots
	perPage := uint64(len(t.pages[0]) / t.slotSize)
	p, off := slot/perPage, int(slot%perPage)*t.slotSize
	if t.gens[p] != t.gen {
		t.pages[p] = slices.Clone(t.pages[p])
		t.gens[p] = t.gen
	}
	dst := t.pages[p][off : off+t.slotSize]
	n := copy(dst, cmd)
	clear(dst[n:])
}

// freeze returns the current pages; later puts copy any page before they
// change it.
func (t *pagedTable) freeze() [][]byte {
	t.gen++
	return slices.Clone(t.pages)
}

// tableSnapshot is a frozen table behind a header (count, last command).
type tableSnapshot struct {
	head  []byte
	pages [][]byte
}

// WriteTo writes: uvarint len(head), head, uvarint page count, uvarint
// page size, the pages.
func (s *tableSnapshot) WriteTo(w io.Writer) (int64, error) {
	var n int64
	var hdr []byte
	hdr = binary.AppendUvarint(hdr, uint64(len(s.head)))
	hdr = append(hdr, s.head...)
	hdr = binary.AppendUvarint(hdr, uint64(len(s.pages)))
	hdr = binary.AppendUvarint(hdr, uint64(len(s.pages[0])))
	k, err := w.Write(hdr)
	n += int64(k)
	if err != nil {
		return n, err
	}
	for _, p := range s.pages {
		k, err := w.Write(p)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (s *tableSnapshot) Release() { s.pages = nil }

// restore reads a tableSnapshot's bytes into t, returning the header's
// count and last command.
func (t *pagedTable) restore(r io.Reader) (count uint64, last []byte, err error) {
	br := bufio.NewReaderSize(r, 1<<20)
	hlen, err := binary.ReadUvarint(br)
	if err != nil || hlen < 8 || hlen > 1<<20 {
		return 0, nil, fmt.Errorf("bench: bad snapshot header (%d): %v", hlen, err)
	}
	head := make([]byte, hlen)
	if _, err := io.ReadFull(br, head); err != nil {
		return 0, nil, err
	}
	npages, err := binary.ReadUvarint(br)
	if err != nil {
		return 0, nil, err
	}
	psize, err := binary.ReadUvarint(br)
	if err != nil {
		return 0, nil, err
	}
	if npages != uint64(len(t.pages)) || psize != uint64(len(t.pages[0])) {
		return 0, nil, errors.New("bench: snapshot of a table of another size")
	}
	t.gen++
	for i := range t.pages {
		p := make([]byte, psize)
		if _, err := io.ReadFull(br, p); err != nil {
			return 0, nil, err
		}
		t.pages[i], t.gens[i] = p, t.gen
	}
	return binary.BigEndian.Uint64(head), head[8:], nil
}
