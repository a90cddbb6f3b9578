package main

import (
	"fmt"
	"math"
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

// stormKey names a storm configuration: clients, channel size, dialers
// (the certificate has its own column, certOf).
func stormKey(g *group) string {
	return fmt.Sprintf("conns=%g members=%g dialers=%g", g.param("conns"), g.param("members"), g.param("dialers"))
}

// certOf is the server's certificate loadgen saw ("ECDSA P-256", "RSA
// 2048"); "-" for records from before it was recorded.
func certOf(g *group) string {
	if c, _ := g.P["cert"].(string); c != "" {
		return c
	}
	return "-"
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

// sortStorm orders by clients, channel size and dialers (numerically), the
// certificate, then label.
func sortStorm(gs []*group) {
	sort.SliceStable(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		for _, k := range []string{"conns", "members", "dialers"} {
			if x, y := a.param(k), b.param(k); x != y {
				return x < y
			}
		}
		if x, y := certOf(a), certOf(b); x != y {
			return x < y
		}
		if ra, rb := stormRank(a.Label), stormRank(b.Label); ra != rb {
			return ra < rb
		}
		return a.Label < b.Label
	})
}

// deriveStorm adds both processes' share of their core over phase 1, and
// the generator's CPU per storm connect for records from before loadgen
// wrote it.
func deriveStorm(raw map[string]any) {
	if w, _ := raw["phase1_window_s"].(float64); w > 0 {
		if c, ok := raw["phase1_client_cpu_s"].(float64); ok {
			raw["phase1_generator_core"] = c / w
		}
		if c, ok := raw["phase1_server_cpu_s"].(float64); ok && c > 0 {
			raw["phase1_server_core"] = c / w
		}
	}
	if _, ok := raw["client_cpu_us_per_connect"]; !ok {
		c, ok1 := raw["client_cpu_s"].(float64)
		n, _ := raw["connects"].(float64)
		if ok1 && n > 0 {
			raw["client_cpu_us_per_connect"] = c * 1e6 / n
		}
	}
}

// busyCore is the share of its core above which a process is taken to
// bound a storm; within closeCores of each other, both are. A storm's
// window includes its ramp-up and its tail, so a saturated process shows
// 0.85-0.95 rather than 1.
const (
	busyCore   = 0.80
	closeCores = 0.05
)

// stormBound names the process whose core bounded a storm (medians of its
// runs): the busier one when above busyCore, "both" when both are and
// within closeCores of each other, "neither" when none is.
func stormBound(g *group, serverField, generatorField string) string {
	s, ok1 := g.median(serverField)
	c, ok2 := g.median(generatorField)
	switch {
	case !ok1 || !ok2:
		return "-"
	case s <= busyCore && c <= busyCore:
		return "neither"
	case s > busyCore && c > busyCore && math.Abs(s-c) <= closeCores:
		return "both"
	case c > s:
		return "generator"
	}
	return "server"
}

// stormSpeedup is issue 12's acceptance: the storm with ticket keys (the
// clients resume) at least 3x faster than without (full handshakes).
const stormSpeedup = 3.0

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

// writeStorm renders the storm scenario: per configuration, certificate
// and label the storm's figures (medians), the failures, the same run's
// phase 1 (full handshakes, as a baseline), the ratios with tickets /
// without, and where the storm's time went.
func writeStorm(sb *strings.Builder, gs []*group) {
	sortStorm(gs)
	fmt.Fprintf(sb, "## %s\n\n", scenarioTitle["storm"])
	sb.WriteString("Phase 1: every client connects over TLS 1.3 (wss, X25519) to the server's certificate (cert: ours self-signed ECDSA P-256, " +
		"or an RSA 2048 one given with `--tls-cert`), joins " +
		"(channels of `members`) and keeps the session ticket in its own session cache; then all close and the server restarts " +
		"(SIGINT, started again with the same flags). Phase 2, the storm: all reconnect, `dialers` at a time, with their sessions, and join " +
		"(a join counts when the server's pong to a ping sent behind the header frame is in). " +
		"`mles-tickets`: both processes read the same `--tls-ticket-keys` file; `mles-notickets`: no file, each process has its own random keys, " +
		"so the restarted server cannot read the tickets and every reconnect is a full handshake. " +
		"The clients skip the certificate chain's verification for both certificates (`-insecure`: self-signed), but crypto/tls still checks the " +
		"handshake's signature (CertificateVerify) with the certificate's key on every full handshake: the server signs, the client verifies. " +
		"A resumption skips the certificate and the signature on both sides; both still do the X25519 exchange (Go offers and accepts only `psk_dhe_ke`). " +
		"server / generator cpu-us/connect: each process's CPU over the storm per joined client; server / generator core: their CPU over the storm " +
		"as a share of their one core; bound by: the process whose core was the busier, above 0.80 (a storm's window includes its ramp-up and tail), " +
		"or both when within 0.05 of each other: the storm's time is then that process's work. " +
		"Medians over the runs; * marks a configuration with a client-bound storm (the generator used > 0.9 of its core). " + otherLoadNote + "\n\n")
	sb.WriteString("| configuration | cert | server | runs | all joined s | all joined s (each run) | connects/s | resumed | server cpu-us/connect | generator cpu-us/connect | p50 ms | p99 ms | max ms | failures (all runs) | server core | generator core | bound by | client-bound runs | CPU 0 other | CPU 1 other | server RSS MiB after |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range gs {
		mark := ""
		if g.any("client_bound") {
			mark = "*"
		}
		fmt.Fprintf(sb, "| %s | %s | %s%s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %g | %s | %s | %s | %s | %s | %s | %s |\n",
			stormKey(g), certOf(g), g.Label, mark, len(g.Runs),
			med(g, "storm_s", "%.2f"), eachRun(g, "storm_s", "%.2f"), med(g, "connects_per_s", "%.0f"),
			med(g, "resumed_share", "%.3f"), med(g, "server_cpu_us_per_connect", "%.0f"), med(g, "client_cpu_us_per_connect", "%.0f"),
			med(g, "p50_ms", "%.2f"), med(g, "p99_ms", "%.2f"), med(g, "max_ms", "%.2f"),
			sumField(g, "connect_errors"), med(g, "server_core", "%.2f"), med(g, "generator_core", "%.2f"),
			stormBound(g, "server_core", "generator_core"), boundMark(g),
			maxOf(g, "cpu0_other", "%.2f"), maxOf(g, "cpu1_other", "%.2f"), med(g, "server_rss_mib", "%.1f"))
	}
	sb.WriteString("\n")

	sb.WriteString("The same runs' phase 1 (first connects, full handshakes for both labels: an in-run baseline for the storm without tickets) and the restart: " +
		"tickets kept is the share of clients whose session cache held a session after phase 1; restart s is the restart script's time (stop, start, port accepts).\n\n")
	sb.WriteString("| configuration | cert | server | phase 1 s | phase 1 connects/s | phase 1 server cpu-us/connect | phase 1 generator cpu-us/connect | phase 1 server core | phase 1 generator core | phase 1 bound by | phase 1 p50 ms | phase 1 p99 ms | phase 1 failures (all runs) | tickets kept | restart s |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range gs {
		kept := "-"
		if n := sumField(g, "conns"); n > 0 {
			kept = fmt.Sprintf("%.4f", sumField(g, "tickets_held")/n)
		}
		fmt.Fprintf(sb, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %g | %s | %s |\n",
			stormKey(g), certOf(g), g.Label, med(g, "phase1_s", "%.2f"), med(g, "phase1_connects_per_s", "%.0f"),
			med(g, "phase1_server_cpu_us_per_connect", "%.0f"), med(g, "phase1_client_cpu_us_per_connect", "%.0f"),
			med(g, "phase1_server_core", "%.2f"), med(g, "phase1_generator_core", "%.2f"),
			stormBound(g, "phase1_server_core", "phase1_generator_core"),
			med(g, "phase1_p50_ms", "%.2f"), med(g, "phase1_p99_ms", "%.2f"),
			sumField(g, "phase1_failed"), kept, med(g, "restart_s", "%.2f"))
	}
	sb.WriteString("\n")

	// Ratios: tickets / no tickets, per configuration and certificate.
	type pair struct {
		key, cert string
		on, off   *group
	}
	var pairs []*pair
	index := map[string]*pair{}
	for _, g := range gs {
		k := stormKey(g) + "\x00" + certOf(g)
		p := index[k]
		if p == nil {
			p = &pair{key: stormKey(g), cert: certOf(g)}
			index[k] = p
			pairs = append(pairs, p)
		}
		switch g.Label {
		case stormTickets:
			p.on = g
		case stormNoTickets:
			p.off = g
		}
	}
	ratio := func(p *pair, field string) string { return ratioOf(p.on, p.off, field) }
	var rows []string
	for _, p := range pairs {
		if p.on == nil || p.off == nil {
			continue
		}
		speedup, meets := "-", "-"
		if a, ok1 := p.off.median("storm_s"); ok1 {
			if b, ok2 := p.on.median("storm_s"); ok2 && b > 0 {
				speedup = fmt.Sprintf("%.2f", a/b)
				meets = "yes"
				if a/b < stormSpeedup {
					meets = "**NO**"
				}
			}
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |", p.key, p.cert,
			speedup, meets, ratio(p, "storm_s"), ratio(p, "connects_per_s"), ratio(p, "server_cpu_us_per_connect"),
			ratio(p, "client_cpu_us_per_connect"), ratio(p, "p50_ms"), ratio(p, "p99_ms"),
			stormBound(p.on, "server_core", "generator_core"), stormBound(p.off, "server_core", "generator_core")))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(sb, "Time without / time with: the storm's all-joined time with full handshakes over the same with resumptions (medians); issue 12 asks for at least %gx. "+
		"The other ratios are with tickets / without (below 1 is better for time, CPU and latency, above 1 for connects/s):\n\n", stormSpeedup)
	sb.WriteString("| configuration | cert | time without / time with | >= 3x (issue 12) | all joined s with/without | connects/s | server cpu-us/connect | generator cpu-us/connect | p50 ms | p99 ms | bound by, with / without |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		sb.WriteString(r + "\n")
	}
	sb.WriteString("\n")

	// Where the time went: which process's core bounded each storm, and
	// what that does to the time ratio.
	sb.WriteString("Where the storm's time goes (medians):\n\n")
	for _, p := range pairs {
		if p.on == nil || p.off == nil {
			continue
		}
		fmt.Fprintf(sb, "- %s, %s: without tickets %s; with tickets %s.", p.cert, p.key, boundProse(p.off), boundProse(p.on))
		offBound := stormBound(p.off, "server_core", "generator_core")
		onBound := stormBound(p.on, "server_core", "generator_core")
		switch {
		case offBound == "generator" || offBound == "both":
			sb.WriteString(" The full handshakes' storm is bound by the clients' own work (X25519, and the verification of the handshake's signature " +
				"with the certificate's key, which a resumption skips too), so its time measures the generator as much as the server, and the time ratio " +
				"is not the server's saving: read the server cpu-us/connect ratio for that.")
		case onBound == "generator" || onBound == "both":
			sb.WriteString(" The resumed storm is bound by the clients' own work (a resumption still costs the generator the X25519 exchange, the TCP connect, " +
				"the upgrade and the join), so the time ratio is a floor: a faster generator would make the storm with tickets shorter still.")
		case offBound == "server" && onBound != "generator":
			sb.WriteString(" Both storms are the server's work: the time ratio is the server's saving.")
		}
		sb.WriteString("\n")
	}
	sb.WriteString("\n")
}

// boundProse says which core bounded a storm, with both processes' CPU.
func boundProse(g *group) string {
	s, _ := g.median("server_core")
	c, _ := g.median("generator_core")
	su, _ := g.median("server_cpu_us_per_connect")
	cu, _ := g.median("client_cpu_us_per_connect")
	what := map[string]string{
		"server":    "the server's core bounded it",
		"generator": "the generator's core bounded it",
		"both":      "both cores were busy",
		"neither":   "neither core was busy above 0.80 (the time went to waits)",
		"-":         "the cores' use is unknown",
	}[stormBound(g, "server_core", "generator_core")]
	return fmt.Sprintf("%s (server core %.2f at %.0f cpu-us/connect, generator core %.2f at %.0f)", what, s, su, c, cu)
}
