package wal

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftline/raft"
)

// crashChildEnv switches the test binary into the writer role of
// TestKilledWriterKeepsEveryAcknowledgedEntry; its value is the WAL dir.
const crashChildEnv = "RAFTLINE_WAL_CRASH_CHILD"

var crashReps = flag.Int("wal.crash-reps", 50, "how many times the real-process crash test kills its writer")

// crashPayload is the 128-byte entry data the child writes for (index,
// term), so the parent can check content without being told it.
func crashPayload(index, term uint64) []byte {
	p := make([]byte, 128)
	for i := 0; i+16 <= len(p); i += 16 {
		binary.LittleEndian.PutUint64(p[i:], index)
		binary.LittleEndian.PutUint64(p[i+8:], term^uint64(i))
	}
	return p
}

// runCrashChild appends batches to the WAL in dir until killed, printing
// "first last term" after each Save returns: those entries are durable.
// Now and then it installs a snapshot instead, past the end of the log
// (dropping every entry) or at an entry it holds (compacting), printing
// "installing index term end" before and "install index term end" once
// InstallSnapshot returns. Each run uses a
// new term so the parent can tell runs apart.
func runCrashChild(dir string) int {
	w, err := Open(dir, Options{SegmentSize: 64 << 10, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 2
	}
	hs, _ := w.InitialState()
	term := hs.Term + 1
	if err := w.Save(raft.HardState{Term: term, Vote: 1}, nil); err != nil {
		fmt.Fprintln(os.Stderr, "save:", err)
		return 3
	}
	last, _ := w.LastIndex()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), term))
	for {
		if p := r.IntN(40); p < 2 {
			first, _ := w.FirstIndex()
			index, iterm := last+1+uint64(r.IntN(5)), term // past the end
			if p == 1 && last >= first {
				index = last - uint64(r.IntN(int(min(last-first+1, 20))))
				iterm, _ = w.Term(index)
			}
			// Announced first: the entries it drops may be gone even if the
			// kill comes before it returns.
			fmt.Fprintf(os.Stdout, "installing %d %d end\n", index, iterm)
			if err := w.InstallSnapshot(index, iterm); err != nil {
				fmt.Fprintln(os.Stderr, "install:", err)
				return 3
			}
			fmt.Fprintf(os.Stdout, "install %d %d end\n", index, iterm)
			last = max(last, index)
			continue
		}
		ents := make([]raft.Entry, 1+r.IntN(16))
		for i := range ents {
			idx := last + 1 + uint64(i)
			ents[i] = raft.Entry{Index: idx, Term: term, Data: crashPayload(idx, term)}
		}
		if err := w.Save(raft.HardState{}, ents); err != nil {
			fmt.Fprintln(os.Stderr, "save:", err)
			return 3
		}
		// Unbuffered: the line must leave before the next write starts.
		fmt.Fprintf(os.Stdout, "%d %d %d\n", last+1, last+uint64(len(ents)), term)
		last += uint64(len(ents))
	}
}

// TestKilledWriterKeepsEveryAcknowledgedEntry re-executes the test binary
// as a writer, SIGKILLs it at a random moment, reopens the WAL and checks
// that every entry the writer acknowledged is there with its content (but
// those a later acknowledged snapshot install dropped or compacted), and
// that the log starts at or before the last installed snapshot, with its
// term; repeated -wal.crash-reps times on the same directory.
func TestKilledWriterKeepsEveryAcknowledgedEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	acked := map[uint64]uint64{} // index → term
	// The last snapshot whose install returned, and one announced after it
	// (which may or may not have happened): index, term.
	var installed, pending [2]uint64
	installs, nacked := 0, 0
	r := rand.New(rand.NewPCG(1, 2))
	torn := 0
	for rep := range *crashReps {
		lines := runAndKill(t, exe, dir, time.Duration(r.IntN(60))*time.Millisecond)
		for _, l := range lines {
			var first, last, term uint64
			if f := strings.Fields(l); len(f) == 4 && f[3] == "end" {
				fmt.Sscan(f[1]+" "+f[2], &last, &term)
				switch f[0] {
				case "installing":
					pending = [2]uint64{last, term}
					for i := range acked {
						if i <= last {
							delete(acked, i) // dropped or compacted
						}
					}
				case "install":
					installed, pending = [2]uint64{last, term}, [2]uint64{}
					installs++
				}
				continue
			}
			if _, err := fmt.Sscan(l, &first, &last, &term); err != nil {
				t.Fatalf("rep %d: bad ack line %q", rep, l)
			}
			for i := first; i <= last; i++ {
				acked[i] = term
			}
			nacked += int(last - first + 1)
		}
		w, err := Open(dir, Options{SegmentSize: 64 << 10, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("rep %d: reopening after kill: %v", rep, err)
		}
		if w.Recovery().TornTail {
			torn++
		}
		checkAcked(t, w, acked, rep)
		if installed != [2]uint64{} && !startsAtOrBefore(w, installed) && !startsAtOrBefore(w, pending) {
			first, _ := w.FirstIndex()
			t.Fatalf("rep %d: log starts at %d, not at or before installed snapshot %v (or %v, in flight) with its term",
				rep, first, installed, pending)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d kills, %d entries acknowledged (%d still in the log at the end), %d snapshots installed, %d recoveries dropped a torn tail",
		*crashReps, nacked, len(acked), installs, torn)
}

// runAndKill starts a writer child, kills it after delay and returns the
// acknowledgement lines it printed.
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}()
	time.Sleep(delay)
	_ = cmd.Process.Kill() // SIGKILL
	wg.Wait()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		// Exit code -1: killed by a signal, as intended.
		t.Fatalf("writer ended with %v before the kill; stderr: %s", err, stderr.String())
	}
	// A line cut mid-way by the kill is not an acknowledgement.
	if n := len(lines); n > 0 && len(strings.Fields(lines[n-1])) != 3 && !strings.HasSuffix(lines[n-1], " end") {
		lines = lines[:n-1]
	}
	return lines
}

// startsAtOrBefore reports whether w's log starts at or before the
// snapshot (index, term) and holds index's term.
func startsAtOrBefore(w *WAL, snap [2]uint64) bool {
	first, _ := w.FirstIndex()
	term, err := w.Term(snap[0])
	return snap[0] != 0 && first-1 <= snap[0] && err == nil && term == snap[1]
}

func checkAcked(t *testing.T, w *WAL, acked map[uint64]uint64, rep int) {
	t.Helper()
	last, _ := w.LastIndex()
	for idx, term := range acked {
		if idx > last {
			t.Fatalf("rep %d: acknowledged entry %d missing (log ends at %d)", rep, idx, last)
		}
		ents, err := w.Entries(idx, idx+1, 0)
		if err != nil {
			t.Fatalf("rep %d: reading acknowledged entry %d: %v", rep, idx, err)
		}
		if e := ents[0]; e.Term != term || string(e.Data) != string(crashPayload(idx, term)) {
			t.Fatalf("rep %d: entry %d has term %d, want acknowledged term %d (or data differs)", rep, idx, e.Term, term)
		}
	}
}
