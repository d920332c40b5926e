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
// Each run uses a new term so the parent can tell runs apart.
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
// that every entry the writer acknowledged is there with its content;
// repeated -wal.crash-reps times on the same directory.
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
	r := rand.New(rand.NewPCG(1, 2))
	torn := 0
	for rep := range *crashReps {
		lines := runAndKill(t, exe, dir, time.Duration(r.IntN(60))*time.Millisecond)
		for _, l := range lines {
			var first, last, term uint64
			if _, err := fmt.Sscan(l, &first, &last, &term); err != nil {
				t.Fatalf("rep %d: bad ack line %q", rep, l)
			}
			for i := first; i <= last; i++ {
				acked[i] = term
			}
		}
		w, err := Open(dir, Options{SegmentSize: 64 << 10, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("rep %d: reopening after kill: %v", rep, err)
		}
		if w.Recovery().TornTail {
			torn++
		}
		checkAcked(t, w, acked, rep)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d kills, %d acknowledged entries checked, %d recoveries dropped a torn tail", *crashReps, len(acked), torn)
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
	if n := len(lines); n > 0 && len(strings.Fields(lines[n-1])) != 3 {
		lines = lines[:n-1]
	}
	return lines
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
