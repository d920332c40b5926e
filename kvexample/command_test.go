package main

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// sampleCommands has one command of every op, with and without a session.
var sampleCommands = []command{
	{Op: opPut, Key: "k", Value: []byte("v")},
	{Op: opPut, Key: "k", Value: []byte{}, Client: "c1", Seq: 7},
	{Op: opDelete, Key: "some/key"},
	{Op: opAppend, Key: "k", Value: []byte("\x00\xff"), Client: "c", Seq: 1 << 60},
	{Op: opCAS, Key: "k", Value: []byte("new")},
	{Op: opCAS, Key: "k", Old: []byte("old"), HasOld: true, Value: []byte("new")},
	{Op: opCAS, Key: "k", Old: []byte{}, HasOld: true, Value: []byte{}, Client: "c", Seq: 2},
	{Op: opRegister, NodeID: 3, HTTPAddr: "127.0.0.1:8082"},
	{Op: opRegister, NodeID: 3, HTTPAddr: "127.0.0.1:8082", Time: 1_700_000_000_000},
	{Op: opPut, Key: "users/42", Value: []byte("v"), TTL: 1500, Time: 1_700_000_000_000},
	{Op: opPut, Key: "k", Value: []byte("v"), FenceLock: "L:with:colons", FenceToken: 17, Client: "c", Seq: 3, Time: 5},
	{Op: opDelete, Key: "k", FenceLock: "L", FenceToken: 0},
	{Op: opIncr, Key: "n", Delta: 1},
	{Op: opIncr, Key: "n", Delta: -1 << 63, Client: "c", Seq: 9},
	{Op: opIncr, Key: "n", Delta: 1<<63 - 1, FenceLock: "L", FenceToken: 2},
	{Op: opAcquire, Key: "L", Holder: "h1", TTL: 5000, Time: 77},
	{Op: opRenew, Key: "L", Holder: "h1", Token: 12, TTL: 0},
	{Op: opRenew, Key: "L", Holder: "h1", Token: 12, TTL: 100},
	{Op: opRelease, Key: "L", Holder: "h1", Token: 12, Client: "c", Seq: 4},
	{Op: opTick, Time: 1},
	{Op: opRetire, NodeID: 4},
	{Op: opRetire, NodeID: 1 << 62, Time: 9},
}

func TestCommandsRoundTripThroughTheirEncoding(t *testing.T) {
	for _, c := range sampleCommands {
		got, err := decodeCommand(c.encode())
		if err != nil {
			t.Fatalf("%s: %v", c.Op, err)
		}
		if diff := cmp.Diff(c, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s round trip (-want +got):\n%s", c.Op, diff)
		}
	}
}

func TestDecodeCommandRejectsEveryTruncation(t *testing.T) {
	for _, c := range sampleCommands {
		b := c.encode()
		for n := range len(b) {
			if _, err := decodeCommand(b[:n]); !errors.Is(err, errMalformed) {
				t.Errorf("%s truncated to %d of %d bytes: err %v, want errMalformed", c.Op, n, len(b), err)
			}
		}
	}
}

func TestDecodeCommandRejectsMalformedHeaders(t *testing.T) {
	valid := (&command{Op: opPut, Key: "k", Value: []byte("v")}).encode()
	cases := map[string][]byte{
		"empty":              nil,
		"unknown version":    append([]byte{9}, valid[1:]...),
		"op zero":            {commandVersion, 0, 0},
		"unknown op":         {commandVersion, byte(opLimit), 0},
		"unknown flag":       {commandVersion, byte(opDelete), 0x80, 1, 'k'},
		"hasOld without cas": {commandVersion, byte(opDelete), flagHasOld, 1, 'k'},
		"trailing bytes":     append(valid, 0),
		"huge field length":  {commandVersion, byte(opDelete), 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 'k'},
		"empty client id":    {commandVersion, byte(opDelete), flagSession, 0, 1, 1, 'k'},
		"time zero":          {commandVersion, byte(opTick), flagTime, 0},
		"time too far":       {commandVersion, byte(opTick), flagTime, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20},
		"ttl zero":           {commandVersion, byte(opPut), flagTTL, 1, 'k', 0, 0},
		"ttl over a year":    {commandVersion, byte(opPut), flagTTL, 1, 'k', 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"ttl on a delete":    {commandVersion, byte(opDelete), flagTTL, 1, 'k'},
		"fence on a lock op": {commandVersion, byte(opRelease), flagFence, 1, 'L', 1, 1, 'L', 1, 'h', 1},
		"fence without lock": {commandVersion, byte(opDelete), flagFence, 0, 1, 1, 'k'},
		"acquire ttl zero":   {commandVersion, byte(opAcquire), 0, 1, 'L', 1, 'h', 0},
		"acquire no holder":  {commandVersion, byte(opAcquire), 0, 1, 'L', 0, 5},
		"release no lock":    {commandVersion, byte(opRelease), 0, 0, 1, 'h', 1},
		"overlong delta":     {commandVersion, byte(opIncr), 0, 1, 'k', 0x80, 0x00},
	}
	for name, b := range cases {
		if _, err := decodeCommand(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err %v, want errMalformed", name, err)
		}
	}
}

// FuzzDecodeCommand checks that no input makes the decoder panic, and that
// whatever it accepts encodes back to the same bytes (the format has one
// encoding per command, so nodes can never disagree on what a command is).
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands {
		f.Add(c.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			return
		}
		if again := c.encode(); string(again) != string(b) {
			t.Fatalf("decode then encode changed %x into %x", b, again)
		}
	})
}
