package main

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// ours is the label of our server's runs; base is ours built from an
// earlier revision (benchmarks/run with BASE_REV), listed right after ours so
// that the ratio table reads as after/before.
const (
	ours = "mles"
	base = "mlesbase"
)

// labelRank orders labels: ours, then the base build, then the peers.
func labelRank(l string) int {
	switch l {
	case ours:
		return 0
	case base:
		return 1
	}
	return 2
}

// column is one metric in a scenario table.
type column struct {
	field, head, format string
	// ratio: shown as ours/peer in the ratio table (a headline metric).
	ratio bool
	// lower: lower is better (latency, CPU, memory); for reading the ratio.
	lower bool
}

// textColumn is a cell that is not the median of a number: a string field
// over the runs, or a count summed over them. They follow a scenario's
// numeric columns.
type textColumn struct {
	head string
	cell func(g *group) string
}

var textColumns = map[string][]textColumn{
	// The Content-Encoding of every response (all runs); failed requests
	// and non-200s summed over the runs.
	"static": {
		{"encoding", encodings("http_encoding")},
		{"errors (all runs)", sumOf("http_errors")},
	},
}

// scenarioOrder is the order of sections; unknown scenarios follow.
var scenarioOrder = []string{"fanout", "admin", "persist", "persistpub", "peered", "nats", "static", "httpburst", "bigchannel", "slow", "chat", "idle", "connect", "storm", "history"}

var scenarioTitle = map[string]string{
	"fanout":     "Fan-out: 1 channel, 1 publisher",
	"bigchannel": "Big channel: 1 channel of many members joined in a burst, 1 publisher",
	"slow":       "Slow consumer: fan-out with members that stop reading (healthy receivers only)",
	"chat":       "Chat: every member publishes in its channel",
	"idle":       "Idle joined connections",
	"connect":    "Connect + join rate",
	"history":    "History replay on join",
	"storm":      "Reconnect storm after a restart: TLS clients reconnect at once, with and without session tickets the restarted server can read",
	"static":     "Static file: closed-loop keep-alive GETs of one small cached page, compressed",
	"httpburst":  "HTTP burst beside fan-out: WebSocket members' latency without and with HTTP requests on the same port",
	"persist":    "Persistent history beside the fan-out: ours with the history in memory, on disk (`--history-dir`, sync 1 s) and on disk fsyncing every batch",
	"peered":     "Peered servers: the fan-out of 1000 split over 1..N of ours in a full mesh on loopback, the publisher on server 0",
	"admin":      "Metrics beside the fan-out: ours without and with `--admin`, its `/metrics` scraped every second",
	"nats":       "Cluster on NATS: the fan-out of 1000 over ours alone, ours on 1..N servers joined by NATS JetStream, and Centrifugo alone and with its NATS broker",
}

var pubsubColumns = []column{
	{"delivered_per_s", "delivered/s", "%.0f", true, false},
	{"delivery_ratio", "delivered/expected", "%.4f", false, false},
	{"p50_ms", "p50 ms", "%.2f", false, true},
	{"p99_ms", "p99 ms", "%.2f", true, true},
	{"p999_ms", "p99.9 ms", "%.2f", false, true},
	{"max_ms", "max ms", "%.2f", false, true},
	{"server_cpu_us_per_delivery", "server cpu-us/delivery", "%.2f", true, true},
}

var columns = map[string][]column{
	"fanout": pubsubColumns,
	"slow":   pubsubColumns,
	"chat":   pubsubColumns,
	// server_closed: members the server closed during the run (the codes
	// follow in their own column); server_rss_mib: RSS with every member
	// still connected (load derives it from server_rss_after_bytes).
	"bigchannel": {
		{"delivered_per_s", "delivered/s", "%.0f", false, false},
		{"delivery_ratio", "delivered/expected", "%.4f", true, false},
		{"p50_ms", "p50 ms", "%.2f", false, true},
		{"p99_ms", "p99 ms", "%.2f", true, true},
		{"max_ms", "max ms", "%.2f", false, true},
		{"server_closed", "members closed by server", "%.0f", false, true},
		{"server_cpu_us_per_delivery", "server cpu-us/delivery", "%.2f", true, true},
		{"server_rss_mib", "server RSS MiB", "%.1f", true, true},
	},
	"idle": {
		{"join_rate", "joins/s", "%.0f", false, false},
		{"rss_per_conn_bytes", "server RSS B/conn", "%.0f", true, true},
		{"kernel_per_conn_bytes", "kernel slab B/conn (both ends)", "%.0f", false, true},
		{"conns_alive", "alive", "%.0f", false, false},
	},
	"connect": {
		{"connects_per_s", "connects/s", "%.0f", true, false},
		{"p50_ms", "p50 ms", "%.2f", false, true},
		{"p99_ms", "p99 ms", "%.2f", false, true},
		{"server_cpu_us_per_connect", "server cpu-us/connect", "%.0f", false, true},
	},
	// server_core, client_core: the server's and the generator's CPU over
	// the window, as a fraction of their one core (a closed loop should
	// keep the server's near 1; less says it was starved or disturbed);
	// http_response_bytes: body bytes per response as sent (compressed).
	"static": {
		{"requests_per_s", "req/s", "%.0f", true, false},
		{"p50_ms", "p50 ms", "%.2f", false, true},
		{"p99_ms", "p99 ms", "%.2f", true, true},
		{"p999_ms", "p99.9 ms", "%.2f", false, true},
		{"server_cpu_us_per_request", "server cpu-us/request", "%.1f", true, true},
		{"client_cpu_us_per_request", "generator cpu-us/request", "%.1f", false, true},
		{"server_core", "server core used", "%.2f", false, false},
		{"client_core", "generator core used", "%.2f", false, true},
		{"http_response_bytes", "bytes/response", "%.0f", true, true},
	},
	"history": {
		{"p50_ms", "replay p50 ms", "%.2f", false, true},
		{"p99_ms", "replay p99 ms", "%.2f", true, true},
		{"max_ms", "replay max ms", "%.2f", false, true},
		{"delivery_ratio", "history delivered/expected", "%.4f", false, false},
		{"history_msgs_min", "min msgs replayed", "%.0f", false, false},
	},
}

// paramKeys are the parameters that name a configuration in the tables.
var paramKeys = []string{"members", "channels", "rate", "slow", "conns", "stored", "joiners", "tls", "payload"}

func paramDesc(g *group) string {
	var parts []string
	for _, k := range paramKeys {
		switch v := g.P[k].(type) {
		case float64:
			if k == "payload" && v == 64 {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s=%g", k, v))
		case bool:
			if v {
				parts = append(parts, k)
			}
		}
	}
	if g.Scenario == "connect" {
		if m, _ := g.Runs[0]["mode"].(string); m == "rawtls" {
			parts = append(parts, "raw TLS handshake")
		}
	}
	if c, _ := g.P["http_client"].(string); c != "" {
		parts = append(parts, "http-client="+c)
	}
	if ae, ok := g.P["accept_encoding"].(string); ok && ae != chromiumAcceptEncoding && g.Scenario == "static" {
		parts = append(parts, fmt.Sprintf("Accept-Encoding %q", ae))
	}
	return strings.Join(parts, " ")
}

func cell(g *group, c column) string {
	v, ok := g.median(c.field)
	if !ok {
		return "-"
	}
	return fmt.Sprintf(c.format, v)
}

// writeMarkdown renders the report.
func writeMarkdown(sb *strings.Builder, groups []*group, files []string) {
	sb.WriteString("# Benchmark results\n\n")
	fmt.Fprintf(sb, "Medians over repetitions from %s. Ratios are ours (`%s`) / peer: above 1 is better for rates, below 1 for latency, CPU and memory. "+
		"A configuration marked * had a client-bound repetition (the generator used > 0.9 of its core).\n\n",
		strings.Join(files, ", "), ours)

	byScenario := map[string][]*group{}
	var extra []string
	for _, g := range groups {
		if !slices.Contains(scenarioOrder, g.Scenario) && byScenario[g.Scenario] == nil {
			extra = append(extra, g.Scenario)
		}
		byScenario[g.Scenario] = append(byScenario[g.Scenario], g)
	}
	for _, sc := range append(append([]string{}, scenarioOrder...), extra...) {
		gs := byScenario[sc]
		if len(gs) == 0 {
			continue
		}
		if sc == "httpburst" {
			sortGroups(gs)
			writeBurst(sb, gs)
			continue
		}
		if sc == "storm" {
			writeStorm(sb, gs)
			continue
		}
		if sc == "persist" {
			writePersist(sb, gs, byScenario["persistpub"])
			continue
		}
		if sc == "persistpub" {
			if len(byScenario["persist"]) == 0 {
				writePersist(sb, nil, gs)
			}
			continue
		}
		if sc == "peered" {
			writePeered(sb, gs)
			continue
		}
		if sc == "admin" {
			writeAdmin(sb, gs)
			continue
		}
		if sc == "nats" {
			writeNATS(sb, gs)
			continue
		}
		cols := columns[sc]
		if cols == nil {
			cols = pubsubColumns
		}
		sortGroups(gs)
		title := scenarioTitle[sc]
		if title == "" {
			title = sc
		}
		fmt.Fprintf(sb, "## %s\n\n", title)
		sb.WriteString("| configuration | server | runs |")
		for _, c := range cols {
			fmt.Fprintf(sb, " %s |", c.head)
		}
		switch sc {
		case "history":
			sb.WriteString(" order/loss ok |")
		case "bigchannel":
			sb.WriteString(" close codes (all runs) |")
		}
		for _, t := range textColumns[sc] {
			fmt.Fprintf(sb, " %s |", t.head)
		}
		sb.WriteString("\n|---|---|---|")
		for range cols {
			sb.WriteString("---|")
		}
		for range textColumns[sc] {
			sb.WriteString("---|")
		}
		if sc == "history" || sc == "bigchannel" {
			sb.WriteString("---|")
		}
		sb.WriteString("\n")
		for _, g := range gs {
			mark := ""
			if g.any("client_bound") {
				mark = "*"
			}
			fmt.Fprintf(sb, "| %s | %s%s | %d |", paramDesc(g), g.Label, mark, len(g.Runs))
			for _, c := range cols {
				fmt.Fprintf(sb, " %s |", cell(g, c))
			}
			if sc == "history" {
				ok, seen := g.all("history_ok")
				switch {
				case !seen:
					sb.WriteString(" - |")
				case ok:
					sb.WriteString(" yes |")
				default:
					sb.WriteString(" **NO** |")
				}
			}
			if sc == "bigchannel" {
				fmt.Fprintf(sb, " %s |", closeCodes(g))
			}
			for _, t := range textColumns[sc] {
				fmt.Fprintf(sb, " %s |", t.cell(g))
			}
			sb.WriteString("\n")
		}
		sb.WriteString("\n")
		sb.WriteString(scenarioNotes[sc])
		writeRatios(sb, gs, cols)
		if sc == "fanout" {
			writeCapacity(sb, gs)
		}
	}
}

// sortGroups orders by configuration (numeric parameters), ours first.
func sortGroups(gs []*group) {
	sort.SliceStable(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		for _, k := range paramKeys {
			x, y := a.param(k), b.param(k)
			if x != y {
				return x < y
			}
		}
		if a.Params != b.Params {
			return a.Params < b.Params
		}
		if ra, rb := labelRank(a.Label), labelRank(b.Label); ra != rb {
			return ra < rb
		}
		return a.Label < b.Label
	})
}

// closeCodes sums the close codes the server sent over a group's runs, as
// "1008 x12, 1001 x1" (most frequent first), "none" when it closed nobody.
func closeCodes(g *group) string {
	sum := map[string]float64{}
	for _, r := range g.Runs {
		m, _ := r["close_codes"].(map[string]any)
		for code, n := range m {
			if x, ok := n.(float64); ok {
				sum[code] += x
			}
		}
	}
	if len(sum) == 0 {
		return "none"
	}
	codes := make([]string, 0, len(sum))
	for c := range sum {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool {
		if sum[codes[i]] != sum[codes[j]] {
			return sum[codes[i]] > sum[codes[j]]
		}
		return codes[i] < codes[j]
	})
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprintf("%s x%g", c, sum[c])
	}
	return strings.Join(parts, ", ")
}

// writeRatios writes ours/peer for the headline metrics of each configuration.
func writeRatios(sb *strings.Builder, gs []*group, cols []column) {
	var head []column
	for _, c := range cols {
		if c.ratio {
			head = append(head, c)
		}
	}
	oursBy := map[string]*group{}
	for _, g := range gs {
		if g.Label == ours {
			oursBy[g.Params] = g
		}
	}
	var rows []string
	for _, g := range gs {
		o := oursBy[g.Params]
		if g.Label == ours || o == nil {
			continue
		}
		row := fmt.Sprintf("| %s | %s |", paramDesc(g), g.Label)
		for _, c := range head {
			a, ok1 := o.median(c.field)
			b, ok2 := g.median(c.field)
			if !ok1 || !ok2 || b == 0 {
				row += " - |"
				continue
			}
			row += fmt.Sprintf(" %.2f |", a/b)
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return
	}
	sb.WriteString("Ratio ours/peer:\n\n| configuration | peer |")
	for _, c := range head {
		fmt.Fprintf(sb, " %s |", c.head)
	}
	sb.WriteString("\n|---|---|")
	for range head {
		sb.WriteString("---|")
	}
	sb.WriteString("\n")
	for _, r := range rows {
		sb.WriteString(r + "\n")
	}
	sb.WriteString("\n")
}

// Fan-out capacity: the highest offered rate a server sustains.
const (
	capacityRatio = 0.999
	capacityP99Ms = 100.0
)

// capacity returns, per label, the highest rate (msg/s) whose medians meet
// the delivery and p99 bounds (members of the largest fan-out seen only).
func capacity(gs []*group) (map[string]float64, float64) {
	members := 0.0
	for _, g := range gs {
		if g.param("slow") == 0 {
			members = math.Max(members, g.param("members"))
		}
	}
	best := map[string]float64{}
	for _, g := range gs {
		if g.param("members") != members || g.param("slow") != 0 {
			continue
		}
		if _, ok := best[g.Label]; !ok {
			best[g.Label] = 0
		}
		ratio, ok1 := g.median("delivery_ratio")
		p99, ok2 := g.median("p99_ms")
		if ok1 && ok2 && ratio >= capacityRatio && p99 < capacityP99Ms {
			best[g.Label] = math.Max(best[g.Label], g.param("rate"))
		}
	}
	return best, members
}

func writeCapacity(sb *strings.Builder, gs []*group) {
	best, members := capacity(gs)
	if len(best) == 0 {
		return
	}
	fmt.Fprintf(sb, "Highest publish rate with >= %.1f%% delivered and p99 < %.0f ms (%g members; 0: none of the rates tried):\n\n",
		capacityRatio*100, capacityP99Ms, members)
	sb.WriteString("| server | msg/s | deliveries/s | ours/peer |\n|---|---|---|---|\n")
	for _, l := range labels(gs) {
		r, ok := best[l]
		if !ok {
			continue
		}
		ratio := "-"
		if l != ours && r > 0 {
			if o, ok := best[ours]; ok {
				ratio = fmt.Sprintf("%.2f", o/r)
			}
		}
		fmt.Fprintf(sb, "| %s | %g | %.0f | %s |\n", l, r, r*(members-1), ratio)
	}
	sb.WriteString("\n")
}
