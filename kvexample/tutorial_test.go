//go:build unix

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestTutorial runs docs/tutorial.md as a reader would: every ```sh block
// in order, pasted into one shell (a block the tutorial runs in a second
// terminal, in a second shell), and checks each ```text block against what
// the commands before it printed. tutorialdoc_test.go says how a block is
// read and matched.
//
// It changes only what must differ on a machine that runs other tests at
// the same time, and says so when a step fails:
//
//   - Ports. The tutorial's 8080-8082, 7001-7009 and 8001-8009 become three
//     other blocks of ten ports, each a three-digit prefix and the last
//     digit (so 800$i still works), which the test holds from the start
//     (tutorialports_test.go says how).
//   - The binary. It is built once, as for the e2e tests (with -race under
//     -race), and stands in for `go run ./kvexample` and for the
//     tutorial's `go build -o kvd ./kvexample`, through this test binary,
//     which hands it its held ports and then executes it.
//   - Paths. mktemp and /tmp/kvdemo are under the test's temporary
//     directory; in outputs, the directory mktemp made reads as the
//     tutorial's /tmp/tmp.Xq3fR8aLk2.
//   - curl prints no progress meter, as in a terminal (CURL_HOME's .curlrc).
//   - The shell is not interactive, so it reports a background job killed
//     by a signal in the output of whichever block it is running then;
//     those reports are left out (see jobReport).
//
// Every process it starts is in a process group it kills at the end, and
// on Linux dies with the test binary even if the cleanups never run (a
// -timeout panic).
func TestTutorial(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole tutorial, about a minute; skipped with -short")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("RAFTLINE_REQUIRE_TUTORIAL") != "" {
				t.Fatalf("RAFTLINE_REQUIRE_TUTORIAL is set but the tutorial needs %s: %v", tool, err)
			}
			t.Skipf("the tutorial needs %s: %v", tool, err)
		}
	}
	doc, err := os.ReadFile("../docs/tutorial.md")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := parseTutorial(string(doc))
	if err != nil {
		t.Fatalf("docs/tutorial.md: %v", err)
	}
	for _, s := range steps {
		if s.expect != s.shown && s.shown != "" && !outputMatches(s.expect, s.shown, nil) {
			t.Errorf("docs/tutorial.md:%d: the output shown does not match the expect comment after it:\nshown:\n%s\nexpect:\n%s", s.line, s.shown, s.expect)
		}
	}
	if t.Failed() {
		return
	}
	r := newTutorialRun(t)
	for i, s := range steps {
		start := time.Now()
		switch s.kind {
		case stepRun:
			r.lastOut = r.shell.run(t, s.line, r.rewrite(s.text), mainStepTimeout)
			r.lastStep = s
			t.Logf("docs/tutorial.md:%d printed:\n%s", s.line, r.normalize(r.lastOut))
		case stepHidden:
			r.shell.run(t, s.line, r.rewrite(s.text), mainStepTimeout)
		case stepBackground:
			r.startBackground(t, s)
			if i+1 < len(steps) && steps[i+1].kind == stepBgOutput && steps[i+1].name == s.name {
				continue // waited for by its output step
			}
			if s.ready != "" {
				ready := r.rewrite(s.ready)
				r.waitForBackground(t, s.name, s.line, func(out string) bool { return strings.Contains(out, ready) })
			}
		case stepBgOutput:
			r.checkBackground(t, s)
			t.Logf("docs/tutorial.md:%d: %s printed:\n%s", s.line, s.name, r.normalize(r.bg[s.name].output()))
		case stepOutput:
			got := r.normalize(r.lastOut)
			want := r.rewrite(s.expect)
			vars := r.shell.variables(t, want)
			for attempt := 1; r.lastStep.retry && attempt < 5 && !outputMatches(want, got, vars); attempt++ {
				t.Logf("docs/tutorial.md:%d printed what the tutorial does not show; as the tutorial says, running it again in a second", r.lastStep.line)
				time.Sleep(time.Second)
				got = r.normalize(r.shell.run(t, r.lastStep.line, r.rewrite(r.lastStep.text), mainStepTimeout))
				t.Logf("docs/tutorial.md:%d printed:\n%s", r.lastStep.line, got)
			}
			if !outputMatches(want, got, vars) {
				t.Fatalf("docs/tutorial.md:%d: the commands at line %d printed what the tutorial does not show.\n"+
					"commands (as run):\n%s\nprinted:\n%s\ntutorial:\n%s", s.line, r.lastStep.line, r.rewrite(r.lastStep.text), got, want)
			}
		case stepInterrupt:
			r.interrupt(t, s)
		}
		t.Logf("docs/tutorial.md:%d: %v", s.line, time.Since(start).Round(10*time.Millisecond))
	}
}

// mainStepTimeout bounds one block of the reader's shell: its loops wait
// for elections, snapshots and catch-up, each of which takes a few seconds
// on a loaded machine.
const mainStepTimeout = 90 * time.Second

// tutorialRun is one run of the tutorial: the reader's shell, the second
// terminals, and the rewrites that make it fit this machine.
type tutorialRun struct {
	dir       string // the test's temporary directory
	tmp       string // TMPDIR for the shells
	env       []string
	rewrites  []rewrite
	local     *portBlock // the single-process cluster's ports, until it binds them
	shell     *tutorialShell
	lastOut   string
	lastStep  tutorialStep
	bg        map[string]*background
	bgStep    map[string]tutorialStep
	mktempDir *regexp.Regexp
}

type rewrite struct {
	re   *regexp.Regexp
	with string
}

func newTutorialRun(t *testing.T) *tutorialRun {
	dir := t.TempDir()
	r := &tutorialRun{dir: dir, tmp: filepath.Join(dir, "tmp"),
		bg: map[string]*background{}, bgStep: map[string]tutorialStep{}}
	curlHome := filepath.Join(dir, "curl")
	work := filepath.Join(dir, "work")
	for _, d := range []string{r.tmp, curlHome, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(curlHome, ".curlrc"), []byte("no-progress-meter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	blocks := holdPortBlocks(t, 3)
	r.local = blocks[0]
	raftPorts, httpPorts := blocks[1], blocks[2]
	broker := startSocketBroker(t, dir, append(append([]*heldSocket{}, raftPorts.socks...), httpPorts.socks...))
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r.env = append(os.Environ(), "TMPDIR="+r.tmp, "CURL_HOME="+curlHome, "KVD="+self,
		tutorialKVDEnv+"="+buildKVD(t), tutorialBrokerEnv+"="+broker.path)
	r.mktempDir = regexp.MustCompile(regexp.QuoteMeta(r.tmp) + `/tmp\.[A-Za-z0-9]+`)

	local := r.local.prefix
	r.rewrites = []rewrite{
		{regexp.MustCompile(`go run \./kvexample`), `"$$KVD" --port ` + local + "0"},
		{regexp.MustCompile(`go build -o kvd \./kvexample`), `ln -s "$$KVD" kvd`},
		{regexp.MustCompile(`/tmp/kvdemo`), r.tmp + "/kvdemo"},
		{regexp.MustCompile(`\b808([0-9[])`), local + "$1"},
		{regexp.MustCompile(`\b700([0-9$])`), raftPorts.prefix + "$1"},
		{regexp.MustCompile(`\b800([0-9$])`), httpPorts.prefix + "$1"},
	}
	t.Logf("ports: %s0-%s9 (8080...), %s0-%s9 (700x), %s0-%s9 (800x)", local, local,
		raftPorts.prefix, raftPorts.prefix, httpPorts.prefix, httpPorts.prefix)
	r.shell = startTutorialShell(t, work, r.env)
	t.Cleanup(func() {
		for _, b := range r.bg {
			b.kill()
		}
	})
	return r
}

// rewrite fits a block or an expected output to this run.
func (r *tutorialRun) rewrite(s string) string {
	for _, rw := range r.rewrites {
		s = rw.re.ReplaceAllString(s, rw.with)
	}
	return s
}

// normalize makes a run's output comparable with the tutorial's.
func (r *tutorialRun) normalize(out string) string {
	return r.mktempDir.ReplaceAllString(out, "/tmp/tmp.Xq3fR8aLk2")
}

// tutorialShell is the reader's shell: one bash that runs every block in
// turn, so variables set by one block are there for the next.
type tutorialShell struct {
	cmd   *exec.Cmd
	stdin interface{ Write([]byte) (int, error) }
	dir   string
	n     int
	done  chan struct{}
}

func startTutorialShell(t *testing.T, work string, env []string) *tutorialShell {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Dir, cmd.Env = work, env
	// Its own process group, so that the nodes the tutorial leaves
	// running (or a failed run leaves behind) can all be stopped.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sh := &tutorialShell{cmd: cmd, stdin: stdin, dir: filepath.Join(filepath.Dir(work), "steps"), done: make(chan struct{})}
	if err := os.Mkdir(sh.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(sh.done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-sh.done
	})
	return sh
}

// run runs a block in the shell and returns what it printed.
func (sh *tutorialShell) run(t *testing.T, line int, block string, timeout time.Duration) string {
	t.Helper()
	sh.n++
	base := filepath.Join(sh.dir, strconv.Itoa(sh.n))
	if err := os.WriteFile(base+".sh", []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(sh.stdin, ". '%s.sh' >'%s.out' 2>&1 </dev/null; echo $? >'%s.rc.tmp'; mv '%s.rc.tmp' '%s.rc'\n", base, base, base, base, base)
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(base + ".rc"); err == nil {
			break
		}
		select {
		case <-sh.done:
			t.Fatalf("docs/tutorial.md:%d: the shell exited running:\n%s", line, block)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(base + ".out")
			t.Fatalf("docs/tutorial.md:%d: the block did not finish in %v. Commands (as run):\n%s\nprinted so far:\n%s", line, timeout, block, out)
		}
	}
	out, err := os.ReadFile(base + ".out")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"command not found", "syntax error", "No such file or directory", "unbound variable"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Fatalf("docs/tutorial.md:%d: the shell says %q. Commands (as run):\n%s\nprinted:\n%s", line, bad, block, out)
		}
	}
	text := string(out)
	if reports := jobReport.FindAllString(text, -1); reports != nil {
		t.Logf("docs/tutorial.md:%d: the shell reported, and the test left out of the output:\n%s", line, strings.Join(reports, ""))
		text = jobReport.ReplaceAllString(text, "")
	}
	return text
}

// jobReport is a line in which a shell that is not interactive reports a
// background job killed by a signal (`kill -9` in the tutorial). It comes
// when the shell notices, which may be during the next block, or the one
// after: an interactive shell prints it before a prompt instead, between
// the commands' outputs, and so does the tutorial.
// It names the shell, or the file of the block it was running: "bash:
// line 3:  2338 Killed    ./kvd --id $i ...", ".../steps/60.sh: line 4: ...".
var jobReport = regexp.MustCompile(`(?m)^(?:bash|\S+\.sh): (?:line [0-9]+: )? *[0-9]+ (?:Killed|Terminated|Hangup|Interrupt|Quit|Aborted)\b.*\n?`)

// variables reads, once, the shell variables pattern names ($NAME), and
// returns a function giving their values.
func (sh *tutorialShell) variables(t *testing.T, pattern string) func(string) string {
	t.Helper()
	vals := map[string]string{}
	for _, ref := range varRef.FindAllString(pattern, -1) {
		name := ref[1:]
		if _, ok := vals[name]; !ok {
			// Into a file of its own: the shell may add a report of a
			// job to what a block prints.
			file := filepath.Join(sh.dir, "variable")
			sh.run(t, 0, fmt.Sprintf("printf '%%s' \"$%s\" >'%s'\n", name, file), 10*time.Second)
			v, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			vals[name] = string(v)
		}
	}
	return func(name string) string { return vals[name] }
}

// background is a block running in a second terminal.
type background struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (b *background) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.Write(p)
}

func (b *background) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

func (b *background) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// kill stops the block and everything it started, if still running.
func (b *background) kill() {
	if !b.exited() {
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-b.done
}

func (r *tutorialRun) startBackground(t *testing.T, s tutorialStep) {
	t.Helper()
	if old := r.bg[s.name]; old != nil && !old.exited() {
		t.Fatalf("docs/tutorial.md:%d: %s is still running", s.line, s.name)
	}
	text := r.rewrite(s.text)
	if r.local.socks != nil && strings.Contains(text, "--port "+r.local.prefix+"0") {
		r.local.release() // for the single-process cluster to bind
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-c", text)
	cmd.Dir, cmd.Env = filepath.Join(r.dir, "work"), r.env
	// Its own process group: Ctrl-C in a terminal signals the whole
	// foreground job.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
	b := &background{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = b, b
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.err = cmd.Wait(); close(b.done) }()
	r.bg[s.name], r.bgStep[s.name] = b, s
}

// backgroundTimeout bounds the wait for a second terminal's output.
const backgroundTimeout = 60 * time.Second

// waitForBackground waits until ok holds for the block's output.
func (r *tutorialRun) waitForBackground(t *testing.T, name string, line int, ok func(string) bool) {
	t.Helper()
	b := r.bg[name]
	deadline := time.Now().Add(backgroundTimeout)
	for !ok(r.normalize(b.output())) {
		if time.Now().After(deadline) || b.exited() && !ok(r.normalize(b.output())) {
			t.Fatalf("docs/tutorial.md:%d: %s printed:\n%s", line, name, b.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkBackground waits until a second terminal has printed its ready
// text and what the tutorial shows: a watch answers only once the change
// is made. What the tutorial shows is what the block printed so far, so
// lines printed after it (a running cluster's later log) are not compared.
func (r *tutorialRun) checkBackground(t *testing.T, s tutorialStep) {
	t.Helper()
	bs, ok := r.bgStep[s.name]
	if !ok {
		t.Fatalf("docs/tutorial.md:%d: no background block %s", s.line, s.name)
	}
	want, ready := r.rewrite(s.expect), r.rewrite(bs.ready)
	vars := r.shell.variables(t, want)
	b := r.bg[s.name]
	deadline := time.Now().Add(backgroundTimeout)
	var readySince time.Time
	for {
		out := r.normalize(b.output())
		isReady := strings.Contains(out, ready)
		if isReady && outputMatches(strings.TrimRight(want, "\n")+"\n...\n", out, vars) {
			return
		}
		if isReady && readySince.IsZero() {
			readySince = time.Now()
		}
		// Once ready, what the tutorial shows follows within moments
		// (the commands that cause it have run): do not wait the whole
		// timeout for a mismatch.
		if time.Now().After(deadline) || b.exited() || !readySince.IsZero() && time.Since(readySince) > bgSettleTimeout {
			t.Fatalf("docs/tutorial.md:%d: %s (started at line %d) printed what the tutorial does not show.\n"+
				"commands (as run):\n%s\nprinted:\n%s\ntutorial:\n%s", s.line, s.name, bs.line, r.rewrite(bs.text), out, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bgSettleTimeout bounds the wait, after a second terminal printed its
// ready text, for the rest of what the tutorial shows.
const bgSettleTimeout = 10 * time.Second

// interrupt is the reader's Ctrl-C: SIGINT to the job, which must then
// exit with status 0.
func (r *tutorialRun) interrupt(t *testing.T, s tutorialStep) {
	t.Helper()
	b := r.bg[s.name]
	if b == nil {
		t.Fatalf("docs/tutorial.md:%d: no background block %s", s.line, s.name)
	}
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("docs/tutorial.md:%d: %s did not stop within 30s of Ctrl-C; it printed:\n%s", s.line, s.name, b.output())
	}
	var exit *exec.ExitError
	if b.err != nil && !(errors.As(b.err, &exit) && exit.ExitCode() == 0) {
		t.Fatalf("docs/tutorial.md:%d: %s ended with %v after Ctrl-C, want exit status 0; it printed:\n%s", s.line, s.name, b.err, b.output())
	}
}

func TestTutorialJobReportsLeftOut(t *testing.T) {
	for _, report := range []string{
		"bash: 32034 Killed                  sleep 100\n",
		"bash: line 3: 32034 Killed                  sleep 100\n",
		"/tmp/TestTutorial42/001/steps/75.sh: line 4:  2338 Killed                  ./kvd --id $i --raft-addr 127.0.0.1:550$i\n",
	} {
		if got := jobReport.ReplaceAllString("a\n"+report+"b\n", ""); got != "a\nb\n" {
			t.Errorf("with the report %q, the output reads %q", report, got)
		}
	}
	if out := "node 1: removed from the cluster; shutting down\n"; jobReport.MatchString(out) {
		t.Errorf("%q is taken for a report of the shell", out)
	}
}
