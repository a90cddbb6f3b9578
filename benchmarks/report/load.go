package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
)

// run is the subset of a loadgen result the report reads; raw keeps every
// numeric field for the medians.
type run struct {
	Label    string          `json:"label"`
	Scenario string          `json:"scenario"`
	Params   json.RawMessage `json:"params"`
	raw      map[string]any
}

// group is the repetitions of one (scenario, params, label).
type group struct {
	Scenario string
	Params   string // canonical JSON
	P        map[string]any
	Label    string
	Runs     []map[string]any
}

// median returns the median of a numeric field over the repetitions; ok is
// false when no repetition has it.
func (g *group) median(field string) (float64, bool) {
	var v []float64
	for _, r := range g.Runs {
		if x, ok := r[field].(float64); ok {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2], true
	}
	return (v[n/2-1] + v[n/2]) / 2, true
}

// all reports whether a boolean field is true in every repetition.
func (g *group) all(field string) (bool, bool) {
	seen := false
	for _, r := range g.Runs {
		b, ok := r[field].(bool)
		if !ok {
			continue
		}
		seen = true
		if !b {
			return false, true
		}
	}
	return seen, seen
}

// any reports whether a boolean field is true in some repetition.
func (g *group) any(field string) bool {
	for _, r := range g.Runs {
		if b, ok := r[field].(bool); ok && b {
			return true
		}
	}
	return false
}

func (g *group) param(name string) float64 {
	x, _ := g.P[name].(float64)
	return x
}

// load reads every file and groups the runs, in first-seen order.
func load(files []string) ([]*group, error) {
	var groups []*group
	index := map[string]*group{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for line := 1; sc.Scan(); line++ {
			if len(sc.Bytes()) == 0 {
				continue
			}
			var r run
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				f.Close()
				return nil, fmt.Errorf("%s:%d: %w", name, line, err)
			}
			if err := json.Unmarshal(sc.Bytes(), &r.raw); err != nil {
				f.Close()
				return nil, fmt.Errorf("%s:%d: %w", name, line, err)
			}
			derive(r.raw)
			var p map[string]any
			json.Unmarshal(r.Params, &p)
			canon, _ := json.Marshal(p) // map keys sorted: canonical
			key := r.Scenario + "\x00" + string(canon) + "\x00" + r.Label
			g := index[key]
			if g == nil {
				g = &group{Scenario: r.Scenario, Params: string(canon), P: p, Label: r.Label}
				index[key] = g
				groups = append(groups, g)
			}
			g.Runs = append(g.Runs, r.raw)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return groups, nil
}

// labels returns the labels in groups, ours ("mles") first, then sorted.
func labels(groups []*group) []string {
	var ls []string
	for _, g := range groups {
		if !slices.Contains(ls, g.Label) {
			ls = append(ls, g.Label)
		}
	}
	sort.Slice(ls, func(i, j int) bool {
		if ri, rj := labelRank(ls[i]), labelRank(ls[j]); ri != rj {
			return ri < rj
		}
		return ls[i] < ls[j]
	})
	return ls
}

// derive adds the fields the tables show in other units than loadgen writes,
// and drops the figures of a publish/subscribe run that delivered nothing
// (loadgen writes 0 for its latencies and CPU per delivery): they show as
// "-", not as a perfect 0.
func derive(raw map[string]any) {
	if b, ok := raw["server_rss_after_bytes"].(float64); ok && b > 0 {
		raw["server_rss_mib"] = b / (1 << 20)
	}
	if c, ok := raw["client_cpu_s"].(float64); ok {
		if w, _ := raw["window_s"].(float64); w > 0 {
			raw["client_core"] = c / w
			if sv, ok := raw["server_cpu_s"].(float64); ok && sv >= 0 {
				raw["server_core"] = sv / w
			}
			// The generator's core also runs the HTTP burst's process.
			h, _ := raw["http_client_cpu_s"].(float64)
			raw["generator_core"] = (c + h) / w
			if h > 0 {
				raw["http_client_core"] = h / w
			}
		}
	}
	switch raw["scenario"] {
	case "static":
		if n, _ := raw["requests"].(float64); n == 0 {
			for _, f := range []string{"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "http_response_bytes", "server_cpu_us_per_request", "client_cpu_us_per_request"} {
				delete(raw, f)
			}
		}
	case "fanout", "bigchannel", "chat", "slow", "httpburst", "persist", "persistpub", "peered", "admin", "nats":
		if d, _ := raw["delivered"].(float64); d == 0 {
			delete(raw, "server_cpu_us_per_delivery")
		}
		if n, _ := raw["samples"].(float64); n == 0 {
			for _, f := range []string{"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"} {
				delete(raw, f)
			}
		}
	}
	deriveOtherLoad(raw)
	switch raw["scenario"] {
	case "persist", "persistpub":
		derivePersist(raw)
	case "peered":
		derivePeered(raw)
	case "nats":
		deriveNATS(raw)
	case "storm":
		deriveStorm(raw)
	}
}

// deriveOtherLoad turns loadgen's per-CPU busy time over the window into
// what else ran on the server's core (CPU 0: busy minus the server's CPU)
// and on the generator's (CPU 1: busy minus loadgen's and its burst
// process's), as fractions of a core; benchmarks/run pins them so. Kernel
// work for loopback that no process is charged with (softirq) is in it
// too, so it is not 0 on a quiet machine; a large value says another
// process took the core and the run's latency is not the server's alone.
func deriveOtherLoad(raw map[string]any) {
	busy, _ := raw["cpu_busy_s"].([]any)
	w, _ := raw["window_s"].(float64)
	if len(busy) < 2 || w <= 0 {
		return
	}
	b0, ok0 := busy[0].(float64)
	b1, ok1 := busy[1].(float64)
	if sv, ok := raw["server_cpu_s"].(float64); ok && ok0 && sv >= 0 {
		raw["cpu0_other"] = max(0, b0-sv) / w
	}
	if c, ok := raw["client_cpu_s"].(float64); ok && ok1 {
		h, _ := raw["http_client_cpu_s"].(float64)
		raw["cpu1_other"] = max(0, b1-c-h) / w
	}
}
