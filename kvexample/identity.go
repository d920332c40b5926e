package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/raftline/raft"
)

// identityFile, in a node's data directory, records which node of which
// cluster the directory belongs to.
const identityFile = "identity"

// identityFormat is the identity file's one line, written and parsed.
const identityFormat = "raftline kvexample identity: node %d cluster %d\n"

// errWrongIdentity: the data directory was written by another node or
// another cluster. Started on it, a node would take over that node's term,
// vote and log under its own ID: the cluster could then count one disk's
// vote twice in a term, and elect two leaders.
var errWrongIdentity = errors.New("data directory belongs to another node")

// checkIdentity makes sure dir belongs to node id of cluster: the first
// start records them, later starts must match. The caller holds the WAL's
// directory lock, so no other process races the first write.
func checkIdentity(dir string, id raft.NodeID, cluster uint64) error {
	path := filepath.Join(dir, identityFile)
	want := fmt.Sprintf(identityFormat, id, cluster)
	got, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return writeIdentity(dir, path, want)
	case err != nil:
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var gotID raft.NodeID
	var gotCluster uint64
	if _, err := fmt.Sscanf(string(got), identityFormat, &gotID, &gotCluster); err != nil {
		return fmt.Errorf("%s is unreadable (%q): %w", path, got, err)
	}
	if gotID != id || gotCluster != cluster {
		return fmt.Errorf("%w: %s was written by %s and this is %s; %s",
			errWrongIdentity, dir, describeNode(gotID, gotCluster), describeNode(id, cluster),
			identityAdvice(dir, gotID, gotCluster, cluster))
	}
	return nil
}

// describeNode names a node the way its mode knows it: the single-process
// mode runs its nodes with no cluster ID (0), the multi-process mode with
// --cluster-id.
func describeNode(id raft.NodeID, cluster uint64) string {
	if cluster == 0 {
		return fmt.Sprintf("node %d of the single-process mode (go run ./kvexample)", id)
	}
	return fmt.Sprintf("node %d of multi-process cluster %d (--id %d --cluster-id %d)", id, cluster, id, cluster)
}

// identityAdvice says what to do about a data directory that belongs to
// another node.
func identityAdvice(dir string, gotID raft.NodeID, gotCluster, cluster uint64) string {
	switch {
	case cluster == 0:
		return fmt.Sprintf("the single-process mode keeps its nodes in node1..node3 under --data: give it a --data of its own, or run that node again with --id %d --cluster-id %d --data %s", gotID, gotCluster, dir)
	case gotCluster == 0:
		return fmt.Sprintf("run the single-process mode on it again (--data %s), or give this node an empty --data of its own", filepath.Dir(dir))
	}
	return fmt.Sprintf("each node needs its own --data: give this one an empty directory, or start node %d of cluster %d on this one", gotID, gotCluster)
}

// writeIdentity writes the identity file durably: a crash leaves either no
// file or the whole file, never a torn one that would refuse every restart.
func writeIdentity(dir, path, content string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
