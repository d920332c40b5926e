package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// This file reads docs/tutorial.md the way TestTutorial runs it (see
// tutorial_test.go), and matches what a command printed against what the
// tutorial shows.
//
// The conventions, for whoever edits the tutorial:
//
//   - A ```sh block is commands, run in order in one shell, as a reader
//     pasting them would.
//   - The first ```text block after a ```sh block (before the next one) is
//     what those commands print. Other blocks (```go, or no language) are
//     illustrations and are not checked.
//   - In a ```text block, "..." stands for any text within a line, and a
//     line that is only "..." for any number of lines. Of an HTTP answer
//     printed by curl -i, only the header lines the block shows are
//     compared: it may leave out Date, Content-Length and the like.
//   - HTML comments starting "<!-- test:" steer the test and are invisible
//     once the markdown is rendered:
//     "<!-- test: background NAME [ready="TEXT"] -->" runs the next ```sh
//     block in a second shell (the reader's second terminal) and, when a
//     ```text block follows, waits until its output contains TEXT and
//     then checks it. A second terminal's ```text block is what it
//     printed so far: what it prints after that (a running cluster's log)
//     is not compared.
//     "<!-- test: retry -->" lets the next ```sh block be run again (after
//     a second, a few times) while its output does not match, as the
//     tutorial tells a reader to do after a 503: only for blocks that are
//     safe to repeat.
//     "<!-- test: output NAME -->" checks the next ```text block against
//     background NAME's output (waiting for it to match).
//     "<!-- test: interrupt NAME -->" is the reader's Ctrl-C there.
//     "<!-- test: skip -->" leaves out the next ```sh block.
//     "<!-- test: run COMMAND -->" runs a command the reader does not see
//     (to note a value the expectation needs).
//     "<!-- test: expect" followed by lines and "-->", right after a ```text
//     block, is what the output is checked against instead, for output
//     that differs from run to run in more than "..." can say: it may use
//     $NAME for a shell variable of the reader's shell. The shown block
//     must still match it (with any number for each $NAME), so the two
//     cannot drift apart.

// tutorialStep is one thing TestTutorial does, in the tutorial's order.
type tutorialStep struct {
	line int // in the markdown, for messages
	kind stepKind
	// text is the block's content (commands or expected output), or the
	// directive's argument.
	text string
	// name and ready are a background block's or directive's.
	name, ready string
	// retry: the block may be run again while its output does not match.
	retry bool
	// expect, for an output, is what to match (the block, or its expect
	// directive); shown is the block as the reader sees it.
	expect, shown string
}

type stepKind uint8

const (
	stepRun        stepKind = iota + 1 // a ```sh block, in the main shell
	stepBackground                     // a ```sh block, in a second shell
	stepOutput                         // a ```text block: the previous run's output
	stepBgOutput                       // a ```text block: a background block's output
	stepInterrupt
	stepHidden // a command the reader does not see
)

var directive = regexp.MustCompile(`(?s)^<!-- test: (\w[\w-]*)(.*?)-->$`)

// parseTutorial turns the markdown into steps.
func parseTutorial(doc string) ([]tutorialStep, error) {
	lines := strings.Split(doc, "\n")
	var (
		steps            []tutorialStep
		pendingBg        *tutorialStep // a background directive waiting for its block
		pendingOutputFor string        // an output directive's NAME
		skip, retry      bool
		lastRun          = -1 // index of the last run step with no output yet
	)
	const skippedRun = -2
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.HasPrefix(line, "<!-- test:"):
			start := i
			text := line
			for !strings.HasSuffix(strings.TrimSpace(text), "-->") {
				i++
				if i == len(lines) {
					return nil, fmt.Errorf("line %d: unterminated <!-- test: comment", start+1)
				}
				text += "\n" + lines[i]
			}
			m := directive.FindStringSubmatch(strings.TrimSpace(text))
			if m == nil {
				return nil, fmt.Errorf("line %d: cannot read %q", start+1, text)
			}
			verb, arg := m[1], strings.TrimSpace(m[2])
			switch verb {
			case "background":
				bg, err := parseBackground(start+1, arg)
				if err != nil {
					return nil, err
				}
				pendingBg = &bg
			case "output":
				pendingOutputFor = arg
			case "interrupt":
				steps = append(steps, tutorialStep{line: start + 1, kind: stepInterrupt, name: arg})
			case "skip":
				skip = true
			case "retry":
				retry = true
			case "run":
				steps = append(steps, tutorialStep{line: start + 1, kind: stepHidden, text: arg})
			case "expect":
				n := len(steps) - 1
				if n < 0 || (steps[n].kind != stepOutput && steps[n].kind != stepBgOutput) {
					return nil, fmt.Errorf("line %d: an expect comment must follow a ```text block", start+1)
				}
				steps[n].expect = strings.TrimPrefix(m[2], "\n")
			default:
				return nil, fmt.Errorf("line %d: unknown directive %q", start+1, verb)
			}
		case strings.HasPrefix(line, "```"):
			lang := strings.TrimSpace(strings.TrimPrefix(line, "```"))
			start := i
			var body []string
			for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
				body = append(body, lines[i])
			}
			if i == len(lines) {
				return nil, fmt.Errorf("line %d: unterminated code block", start+1)
			}
			text := strings.Join(body, "\n") + "\n"
			switch lang {
			case "sh":
				switch {
				case skip:
					skip, lastRun = false, skippedRun
				case pendingBg != nil:
					bg := *pendingBg
					bg.line, bg.text = start+1, text
					steps = append(steps, bg)
					pendingBg, lastRun = nil, len(steps)-1
				default:
					steps = append(steps, tutorialStep{line: start + 1, kind: stepRun, text: text, retry: retry})
					lastRun, retry = len(steps)-1, false
				}
			case "text":
				out := tutorialStep{line: start + 1, expect: text, shown: text}
				switch {
				case lastRun == skippedRun:
					lastRun = -1
					continue // the output of a block left out
				case pendingOutputFor != "":
					out.kind, out.name = stepBgOutput, pendingOutputFor
					pendingOutputFor = ""
				case lastRun >= 0 && steps[lastRun].kind == stepBackground:
					out.kind, out.name = stepBgOutput, steps[lastRun].name
				case lastRun >= 0:
					out.kind = stepOutput
				default:
					return nil, fmt.Errorf("line %d: a ```text block that follows no ```sh block", start+1)
				}
				steps = append(steps, out)
				lastRun = -1
			}
		}
	}
	if pendingBg != nil || pendingOutputFor != "" || skip || retry {
		return nil, fmt.Errorf("a directive at the end of the tutorial applies to no block")
	}
	return steps, nil
}

var bgArgs = regexp.MustCompile(`^(\w+)(?:\s+ready="([^"]*)")?$`)

// parseBackground reads `NAME [ready="..."]`.
func parseBackground(line int, arg string) (tutorialStep, error) {
	m := bgArgs.FindStringSubmatch(arg)
	if m == nil {
		return tutorialStep{}, fmt.Errorf("line %d: cannot read background %q", line, arg)
	}
	return tutorialStep{kind: stepBackground, name: m[1], ready: m[2]}, nil
}

// outputMatches reports whether out is what pattern (a ```text block)
// shows; vars expands $NAME (nil: any number).
func outputMatches(pattern, out string, vars func(string) string) bool {
	want := splitLines(pattern)
	got := filterHeaders(splitLines(out), headerNames(want))
	res := make([]*regexp.Regexp, len(want))
	for i, w := range want {
		if w != "..." {
			res[i] = linePattern(w, vars)
		}
	}
	return matchLines(res, got)
}

// matchLines matches lines against patterns, a nil pattern standing for
// any number of lines.
func matchLines(pats []*regexp.Regexp, lines []string) bool {
	if len(pats) == 0 {
		return len(lines) == 0
	}
	if pats[0] == nil {
		for skip := 0; skip <= len(lines); skip++ {
			if matchLines(pats[1:], lines[skip:]) {
				return true
			}
		}
		return false
	}
	return len(lines) > 0 && pats[0].MatchString(lines[0]) && matchLines(pats[1:], lines[1:])
}

var varRef = regexp.MustCompile(`\$[A-Za-z_][A-Za-z0-9_]*`)

// linePattern turns one expected line into an anchored regexp: "..." is
// any text, $NAME the variable's value (or any number when vars is nil).
func linePattern(line string, vars func(string) string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i, part := range strings.Split(line, "...") {
		if i > 0 {
			b.WriteString(".*?")
		}
		last := 0
		for _, loc := range varRef.FindAllStringIndex(part, -1) {
			b.WriteString(regexp.QuoteMeta(part[last:loc[0]]))
			if vars == nil {
				b.WriteString(`[0-9]+`)
			} else {
				b.WriteString(regexp.QuoteMeta(vars(part[loc[0]+1 : loc[1]])))
			}
			last = loc[1]
		}
		b.WriteString(regexp.QuoteMeta(part[last:]))
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// splitLines splits text into lines without their line endings or
// trailing blanks, dropping empty lines at the end (a terminal shows
// none).
func splitLines(s string) []string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

var httpStatusLine = regexp.MustCompile(`^HTTP/[0-9.]+ [0-9]{3}`)

// headerNames returns the header names an expected block shows in its
// HTTP answers.
func headerNames(lines []string) map[string]bool {
	names := map[string]bool{}
	inHead := false
	for _, l := range lines {
		switch {
		case httpStatusLine.MatchString(l):
			inHead = true
		case l == "":
			inHead = false
		case inHead:
			if name, _, ok := strings.Cut(l, ":"); ok {
				names[strings.ToLower(name)] = true
			}
		}
	}
	return names
}

// filterHeaders drops, from the HTTP answers in lines, the header lines
// whose names keep is without.
func filterHeaders(lines []string, keep map[string]bool) []string {
	var out []string
	inHead := false
	for _, l := range lines {
		switch {
		case httpStatusLine.MatchString(l):
			inHead = true
		case l == "":
			inHead = false
		case inHead:
			if name, _, ok := strings.Cut(l, ":"); ok && !keep[strings.ToLower(name)] {
				continue
			}
		}
		out = append(out, l)
	}
	return out
}

func TestTutorialOutputMatching(t *testing.T) {
	vars := func(name string) string { return map[string]string{"L": "2"}[name] }
	cases := []struct {
		name, pattern, out string
		want               bool
	}{
		{"same text", "a\nb\n", "a\nb\n", true},
		{"a line missing", "a\nb\n", "a\n", false},
		{"a line too many", "a\n", "a\nb\n", false},
		{"... within a line", `{"id":1,...,"lease":true}`, `{"id":1,"term":2,"lease":true}`, true},
		{"... within a line is not anything", `{"id":1,...,"lease":true}`, `{"id":2,"term":2,"lease":true}`, false},
		{"a ... line is any lines", "a\n...\nz\n", "a\nb\nc\nz\n", true},
		{"a ... line is no line too", "a\n...\nz\n", "a\nz\n", true},
		{"a ... line does not skip the end", "a\n...\nz\n", "a\nb\n", false},
		{"trailing blanks and CRLF", "a\nb\n", "a  \r\nb\r\n", true},
		{"empty lines at the end", "a\n", "a\n\n\n", true},
		{"empty lines elsewhere count", "a\nb\n", "a\n\nb\n", false},
		{"regexp characters are literal", "x.y (1)\n", "xzy (1)\n", false},
		{"variables", "node $L: removed\n", "node 2: removed\n", true},
		{"variables are their value", "node $L: removed\n", "node 3: removed\n", false},
		{"headers not shown are ignored", "HTTP/1.1 307 Temporary Redirect\nLocation: /x\n\n{}\n",
			"HTTP/1.1 307 Temporary Redirect\r\nContent-Type: application/json\r\nLocation: /x\r\nDate: now\r\n\r\n{}", true},
		{"headers shown must be there", "HTTP/1.1 503 Service Unavailable\nRetry-After: 1\n\n{}\n",
			"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n{}", false},
		{"the status line counts", "HTTP/1.1 200 OK\n", "HTTP/1.1 404 Not Found\r\nDate: now\r\n", false},
	}
	for _, c := range cases {
		if got := outputMatches(c.pattern, c.out, vars); got != c.want {
			t.Errorf("%s: outputMatches(%q, %q) = %v, want %v", c.name, c.pattern, c.out, got, c.want)
		}
	}
	if !outputMatches("node $L: removed\n", "node 14: removed\n", nil) {
		t.Error("with no variables, $L does not stand for any number")
	}
}

func TestTutorialParsing(t *testing.T) {
	doc := "intro\n<!-- test: background cluster ready=\"Ctrl-C stops\" -->\n" +
		"```sh\ngo run ./kvexample\n```\n\n```text\nleader: node 1 (x)\n```\n\n<!-- test: retry -->\n" +
		"```sh\ncurl a\n```\nprose\n```\nnot checked\n```\n```text\nA\n```\n<!-- test: expect\n$L\n-->\n" +
		"<!-- test: skip -->\n```sh\nsleep 100\n```\n```text\nnever\n```\n" +
		"<!-- test: interrupt cluster -->\n<!-- test: run N=1 -->\n"
	steps, err := parseTutorial(doc)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("%d %q %q %q %v %q", s.kind, s.name, s.text, s.ready, s.retry, s.expect))
	}
	want := []string{
		fmt.Sprintf("%d %q %q %q %v %q", stepBackground, "cluster", "go run ./kvexample\n", "Ctrl-C stops", false, ""),
		fmt.Sprintf("%d %q %q %q %v %q", stepBgOutput, "cluster", "", "", false, "leader: node 1 (x)\n"),
		fmt.Sprintf("%d %q %q %q %v %q", stepRun, "", "curl a\n", "", true, ""),
		fmt.Sprintf("%d %q %q %q %v %q", stepOutput, "", "", "", false, "$L\n"),
		fmt.Sprintf("%d %q %q %q %v %q", stepInterrupt, "cluster", "", "", false, ""),
		fmt.Sprintf("%d %q %q %q %v %q", stepHidden, "", "N=1", "", false, ""),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, bad := range []string{
		"```text\norphan\n```\n",
		"<!-- test: frobnicate -->\n",
		"<!-- test: skip -->\n",
		"```sh\nunterminated\n",
		"<!-- test: expect\nx\n-->\n",
		"<!-- test: background cluster ready=Ctrl-C -->\n```sh\nx\n```\n",
	} {
		if _, err := parseTutorial(bad); err == nil {
			t.Errorf("parseTutorial(%q) succeeded, want an error", bad)
		}
	}
}

// TestTutorialNamesExist checks that the files and the tests the tutorial
// sends a reader to (`kvexample/locks.go`, `TestApplyIsDeterministic`)
// exist: TestTutorial checks what the commands print, not the prose.
func TestTutorialNamesExist(t *testing.T) {
	doc, err := os.ReadFile("../docs/tutorial.md")
	if err != nil {
		t.Fatal(err)
	}
	var tests strings.Builder
	for _, pattern := range []string{"*_test.go", "../*_test.go"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			tests.Write(b)
		}
	}
	seen := map[string]bool{}
	for _, m := range tutorialName.FindAllStringSubmatch(string(doc), -1) {
		name := m[1]
		if seen[name] {
			continue
		}
		seen[name] = true
		if strings.Contains(name, "/") {
			if _, err := os.Stat(filepath.Join("..", name)); err != nil {
				t.Errorf("docs/tutorial.md names %s: %v", name, err)
			}
		} else if !strings.Contains(tests.String(), "\nfunc "+name+"(") {
			t.Errorf("docs/tutorial.md names %s, which no test file of kvexample or raft defines", name)
		}
	}
	if len(seen) == 0 {
		t.Error("found no names in docs/tutorial.md")
	}
}

// tutorialName is a backquoted file of the repository or test function.
var tutorialName = regexp.MustCompile("`((?:kvexample|wal|snapstore|raftprom|docs)/[\\w./-]+|(?:Test|Benchmark|Fuzz|Example)[A-Z]\\w*)`")
