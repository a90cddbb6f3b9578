package main

import (
	"fmt"
	"math"
	"strings"
)

// The admin scenario's labels (benchmarks/run): ours as the fan-out runs it,
// and the same with --admin, whose /metrics the generator reads every
// -scrape-every (1 s) during the warm-up and the window.
const (
	adminOff = "mles"
	adminOn  = "mles-admin"
)

// adminRank orders the labels: without the admin listener, with it, others.
func adminRank(l string) int {
	switch l {
	case adminOff:
		return 0
	case adminOn:
		return 1
	}
	return 2
}

// sortAdmin orders by members and rate (numerically), then label.
func sortAdmin(gs []*group) { sortByRate(gs, adminRank) }

// adminOffOf finds the group without the admin listener with g's parameters.
func adminOffOf(gs []*group, g *group) *group {
	for _, o := range gs {
		if o.Label == adminOff && o.Params == g.Params {
			return o
		}
	}
	return nil
}

// spread is a field's range over the runs, as "lo-hi" (one value alone
// when they agree, "-" when no run has it).
func spread(g *group, field, format string) string {
	lo, hi, ok := rangeOf(g, field)
	if !ok {
		return "-"
	}
	a, b := fmt.Sprintf(format, lo), fmt.Sprintf(format, hi)
	if a == b {
		return a
	}
	return a + "-" + b
}

func rangeOf(g *group, field string) (lo, hi float64, ok bool) {
	if g == nil {
		return 0, 0, false
	}
	for _, r := range g.Runs {
		v, has := r[field].(float64)
		if !has {
			continue
		}
		if !ok || v < lo {
			lo = v
		}
		if !ok || v > hi {
			hi = v
		}
		ok = true
	}
	return lo, hi, ok
}

// withinNoise compares the medians of on and off with the run-to-run
// spread of the same figure: the larger of the two labels' ranges (highest
// minus lowest run). The difference of the medians within that spread is
// noise ("yes"); beyond it, "**no**". Either label with fewer than two runs
// has no spread: "-".
func withinNoise(on, off *group, field, format string) string {
	a, ok1 := on.median(field)
	b, ok2 := off.median(field)
	lo1, hi1, ok3 := rangeOf(on, field)
	lo2, hi2, ok4 := rangeOf(off, field)
	if !ok1 || !ok2 || !ok3 || !ok4 || len(on.Runs) < 2 || len(off.Runs) < 2 {
		return "-"
	}
	noise := max(hi1-lo1, hi2-lo2)
	verdict := "yes"
	if math.Abs(a-b) > noise {
		verdict = "**no**"
	}
	return fmt.Sprintf("%s (%s against %s)", verdict, fmt.Sprintf("%+"+format[1:], a-b), fmt.Sprintf(format, noise))
}

// scrapeCount is the scrapes answered and failed over the runs, and per run
// in the window, as "answered / failed (in window per run)".
func scrapeCount(g *group) string {
	if _, ok := g.median("scrape_every_s"); !ok {
		return "-"
	}
	return fmt.Sprintf("%g / %g (%s)", sumField(g, "scrapes"), sumField(g, "scrapes_failed"), eachRun(g, "scrapes_in_window", "%.0f"))
}

// writeAdmin renders the admin scenario: the fan-out without and with the
// admin listener scraped every second, and their ratio (issue 12: the
// metrics cost nothing visible on the hot path).
func writeAdmin(sb *strings.Builder, gs []*group) {
	sortAdmin(gs)
	fmt.Fprintf(sb, "## %s\n\n", scenarioTitle["admin"])
	sb.WriteString("Ours twice in the same invocation, each run on a fresh server, in alternating order per repetition: `mles` as the fan-out runs it " +
		"(`--plain --reactors 1`, `GOMAXPROCS=1`, CPU 0), `mles-admin` the same with `--admin`, whose `/metrics` the generator reads " +
		"(one HTTP GET, keep-alive, the whole body read and parsed) every `scrape every` s from the schedule's start to the window's end, half an " +
		"interval off the window's edges, as a Prometheus server would; it also reads it at the window's edges and after the drain, outside the CPU samples. " +
		"A scrape's snapshot runs a task on the server's loop, so its cost is in the window's server CPU and in the members' latency. " +
		"scrapes: answered / failed over all runs (each run's scrapes started inside the window); scrape ms: the time from request to body read " +
		"(median of the runs' medians, largest of all). Medians over the runs; * marks a configuration with a client-bound run " +
		"(the generator used > 0.9 of its core). " + otherLoadNote + "\n\n")
	sb.WriteString("| rate | server | runs | scrape every s | delivered/s | delivered/expected | p50 ms | p99 ms | p99 ms (each run) | p99.9 ms | server cpu-us/delivery | server cpu-us/delivery (each run) | server core | generator core | CPU 0 other | CPU 1 other | scrapes | scrape ms p50 / max |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range gs {
		scr := "-"
		if _, ok := g.median("scrape_p50_ms"); ok {
			scr = med(g, "scrape_p50_ms", "%.2f") + " / " + maxOf(g, "scrape_max_ms", "%.2f")
		}
		fmt.Fprintf(sb, "| %g | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			g.param("rate"), labelMark(g), len(g.Runs), med(g, "scrape_every_s", "%g"),
			med(g, "delivered_per_s", "%.0f"), med(g, "delivery_ratio", "%.4f"), med(g, "p50_ms", "%.2f"), med(g, "p99_ms", "%.2f"),
			eachRun(g, "p99_ms", "%.2f"), med(g, "p999_ms", "%.2f"),
			med(g, "server_cpu_us_per_delivery", "%.2f"), eachRun(g, "server_cpu_us_per_delivery", "%.2f"),
			med(g, "server_core", "%.2f"), med(g, "generator_core", "%.2f"),
			maxOf(g, "cpu0_other", "%.2f"), maxOf(g, "cpu1_other", "%.2f"), scrapeCount(g), scr)
	}
	sb.WriteString("\n")

	var rows []string
	for _, g := range gs {
		if g.Label == adminOff {
			continue
		}
		off := adminOffOf(gs, g)
		if off == nil {
			continue
		}
		rows = append(rows, fmt.Sprintf("| %g | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", g.param("rate"), g.Label,
			ratioOf(g, off, "delivered_per_s"), ratioOf(g, off, "p50_ms"), ratioOf(g, off, "p99_ms"), diffOf(g, off, "p99_ms", "%+.2f"),
			withinNoise(g, off, "p99_ms", "%.2f"), ratioOf(g, off, "server_cpu_us_per_delivery"), withinNoise(g, off, "server_cpu_us_per_delivery", "%.2f"),
			spread(off, "p99_ms", "%.2f")+"; "+spread(g, "p99_ms", "%.2f"),
			spread(off, "server_cpu_us_per_delivery", "%.2f")+"; "+spread(g, "server_cpu_us_per_delivery", "%.2f")))
	}
	if len(rows) > 0 {
		sb.WriteString("With / without the admin listener scraped (medians of the same rate; delivered above 1 is better, latency and CPU below 1). " +
			"Within noise: the medians' difference (with minus without) against the run-to-run spread, the larger of the two labels' ranges " +
			"(highest run minus lowest); within it, the scrapes' cost does not show beside the runs' own variation (\"-\": fewer than two runs each). " +
			"The last column has the runs' ranges, without; with:\n\n")
		sb.WriteString("| rate | server | delivered/s with/without | p50 with/without | p99 with/without | p99 added ms | p99 within noise (difference against spread, ms) | server cpu-us/delivery with/without | cpu/delivery within noise (difference against spread, us) | p99 ms range, without; with | cpu-us/delivery range, without; with |\n")
		sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range rows {
			sb.WriteString(r + "\n")
		}
		sb.WriteString("\n")
	}
}
