package main

import (
	"fmt"
	"sort"
	"strings"
)

// The storm scenario's labels (benchmarks/run): ours restarted with the
// same ticket keys (clients resume their TLS sessions) and without (the
// restarted server cannot read the tickets: full handshakes).
const (
	stormTickets   = "mles-tickets"
	stormNoTickets = "mles-notickets"
)

// stormKey names a storm configuration: clients, channel size, dialers.
func stormKey(g *group) string {
	return fmt.Sprintf("conns=%g members=%g dialers=%g", g.param("conns"), g.param("members"), g.param("dialers"))
}

// stormRank orders the labels: with tickets, without, then any other.
func stormRank(l string) int {
	switch l {
	case stormTickets:
		return 0
	case stormNoTickets:
		return 1
	}
	return 2
}

// sortStorm orders by clients, channel size and dialers (numerically), then
// label.
func sortStorm(gs []*group) {
	sort.SliceStable(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		for _, k := range []string{"conns", "members", "dialers"} {
			if x, y := a.param(k), b.param(k); x != y {
				return x < y
			}
		}
		if ra, rb := stormRank(a.Label), stormRank(b.Label); ra != rb {
			return ra < rb
		}
		return a.Label < b.Label
	})
}

// sumField sums a count over the runs (a missing field is 0).
func sumField(g *group, field string) float64 {
	var n float64
	for _, r := range g.Runs {
		if v, ok := r[field].(float64); ok {
			n += v
		}
	}
	return n
}

// eachRun lists a field of every run, in run order.
func eachRun(g *group, field, format string) string {
	parts := make([]string, len(g.Runs))
	for i, r := range g.Runs {
		parts[i] = "-"
		if v, ok := r[field].(float64); ok {
			parts[i] = fmt.Sprintf(format, v)
		}
	}
	return strings.Join(parts, ", ")
}

// writeStorm renders the storm scenario: per configuration and label the
// storm's figures (medians), the failures, the same run's phase 1 (full
// handshakes, as a baseline) and the ratio with tickets / without.
func writeStorm(sb *strings.Builder, gs []*group) {
	sortStorm(gs)
	fmt.Fprintf(sb, "## %s\n\n", scenarioTitle["storm"])
	sb.WriteString("Phase 1: every client connects over TLS (wss, the server's self-signed ECDSA P-256 certificate), joins " +
		"(channels of `members`) and keeps the session ticket in its own session cache; then all close and the server restarts " +
		"(SIGINT, started again with the same flags). Phase 2, the storm: all reconnect, `dialers` at a time, with their sessions, and join " +
		"(a join counts when the server's pong to a ping sent behind the header frame is in). " +
		"`mles-tickets`: both processes read the same `--tls-ticket-keys` file; `mles-notickets`: no file, each process has its own random keys, " +
		"so the restarted server cannot read the tickets and every reconnect is a full handshake. Medians over the runs; * marks a configuration " +
		"with a client-bound storm (the generator used > 0.9 of its core).\n\n")
	sb.WriteString("| configuration | server | runs | all joined s | all joined s (each run) | connects/s | resumed | server cpu-us/connect | p50 ms | p99 ms | max ms | failures (all runs) | server core | generator core | client-bound runs | server RSS MiB after |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range gs {
		mark := ""
		if g.any("client_bound") {
			mark = "*"
		}
		fmt.Fprintf(sb, "| %s | %s%s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %g | %s | %s | %s | %s |\n",
			stormKey(g), g.Label, mark, len(g.Runs),
			med(g, "storm_s", "%.2f"), eachRun(g, "storm_s", "%.2f"), med(g, "connects_per_s", "%.0f"),
			med(g, "resumed_share", "%.3f"), med(g, "server_cpu_us_per_connect", "%.0f"),
			med(g, "p50_ms", "%.2f"), med(g, "p99_ms", "%.2f"), med(g, "max_ms", "%.2f"),
			sumField(g, "connect_errors"), med(g, "server_core", "%.2f"), med(g, "generator_core", "%.2f"),
			boundMark(g), med(g, "server_rss_mib", "%.1f"))
	}
	sb.WriteString("\n")

	sb.WriteString("The same runs' phase 1 (first connects, full handshakes for both) and the restart: tickets kept is the share of clients " +
		"whose session cache held a session after phase 1; restart s is the restart script's time (stop, start, port accepts).\n\n")
	sb.WriteString("| configuration | server | phase 1 s | phase 1 connects/s | phase 1 server cpu-us/connect | phase 1 p50 ms | phase 1 p99 ms | phase 1 failures (all runs) | tickets kept | restart s |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range gs {
		kept := "-"
		if n := sumField(g, "conns"); n > 0 {
			kept = fmt.Sprintf("%.4f", sumField(g, "tickets_held")/n)
		}
		fmt.Fprintf(sb, "| %s | %s | %s | %s | %s | %s | %s | %g | %s | %s |\n",
			stormKey(g), g.Label, med(g, "phase1_s", "%.2f"), med(g, "phase1_connects_per_s", "%.0f"),
			med(g, "phase1_server_cpu_us_per_connect", "%.0f"), med(g, "phase1_p50_ms", "%.2f"), med(g, "phase1_p99_ms", "%.2f"),
			sumField(g, "phase1_failed"), kept, med(g, "restart_s", "%.2f"))
	}
	sb.WriteString("\n")

	// Ratios: tickets / no tickets, per configuration.
	type pair struct{ on, off *group }
	var keys []string
	pairs := map[string]*pair{}
	for _, g := range gs {
		k := stormKey(g)
		p := pairs[k]
		if p == nil {
			p = &pair{}
			pairs[k] = p
			keys = append(keys, k)
		}
		switch g.Label {
		case stormTickets:
			p.on = g
		case stormNoTickets:
			p.off = g
		}
	}
	ratio := func(p *pair, field string) string {
		a, ok1 := p.on.median(field)
		b, ok2 := p.off.median(field)
		if !ok1 || !ok2 || b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	var rows []string
	for _, k := range keys {
		p := pairs[k]
		if p.on == nil || p.off == nil {
			continue
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", k,
			ratio(p, "storm_s"), ratio(p, "connects_per_s"), ratio(p, "server_cpu_us_per_connect"),
			ratio(p, "p50_ms"), ratio(p, "p99_ms")))
	}
	if len(rows) > 0 {
		sb.WriteString("Ratio with tickets / without (medians; below 1 is better for time, CPU and latency, above 1 for connects/s):\n\n")
		sb.WriteString("| configuration | all joined s | connects/s | server cpu-us/connect | p50 ms | p99 ms |\n|---|---|---|---|---|---|\n")
		for _, r := range rows {
			sb.WriteString(r + "\n")
		}
		sb.WriteString("\n")
	}
}
