//go:build !unix

package main

import "testing"

// heldSocket stands in for the unix one (listenfd_unix_test.go): handing a
// listening socket to a node by file descriptor needs unix, so the tests
// that do are skipped here.
type heldSocket struct{ addr string }

func holdSockets(t *testing.T, n int) []*heldSocket {
	t.Skip("handing listening sockets to a node by file descriptor needs unix")
	return nil
}

func listenArgs(t *testing.T, raft, http *heldSocket) []string {
	t.Fatal("unreachable: holdSockets skips the test")
	return nil
}
