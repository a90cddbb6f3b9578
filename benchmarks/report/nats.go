package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The nats scenario's labels (benchmarks/run): ours alone, ours on N
// servers joined by NATS (mles-natsN), Centrifugo alone and Centrifugo on
// N nodes with its NATS broker (centrifugo-natsN).
const (
	natsAlone      = "mles"
	natsPeerAlone  = "centrifugo"
	natsOursPrefix = "mles-nats"
	natsPeerPrefix = "centrifugo-nats"
)

// natsVariant splits a nats label into its server ("mles", "centrifugo")
// and its node count on NATS (0: alone, no broker); ok is false for a
// label that is neither.
func natsVariant(l string) (server string, n int, ok bool) {
	switch l {
	case natsAlone, natsPeerAlone:
		return l, 0, true
	}
	for _, p := range []string{natsOursPrefix, natsPeerPrefix} {
		if rest, found := strings.CutPrefix(l, p); found {
			if k, err := strconv.Atoi(rest); err == nil && k > 0 {
				return strings.TrimSuffix(p, "-nats"), k, true
			}
		}
	}
	return "", 0, false
}

// natsRank orders the labels: ours alone, ours on 1, 2, ... servers, then
// Centrifugo alone and on 1, 2, ... nodes, then anything else.
func natsRank(l string) int {
	s, n, ok := natsVariant(l)
	switch {
	case !ok:
		return 1000
	case s == natsPeerAlone:
		return 100 + n
	}
	return n
}

// sortNATS orders by members, rate and payload (numerically), then the
// labels' rank (the variants differ in their servers parameter: it does
// not order them).
func sortNATS(gs []*group) {
	sort.SliceStable(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		for _, k := range []string{"members", "rate", "payload"} {
			if x, y := a.param(k), b.param(k); x != y {
				return x < y
			}
		}
		if ra, rb := natsRank(a.Label), natsRank(b.Label); ra != rb {
			return ra < rb
		}
		if a.Label != b.Label {
			return a.Label < b.Label
		}
		return a.Params < b.Params
	})
}

// deriveNATS flattens a nats run: the members of the publisher's server
// against the others' (as peered), the broker's share of the server
// side's CPU, and the stream's traffic per published message.
func deriveNATS(raw map[string]any) {
	derivePeered(raw)
	d, _ := raw["delivered"].(float64)
	w, _ := raw["window_s"].(float64)
	if bs, ok := raw["brokers"].([]any); ok && len(bs) > 0 {
		b, ok1 := raw["broker_cpu_s"].(float64)
		sv, ok2 := raw["server_cpu_s"].(float64)
		if ok1 && ok2 && b >= 0 && sv >= 0 {
			if d > 0 {
				raw["broker_cpu_us_per_delivery"] = b * 1e6 / d
				raw["servers_cpu_us_per_delivery"] = (sv - b) * 1e6 / d
			}
			if w > 0 {
				raw["broker_core"] = b / w
			}
		}
	}
	if sent, _ := raw["sent"].(float64); sent > 0 {
		for field, name := range map[string]string{
			"nats_published_per_msg": "mles_nats_published_total",
			"nats_acked_per_msg":     "mles_nats_acked_total",
			"nats_received_per_msg":  "mles_nats_received_total",
		} {
			if v, ok := windowDelta(raw, name); ok {
				raw[field] = v / sent
			}
		}
	}
	// Trouble on the way to the stream, from the window's start to after
	// the drain, all servers: publishes not acknowledged, messages
	// delivered locally first (the stream did not answer), not queued.
	ss, _ := raw["servers"].([]any)
	var trouble float64
	seen := false
	for i := range ss {
		for _, name := range []string{"mles_nats_failed_total", "mles_nats_local_first_total", "mles_nats_queue_full_total", "mles_nats_too_large_total"} {
			a, ok1 := metricOf(raw, i, "metrics_start", name)
			b, ok2 := metricOf(raw, i, "metrics_after", name)
			if ok1 && ok2 {
				trouble += b - a
				seen = true
			}
		}
	}
	if seen {
		raw["nats_trouble"] = trouble
	}
	least, seenT := 0.0, false
	for i := range ss {
		if v, ok := metricOf(raw, i, "metrics_end", "mles_nats_through_stream"); ok && (!seenT || v < least) {
			least, seenT = v, true
		}
	}
	if seenT {
		raw["nats_through_min"] = least
	}
	oo, _ := raw["out_of_order"].(float64)
	gp, _ := raw["gaps"].(float64)
	raw["anomalies"] = oo + gp
}

// natsOf finds the group of label with g's members, rate and payload.
func natsOf(gs []*group, g *group, label string) *group {
	for _, b := range gs {
		if b.Label == label && b.param("rate") == g.param("rate") &&
			b.param("members") == g.param("members") && b.param("payload") == g.param("payload") {
			return b
		}
	}
	return nil
}

// sumRuns is a field summed over the runs, "-" when no run has it.
func sumRuns(g *group, field string) string {
	var sum float64
	seen := false
	for _, r := range g.Runs {
		if v, ok := r[field].(float64); ok {
			sum += v
			seen = true
		}
	}
	if !seen {
		return "-"
	}
	return fmt.Sprintf("%g", sum)
}

// writeNATS renders the nats scenario: the fan-out over ours alone, ours
// on 1..N servers joined by NATS, and Centrifugo alone and with its NATS
// broker; the ratios against ours alone, Centrifugo's against its own
// single node, and ours/Centrifugo at the same node count.
func writeNATS(sb *strings.Builder, gs []*group) {
	sortNATS(gs)
	fmt.Fprintf(sb, "## %s\n\n", scenarioTitle["nats"])
	sb.WriteString("One channel of 1000, one publisher (member 0, on server 0), members spread over the variant's servers (member i on server i mod N). " +
		"`mles`: one of ours alone (`--plain`, one reactor, `--admin`, no NATS). `mles-natsN`: N of ours, each `--nats` to one nats-server with JetStream " +
		"(file store, a fresh directory per run): every message goes to the stream and comes back to every server with members, in the stream's order; " +
		"loadgen starts the schedule once every server reports `mles_nats_through_stream` 1 and `mles_nats_consumers` >= 1. " +
		"`centrifugo`: one Centrifugo node, memory engine; `centrifugo-natsN`: N nodes on the same nats-server (its NATS broker, at most once, no history). " +
		"**Every server and the nats-server are pinned to CPU 0** (each `GOMAXPROCS=1`), the generator to CPU 1: the servers share one core, so the figures " +
		"price what the broker costs, not how it scales over machines. server cpu-us/delivery: the servers' and the nats-server's CPU summed over the window, " +
		"per delivery; `of which nats-server` is the broker's part. `server 0` / `others`: the members on the publisher's server and on the others; hop: " +
		"others' p99 minus server 0's. stream pub/msg and recv/msg: `mles_nats_published_total` and `mles_nats_received_total` over the window, all servers, " +
		"per published message (N servers with members: recv/msg N). trouble: `mles_nats_failed_total` + `local_first` + `queue_full` + `too_large` from the " +
		"window's start to after the drain, summed over the runs (0 expected). anomalies: out-of-order and gaps the members saw, summed over the runs. " +
		"Medians over the runs; * marks a variant with a client-bound run (the generator used > 0.9 of its core). " + otherLoadNote + "\n\n")
	sb.WriteString("| rate | variant | servers | runs | delivered/s | delivered/expected | p50 ms | p99 ms | server 0 p99 ms | others p99 ms | hop p99 ms | server cpu-us/delivery | of which nats-server | servers core (sum) | nats-server core | generator core | CPU 0 other | CPU 1 other | stream pub/msg | stream recv/msg | trouble (all runs) | anomalies (all runs) | await s |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range gs {
		fmt.Fprintf(sb, "| %g | %s | %g | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			g.param("rate"), labelMark(g), max(1, g.param("servers")), len(g.Runs),
			med(g, "delivered_per_s", "%.0f"), med(g, "delivery_ratio", "%.4f"), med(g, "p50_ms", "%.2f"), med(g, "p99_ms", "%.2f"),
			med(g, "local_p99_ms", "%.2f"), med(g, "remote_p99_ms", "%.2f"), med(g, "hop_p99_ms", "%+.2f"),
			med(g, "server_cpu_us_per_delivery", "%.2f"), med(g, "broker_cpu_us_per_delivery", "%.2f"),
			med(g, "server_core", "%.2f"), med(g, "broker_core", "%.2f"), med(g, "generator_core", "%.2f"),
			maxOf(g, "cpu0_other", "%.2f"), maxOf(g, "cpu1_other", "%.2f"),
			med(g, "nats_published_per_msg", "%.2f"), med(g, "nats_received_per_msg", "%.2f"),
			sumRuns(g, "nats_trouble"), sumRuns(g, "anomalies"), med(g, "await_s", "%.2f"))
	}
	sb.WriteString("\n")

	ratioRows := func(base func(g *group) *group) []string {
		var rows []string
		for _, g := range gs {
			b := base(g)
			if b == nil || b == g {
				continue
			}
			rows = append(rows, fmt.Sprintf("| %g | %s | %s | %s | %s | %s | %s | %s |", g.param("rate"), g.Label, b.Label,
				ratioOf(g, b, "delivered_per_s"), ratioOf(g, b, "delivery_ratio"), ratioOf(g, b, "p99_ms"), diffOf(g, b, "p99_ms", "%+.2f"),
				ratioOf(g, b, "server_cpu_us_per_delivery")))
		}
		return rows
	}
	table := func(intro string, rows []string) {
		if len(rows) == 0 {
			return
		}
		sb.WriteString(intro + " (medians; delivered above 1 is better, p99 and CPU below 1):\n\n")
		sb.WriteString("| rate | variant | against | delivered/s | delivered/expected | p99 | p99 added ms | server cpu-us/delivery |\n|---|---|---|---|---|---|---|---|\n")
		for _, r := range rows {
			sb.WriteString(r + "\n")
		}
		sb.WriteString("\n")
	}
	table("Each variant / ours alone (`mles`), same rate", ratioRows(func(g *group) *group {
		return natsOf(gs, g, natsAlone)
	}))
	table("Centrifugo with its broker / Centrifugo alone, same rate", ratioRows(func(g *group) *group {
		if s, n, ok := natsVariant(g.Label); !ok || s != natsPeerAlone || n == 0 {
			return nil
		}
		return natsOf(gs, g, natsPeerAlone)
	}))
	table("Ours / Centrifugo with as many servers (alone: `mles` / `centrifugo`), same rate", ratioRows(func(g *group) *group {
		s, n, ok := natsVariant(g.Label)
		if !ok || s != natsAlone {
			return nil
		}
		peer := natsPeerAlone
		if n > 0 {
			peer = natsPeerPrefix + strconv.Itoa(n)
		}
		return natsOf(gs, g, peer)
	}))
	writeNATSBrokers(sb, gs)
}

// writeNATSBrokers names the broker processes the runs measured (their
// /proc comm), so that a reader sees what the server CPU includes.
func writeNATSBrokers(sb *strings.Builder, gs []*group) {
	names := map[string]bool{}
	for _, g := range gs {
		for _, r := range g.Runs {
			bs, _ := r["brokers"].([]any)
			for _, b := range bs {
				if m, ok := b.(map[string]any); ok {
					if n, _ := m["name"].(string); n != "" {
						names[n] = true
					}
				}
			}
		}
	}
	if len(names) == 0 {
		return
	}
	var list []string
	for n := range names {
		list = append(list, "`"+n+"`")
	}
	sort.Strings(list)
	fmt.Fprintf(sb, "Broker processes whose CPU is in the server side's (loadgen `-broker-pid`): %s.\n\n", strings.Join(list, ", "))
}
