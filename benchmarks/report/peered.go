package main

import (
	"fmt"
	"sort"
	"strings"
)

// derivePeered flattens a peered run's per-server record into fields the
// tables take medians of: the publisher's server's members (local_*), the
// other servers' members (remote_*), the hop they add, and the peer
// traffic per published message.
func derivePeered(raw map[string]any) {
	ss, _ := raw["servers"].([]any)
	if len(ss) > 0 {
		if s0, ok := ss[0].(map[string]any); ok {
			for _, f := range []string{"delivery_ratio", "p50_ms", "p99_ms", "max_ms", "receivers"} {
				if v, ok := s0[f].(float64); ok {
					raw["local_"+f] = v
				}
			}
		}
	}
	if rm, ok := raw["remote"].(map[string]any); ok {
		for _, f := range []string{"delivery_ratio", "p50_ms", "p99_ms", "max_ms", "receivers"} {
			if v, ok := rm[f].(float64); ok {
				raw["remote_"+f] = v
			}
		}
		if n, _ := rm["samples"].(float64); n > 0 {
			for _, q := range []string{"p50_ms", "p99_ms"} {
				a, ok1 := raw["local_"+q].(float64)
				b, ok2 := raw["remote_"+q].(float64)
				if ok1 && ok2 {
					raw["hop_"+q] = b - a
				}
			}
		} else {
			for _, f := range []string{"remote_p50_ms", "remote_p99_ms", "remote_max_ms"} {
				delete(raw, f)
			}
		}
	}
	if sent, _ := raw["sent"].(float64); sent > 0 {
		if d, ok := windowDelta(raw, "mles_peer_messages_out_total"); ok {
			raw["peer_out_per_msg"] = d / sent
		}
		if d, ok := windowDelta(raw, "mles_peer_duplicates_total"); ok {
			raw["peer_dup_per_msg"] = d / sent
		}
	}
	// The fewest peer sessions any server had at the window's end.
	least, seen := 0.0, false
	for i := range ss {
		if v, ok := metricOf(raw, i, "metrics_end", "mles_peer_sessions"); ok && (!seen || v < least) {
			least, seen = v, true
		}
	}
	if seen {
		raw["peer_sessions_min"] = least
	}
}

// sortPeered orders by rate, then servers (numerically), then label.
func sortPeered(gs []*group) {
	sort.SliceStable(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		for _, k := range []string{"members", "rate", "servers"} {
			if x, y := a.param(k), b.param(k); x != y {
				return x < y
			}
		}
		if a.Params != b.Params {
			return a.Params < b.Params
		}
		return a.Label < b.Label
	})
}

// peeredBase finds the one-server group of g's configuration.
func peeredBase(gs []*group, g *group) *group {
	for _, b := range gs {
		if b.param("servers") == 1 && b.Label == g.Label && b.param("rate") == g.param("rate") &&
			b.param("members") == g.param("members") && b.param("payload") == g.param("payload") {
			return b
		}
	}
	return nil
}

// writePeered renders the peered scenario: the fan-out over 1..N servers,
// the members of the publisher's server against those of the others (the
// hop between servers), the servers' CPU summed.
func writePeered(sb *strings.Builder, gs []*group) {
	sortPeered(gs)
	fmt.Fprintf(sb, "## %s\n\n", scenarioTitle["peered"])
	sb.WriteString("N of ours on loopback in a full mesh (each `--peer` to every other, `--server-id sK`, `--plain`, one reactor, `GOMAXPROCS=1`), " +
		"**all N pinned to CPU 0** (this machine has 2 cores) and the generator to CPU 1: the servers share one core, and server CPU is their sum. " +
		"Member i joins server i mod N, so the publisher (member 0) is on server 0 and the 999 receivers are split evenly. " +
		"Before the schedule starts loadgen waits until every server reports its N-1 peer sessions of the channel " +
		"(`mles_peer_sessions`: one per pair; where both dial, the larger --server-id closes its own); the warm-up follows. " +
		"`server 0` columns: the members on the publisher's server; `others`: the members on every other server, one peer hop away; " +
		"hop: the others' median minus server 0's. peer msgs/msg: `mles_peer_messages_out_total` over the window, all servers, per published message; " +
		"duplicates/msg: `mles_peer_duplicates_total` (copies a server already had, dropped). Medians over the runs; * marks a configuration " +
		"with a client-bound run (the generator used > 0.9 of its core). " + otherLoadNote + "\n\n")
	sb.WriteString("| servers | rate | server | runs | delivered/s | delivered/expected | p50 ms | p99 ms | server 0 delivered/expected | server 0 p50 ms | server 0 p99 ms | others delivered/expected | others p50 ms | others p99 ms | hop p50 ms | hop p99 ms | servers cpu-us/delivery (sum) | servers core (sum) | generator core | CPU 0 other | CPU 1 other | peer msgs/msg | duplicates/msg | peer wait s |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range gs {
		fmt.Fprintf(sb, "| %g | %g | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			g.param("servers"), g.param("rate"), labelMark(g), len(g.Runs),
			med(g, "delivered_per_s", "%.0f"), med(g, "delivery_ratio", "%.4f"), med(g, "p50_ms", "%.2f"), med(g, "p99_ms", "%.2f"),
			med(g, "local_delivery_ratio", "%.4f"), med(g, "local_p50_ms", "%.2f"), med(g, "local_p99_ms", "%.2f"),
			med(g, "remote_delivery_ratio", "%.4f"), med(g, "remote_p50_ms", "%.2f"), med(g, "remote_p99_ms", "%.2f"),
			med(g, "hop_p50_ms", "%+.2f"), med(g, "hop_p99_ms", "%+.2f"),
			med(g, "server_cpu_us_per_delivery", "%.2f"), med(g, "server_core", "%.2f"), med(g, "generator_core", "%.2f"),
			maxOf(g, "cpu0_other", "%.2f"), maxOf(g, "cpu1_other", "%.2f"),
			med(g, "peer_out_per_msg", "%.2f"), med(g, "peer_dup_per_msg", "%.2f"), med(g, "peer_wait_s", "%.2f"))
	}
	sb.WriteString("\n")

	var rows []string
	for _, g := range gs {
		if g.param("servers") == 1 {
			continue
		}
		b := peeredBase(gs, g)
		if b == nil {
			continue
		}
		rows = append(rows, fmt.Sprintf("| %g | %g | %s | %s | %s | %s | %s |", g.param("rate"), g.param("servers"),
			ratioOf(g, b, "delivered_per_s"), ratioOf(g, b, "delivery_ratio"), ratioOf(g, b, "p99_ms"), diffOf(g, b, "p99_ms", "%+.2f"),
			ratioOf(g, b, "server_cpu_us_per_delivery")))
	}
	if len(rows) > 0 {
		sb.WriteString("N servers / one server, same rate (medians; delivered above 1 is better, p99 and CPU below 1):\n\n")
		sb.WriteString("| rate | servers | delivered/s | delivered/expected | p99 | p99 added ms | servers cpu-us/delivery |\n|---|---|---|---|---|---|---|\n")
		for _, r := range rows {
			sb.WriteString(r + "\n")
		}
		sb.WriteString("\n")
	}
}
