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
