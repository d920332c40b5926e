//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftline/raft"
	"github.com/raftline/raft/wal"
)

func TestDataDirWrittenBeforeSnapshotsExistedStillStarts(t *testing.T) {
	// What an earlier kvexample left in --data: a WAL and the identity
	// file, no snapshot directory.
	socks := holdSockets(t, 2)
	data := t.TempDir()
	w, err := wal.Open(data, wal.Options{SegmentSize: walSegmentSize})
	if err != nil {
		t.Fatal(err)
	}
	peers := raft.Configuration{Servers: []raft.Server{{ID: 1, Address: socks[0].addr}}}
	if err := raft.Bootstrap(w, peers); err != nil {
		t.Fatal(err)
	}
	put := command{Op: opPut, Key: "old", Value: []byte("still here")}
	if err := w.Save(raft.HardState{Term: 2, Vote: 1, Commit: 3}, []raft.Entry{
		{Index: 2, Term: 2, Type: raft.EntryNoop},
		{Index: 3, Term: 2, Type: raft.EntryNormal, Data: put.encode()},
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, identityFile), fmt.Appendf(nil, identityFormat, 1, 1), 0o644); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, stop := runInBackground(t, append([]string{"--id", "1", "--peers", "1=" + socks[0].addr, "--data", data},
		listenArgs(t, socks[0], socks[1])...)...)
	eventually(t, 10*time.Second, "the startup banner", func() bool { return strings.Contains(stdout.String(), "SIGTERM") })
	if !strings.Contains(stdout.String(), "recovered from "+data+": log up to index 3") {
		t.Fatalf("the node did not recover the old log:\n%s\n%s", stdout.String(), stderr.String())
	}
	eventually(t, 10*time.Second, "the old key to be readable", func() bool {
		r := do(t, followRedirects, "GET", "http://"+socks[1].addr+"/kv/old", "")
		return r.code == 200 && r.body == "still here"
	})
	if _, err := os.Stat(filepath.Join(data, snapshotDir)); err != nil {
		t.Errorf("no snapshot directory after the start: %v", err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
	}
}
