package snapstore

import (
	"bufio"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftline/raft"
)

// crashChildEnv switches the test binary into the writer role of
// TestKilledWriterLeavesOnlyCompleteSnapshots; its value is the store dir.
const crashChildEnv = "RAFTLINE_SNAPSTORE_CRASH_CHILD"

var crashReps = flag.Int("snapstore.crash-reps", 30, "how many times the real-process crash test kills its writer")

// tracingFS prints each mutating operation to out before running it, so
// the parent knows which step a kill interrupted.
type tracingFS struct {
	osFS
	out io.Writer
}

func (f tracingFS) trace(op, name string) { fmt.Fprintf(f.out, "op %s %s\n", op, filepath.Base(name)) }

func (f tracingFS) Create(name string) (writeFile, error) {
	f.trace("create", name)
	w, err := f.osFS.Create(name)
	if err != nil {
		return nil, err
	}
	return tracingFile{w, f, name}, nil
}

func (f tracingFS) Rename(from, to string) error {
	f.trace("rename", to)
	return f.osFS.Rename(from, to)
}
func (f tracingFS) Remove(name string) error { f.trace("remove", name); return f.osFS.Remove(name) }
func (f tracingFS) SyncDir(dir string) error { f.trace("syncdir", dir); return f.osFS.SyncDir(dir) }

type tracingFile struct {
	writeFile
	fs   tracingFS
	name string
}

func (t tracingFile) Write(p []byte) (int, error) {
	t.fs.trace("write", t.name)
	return t.writeFile.Write(p)
}
func (t tracingFile) Sync() error { t.fs.trace("sync", t.name); return t.writeFile.Sync() }

// runCrashChild commits snapshots of increasing index and random size to
// the store in dir until killed, printing "ack index size crc end" after each
// Commit returns.
func runCrashChild(dir string) int {
	s, err := Open(dir, Options{Logger: quietLogger(), fs: tracingFS{out: os.Stdout}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 2
	}
	metas, err := s.List()
	if err != nil {
		fmt.Fprintln(os.Stderr, "list:", err)
		return 2
	}
	fmt.Fprintln(os.Stdout, "ready") // the parent's delay starts now
	next := uint64(1)
	if len(metas) > 0 {
		next = metas[0].Index + 1
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), next))
	for ; ; next++ {
		data := snapData(next, r.IntN(1<<20))
		meta := metaFor(next, next, data)
		k, err := s.Create()
		if err == nil {
			for off := 0; off < len(data) && err == nil; off += 64 << 10 {
				_, err = k.Write(data[off:min(len(data), off+64<<10)])
			}
		}
		if err == nil {
			err = k.Commit(meta)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "commit:", err)
			return 3
		}
		// "end" shows the line was not cut by the kill.
		fmt.Fprintf(os.Stdout, "ack %d %d %d end\n", meta.Index, meta.Size, meta.Checksum)
	}
}

// TestKilledWriterLeavesOnlyCompleteSnapshots re-executes the test binary
// as a writer, SIGKILLs it at a random moment (while it writes, syncs,
// renames or removes), reopens the store and checks that it lists exactly
// the newest two complete snapshots of the acknowledged ones plus possibly
// the one being committed: every listed snapshot reads back intact, and no
// temporary or half-made file survives the reopen.
func TestKilledWriterLeavesOnlyCompleteSnapshots(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// known is what the store held after the last check, oldest first,
	// followed by what the writer acknowledged since.
	var known []raft.SnapshotMeta
	nacked := 0
	r := rand.New(rand.NewPCG(1, 2))
	phases := map[string]int{}
	for rep := range *crashReps {
		lines := runAndKill(t, exe, dir, time.Duration(r.IntN(120))*time.Millisecond)
		phase := "cleanup at open"
		for _, l := range lines {
			f := strings.Fields(l)
			switch {
			case len(f) == 5 && f[0] == "ack" && f[4] == "end":
				var idx, size uint64
				var crc uint32
				fmt.Sscan(l[4:], &idx, &size, &crc)
				d := snapData(idx, int(size))
				if crc32.Checksum(d, castagnoli) != crc {
					t.Fatalf("rep %d: bad ack line %q", rep, l)
				}
				known = append(known, metaFor(idx, idx, d))
				nacked++
				phase = "between commits (making the next one's bytes)"
			case l == "ready":
				phase = "after open"
			case len(f) == 3 && f[0] == "op":
				phase = opPhase(phase, f[1], f[2])
			}
		}
		phases[phase]++
		known = checkAfterKill(t, dir, known, rep)
	}
	keys := slices.Sorted(maps.Keys(phases))
	var summary []string
	for _, k := range keys {
		summary = append(summary, fmt.Sprintf("%s: %d", k, phases[k]))
	}
	t.Logf("%d kills, %d snapshots acknowledged; killed during: %s", *crashReps, nacked, strings.Join(summary, ", "))
}

// opPhase names the step of a commit an operation belongs to, given the
// step of the operation before.
func opPhase(prev, op, name string) string {
	switch {
	case op == "remove" && (strings.HasSuffix(name, metaExt) || strings.HasSuffix(name, dataExt)):
		return "retention removal"
	case op == "remove":
		return "cleanup at open"
	case op == "syncdir" && prev == "retention removal":
		return "retention removal"
	case op == "rename" && strings.HasSuffix(name, dataExt):
		return "data rename"
	case op == "rename":
		return "metadata rename"
	case strings.HasSuffix(name, metaExt+tmpExt):
		return "metadata write/fsync"
	case op == "syncdir":
		return "directory fsync"
	case op == "sync":
		return "data fsync"
	}
	return "data write"
}

// checkAfterKill reopens the store, checks it against known (what it held
// before the run and what the writer acknowledged since, oldest first) and
// returns what it holds now, oldest first.
func checkAfterKill(t *testing.T, dir string, known []raft.SnapshotMeta, rep int) []raft.SnapshotMeta {
	t.Helper()
	s := openT(t, dir, Options{})
	defer s.Close()
	got := mustList(t, s)
	for _, m := range got {
		data, err := openVerified(s, m)
		if err != nil {
			t.Fatalf("rep %d: listed snapshot %v does not read back: %v", rep, m, err)
		}
		if string(data) != string(snapData(m.Index, int(m.Size))) {
			t.Fatalf("rep %d: snapshot %d holds other bytes", rep, m.Index)
		}
	}
	// Either the store as of the last acknowledged commit (its newest two)
	// or that plus the commit in flight (which may have returned without
	// the writer living to say so), which then displaced the older.
	n := len(known)
	before := slices.Clone(known[max(0, n-2):])
	slices.Reverse(before)
	inFlight := uint64(1)
	if n > 0 {
		inFlight = known[n-1].Index + 1
	}
	switch {
	case slices.EqualFunc(got, before, raft.SnapshotMeta.Same):
	case len(got) >= 1 && got[0].Index == inFlight &&
		slices.EqualFunc(got[1:], before[:min(1, len(before))], raft.SnapshotMeta.Same):
	default:
		t.Fatalf("rep %d: listed %v; want the newest two acknowledged %v, or snapshot %d and the newest", rep, indexes(got), indexes(before), inFlight)
	}
	checkOnlySnapshotFiles(t, dir, len(got))
	slices.Reverse(got)
	return got
}

// runAndKill starts a writer child, kills it delay after it has opened the
// store and returns the lines it printed.
func runAndKill(t *testing.T, exe, dir string, delay time.Duration) []string {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	var wg sync.WaitGroup
	ready := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
			}
			lines = append(lines, sc.Text())
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("writer never became ready")
	}
	time.Sleep(delay)
	_ = cmd.Process.Kill() // SIGKILL
	wg.Wait()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("writer ended with %v before the kill; stderr: %s", err, stderr.String())
	}
	return lines
}
