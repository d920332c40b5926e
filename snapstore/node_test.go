package snapstore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftline/raft"
	"github.com/raftline/raft/snapstore"
	"github.com/raftline/raft/wal"
)

// End to end: real raft.Nodes on the in-memory network, each with a WAL
// and a snapstore.Store in its own directories, inside a synctest bubble
// (real file I/O is fine there). Snapshots are taken every few entries and
// the log compacted right behind them, so a follower that was down must be
// sent a snapshot and its WAL reset to it.

const electionTimeout = 150 * time.Millisecond

// listSM is a list of commands, snapshotted as lines.
type listSM struct {
	mu   sync.Mutex
	cmds []string
}

func (s *listSM) Apply(e raft.Entry) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmds = append(s.cmds, string(e.Data))
	return nil
}

func (s *listSM) Snapshot() (raft.StateSnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return listSnapshot(slices.Clone(s.cmds)), nil
}

func (s *listSM) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmds = nil
	if len(b) > 0 {
		s.cmds = strings.Split(string(b), "\n")
	}
	return nil
}

func (s *listSM) applied() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cmds)
}

type listSnapshot []string

func (l listSnapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, strings.Join(l, "\n"))
	return int64(n), err
}

func (l listSnapshot) Release() {}

// node is one member's storage and, while it runs, its raft.Node.
type node struct {
	dir   string
	wal   *wal.WAL
	snaps *snapstore.Store
	n     *raft.Node
	sm    *listSM
}

type cluster struct {
	t     *testing.T
	net   *raft.Network
	ids   []raft.NodeID
	nodes map[raft.NodeID]*node
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t, net: raft.NewNetwork(7), nodes: map[raft.NodeID]*node{}}
	var conf raft.Configuration
	for i := 1; i <= 3; i++ {
		c.ids = append(c.ids, raft.NodeID(i))
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.NodeID(i)})
	}
	for _, id := range c.ids {
		c.nodes[id] = &node{dir: t.TempDir()}
		c.open(id)
		if err := raft.Bootstrap(c.nodes[id].wal, conf); err != nil {
			t.Fatal(err)
		}
		c.start(id)
	}
	t.Cleanup(c.stopAll)
	return c
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (c *cluster) open(id raft.NodeID) {
	nd := c.nodes[id]
	w, err := wal.Open(filepath.Join(nd.dir, "wal"), wal.Options{SegmentSize: 4 << 10, Logger: quiet()})
	if err != nil {
		c.t.Fatal(err)
	}
	s, err := snapstore.Open(filepath.Join(nd.dir, "snapshots"), snapstore.Options{Logger: quiet()})
	if err != nil {
		c.t.Fatal(err)
	}
	nd.wal, nd.snaps = w, s
}

func (c *cluster) start(id raft.NodeID) {
	nd := c.nodes[id]
	if nd.wal == nil {
		c.open(id)
	}
	nd.sm = &listSM{}
	n, err := raft.NewNode(raft.Config{ID: id, Storage: nd.wal, Snapshots: nd.snaps, StateMachine: nd.sm,
		Transport: c.net.Join(id), ElectionTimeout: electionTimeout, Logger: quiet(),
		SnapshotEntries: 20, SnapshotTrailing: 5, SnapshotInterval: -1, SnapshotChunkSize: 1 << 10})
	if err != nil {
		c.t.Fatal(err)
	}
	nd.n = n
}

// stop closes the node, then its stores.
func (c *cluster) stop(id raft.NodeID) {
	nd := c.nodes[id]
	if nd.n != nil {
		nd.n.Close()
		nd.n = nil
	}
	if nd.wal != nil {
		nd.wal.Close()
		nd.snaps.Close()
		nd.wal, nd.snaps = nil, nil
	}
}

func (c *cluster) stopAll() {
	for _, id := range c.ids {
		c.stop(id)
	}
}

func (c *cluster) leader() raft.NodeID {
	c.t.Helper()
	for range 100 {
		time.Sleep(electionTimeout / 5)
		for _, id := range c.ids {
			if n := c.nodes[id].n; n != nil && n.Status().Role == raft.Leader {
				return id
			}
		}
	}
	c.t.Fatal("no leader elected")
	return 0
}

func (c *cluster) propose(cmd string) {
	c.t.Helper()
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 4*electionTimeout)
		_, err := c.nodes[c.leader()].n.Propose(ctx, []byte(cmd))
		cancel()
		if err == nil {
			return
		}
	}
	c.t.Fatalf("proposal %q never committed", cmd)
}

func (c *cluster) waitApplied(want []string) {
	c.t.Helper()
	for range 300 {
		ok := true
		for _, id := range c.ids {
			if nd := c.nodes[id]; nd.n != nil && !slices.Equal(nd.sm.applied(), want) {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(electionTimeout / 5)
	}
	for _, id := range c.ids {
		if nd := c.nodes[id]; nd.n != nil {
			c.t.Errorf("node %d applied %d commands", id, len(nd.sm.applied()))
		}
	}
	c.t.Fatalf("want %d commands applied everywhere", len(want))
}

func TestFollowerBehindCompactionCatchesUpFromASnapshotOnDisk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		var cmds []string
		propose := func(n int) {
			for range n {
				cmds = append(cmds, fmt.Sprintf("cmd-%03d", len(cmds)))
				c.propose(cmds[len(cmds)-1])
			}
			c.waitApplied(cmds)
		}
		propose(10)
		lead := c.leader()
		behind := c.ids[0]
		if behind == lead {
			behind = c.ids[1]
		}
		c.stop(behind)
		propose(150)
		if st := c.nodes[lead].n.Status(); st.FirstIndex < 100 {
			t.Fatalf("leader's log starts at %d: not compacted past the stopped follower", st.FirstIndex)
		}
		c.start(behind)
		c.waitApplied(cmds)
		st := c.nodes[behind].n.Status()
		first, _ := c.nodes[behind].wal.FirstIndex()
		if first < 100 || st.SnapshotIndex < 100 {
			t.Fatalf("follower caught up without a snapshot: WAL starts at %d, snapshot %d", first, st.SnapshotIndex)
		}
		// Everyone restarts from snapshot files and WALs alone.
		c.stopAll()
		for _, id := range c.ids {
			c.start(id)
		}
		c.waitApplied(cmds)
		propose(5)
		for _, id := range c.ids {
			metas, err := c.nodes[id].snaps.List()
			if err != nil || len(metas) == 0 || len(metas) > snapstore.DefaultRetain {
				t.Fatalf("node %d lists %d snapshots (%v)", id, len(metas), err)
			}
			if r, err := c.nodes[id].snaps.Open(metas[0]); err != nil {
				t.Fatalf("node %d: opening its newest snapshot: %v", id, err)
			} else {
				b := make([]byte, metas[0].Size)
				_, err := r.ReadAt(b, 0)
				r.Close()
				if err != nil || !bytes.HasPrefix([]byte(strings.Join(cmds, "\n")), b) {
					t.Fatalf("node %d: newest snapshot does not hold a prefix of the commands: %v", id, err)
				}
			}
		}
	})
}
