package main

// Charts as standalone SVG (no plotting tools needed): every value axis is
// logarithmic, since the libraries and configurations span two to three
// orders of magnitude.

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

var palette = map[string]string{
	raftline:      "#d62728",
	"hashicorp":   "#1f77b4",
	"etcd":        "#2ca02c",
	"etcd36":      "#8fd175",
	"dragonboat":  "#6a3d9a",
	"dragonboat4": "#b69ad6",
}

var fallback = []string{"#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

func color(d *dataset, lib string) string {
	if c, ok := palette[lib]; ok {
		return c
	}
	return fallback[slices.Index(d.libs, lib)%len(fallback)]
}

// canvas accumulates SVG elements.
type canvas struct {
	b    strings.Builder
	w, h float64
}

func newCanvas(w, h float64) *canvas {
	c := &canvas{w: w, h: h}
	fmt.Fprintf(&c.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&c.b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	return c
}

func (c *canvas) text(x, y float64, anchor, s string, extra string) {
	fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" text-anchor="%s" %s>%s</text>`+"\n", x, y, anchor, extra, html.EscapeString(s))
}

func (c *canvas) line(x1, y1, x2, y2 float64, stroke string, width float64, extra string) {
	fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f" %s/>`+"\n", x1, y1, x2, y2, stroke, width, extra)
}

func (c *canvas) rect(x, y, w, h float64, fill, tip string, extra string) {
	fmt.Fprintf(&c.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" %s><title>%s</title></rect>`+"\n", x, y, w, h, fill, extra, html.EscapeString(tip))
}

func (c *canvas) String() string { return c.b.String() + "</svg>\n" }

// logAxis maps values in [lo, hi] (powers of ten) to pixels [y0, y1].
type logAxis struct {
	lo, hi float64
	y0, y1 float64 // pixel of lo and of hi
}

func newLogAxis(vals []float64, y0, y1 float64) logAxis {
	mn, mx := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v > 0 {
			mn, mx = min(mn, v), max(mx, v)
		}
	}
	if math.IsInf(mn, 1) {
		mn, mx = 1, 10
	}
	// Bounds on the 1-2-5 grid with some room, so the smallest bar shows.
	lo, hi := grid(mn/1.5, false), grid(mx*1.1, true)
	if hi <= lo {
		hi = lo * 10
	}
	return logAxis{lo, hi, y0, y1}
}

// grid returns the largest 1, 2 or 5 times a power of ten at or below v
// (up: the smallest at or above).
func grid(v float64, up bool) float64 {
	e := math.Pow(10, math.Floor(math.Log10(v)))
	steps := []float64{1, 2, 5, 10}
	if up {
		for _, m := range steps {
			if e*m >= v*0.9999 {
				return e * m
			}
		}
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if e*steps[i] <= v*1.0001 {
			return e * steps[i]
		}
	}
	return e
}

func (a logAxis) pos(v float64) float64 {
	v = max(v, a.lo)
	f := (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
	return a.y0 + f*(a.y1-a.y0)
}

// ticks are 1, 2, 5 per decade when the axis spans up to three decades,
// else one per decade.
func (a logAxis) ticks() []float64 {
	mult := []float64{1, 2, 5}
	if math.Log10(a.hi/a.lo) > 3.5 {
		mult = []float64{1}
	}
	var t []float64
	for d := math.Pow(10, math.Floor(math.Log10(a.lo))); d <= a.hi*1.0001; d *= 10 {
		for _, m := range mult {
			if v := d * m; v >= a.lo*0.9999 && v <= a.hi*1.0001 {
				t = append(t, v)
			}
		}
	}
	return t
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return trimZero(v/1e6) + "M"
	case v >= 1e3:
		return trimZero(v/1e3) + "k"
	}
	return trimZero(v)
}

func trimZero(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// frame draws a panel's title, value axis with grid, and returns the axis.
func (c *canvas) frame(x, y, w, h float64, title, unit string, vals []float64) logAxis {
	c.text(x+w/2, y-8, "middle", title, `font-weight="bold"`)
	ax := newLogAxis(vals, y+h, y)
	for _, t := range ax.ticks() {
		py := ax.pos(t)
		c.line(x, py, x+w, py, "#e4e4e4", 1, "")
		c.text(x-6, py+4, "end", short(t), `fill="#444"`)
	}
	c.line(x, y, x, y+h, "#444", 1, "")
	c.line(x, y+h, x+w, y+h, "#444", 1, "")
	c.text(x-44, y+h/2, "middle", unit, fmt.Sprintf(`transform="rotate(-90 %.1f %.1f)" fill="#444"`, x-44, y+h/2))
	return ax
}

func (c *canvas) legend(d *dataset, x, y float64, libs []string) {
	for _, lib := range libs {
		c.rect(x, y-10, 12, 12, color(d, lib), lib, "")
		c.text(x+16, y, "start", lib, "")
		x += 24 + 7.5*float64(len(lib))
	}
}

func header(c *canvas, title, sub string) {
	c.text(20, 24, "start", title, `font-size="16" font-weight="bold"`)
	if sub != "" {
		c.text(20, 42, "start", sub, `fill="#555"`)
	}
}

// groups returns the config groups (transport+durability) in order, each
// with its client counts ascending.
func (d *dataset) groups() ([]string, map[string][]config) {
	var names []string
	m := map[string][]config{}
	for _, c := range d.configs {
		g := c.group()
		if _, ok := m[g]; !ok {
			names = append(names, g)
		}
		m[g] = append(m[g], c)
	}
	for _, g := range names {
		slices.SortFunc(m[g], func(a, b config) int { return a.Clients - b.Clients })
	}
	return names, m
}

// throughputChart: ops/s against clients, one line per library, one panel
// per transport/durability.
func throughputChart(d *dataset, sub string) string {
	names, m := d.groups()
	const pw, ph, left, top, gap = 400.0, 300.0, 80.0, 100.0, 110.0
	c := newCanvas(left+float64(len(names))*(pw+gap)-gap+40, top+ph+70)
	header(c, fmt.Sprintf("Throughput by clients (%d voters, %d-byte commands, median ops/s)", d.nodes, d.payload), sub)
	c.legend(d, 20, 68, d.libs)
	for i, g := range names {
		x0 := left + float64(i)*(pw+gap)
		var vals []float64
		for _, cf := range m[g] {
			for _, lib := range d.libs {
				if s, ok := d.stat(cf, lib); ok && s.n > 0 {
					vals = append(vals, s.ops)
				}
			}
		}
		ax := c.frame(x0, top, pw, ph, g, "ops/s", vals)
		cs := m[g]
		xpos := func(k int) float64 {
			if len(cs) == 1 {
				return x0 + pw/2
			}
			l0, l1 := math.Log2(float64(cs[0].Clients)), math.Log2(float64(cs[len(cs)-1].Clients))
			return x0 + 30 + (math.Log2(float64(cs[k].Clients))-l0)/(l1-l0)*(pw-60)
		}
		for k, cf := range cs {
			c.text(xpos(k), top+ph+18, "middle", fmt.Sprint(cf.Clients), "")
		}
		c.text(x0+pw/2, top+ph+38, "middle", "clients", `fill="#444"`)
		for _, lib := range d.libs {
			var pts []string
			for k, cf := range cs {
				s, ok := d.stat(cf, lib)
				if !ok || s.n == 0 {
					continue
				}
				px, py := xpos(k), ax.pos(s.ops)
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
				fmt.Fprintf(&c.b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s %s: %s ops/s</title></circle>`+"\n",
					px, py, color(d, lib), lib, cf, num(math.Round(s.ops), 0))
			}
			if len(pts) > 1 {
				w := 2.0
				if lib == raftline {
					w = 3
				}
				fmt.Fprintf(&c.b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%.0f"/>`+"\n", strings.Join(pts, " "), color(d, lib), w)
			}
		}
	}
	return c.String()
}

// latencyChart: p50, p99 and p99.9 of every library, one panel per config.
func latencyChart(d *dataset, sub string) string {
	const pw, ph, left, top, gapx, gapy, cols = 420.0, 240.0, 80.0, 110.0, 100.0, 90.0, 2
	rows := (len(d.configs) + cols - 1) / cols
	c := newCanvas(left+cols*(pw+gapx)-gapx+40, top+float64(rows)*(ph+gapy))
	header(c, "Latency per proposal: p50 (solid), p99 (lighter), p99.9 (lightest), ms", sub)
	c.legend(d, 20, 68, d.libs)
	var vals []float64
	for _, cf := range d.configs {
		for _, lib := range d.libs {
			if s, ok := d.stat(cf, lib); ok && s.n > 0 {
				vals = append(vals, s.p50/1000, s.p999/1000)
			}
		}
	}
	for i, cf := range d.configs {
		x0 := left + float64(i%cols)*(pw+gapx)
		y0 := top + float64(i/cols)*(ph+gapy)
		ax := c.frame(x0, y0, pw, ph, cf.String(), "ms", vals) // shared scale across panels
		slot := pw / float64(len(d.libs))
		bw := min(18, (slot-10)/3)
		for j, lib := range d.libs {
			sx := x0 + float64(j)*slot + (slot-3*bw)/2
			s, ok := d.stat(cf, lib)
			if !ok || s.n == 0 {
				continue
			}
			for k, v := range []float64{s.p50, s.p99, s.p999} {
				py := ax.pos(v / 1000)
				op := []string{"1", "0.6", "0.3"}[k]
				q := []string{"p50", "p99", "p99.9"}[k]
				c.rect(sx+float64(k)*bw, py, bw-1, y0+ph-py, color(d, lib), fmt.Sprintf("%s %s %s: %s ms", lib, cf, q, ms(v)), `fill-opacity="`+op+`"`)
			}
			c.text(x0+float64(j)*slot+slot/2, y0+ph+16, "middle", lib, `font-size="10"`)
		}
	}
	return c.String()
}

// heapChart: peak Go heap of every library in every config.
func heapChart(d *dataset, sub string) string {
	const left, top, ph = 80.0, 100.0, 300.0
	slot := 30 + 16*float64(len(d.libs))
	pw := slot * float64(len(d.configs))
	c := newCanvas(max(left+pw+40, 760), top+ph+60)
	header(c, "Peak Go heap during a run (MB, median)", sub)
	c.legend(d, 20, 68, d.libs)
	var vals []float64
	for _, cf := range d.configs {
		for _, lib := range d.libs {
			if s, ok := d.stat(cf, lib); ok && s.n > 0 {
				vals = append(vals, s.heap)
			}
		}
	}
	ax := c.frame(left, top, pw, ph, "", "MB", vals)
	for i, cf := range d.configs {
		x0 := left + float64(i)*slot + 15
		for j, lib := range d.libs {
			s, ok := d.stat(cf, lib)
			if !ok || s.n == 0 {
				continue
			}
			py := ax.pos(s.heap)
			c.rect(x0+float64(j)*16, py, 15, top+ph-py, color(d, lib), fmt.Sprintf("%s %s: %.1f MB", lib, cf, s.heap), "")
		}
		c.text(x0+slot/2-15, top+ph+16, "middle", cf.group(), `font-size="10"`)
		c.text(x0+slot/2-15, top+ph+30, "middle", fmt.Sprintf("c=%d", cf.Clients), `font-size="10"`)
	}
	return c.String()
}
