// Command report reads the JSON lines written by bench/compare.sh (or by
// the anchor harness' compare.sh), prints the medians of every library in
// every configuration and raftline's ratio to the best anchor, and
// optionally writes the same table as Markdown and the charts as SVG.
//
//	go run ./cmd/report results.jsonl
//	go run ./cmd/report -md summary.md -svg docs/benchmarks results.jsonl
//	go run ./cmd/report -yardstick harness.jsonl results.jsonl  # agreement check
//
// A line is a run if it has "lib" and "transport"; other JSON lines (the
// fsync probe) are listed as they are. The harness calls raftline
// "project"; report treats the two names as one.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// run is one JSON line of a benchmark run.
type run struct {
	Lib        string  `json:"lib"`
	Nodes      int     `json:"nodes"`
	Transport  string  `json:"transport"`
	Durable    bool    `json:"durable"`
	Clients    int     `json:"clients"`
	Payload    int     `json:"payload"`
	Ops        uint64  `json:"ops"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	MaxUs      float64 `json:"max_us"`
	HeapPeakMB float64 `json:"heap_peak_mb"`
	Errors     uint64  `json:"errors"`
	CPUusPerOp float64 `json:"cpu_us_per_op"` // absent (0) in older lines
	Failed     bool    `json:"failed"`
}

// config is a workload configuration: transport, durability, clients.
type config struct {
	Transport string
	Durable   bool
	Clients   int
}

func (c config) String() string {
	s := c.Transport
	if c.Durable {
		s += "+durable"
	}
	return fmt.Sprintf("%s c=%d", s, c.Clients)
}

// group is the config without the client count (one line of a chart).
func (c config) group() string {
	if c.Durable {
		return c.Transport + "+durable"
	}
	return c.Transport
}

// dataset holds the runs of one file, in the order first seen.
type dataset struct {
	configs []config
	libs    []string
	runs    map[config]map[string][]run
	probes  []string
	nodes   int // of the first run
	payload int
}

const raftline = "raftline"

func load(path string) (*dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &dataset{runs: map[config]map[string][]run{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r run
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s: %v: %s", path, err, line)
		}
		if r.Lib == "" || r.Transport == "" {
			d.probes = append(d.probes, line)
			continue
		}
		if r.Lib == "project" {
			r.Lib = raftline
		}
		if d.nodes == 0 {
			d.nodes, d.payload = r.Nodes, r.Payload
		}
		c := config{r.Transport, r.Durable, r.Clients}
		if d.runs[c] == nil {
			d.runs[c] = map[string][]run{}
			d.configs = append(d.configs, c)
		}
		if !slices.Contains(d.libs, r.Lib) {
			d.libs = append(d.libs, r.Lib)
		}
		d.runs[c][r.Lib] = append(d.runs[c][r.Lib], r)
	}
	return d, sc.Err()
}

// stat is the medians of one library in one config.
type stat struct {
	n, failed                      int
	ops, p50, p99, p999, heap, max float64
	errors                         float64
	min, maxOps                    float64 // range of ops/s over the runs
	cpu                            float64 // CPU µs per op; 0 when no run reported it
}

func (d *dataset) stat(c config, lib string) (stat, bool) {
	rs := d.runs[c][lib]
	if len(rs) == 0 {
		return stat{}, false
	}
	var s stat
	var ops, p50, p99, p999, heap, mx, errs, cpu []float64
	for _, r := range rs {
		if r.Failed {
			s.failed++
			continue
		}
		ops = append(ops, r.OpsPerSec)
		p50 = append(p50, r.P50us)
		p99 = append(p99, r.P99us)
		p999 = append(p999, r.P999us)
		heap = append(heap, r.HeapPeakMB)
		mx = append(mx, r.MaxUs)
		errs = append(errs, float64(r.Errors))
		if r.CPUusPerOp > 0 {
			cpu = append(cpu, r.CPUusPerOp)
		}
	}
	s.n = len(ops)
	if s.n == 0 {
		return s, true
	}
	s.ops, s.p50, s.p99, s.p999 = median(ops), median(p50), median(p99), median(p999)
	s.heap, s.max, s.errors = median(heap), median(mx), median(errs)
	s.min, s.maxOps = slices.Min(ops), slices.Max(ops)
	if len(cpu) > 0 {
		s.cpu = median(cpu)
	}
	return s, true
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// best returns the anchor (non-raftline library) with the highest median
// ops/s in c.
func (d *dataset) best(c config) (string, stat, bool) {
	var name string
	var bs stat
	for _, lib := range d.libs {
		if lib == raftline {
			continue
		}
		if s, ok := d.stat(c, lib); ok && s.n > 0 && s.ops > bs.ops {
			name, bs = lib, s
		}
	}
	return name, bs, name != ""
}

// ratio is raftline's ops/s over the best anchor's, 0 if either is missing.
func (d *dataset) ratio(c config) (float64, string) {
	p, ok := d.stat(c, raftline)
	name, b, okb := d.best(c)
	if !ok || !okb || p.n == 0 || b.ops == 0 {
		return 0, ""
	}
	return p.ops / b.ops, name
}

func main() {
	mdPath := flag.String("md", "", "also write the table as Markdown to this file")
	svgDir := flag.String("svg", "", "write throughput.svg, latency.svg and heap.svg to this directory")
	title := flag.String("title", "", "subtitle of the charts (date, machine, load)")
	yard := flag.String("yardstick", "", "JSON lines of another harness' run of the same matrix: print the agreement of the two")
	tol := flag.Float64("tol", 0.30, "with -yardstick: relative difference of medians and of ratios counted as agreement when the runs' own spread is smaller")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: report [-md file] [-svg dir] [-yardstick file] results.jsonl")
		os.Exit(2)
	}
	d, err := load(flag.Arg(0))
	if err != nil {
		fatal(err)
	}
	if *yard != "" {
		y, err := load(*yard)
		if err != nil {
			fatal(err)
		}
		compare(os.Stdout, d, y, *tol)
		return
	}
	table(os.Stdout, d)
	if *mdPath != "" {
		f, err := os.Create(*mdPath)
		if err != nil {
			fatal(err)
		}
		markdown(f, d)
		if err := f.Close(); err != nil {
			fatal(err)
		}
	}
	if *svgDir != "" {
		if err := os.MkdirAll(*svgDir, 0o755); err != nil {
			fatal(err)
		}
		for name, svg := range map[string]string{
			"throughput.svg": throughputChart(d, *title),
			"latency.svg":    latencyChart(d, *title),
			"heap.svg":       heapChart(d, *title),
		} {
			if err := os.WriteFile(filepath.Join(*svgDir, name), []byte(svg), 0o644); err != nil {
				fatal(err)
			}
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(1)
}

func num(v float64, dec int) string {
	if math.IsNaN(v) {
		return "-"
	}
	s := fmt.Sprintf("%.*f", dec, v)
	if dec > 0 || math.Abs(v) < 1000 {
		return s
	}
	// thousands separators for large integers
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// table prints the medians and ratios as aligned text.
func table(w io.Writer, d *dataset) {
	for _, p := range d.probes {
		fmt.Fprintln(w, p)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-22s %-12s %4s %10s %9s %9s %9s %8s %6s %9s\n", "config", "lib", "runs", "ops/s", "p50 us", "p99 us", "p99.9 us", "heap MB", "errors", "CPU us/op")
	for _, c := range d.configs {
		for _, lib := range d.libs {
			s, ok := d.stat(c, lib)
			if !ok {
				continue
			}
			runs := fmt.Sprint(s.n)
			if s.failed > 0 {
				runs = fmt.Sprintf("%d/%d", s.n, s.n+s.failed)
			}
			if s.n == 0 {
				fmt.Fprintf(w, "%-22s %-12s %4s %10s\n", c, lib, runs, "fail")
				continue
			}
			fmt.Fprintf(w, "%-22s %-12s %4s %10.0f %9.0f %9.0f %9.0f %8.1f %6.0f %9s\n", c, lib, runs, s.ops, s.p50, s.p99, s.p999, s.heap, s.errors, cpuCell(s))
		}
		if r, name := d.ratio(c); r > 0 {
			fmt.Fprintf(w, "%-22s %-12s %4s %10.2f   (raftline / best anchor, ops/s; best: %s)\n", c, "ratio", "", r, name)
		}
	}
}

// markdown writes one table per config group: ops/s per library and
// config, raftline's ratio, then latency and heap.
func markdown(w io.Writer, d *dataset) {
	fmt.Fprintf(w, "| config | %s | raftline / best anchor |\n", strings.Join(d.libs, " | "))
	fmt.Fprintf(w, "|---|%s---:|\n", strings.Repeat("---:|", len(d.libs)))
	cell := func(c config, lib string, f func(stat) string) string {
		s, ok := d.stat(c, lib)
		switch {
		case !ok:
			return ""
		case s.n == 0:
			return "fail"
		}
		return f(s)
	}
	for _, c := range d.configs {
		var cells []string
		for _, lib := range d.libs {
			cells = append(cells, cell(c, lib, func(s stat) string { return num(math.Round(s.ops), 0) }))
		}
		r, name := d.ratio(c)
		rs := ""
		if r > 0 {
			rs = fmt.Sprintf("%.2f (vs %s)", r, name)
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", c, strings.Join(cells, " | "), rs)
	}
	perLib(w, d, cell, "Latency p50 / p99 / p99.9 in ms:", func(s stat) string {
		return fmt.Sprintf("%s / %s / %s", ms(s.p50), ms(s.p99), ms(s.p999))
	})
	perLib(w, d, cell, "Peak Go heap in MB:", func(s stat) string { return num(s.heap, 0) })
	perLib(w, d, cell, "CPU per operation in µs (the whole process: every node and the clients):", cpuCell)
}

// perLib writes a titled Markdown table of one value per configuration
// and library; cell renders a (config, library) through value.
func perLib(w io.Writer, d *dataset, cell func(config, string, func(stat) string) string, title string, value func(stat) string) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, title)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| config | %s |\n", strings.Join(d.libs, " | "))
	fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---:|", len(d.libs)))
	for _, c := range d.configs {
		var cells []string
		for _, lib := range d.libs {
			cells = append(cells, cell(c, lib, value))
		}
		fmt.Fprintf(w, "| %s | %s |\n", c, strings.Join(cells, " | "))
	}
}

// cpuCell is s's CPU per operation, or "-" when its runs did not report it.
func cpuCell(s stat) string {
	if s.cpu == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", s.cpu)
}

func ms(us float64) string {
	v := us / 1000
	switch {
	case v < 1:
		return fmt.Sprintf("%.2f", v)
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// compare prints how the medians of d (this harness) and y (the yardstick)
// agree: per library and config the two medians and their quotient, the
// spread of each side's own runs, and per config raftline's ratio to the
// best anchor on each side and the order of the libraries.
func compare(w io.Writer, d, y *dataset, tol float64) {
	fmt.Fprintf(w, "%-22s %-12s %10s %10s %8s %8s %8s  %s\n", "config", "lib", "ops/s", "yardstick", "quot", "spread", "yspread", "verdict")
	var agree, total int
	for _, c := range d.configs {
		for _, lib := range d.libs {
			a, ok1 := d.stat(c, lib)
			b, ok2 := y.stat(c, lib)
			if !ok1 || !ok2 || a.n == 0 || b.n == 0 {
				continue
			}
			q := a.ops / b.ops
			sa, sb := a.maxOps/a.min-1, b.maxOps/b.min-1
			lim := max(tol, sa, sb)
			v := "agree"
			total++
			if math.Abs(math.Log(q)) > math.Log1p(lim) {
				v = "DIFFER"
			} else {
				agree++
			}
			fmt.Fprintf(w, "%-22s %-12s %10.0f %10.0f %8.2f %8s %8s  %s\n", c, lib, a.ops, b.ops, q, pct(sa), pct(sb), v)
		}
	}
	fmt.Fprintf(w, "\nmedians within max(%.0f%%, own spread) of the yardstick's: %d of %d\n\n", 100*tol, agree, total)

	fmt.Fprintf(w, "%-22s %22s %22s %8s  %s\n", "config", "raftline/best", "yardstick", "quot", "order (by ops/s; yardstick's below)")
	var ragree, rtotal int
	for _, c := range d.configs {
		if _, ok := y.runs[c]; !ok {
			continue
		}
		ra, na := d.ratio(c)
		rb, nb := y.ratio(c)
		q := "-"
		if ra > 0 && rb > 0 {
			rtotal++
			q = fmt.Sprintf("%.2f", ra/rb)
			if math.Abs(math.Log(ra/rb)) <= math.Log1p(tol) {
				ragree++
			} else {
				q += " DIFFER"
			}
		}
		fmt.Fprintf(w, "%-22s %22s %22s %8s  %s\n", c, fmt.Sprintf("%.2f (%s)", ra, na), fmt.Sprintf("%.2f (%s)", rb, nb), q, order(d, c))
		fmt.Fprintf(w, "%-22s %22s %22s %8s  %s\n", "", "", "", "", order(y, c))
		if inv := inversions(d, y, c, tol); len(inv) > 0 {
			fmt.Fprintf(w, "%-22s   order differs beyond %.0f%%: %s\n", "", 100*tol, strings.Join(inv, ", "))
		}
	}
	fmt.Fprintf(w, "\nraftline/best-anchor ratios within %.0f%% of the yardstick's: %d of %d\n", 100*tol, ragree, rtotal)
}

// pct formats a spread; a run with no ops makes it infinite.
func pct(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "inf"
	}
	return fmt.Sprintf("%.0f%%", 100*v)
}

// order lists the libraries of c by median ops/s, highest first.
func order(d *dataset, c config) string {
	type kv struct {
		lib string
		ops float64
	}
	var v []kv
	for _, lib := range d.libs {
		if s, ok := d.stat(c, lib); ok && s.n > 0 {
			v = append(v, kv{lib, s.ops})
		}
	}
	sort.Slice(v, func(i, j int) bool { return v[i].ops > v[j].ops })
	var parts []string
	for _, e := range v {
		parts = append(parts, fmt.Sprintf("%s %s", e.lib, num(math.Round(e.ops), 0)))
	}
	return strings.Join(parts, " > ")
}

// inversions lists the pairs of libraries that are ordered differently in
// d and y although both sides separate them by more than tol.
func inversions(d, y *dataset, c config, tol float64) []string {
	var out []string
	for i, a := range d.libs {
		for _, b := range d.libs[i+1:] {
			da, ok1 := d.stat(c, a)
			db, ok2 := d.stat(c, b)
			ya, ok3 := y.stat(c, a)
			yb, ok4 := y.stat(c, b)
			if !ok1 || !ok2 || !ok3 || !ok4 || da.n == 0 || db.n == 0 || ya.n == 0 || yb.n == 0 {
				continue
			}
			q1, q2 := da.ops/db.ops, ya.ops/yb.ops
			if math.Abs(math.Log(q1)) > math.Log1p(tol) && math.Abs(math.Log(q2)) > math.Log1p(tol) && (q1 > 1) != (q2 > 1) {
				out = append(out, a+"/"+b)
			}
		}
	}
	return out
}
