package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The /ui page in a real headless browser: Debian's chromium (apt-get
// install chromium), driven with chromedp. It skips when no browser is
// installed, unless RAFTLINE_REQUIRE_BROWSER is set (CI sets it, so CI
// fails rather than skips). Screenshots go to RAFTLINE_SCREENSHOTS, or a
// new temporary directory, and their paths are printed.

func TestClusterPageShowsOneLeaderAFailoverAndAWriteOnEveryCard(t *testing.T) {
	b := startBrowser(t)
	c, _ := startTestCluster(t)
	b.open(c.nodes[0].URL() + "/ui/")

	st := b.waitFor("exactly one leader card", 10*time.Second, func(p pageState) bool { return p.leader() != 0 })
	old := st.leader()
	b.shot("ui-1-one-leader")

	start := time.Now()
	b.click(fmt.Sprintf(`button[data-action="crash"][data-node="%d"]`, old))
	b.waitFor(fmt.Sprintf("node %d's card to show it crashed", old), 5*time.Second, func(p pageState) bool {
		return !p.card(old).Up
	})
	st = b.waitFor("a new leader", 5*time.Second, func(p pageState) bool { return p.leader() != 0 && p.leader() != old })
	t.Logf("the page showed node %d leading %v after node %d crashed", st.leader(), time.Since(start).Round(time.Millisecond), old)
	b.shot("ui-2-new-leader")

	b.click(fmt.Sprintf(`button[data-action="restart"][data-node="%d"]`, old))
	b.click(`#heal`)
	b.waitFor("every node up again, one leader", 10*time.Second, func(p pageState) bool {
		return p.leader() != 0 && p.up() == 3
	})

	key, value := "tutorial", "written through the page"
	b.fill("#w-key", key)
	b.fill("#w-value", value)
	b.click(`#w-put`)
	b.waitFor("the key on all three cards", 10*time.Second, func(p pageState) bool {
		n := 0
		for _, cd := range p.Cards {
			if cd.Keys[key] == value {
				n++
			}
		}
		return n == 3 && p.leader() != 0
	})
	b.shot("ui-3-write-on-every-card")
}

// browser is a headless chromium showing one page.
type browser struct {
	t    *testing.T
	ctx  context.Context
	dir  string // screenshots
	last uint64 // the newest frame seen
	seen time.Time
}

// startBrowser starts chromium, stopped when the test ends.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	bin := findChromium()
	if bin == "" {
		if os.Getenv("RAFTLINE_REQUIRE_BROWSER") != "" {
			t.Fatal("RAFTLINE_REQUIRE_BROWSER is set but no chromium was found (apt-get install chromium, or set RAFTLINE_CHROMIUM)")
		}
		t.Skip("no chromium found: install Debian's chromium package (or set RAFTLINE_CHROMIUM) to run the browser test")
	}
	// The flags Chromium needs as root on a machine with no outside
	// network: no sandbox, no GPU, and none of its own background traffic.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1300),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTime()
		cancelCtx()
		cancelAlloc() // waits for the browser to exit
	})
	dir := os.Getenv("RAFTLINE_SCREENSHOTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "raftline-ui-"); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	return &browser{t: t, ctx: ctx, dir: dir}
}

// findChromium returns the browser to drive, or "" if there is none.
func findChromium() string {
	if p := os.Getenv("RAFTLINE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) open(url string) { b.t.Helper(); b.run("opening "+url, chromedp.Navigate(url)) }

func (b *browser) click(sel string) {
	b.t.Helper()
	b.run("clicking "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

func (b *browser) fill(sel, text string) {
	b.t.Helper()
	b.run("typing into "+sel, chromedp.Clear(chromedp.CSS(sel)), chromedp.SendKeys(chromedp.CSS(sel), text))
}

// shot saves a screenshot of the whole page and prints its path.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	fmt.Printf("screenshot: %s\n", path)
}

// pageState is what the page shows, read from its DOM.
type pageState struct {
	// Frames counts the frames the page has drawn.
	Frames uint64 `json:"frames"`
	Stale  string `json:"stale"`
	Cards  []struct {
		Node int               `json:"node"`
		Role string            `json:"role"`
		Up   bool              `json:"up"`
		Keys map[string]string `json:"keys"`
	} `json:"cards"`
}

const readPage = `JSON.stringify({
  frames: Number(document.body.dataset.frames), stale: document.body.dataset.stale,
  cards: [...document.querySelectorAll(".card")].map((c) => ({
    node: Number(c.dataset.node), role: c.dataset.role, up: c.dataset.up === "true",
    keys: Object.fromEntries([...c.querySelectorAll(".keys li[data-key]")].map((li) => [li.dataset.key, li.querySelector(".v").textContent])),
  })),
})`

// leader returns the node of the one leader card, 0 if there is none or
// more than one.
func (p pageState) leader() int {
	id := 0
	for _, c := range p.Cards {
		if c.Up && c.Role == "leader" {
			if id != 0 {
				return 0
			}
			id = c.Node
		}
	}
	return id
}

// up counts the cards of nodes that are up.
func (p pageState) up() int {
	n := 0
	for _, c := range p.Cards {
		if c.Up {
			n++
		}
	}
	return n
}

// card returns node id's card.
func (p pageState) card(id int) (c struct {
	Node int               `json:"node"`
	Role string            `json:"role"`
	Up   bool              `json:"up"`
	Keys map[string]string `json:"keys"`
}) {
	for _, c := range p.Cards {
		if c.Node == id {
			return c
		}
	}
	return c
}

// waitFor polls the page until cond holds. It fails if the page stops
// updating (no new frame for two seconds, or the page says it is stale)
// or if cond does not hold in time.
func (b *browser) waitFor(what string, d time.Duration, cond func(pageState) bool) pageState {
	b.t.Helper()
	deadline := time.Now().Add(d)
	if b.seen.IsZero() {
		b.seen = time.Now()
	}
	for {
		raw, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](readPage))
		if err != nil {
			b.t.Fatalf("reading the page: %v", err)
		}
		var p pageState
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			b.t.Fatalf("reading the page: %v (%s)", err, raw)
		}
		if p.Frames > b.last {
			b.last, b.seen = p.Frames, time.Now()
		}
		if time.Since(b.seen) > 2*time.Second {
			b.t.Fatalf("the page stopped updating: frame %d is %v old (waiting for %s)", b.last, time.Since(b.seen).Round(time.Millisecond), what)
		}
		if p.Frames > 0 && p.Stale == "false" && cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out after %v waiting for %s; the page shows %s (frame %d)", d, what, describePage(p), p.Frames)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func describePage(p pageState) string {
	s := ""
	for _, c := range p.Cards {
		s += "node " + strconv.Itoa(c.Node) + ": " + c.Role
		if !c.Up {
			s += " (down)"
		}
		s += "; "
	}
	return s
}
