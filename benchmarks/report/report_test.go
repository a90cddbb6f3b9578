package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// persistRun is a loadgen record of the persist scenarios with one server
// whose metrics are the store's.
func persistRun(scenario, label string, members, rate, delivered, expected, p99, written, dropped float64) map[string]any {
	metrics := func(w float64) map[string]any {
		m := map[string]any{"mles_messages_in_total": w}
		if label != persistMemory {
			m["mles_history_store_written_total"] = w
			m["mles_history_store_dropped_total"] = dropped
			m["mles_history_store_queued"] = 0.0
			m["mles_history_store_disk_bytes"] = 2.0 * (1 << 20)
		}
		return m
	}
	return map[string]any{
		"label": label, "scenario": scenario, "mode": "mles",
		"params":   map[string]any{"members": members, "rate": rate, "payload": 64, "duration_s": 10},
		"window_s": 10.0, "sent": rate * 10, "delivered": delivered, "expected": expected,
		"delivered_per_s": delivered / 10, "delivery_ratio": delivered / expected, "samples": delivered,
		"p50_ms": p99 / 4, "p99_ms": p99, "max_ms": p99 * 2, "client_cpu_s": 5.0, "server_cpu_s": 2.0,
		"server_cpu_us_per_delivery": 2e6 / delivered, "cpu_busy_s": []any{3.0, 5.5},
		"servers": []any{map[string]any{
			"metrics_start": metrics(100), "metrics_end": metrics(100 + written), "metrics_after": metrics(100 + written),
		}},
	}
}

func peeredRun(servers, rate, localP99, remoteP99 float64) map[string]any {
	part := func(p99 float64) map[string]any {
		return map[string]any{"receivers": 333.0, "delivery_ratio": 1.0, "p50_ms": p99 / 2, "p99_ms": p99, "samples": 1000.0}
	}
	ss := []any{}
	for i := 0; i < int(servers); i++ {
		p := part(localP99)
		p["metrics_start"] = map[string]any{"mles_peer_sessions": 2 * (servers - 1), "mles_peer_messages_out_total": 0.0, "mles_peer_duplicates_total": 0.0}
		p["metrics_end"] = map[string]any{"mles_peer_sessions": 2 * (servers - 1), "mles_peer_messages_out_total": rate * 10 * 2, "mles_peer_duplicates_total": rate * 10}
		ss = append(ss, p)
	}
	r := map[string]any{
		"label": "mles", "scenario": "peered", "mode": "mles",
		"params":   map[string]any{"members": 1000.0, "rate": rate, "payload": 64, "duration_s": 10, "servers": servers},
		"window_s": 10.0, "sent": rate * 10, "delivered": rate * 10 * 999, "expected": rate * 10 * 999,
		"delivered_per_s": rate * 999, "delivery_ratio": 1.0, "samples": 1000.0, "p50_ms": 1.0, "p99_ms": remoteP99,
		"client_cpu_s": 5.0, "server_cpu_s": 3.0, "server_cpu_us_per_delivery": 3e6 / (rate * 10 * 999), "servers": ss,
	}
	if servers > 1 {
		r["remote"] = part(remoteP99)
	}
	return r
}

func writeRuns(t *testing.T, runs ...map[string]any) string {
	t.Helper()
	var sb strings.Builder
	for _, r := range runs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(b)
		sb.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "runs.jsonl")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func render(t *testing.T, runs ...map[string]any) (string, []*group) {
	t.Helper()
	groups, err := load([]string{writeRuns(t, runs...)})
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	writeMarkdown(&sb, groups, []string{"runs.jsonl"})
	return sb.String(), groups
}

func TestPersistReport(t *testing.T) {
	md, groups := render(t,
		persistRun("persist", persistMemory, 1000, 1000, 9990000, 9990000, 20, 0, 0),
		persistRun("persist", persistDisk, 1000, 1000, 9990000, 9990000, 30, 10000, 0),
		persistRun("persist", persistDiskAlways, 1000, 1000, 4990000, 9990000, 300, 10000, 0),
		persistRun("persistpub", persistMemory, 10, 5000, 450000, 450000, 5, 0, 0),
		persistRun("persistpub", persistDisk, 10, 5000, 450000, 450000, 6, 50000, 0),
		persistRun("persistpub", persistDiskAlways, 10, 5000, 450000, 450000, 6, 40000, 7),
	)
	var disk *group
	for _, g := range groups {
		if g.Scenario == "persistpub" && g.Label == persistDisk {
			disk = g
		}
	}
	if disk == nil {
		t.Fatal("no persistpub mles-disk group")
	}
	for field, want := range map[string]float64{"store_written_per_s": 5000, "messages_in_per_s": 5000, "store_dropped": 0, "sent_per_s": 5000, "store_disk_mib_after": 2,
		"cpu0_other": 0.1, "cpu1_other": 0.05} {
		if v, ok := disk.median(field); !ok || v != want {
			t.Errorf("%s = %v (%v), want %v", field, v, ok, want)
		}
	}
	for _, want := range []string{
		"### Fan-out: 1 channel of 1000 members",
		"### Publish throughput: 10 members",
		"| 1000 | mles-disk | 1.00 | 1.50 | +10.00 |",          // disk/memory at 1000 msg/s
		"| 1000 | mles-disk-always | 0.50 | 15.00 | +280.00 |", // half delivered, p99 x15
		"**no** (1 of 1 runs dropped)",                         // the store dropped: the run does not count
		"| mles-disk | >= 1000 (the highest tried) | 999000 | 1.00 | yes (both sustain the highest rate tried) |",
		"| mles-disk-always | none of the rates tried | 0 | 0.00 | **NO** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

func TestPeeredReport(t *testing.T) {
	md, groups := render(t, peeredRun(1, 500, 10, 10), peeredRun(2, 500, 10, 14), peeredRun(3, 500, 12, 20))
	var three *group
	for _, g := range groups {
		if g.param("servers") == 3 {
			three = g
		}
	}
	if three == nil {
		t.Fatal("no 3-server group")
	}
	for field, want := range map[string]float64{"local_p99_ms": 12, "remote_p99_ms": 20, "hop_p99_ms": 8, "hop_p50_ms": 4,
		"peer_out_per_msg": 6, "peer_dup_per_msg": 3, "peer_sessions_min": 4} {
		if v, ok := three.median(field); !ok || v != want {
			t.Errorf("%s = %v (%v), want %v", field, v, ok, want)
		}
	}
	for _, want := range []string{
		"**all N pinned to CPU 0**",
		"| 1 | 500 | mles | 1 |",
		"| 500 | 3 | 1.00 | 1.00 | 2.00 | +10.00 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// One server has no others: no hop.
	for _, g := range groups {
		if g.param("servers") == 1 {
			if _, ok := g.median("hop_p99_ms"); ok {
				t.Error("one server has a hop")
			}
		}
	}
}

// adminRun is a loadgen record of the admin scenario: the fan-out of 1000,
// with the scrapes' figures when scraped.
func adminRun(label string, rate, p99, cpuUs float64, scraped bool) map[string]any {
	delivered := rate * 999 * 10
	r := map[string]any{
		"label": label, "scenario": "admin", "mode": "mles",
		"params":   map[string]any{"members": 1000.0, "rate": rate, "payload": 64, "duration_s": 10},
		"window_s": 10.0, "sent": rate * 10, "delivered": delivered, "expected": delivered,
		"delivered_per_s": delivered / 10, "delivery_ratio": 1.0, "samples": delivered,
		"p50_ms": p99 / 4, "p99_ms": p99, "max_ms": p99 * 2, "client_cpu_s": 5.0, "server_cpu_s": cpuUs * delivered / 1e6,
		"server_cpu_us_per_delivery": cpuUs, "cpu_busy_s": []any{3.0, 5.5},
	}
	if scraped {
		r["scrape_every_s"] = 1.0
		r["scrapes"] = 13.0
		r["scrapes_in_window"] = 10.0
		r["scrape_p50_ms"] = 2.0
		r["scrape_max_ms"] = 9.0
	}
	return r
}

func TestAdminReport(t *testing.T) {
	md, _ := render(t,
		adminRun(adminOff, 500, 10, 2.0, false), adminRun(adminOn, 500, 11, 2.1, true),
		adminRun(adminOff, 500, 12, 2.2, false), adminRun(adminOn, 500, 12, 2.2, true),
		adminRun(adminOff, 500, 14, 2.4, false), adminRun(adminOn, 500, 20, 2.3, true),
		adminRun(adminOff, 2000, 30, 1.0, false), adminRun(adminOn, 2000, 45, 1.3, true),
		adminRun(adminOff, 2000, 32, 1.0, false), adminRun(adminOn, 2000, 47, 1.3, true),
		adminRun(adminOff, 100, 5, 7.0, false), adminRun(adminOn, 100, 5, 7.0, true),
	)
	for _, want := range []string{
		"## Metrics beside the fan-out",
		"| 500 | mles | 3 | - | 499500 |",
		"| 500 | mles-admin | 3 | 1 | 499500 |",
		"| 39 / 0 (10, 10, 10) | 2.00 / 9.00 |", // scrapes over the runs, and their time
		// p99 medians 12 and 12 against spreads 4 and 9; cpu 2.2 and 2.2 against 0.4 and 0.2
		"| 500 | mles-admin | 1.00 | 1.00 | 1.00 | +0.00 | yes (+0.00 against 9.00) | 1.00 | yes (+0.00 against 0.40) | 10.00-14.00; 11.00-20.00 | 2.00-2.40; 2.10-2.30 |",
		// p99 46 against 31, spreads 2: beyond the noise
		"| 2000 | mles-admin | 1.00 | 1.48 | 1.48 | +15.00 | **no** (+15.00 against 2.00) | 1.30 | **no** (+0.30 against 0.00) |",
		// one run each: no spread
		"| 100 | mles-admin | 1.00 | 1.00 | 1.00 | +0.00 | - | 1.00 | - | 5.00; 5.00 | 7.00; 7.00 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// stormRun is a loadgen record of the storm scenario.
func stormRun(label, cert string, stormS, serverUs, clientUs, serverCore, generatorCore float64) map[string]any {
	resumed := 0.0
	if label == stormTickets {
		resumed = 1
	}
	return map[string]any{
		"label": label, "scenario": "storm", "mode": "mles",
		"params":  map[string]any{"members": 10.0, "conns": 10000.0, "dialers": 64.0, "tls": true, "duration_s": 0, "cert": cert},
		"storm_s": stormS, "connects": 10000.0, "connects_per_s": 10000 / stormS, "resumed_share": resumed,
		"window_s": stormS, "client_cpu_s": generatorCore * stormS, "server_cpu_s": serverCore * stormS,
		"server_cpu_us_per_connect": serverUs, "client_cpu_us_per_connect": clientUs, "p50_ms": 10.0, "p99_ms": 40.0,
		"client_bound": generatorCore > 0.9, "cpu_busy_s": []any{(serverCore + 0.05) * stormS, (generatorCore + 0.08) * stormS}, "phase1_s": 4.0, "phase1_window_s": 4.0, "phase1_client_cpu_s": 3.6, "phase1_server_cpu_s": 2.0,
		"phase1_server_cpu_us_per_connect": 200.0, "phase1_client_cpu_us_per_connect": 360.0, "tickets_held": 10000.0, "conns": 10000.0,
	}
}

func TestStormReport(t *testing.T) {
	md, groups := render(t,
		stormRun(stormTickets, "ECDSA P-256", 3.0, 250, 270, 0.83, 0.90),
		stormRun(stormNoTickets, "ECDSA P-256", 3.5, 290, 320, 0.83, 0.92),
		stormRun(stormTickets, "RSA 2048", 3.0, 250, 270, 0.83, 0.90),
		stormRun(stormNoTickets, "RSA 2048", 14.0, 1400, 300, 0.99, 0.21),
	)
	for _, g := range groups {
		if v, ok := g.median("phase1_generator_core"); !ok || v != 0.9 {
			t.Errorf("%s %s phase 1 generator core %v (%v), want 0.9", certOf(g), g.Label, v, ok)
		}
	}
	for _, want := range []string{
		"| conns=10000 members=10 dialers=64 | ECDSA P-256 | mles-notickets* | 1 | 3.50 |",
		"| conns=10000 members=10 dialers=64 | RSA 2048 | mles-notickets | 1 | 14.00 |",
		"| 0.99 | 0.21 | server | 0/1 | 0.05 | 0.08 |", // bound by, client-bound runs, CPU 0 and CPU 1 other
		"| conns=10000 members=10 dialers=64 | ECDSA P-256 | 1.17 | **NO** | 0.86 |",
		"| conns=10000 members=10 dialers=64 | RSA 2048 | 4.67 | yes | 0.21 |",
		"generator / server |",
		"- ECDSA P-256, conns=10000 members=10 dialers=64: without tickets the generator's core bounded it",
		"The full handshakes' storm is bound by the clients' own work",
		"- RSA 2048, conns=10000 members=10 dialers=64: without tickets the server's core bounded it",
		"so the time ratio is a floor",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// natsRun is a loadgen record of the nats scenario: label on servers (1
// for the ones alone), the nats-server's CPU (0: no broker) in the server
// side's, and the stream's counters on each of ours on NATS.
func natsRun(label string, servers, rate, p99, serverCPU, brokerCPU, trouble float64) map[string]any {
	delivered := rate * 10 * 999
	ss := []any{}
	for i := 0; i < int(servers); i++ {
		p := map[string]any{"receivers": 999 / servers, "delivery_ratio": 1.0, "p50_ms": p99 / 2, "p99_ms": p99 - 1, "samples": 1000.0}
		if strings.HasPrefix(label, "mles-nats") {
			p["metrics_start"] = map[string]any{"mles_nats_published_total": 5.0, "mles_nats_received_total": 7.0, "mles_nats_failed_total": 0.0, "mles_nats_through_stream": 1.0}
			p["metrics_end"] = map[string]any{"mles_nats_published_total": 5 + rate*10/servers, "mles_nats_received_total": 7 + rate*10, "mles_nats_through_stream": 1.0}
			p["metrics_after"] = map[string]any{"mles_nats_failed_total": trouble}
		}
		ss = append(ss, p)
	}
	r := map[string]any{
		"label": label, "scenario": "nats", "mode": "mles",
		"params":   map[string]any{"members": 1000.0, "rate": rate, "payload": 64, "duration_s": 10, "servers": servers},
		"window_s": 10.0, "sent": rate * 10, "delivered": delivered, "expected": delivered,
		"delivered_per_s": rate * 999, "delivery_ratio": 1.0, "samples": 1000.0, "p50_ms": 1.0, "p99_ms": p99,
		"client_cpu_s": 5.0, "server_cpu_s": serverCPU, "server_cpu_us_per_delivery": serverCPU * 1e6 / delivered, "servers": ss,
		"out_of_order": 0.0, "gaps": 0.0,
	}
	if brokerCPU > 0 {
		r["brokers"] = []any{map[string]any{"pid": 42.0, "name": "nats-server", "cpu_s": brokerCPU}}
		r["broker_cpu_s"] = brokerCPU
	}
	if servers > 1 {
		r["remote"] = map[string]any{"receivers": 666.0, "delivery_ratio": 1.0, "p50_ms": p99 / 2, "p99_ms": p99, "samples": 1000.0}
	}
	return r
}

func TestNATSReport(t *testing.T) {
	md, groups := render(t,
		natsRun("mles", 1, 500, 10, 2, 0, 0),
		natsRun("mles-nats2", 2, 500, 20, 4, 1, 3),
		natsRun("centrifugo", 1, 500, 20, 4, 0, 0),
		natsRun("centrifugo-nats2", 2, 500, 40, 10, 2, 0),
	)
	var two *group
	for _, g := range groups {
		if g.Label == "mles-nats2" {
			two = g
		}
	}
	if two == nil {
		t.Fatal("no mles-nats2 group")
	}
	delivered := 500.0 * 10 * 999
	for field, want := range map[string]float64{"broker_cpu_us_per_delivery": 1e6 / delivered, "servers_cpu_us_per_delivery": 3e6 / delivered,
		"broker_core": 0.1, "nats_published_per_msg": 1, "nats_received_per_msg": 2, "nats_trouble": 6, "nats_through_min": 1, "hop_p99_ms": 1} {
		if v, ok := two.median(field); !ok || v != want {
			t.Errorf("%s = %v (%v), want %v", field, v, ok, want)
		}
	}
	for _, want := range []string{
		"**Every server and the nats-server are pinned to CPU 0**",
		"| 500 | mles | 1 | 1 | 499500 |",
		"| 500 | mles-nats2 | 2 | 1 | 499500 | 1.0000 | 1.00 | 20.00 | 19.00 | 20.00 | +1.00 | 0.80 | 0.20 | 0.40 | 0.10 | 0.50 |",
		"| 1.00 | 2.00 | 6 | 0 |",
		"| 500 | mles-nats2 | mles | 1.00 | 1.00 | 2.00 | +10.00 | 2.00 |",
		"| 500 | centrifugo-nats2 | centrifugo | 1.00 | 1.00 | 2.00 | +20.00 | 2.50 |",
		"| 500 | mles-nats2 | centrifugo-nats2 | 1.00 | 1.00 | 0.50 | -20.00 | 0.40 |",
		"| 500 | mles | centrifugo | 1.00 | 1.00 | 0.50 | -10.00 | 0.50 |",
		"`nats-server`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// The order: ours alone, ours on NATS, Centrifugo alone, Centrifugo on NATS.
	i0, i1, i2, i3 := strings.Index(md, "| 500 | mles | 1 |"), strings.Index(md, "| 500 | mles-nats2 | 2 |"),
		strings.Index(md, "| 500 | centrifugo | 1 |"), strings.Index(md, "| 500 | centrifugo-nats2 | 2 |")
	if i0 < 0 || i0 > i1 || i1 > i2 || i2 > i3 {
		t.Errorf("rows out of order: %d %d %d %d", i0, i1, i2, i3)
	}
}
