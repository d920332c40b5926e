package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftline/raft"
)

func TestDataDirRemembersWhichNodeOfWhichClusterItBelongsTo(t *testing.T) {
	dir := t.TempDir()
	if err := checkIdentity(dir, 1, 42); err != nil {
		t.Fatalf("first use of an empty directory: %v", err)
	}
	cases := []struct {
		name    string
		id      uint64
		cluster uint64
		wantErr error
	}{
		{"the same node again", 1, 42, nil},
		{"another node", 2, 42, errWrongIdentity},
		{"the same ID in another cluster", 1, 7, errWrongIdentity},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkIdentity(dir, raft.NodeID(c.id), c.cluster)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("checkIdentity(node %d, cluster %d) = %v, want %v", c.id, c.cluster, err, c.wantErr)
			}
		})
	}
}

func TestUnreadableIdentityFileIsReportedNotOverwritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, identityFile)
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := checkIdentity(dir, 1, 42)
	if err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("checkIdentity over a garbage file = %v, want an unreadable-file error", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "garbage" {
		t.Fatalf("the identity file was rewritten to %q", b)
	}
}

func TestNodeStartedOnAnotherNodesDataDirIsRefused(t *testing.T) {
	data := t.TempDir()
	if err := checkIdentity(data, 1, defaultClusterID); err != nil {
		t.Fatal(err)
	}
	socks := holdSockets(t, 2)
	// Bounded, so a node that wrongly starts makes the test fail, not hang.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var stderr strings.Builder
	args := append([]string{"--id", "2", "--peers", "1=127.0.0.1:1,2=" + socks[0].addr, "--data", data},
		listenArgs(t, socks[0], socks[1])...)
	code := run(ctx, args, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "written by node 1") {
		t.Fatalf("node 2 on node 1's data: exit %d, stderr %q; want 1 and an identity error", code, stderr.String())
	}
}

// A data directory of the other mode is refused with the mode that wrote
// it and what to do, not just two cluster numbers.
func TestDataDirOfTheOtherModeSaysWhichModeWroteIt(t *testing.T) {
	cases := []struct {
		name              string
		wroteCluster      uint64
		thisCluster       uint64
		wantWrote, wantDo string
	}{
		{"single-process mode on a multi-process node's directory", 1, 0,
			"written by node 1 of multi-process cluster 1", "give it a --data of its own, or run that node again with --id 1 --cluster-id 1"},
		{"a multi-process node on a single-process directory", 0, 1,
			"written by node 1 of the single-process mode", "run the single-process mode on it again"},
		{"another multi-process cluster", 7, 1,
			"written by node 1 of multi-process cluster 7", "each node needs its own --data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := checkIdentity(dir, 1, c.wroteCluster); err != nil {
				t.Fatal(err)
			}
			err := checkIdentity(dir, 1, c.thisCluster)
			if !errors.Is(err, errWrongIdentity) {
				t.Fatalf("checkIdentity = %v, want errWrongIdentity", err)
			}
			for _, want := range []string{c.wantWrote, c.wantDo} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}
