package main

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// Chart geometry: two panels side by side, each with its own plot area.
const (
	svgW, svgH     = 1100, 440
	panelW         = 500
	plotL, plotT   = 70, 50
	plotW, plotH   = 400, 320
	panelGap       = 550
	legendY        = svgH - 25
	p99FloorMs     = 0.1
	p99CeilMsFloor = 100.0
)

var palette = []string{"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"}

type point struct{ x, delivered, p99 float64 }

// writeSVG draws delivered deliveries/s (linear) and p99 (log scale) against
// offered deliveries/s (rate x receivers) for the fan-out runs of the
// largest member count, one line per server.
func writeSVG(groups []*group) (string, bool) {
	var fan []*group
	for _, g := range groups {
		if g.Scenario == "fanout" {
			fan = append(fan, g)
		}
	}
	_, members := capacity(fan)
	series := map[string][]point{}
	for _, g := range fan {
		if g.param("members") != members || g.param("slow") != 0 {
			continue
		}
		d, ok1 := g.median("delivered_per_s")
		p, ok2 := g.median("p99_ms")
		if !ok1 || !ok2 {
			continue
		}
		pt := point{x: g.param("rate") * (members - 1), delivered: d, p99: p}
		pts := series[g.Label]
		// Runs of one rate with other settings (duration, warm-up): the
		// later group wins, one point per rate and server.
		if i := slices.IndexFunc(pts, func(q point) bool { return q.x == pt.x }); i >= 0 {
			pts[i] = pt
			continue
		}
		series[g.Label] = append(pts, pt)
	}
	if len(series) == 0 {
		return "", false
	}
	var maxX, maxY, maxP float64
	for _, pts := range series {
		sort.Slice(pts, func(i, j int) bool { return pts[i].x < pts[j].x })
		for _, p := range pts {
			maxX = math.Max(maxX, p.x)
			maxY = math.Max(maxY, p.delivered)
			maxP = math.Max(maxP, p.p99)
		}
	}
	maxX, maxY = niceCeil(maxX), niceCeil(math.Max(maxY, maxX))
	logLo := math.Floor(math.Log10(p99FloorMs))
	logHi := math.Ceil(math.Log10(math.Max(maxP, p99CeilMsFloor)))

	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgW, svgH, svgW, svgH)
	sb.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&sb, `<text x="%d" y="20" font-size="15" font-weight="bold">Fan-out, %g members: delivered and p99 against offered deliveries/s</text>`+"\n", plotL, members)

	xpos := func(off, x float64) float64 { return off + plotL + x/maxX*plotW }
	ylin := func(y float64) float64 { return plotT + plotH - y/maxY*plotH }
	ylog := func(ms float64) float64 {
		v := math.Log10(math.Max(ms, p99FloorMs))
		return plotT + plotH - (v-logLo)/(logHi-logLo)*plotH
	}

	for panel := range 2 {
		off := float64(panel * panelGap)
		title := "delivered/s"
		if panel == 1 {
			title = "p99 latency, ms (log scale; 100 ms bound dashed)"
		}
		fmt.Fprintf(&sb, `<text x="%g" y="%d" font-weight="bold">%s</text>`+"\n", off+plotL, plotT-10, title)
		fmt.Fprintf(&sb, `<rect x="%g" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", off+plotL, plotT, plotW, plotH)
		for i := 0; i <= 5; i++ { // x ticks
			x := maxX * float64(i) / 5
			px := xpos(off, x)
			fmt.Fprintf(&sb, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", px, plotT, px, plotT+plotH)
			fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px, plotT+plotH+16, human(x))
		}
		fmt.Fprintf(&sb, `<text x="%g" y="%d" text-anchor="middle">offered deliveries/s (rate x receivers)</text>`+"\n", off+plotL+plotW/2, plotT+plotH+34)
		if panel == 0 {
			for i := 0; i <= 5; i++ {
				y := maxY * float64(i) / 5
				py := ylin(y)
				fmt.Fprintf(&sb, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/>`+"\n", off+plotL, py, off+plotL+plotW, py)
				fmt.Fprintf(&sb, `<text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n", off+plotL-6, py+4, human(y))
			}
			// The ideal: delivered = offered.
			fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="4 4"/>`+"\n",
				xpos(off, 0), ylin(0), xpos(off, maxX), ylin(maxX))
		} else {
			for e := logLo; e <= logHi; e++ {
				ms := math.Pow(10, e)
				py := ylog(ms)
				fmt.Fprintf(&sb, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/>`+"\n", off+plotL, py, off+plotL+plotW, py)
				fmt.Fprintf(&sb, `<text x="%g" y="%.1f" text-anchor="end">%g</text>`+"\n", off+plotL-6, py+4, ms)
			}
			py := ylog(capacityP99Ms)
			fmt.Fprintf(&sb, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#999" stroke-dasharray="4 4"/>`+"\n", off+plotL, py, off+plotL+plotW, py)
		}
		for i, l := range labels(fan) {
			pts, ok := series[l]
			if !ok {
				continue
			}
			color := palette[i%len(palette)]
			var path []string
			for _, p := range pts {
				y := ylin(p.delivered)
				if panel == 1 {
					if p.delivered == 0 {
						// Nothing delivered: there is no latency to draw,
						// and a point at the floor would read as a fast one.
						continue
					}
					y = ylog(p.p99)
				}
				path = append(path, fmt.Sprintf("%.1f,%.1f", xpos(off, p.x), y))
			}
			width := 2
			if l == ours {
				width = 3
			}
			fmt.Fprintf(&sb, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%d"/>`+"\n", strings.Join(path, " "), color, width)
			for _, xy := range path {
				x, y, _ := strings.Cut(xy, ",")
				fmt.Fprintf(&sb, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", x, y, color)
			}
		}
	}
	x := float64(plotL)
	for i, l := range labels(fan) {
		if _, ok := series[l]; !ok {
			continue
		}
		color := palette[i%len(palette)]
		fmt.Fprintf(&sb, `<rect x="%.0f" y="%d" width="14" height="4" fill="%s"/><text x="%.0f" y="%d">%s</text>`+"\n", x, legendY-4, color, x+18, legendY, l)
		x += 30 + 8*float64(len(l))
	}
	sb.WriteString("</svg>\n")
	return sb.String(), true
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// human formats a count with k/M suffixes.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e5)/10)
	case v >= 1e3:
		return fmt.Sprintf("%gk", math.Round(v/1e2)/10)
	}
	return fmt.Sprintf("%g", v)
}
