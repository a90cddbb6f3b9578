package main

import (
	"fmt"
	"sort"
	"strings"
)

// chromiumAcceptEncoding is loadgen's default Accept-Encoding (Chromium's);
// a static configuration with another one says so.
const chromiumAcceptEncoding = "gzip, deflate, br, zstd"

// burstLimit is the acceptance bound of the HTTP burst: the WebSocket
// members' p99 with the burst at most 20% above the p99 without.
const burstLimit = 1.20

// scenarioNotes follow a scenario's tables.
var scenarioNotes = map[string]string{
	"static": "Closed loop: each connection sends its next GET as soon as the previous response is in, so req/s is the server's " +
		"capacity on its one core with that many requests in flight, and the latencies are a saturated server's. " +
		"The request carries Chromium's Accept-Encoding; each server answers with the encoding it prefers (encoding column), " +
		"so bytes/response differ. server / generator core used: their CPU over the window as a fraction of their one core; " +
		"the closed loop should keep the server's near 1.00 (less: the server waited for the generator, or something else ran on its core), " +
		"and a generator above 0.90 makes the run client-bound (*).\n\n",
}

// encodings lists the distinct values of a string field over the runs.
func encodings(field string) func(g *group) string {
	return func(g *group) string {
		seen := map[string]bool{}
		for _, r := range g.Runs {
			if v, ok := r[field].(string); ok && v != "" {
				seen[v] = true
			}
		}
		if len(seen) == 0 {
			return "-"
		}
		vs := make([]string, 0, len(seen))
		for v := range seen {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		if len(vs) > 1 {
			return "**" + strings.Join(vs, ", ") + "** (differs between runs)"
		}
		return vs[0]
	}
}

// sumOf sums a count over the runs (a missing field is 0).
func sumOf(field string) func(g *group) string {
	return func(g *group) string {
		var n float64
		for _, r := range g.Runs {
			if v, ok := r[field].(float64); ok {
				n += v
			}
		}
		return fmt.Sprintf("%g", n)
	}
}

// burstPair is a configuration of the httpburst scenario: the runs without
// the HTTP burst (http_rate 0) and the runs with it, same members, rate and
// server.
type burstPair struct {
	off, on *group
}

// burstKey is what pairs the two: every parameter but the burst's.
func burstKey(g *group) string {
	p := map[string]any{}
	for k, v := range g.P {
		switch k {
		case "http_rate", "http_conns", "accept_encoding", "http_client":
			continue
		}
		p[k] = v
	}
	return fmt.Sprintf("%v\x00%s", p, g.Label)
}

func burstPairs(gs []*group) []burstPair {
	off := map[string]*group{}
	for _, g := range gs {
		if g.param("http_rate") == 0 {
			off[burstKey(g)] = g
		}
	}
	var pairs []burstPair
	for _, g := range gs {
		if g.param("http_rate") > 0 {
			pairs = append(pairs, burstPair{off: off[burstKey(g)], on: g})
		}
	}
	// Configurations in their order in gs (sorted already), each one's
	// bursts in order of rate.
	first := map[string]int{}
	for i, p := range pairs {
		if _, ok := first[burstKey(p.on)]; !ok {
			first[burstKey(p.on)] = i
		}
	}
	sort.SliceStable(pairs, func(i, j int) bool {
		a, b := first[burstKey(pairs[i].on)], first[burstKey(pairs[j].on)]
		if a != b {
			return a < b
		}
		return pairs[i].on.param("http_rate") < pairs[j].on.param("http_rate")
	})
	// Baselines without a burst run still get a row.
	for _, g := range gs {
		if g.param("http_rate") != 0 {
			continue
		}
		found := false
		for _, p := range pairs {
			if p.off == g {
				found = true
			}
		}
		if !found {
			pairs = append(pairs, burstPair{off: g})
		}
	}
	return pairs
}

// burstDesc names a pair's configuration (paramDesc leaves the burst's
// parameters out).
func burstDesc(p burstPair) string {
	if p.on != nil {
		return paramDesc(p.on)
	}
	return paramDesc(p.off)
}

func med(g *group, field, format string) string {
	if g == nil {
		return "-"
	}
	v, ok := g.median(field)
	if !ok {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func boundMark(g *group) string {
	if g == nil {
		return "-"
	}
	n := 0
	for _, r := range g.Runs {
		if b, _ := r["client_bound"].(bool); b {
			n++
		}
	}
	return fmt.Sprintf("%d/%d", n, len(g.Runs))
}

// ratioCell is on/off of a field's medians.
func ratioCell(p burstPair, field string) (float64, string) {
	if p.off == nil || p.on == nil {
		return 0, "-"
	}
	a, ok1 := p.off.median(field)
	b, ok2 := p.on.median(field)
	if !ok1 || !ok2 || a == 0 {
		return 0, "-"
	}
	return b / a, fmt.Sprintf("%.2f", b/a)
}

// writeBurst renders the httpburst scenario: the members' latency without
// and with the burst (medians, their ratio against the 20% bound), what
// the burst achieved, and every repetition's pair.
func writeBurst(sb *strings.Builder, gs []*group) {
	pairs := burstPairs(gs)
	fmt.Fprintf(sb, "## %s\n\n", scenarioTitle["httpburst"])
	sb.WriteString("WebSocket members (the fan-out's receivers), medians; \"with\" is the same run with the HTTP burst on the same port. " +
		"The bound is p99 with / without <= 1.20. client-bound: runs where the generator used > 0.9 of its core.\n\n")
	sb.WriteString("| configuration | server | HTTP offered req/s | runs without / with | p50 ms without | p50 ms with | p99 ms without | p99 ms with | p99 with/without | within 20% | p99.9 ms without | p99.9 ms with | delivered/expected without | delivered/expected with | client-bound without | client-bound with |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range pairs {
		label := labelOf(p)
		r, rs := ratioCell(p, "p99_ms")
		within := "-"
		if rs != "-" {
			within = "yes"
			if r > burstLimit {
				within = "**NO**"
			}
		}
		fmt.Fprintf(sb, "| %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			burstDesc(p), label, offered(p), runsOf(p.off), runsOf(p.on),
			med(p.off, "p50_ms", "%.2f"), med(p.on, "p50_ms", "%.2f"),
			med(p.off, "p99_ms", "%.2f"), med(p.on, "p99_ms", "%.2f"), rs, within,
			med(p.off, "p999_ms", "%.2f"), med(p.on, "p999_ms", "%.2f"),
			med(p.off, "delivery_ratio", "%.4f"), med(p.on, "delivery_ratio", "%.4f"),
			boundMark(p.off), boundMark(p.on))
	}
	sb.WriteString("\n")

	sb.WriteString("The HTTP burst (medians): offered is the open-loop schedule over its keep-alive connections; achieved counts the 200s received inside the window; " +
		"answered is the share of the requests scheduled in the window that got a 200 by the end of the drain; its latency counts from each request's intended send time. " +
		"Server and generator CPU are the fraction of their one core used over the window; the burst runs as a second generator process on the generator's core, " +
		"and client-bound counts both processes.\n\n")
	sb.WriteString("| configuration | server | HTTP offered req/s | HTTP conns | HTTP achieved req/s | answered | HTTP errors (all runs) | HTTP p50 ms | HTTP p99 ms | encoding | bytes/response | server core without | server core with | generator core without | generator core with | of which burst process |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range pairs {
		if p.on == nil {
			continue
		}
		answered := "-"
		var sched, ans float64
		for _, r := range p.on.Runs {
			s, _ := r["http_scheduled"].(float64)
			a, _ := r["http_requests"].(float64)
			sched += s
			ans += a
		}
		if sched > 0 {
			answered = fmt.Sprintf("%.4f", ans/sched)
		}
		achieved := med(p.on, "http_per_s", "%.0f")
		if achieved == "-" {
			achieved = "0"
		}
		fmt.Fprintf(sb, "| %s | %s | %g | %g | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			burstDesc(p), labelOf(p), p.on.param("http_rate"), p.on.param("http_conns"), achieved, answered,
			sumOf("http_errors")(p.on), med(p.on, "http_p50_ms", "%.2f"), med(p.on, "http_p99_ms", "%.2f"),
			encodings("http_encoding")(p.on), med(p.on, "http_response_bytes", "%.0f"),
			med(p.off, "server_core", "%.2f"), med(p.on, "server_core", "%.2f"),
			med(p.off, "generator_core", "%.2f"), med(p.on, "generator_core", "%.2f"), med(p.on, "http_client_core", "%.2f"))
	}
	sb.WriteString("\n")

	sb.WriteString("Each repetition's pair (the n-th run without beside the n-th run with; benchmarks/run alternates their order):\n\n")
	sb.WriteString("| configuration | server | HTTP offered req/s | repetition | p99 ms without | p99 ms with | p99 with/without | within 20% | client-bound without / with |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range pairs {
		if p.off == nil || p.on == nil {
			continue
		}
		n := min(len(p.off.Runs), len(p.on.Runs))
		for i := range n {
			a, ok1 := p.off.Runs[i]["p99_ms"].(float64)
			b, ok2 := p.on.Runs[i]["p99_ms"].(float64)
			ratio, within := "-", "-"
			if ok1 && ok2 && a > 0 {
				ratio = fmt.Sprintf("%.2f", b/a)
				within = "yes"
				if b/a > burstLimit {
					within = "**NO**"
				}
			}
			cb := func(r map[string]any) string {
				if v, _ := r["client_bound"].(bool); v {
					return "yes"
				}
				return "no"
			}
			fmt.Fprintf(sb, "| %s | %s | %s | %d | %s | %s | %s | %s | %s / %s |\n",
				burstDesc(p), labelOf(p), offered(p), i+1, num(p.off.Runs[i], "p99_ms"), num(p.on.Runs[i], "p99_ms"),
				ratio, within, cb(p.off.Runs[i]), cb(p.on.Runs[i]))
		}
	}
	sb.WriteString("\n")
}

func offered(p burstPair) string {
	if p.on == nil {
		return "-"
	}
	return fmt.Sprintf("%g", p.on.param("http_rate"))
}

func labelOf(p burstPair) string {
	if p.on != nil {
		return p.on.Label
	}
	return p.off.Label
}

func runsOf(g *group) string {
	if g == nil {
		return "0"
	}
	return fmt.Sprint(len(g.Runs))
}

func num(r map[string]any, field string) string {
	if v, ok := r[field].(float64); ok {
		return fmt.Sprintf("%.2f", v)
	}
	return "-"
}
