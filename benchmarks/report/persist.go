package main

import (
	"fmt"
	"sort"
	"strings"
)

// The persist scenario's labels (benchmarks/run): ours with its history in
// memory, on disk with the default sync (fsync every second) and on disk
// fsyncing every batch.
const (
	persistMemory     = "mles"
	persistDisk       = "mles-disk"
	persistDiskAlways = "mles-disk-always"
)

// persistThroughputBound is issue 13's acceptance: publish throughput with
// --history-dir at least half of the in-memory one.
const persistThroughputBound = 0.50

// persistRank orders the labels: memory, disk, disk always, then others.
func persistRank(l string) int {
	switch l {
	case persistMemory:
		return 0
	case persistDisk:
		return 1
	case persistDiskAlways:
		return 2
	}
	return 3
}

// sortPersist orders by members and rate (numerically), then label.
func sortPersist(gs []*group) { sortByRate(gs, persistRank) }

// sortByRate orders by members and rate (numerically), then by the
// labels' rank, then label.
func sortByRate(gs []*group, rank func(string) int) {
	sort.SliceStable(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		for _, k := range []string{"members", "rate"} {
			if x, y := a.param(k), b.param(k); x != y {
				return x < y
			}
		}
		if a.Params != b.Params {
			return a.Params < b.Params
		}
		if ra, rb := rank(a.Label), rank(b.Label); ra != rb {
			return ra < rb
		}
		return a.Label < b.Label
	})
}

// metricOf returns a metric of servers[i] (loadgen's per-server record) at
// one of its snapshots: "metrics_start", "metrics_end" or "metrics_after".
func metricOf(raw map[string]any, i int, snap, name string) (float64, bool) {
	ss, _ := raw["servers"].([]any)
	if i >= len(ss) {
		return 0, false
	}
	s, _ := ss[i].(map[string]any)
	m, _ := s[snap].(map[string]any)
	v, ok := m[name].(float64)
	return v, ok
}

// windowDelta is a counter's growth over the window, summed over servers.
func windowDelta(raw map[string]any, name string) (float64, bool) {
	ss, _ := raw["servers"].([]any)
	var sum float64
	seen := false
	for i := range ss {
		a, ok1 := metricOf(raw, i, "metrics_start", name)
		b, ok2 := metricOf(raw, i, "metrics_end", name)
		if ok1 && ok2 {
			sum += b - a
			seen = true
		}
	}
	return sum, seen
}

// derivePersist flattens the server's history store figures into fields
// the tables take medians of: the store's write rate over the window,
// what it dropped and had still queued after the drain, the rate the
// publisher achieved and the server accepted, and CPU per message.
func derivePersist(raw map[string]any) {
	w, _ := raw["window_s"].(float64)
	if w <= 0 {
		return
	}
	if d, ok := windowDelta(raw, "mles_history_store_written_total"); ok {
		raw["store_written_per_s"] = d / w
	}
	if d, ok := windowDelta(raw, "mles_messages_in_total"); ok {
		raw["messages_in_per_s"] = d / w
	}
	for field, name := range map[string]string{
		"store_dropped":        "mles_history_store_dropped_total",
		"store_written":        "mles_history_store_written_total",
		"store_queued_after":   "mles_history_store_queued",
		"store_behind_after":   "mles_history_store_behind",
		"messages_in_after":    "mles_messages_in_total",
		"store_disk_mib_after": "mles_history_store_disk_bytes",
	} {
		if v, ok := metricOf(raw, 0, "metrics_after", name); ok {
			if field == "store_disk_mib_after" {
				v /= 1 << 20
			}
			raw[field] = v
		}
	}
	if sent, _ := raw["sent"].(float64); sent > 0 {
		raw["sent_per_s"] = sent / w
		if c, _ := raw["server_cpu_s"].(float64); c > 0 {
			raw["server_cpu_us_per_msg"] = c * 1e6 / sent
		}
	}
}

// droppedRuns counts the runs whose store dropped records (they do not
// count: the writer did not keep up) and the runs that have the figure.
func droppedRuns(g *group) (dropped, known int) {
	for _, r := range g.Runs {
		v, ok := r["store_dropped"].(float64)
		if !ok {
			continue
		}
		known++
		if v > 0 {
			dropped++
		}
	}
	return dropped, known
}

// counts says whether a group's runs count: none of them dropped a record
// (the in-memory server has no store: always).
func counts(g *group) string {
	d, k := droppedRuns(g)
	switch {
	case k == 0:
		return "-"
	case d == 0:
		return "yes"
	}
	return fmt.Sprintf("**no** (%d of %d runs dropped)", d, len(g.Runs))
}

// maxOf is the largest value of a field over the runs.
func maxOf(g *group, field, format string) string {
	best, seen := 0.0, false
	for _, r := range g.Runs {
		if v, ok := r[field].(float64); ok && (!seen || v > best) {
			best, seen = v, true
		}
	}
	if !seen {
		return "-"
	}
	return fmt.Sprintf(format, best)
}

// sustains reports whether a group's medians deliver >= 99.9% under
// p99 100 ms and no run dropped a stored record.
func sustains(g *group) bool {
	ratio, ok1 := g.median("delivery_ratio")
	p99, ok2 := g.median("p99_ms")
	d, _ := droppedRuns(g)
	return ok1 && ok2 && ratio >= capacityRatio && p99 < capacityP99Ms && d == 0
}

// persistCapacity is, per label, the highest rate it sustains among gs
// (all one members count), whether that was the highest rate tried, and
// whether any rate was tried.
type persistCap struct {
	rate, top float64
	tried     bool
}

func persistCapacity(gs []*group) map[string]*persistCap {
	out := map[string]*persistCap{}
	for _, g := range gs {
		c := out[g.Label]
		if c == nil {
			c = &persistCap{}
			out[g.Label] = c
		}
		c.tried = true
		c.top = max(c.top, g.param("rate"))
		if sustains(g) {
			c.rate = max(c.rate, g.param("rate"))
		}
	}
	return out
}

func (c *persistCap) String() string {
	switch {
	case c == nil || !c.tried:
		return "-"
	case c.rate == 0:
		return "none of the rates tried"
	case c.rate == c.top:
		return fmt.Sprintf(">= %g (the highest tried)", c.rate)
	}
	return fmt.Sprintf("%g", c.rate)
}

// ratioOf is a field's median of g over m's, formatted; "-" when missing.
func ratioOf(g, m *group, field string) string {
	if g == nil || m == nil {
		return "-"
	}
	a, ok1 := g.median(field)
	b, ok2 := m.median(field)
	if !ok1 || !ok2 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// diffOf is g's median minus m's, formatted.
func diffOf(g, m *group, field, format string) string {
	if g == nil || m == nil {
		return "-"
	}
	a, ok1 := g.median(field)
	b, ok2 := m.median(field)
	if !ok1 || !ok2 {
		return "-"
	}
	return fmt.Sprintf(format, a-b)
}

// labelMark is the label with * when a run was client-bound.
func labelMark(g *group) string {
	if g.any("client_bound") {
		return g.Label + "*"
	}
	return g.Label
}

// memoryOf finds the in-memory group with the same parameters as g.
func memoryOf(gs []*group, g *group) *group {
	for _, m := range gs {
		if m.Label == persistMemory && m.Params == g.Params {
			return m
		}
	}
	return nil
}

// byMembers splits groups by channel size, in order of size.
func byMembers(gs []*group) ([]float64, map[float64][]*group) {
	m := map[float64][]*group{}
	var sizes []float64
	for _, g := range gs {
		n := g.param("members")
		if m[n] == nil {
			sizes = append(sizes, n)
		}
		m[n] = append(m[n], g)
	}
	sort.Float64s(sizes)
	return sizes, m
}

// writePersist renders the persist scenario (the fan-out of 1000 with the
// history in memory and on disk) and persistpub (a small channel at high
// rates: the store's write rate).
func writePersist(sb *strings.Builder, fan, pub []*group) {
	sortPersist(fan)
	sortPersist(pub)
	fmt.Fprintf(sb, "## %s\n\n", scenarioTitle["persist"])
	sb.WriteString("Ours three ways in the same invocation, each run on a fresh server: `mles` keeps the history in memory, " +
		"`mles-disk` in a store (`--history-dir`, a fresh directory per run; default `--history-sync 1s`: an fsync every second), " +
		"`mles-disk-always` fsyncs every batch (`--history-sync always`). The store's writer batches off the event loop; " +
		"it runs on the server's core like the rest of it (CPU 0), so its CPU is in the server's. Every server has `--admin`, " +
		"whose `/metrics` loadgen reads just before and after the window and after the drain: store written/s is " +
		"`mles_history_store_written_total` over the window, dropped is `mles_history_store_dropped_total` after the drain " +
		"(a run that dropped a record does not count: the writer did not keep up). Medians over the runs; * marks a configuration " +
		"with a client-bound run (the generator used > 0.9 of its core). " + otherLoadNote + "\n\n")
	for _, gs := range [][]*group{fan, pub} {
		if len(gs) == 0 {
			continue
		}
		sizes, bySize := byMembers(gs)
		for _, n := range sizes {
			writePersistSize(sb, bySize[n], gs[0].Scenario == "persistpub")
		}
	}
}

func writePersistSize(sb *strings.Builder, gs []*group, throughput bool) {
	n := gs[0].param("members")
	if throughput {
		fmt.Fprintf(sb, "### Publish throughput: %g members, 1 publisher at high rates (the store's write rate)\n\n", n)
		sb.WriteString("published msg/s: what the publisher wrote in the window; accepted msg/s: `mles_messages_in_total` over the window; " +
			"server cpu-us/message: the server's CPU per published message (its deliveries included).\n\n")
		sb.WriteString("| rate | server | runs | published msg/s | accepted msg/s | delivered/expected | p50 ms | p99 ms | max ms | server core | generator core | CPU 0 other | CPU 1 other | server cpu-us/message | store written/s | store dropped (all runs) | queued after drain (max) | store MiB after | counts |\n")
		sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, g := range gs {
			fmt.Fprintf(sb, "| %g | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				g.param("rate"), labelMark(g), len(g.Runs), med(g, "sent_per_s", "%.0f"), med(g, "messages_in_per_s", "%.0f"),
				med(g, "delivery_ratio", "%.4f"), med(g, "p50_ms", "%.2f"), med(g, "p99_ms", "%.2f"), med(g, "max_ms", "%.2f"),
				med(g, "server_core", "%.2f"), med(g, "generator_core", "%.2f"), maxOf(g, "cpu0_other", "%.2f"), maxOf(g, "cpu1_other", "%.2f"),
				med(g, "server_cpu_us_per_msg", "%.2f"),
				med(g, "store_written_per_s", "%.0f"), storeSum(g, "store_dropped"), maxOf(g, "store_queued_after", "%.0f"),
				med(g, "store_disk_mib_after", "%.1f"), counts(g))
		}
		sb.WriteString("\n")
	} else {
		fmt.Fprintf(sb, "### Fan-out: 1 channel of %g members, 1 publisher\n\n", n)
		sb.WriteString("| rate | server | runs | delivered/s | delivered/expected | p50 ms | p99 ms | p99.9 ms | max ms | server cpu-us/delivery | server core | generator core | CPU 0 other | CPU 1 other | store written/s | store dropped (all runs) | counts |\n")
		sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, g := range gs {
			fmt.Fprintf(sb, "| %g | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				g.param("rate"), labelMark(g), len(g.Runs), med(g, "delivered_per_s", "%.0f"), med(g, "delivery_ratio", "%.4f"),
				med(g, "p50_ms", "%.2f"), med(g, "p99_ms", "%.2f"), med(g, "p999_ms", "%.2f"), med(g, "max_ms", "%.2f"),
				med(g, "server_cpu_us_per_delivery", "%.2f"), med(g, "server_core", "%.2f"), med(g, "generator_core", "%.2f"),
				maxOf(g, "cpu0_other", "%.2f"), maxOf(g, "cpu1_other", "%.2f"),
				med(g, "store_written_per_s", "%.0f"), storeSum(g, "store_dropped"), counts(g))
		}
		sb.WriteString("\n")
	}

	// Disk / memory, per rate.
	var rows []string
	for _, g := range gs {
		if g.Label == persistMemory {
			continue
		}
		m := memoryOf(gs, g)
		if m == nil {
			continue
		}
		rate := "delivered_per_s"
		if throughput {
			rate = "messages_in_per_s"
		}
		cpu := "server_cpu_us_per_delivery"
		if throughput {
			cpu = "server_cpu_us_per_msg"
		}
		rows = append(rows, fmt.Sprintf("| %g | %s | %s | %s | %s | %s | %s |", g.param("rate"), g.Label,
			ratioOf(g, m, rate), ratioOf(g, m, "p99_ms"), diffOf(g, m, "p99_ms", "%+.2f"), ratioOf(g, m, cpu), counts(g)))
	}
	if len(rows) > 0 {
		what := "delivered/s"
		if throughput {
			what = "accepted msg/s"
		}
		fmt.Fprintf(sb, "Disk / memory (medians of the same rate; %s above 1 is better, p99 and CPU below 1):\n\n", what)
		fmt.Fprintf(sb, "| rate | server | %s disk/memory | p99 disk/memory | p99 added ms | server cpu disk/memory | counts |\n|---|---|---|---|---|---|---|\n", what)
		for _, r := range rows {
			sb.WriteString(r + "\n")
		}
		sb.WriteString("\n")
	}

	// The highest rate each sustains, and the acceptance ratio.
	caps := persistCapacity(gs)
	mc := caps[persistMemory]
	fmt.Fprintf(sb, "Highest publish rate with >= %.1f%% delivered, p99 < %.0f ms and nothing dropped by the store (%g members; the rates tried bound it):\n\n",
		capacityRatio*100, capacityP99Ms, n)
	sb.WriteString("| server | msg/s | deliveries/s | disk/memory | >= 0.50 of memory (issue 13) |\n|---|---|---|---|---|\n")
	var ls []string
	for l := range caps {
		ls = append(ls, l)
	}
	sort.Slice(ls, func(i, j int) bool {
		if ri, rj := persistRank(ls[i]), persistRank(ls[j]); ri != rj {
			return ri < rj
		}
		return ls[i] < ls[j]
	})
	for _, l := range ls {
		c := caps[l]
		ratio, ok := "-", "-"
		if l != persistMemory && mc != nil && mc.rate > 0 {
			r := c.rate / mc.rate
			ratio = fmt.Sprintf("%.2f", r)
			switch {
			case r >= persistThroughputBound:
				ok = "yes"
				if c.rate == c.top && mc.rate == mc.top {
					ok = "yes (both sustain the highest rate tried)"
				}
			case c.rate == 0:
				ok = "**NO**"
			default:
				ok = "**NO**"
			}
		}
		fmt.Fprintf(sb, "| %s | %s | %.0f | %s | %s |\n", l, c, c.rate*(n-1), ratio, ok)
	}
	sb.WriteString("\n")
}

// storeSum sums a store count over the runs; "-" when no run has it (the
// in-memory server).
func storeSum(g *group, field string) string {
	var n float64
	seen := false
	for _, r := range g.Runs {
		if v, ok := r[field].(float64); ok {
			n += v
			seen = true
		}
	}
	if !seen {
		return "-"
	}
	if n > 0 {
		return fmt.Sprintf("**%g**", n)
	}
	return "0"
}

// otherLoadNote explains the CPU 0 / CPU 1 other columns.
const otherLoadNote = "CPU 0 other / CPU 1 other: the largest over the runs of what else kept the server's core (CPU 0) and the generator's (CPU 1) busy in the window, " +
	"as a fraction of the core (/proc/stat busy time minus the pinned processes' CPU; interrupt work for loopback no process is charged with is in it: " +
	"the quietest smoke runs showed about 0.06 on CPU 0 and 0.2 on CPU 1): well above that, another process shared the core and the row's figures are not the server's alone."
