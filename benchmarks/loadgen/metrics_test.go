package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const sampleMetrics = `# HELP mles_history_store_written_total History records written to disk since start.
# TYPE mles_history_store_written_total counter
mles_history_store_written_total 123456
mles_history_store_dropped_total 0
mles_history_store_queued 1.5e+03
mles_closes_total{reason="eof"} 3
mles_closes_total{reason="net_error"} 4
mles_odd_total{path="a}b \"c\" {d}"} 7 1700000000000
mles_peer_sessions 4
mles_peer_sessions_other 99
mles_broken_total notanumber
garbage
`

func TestParseMetrics(t *testing.T) {
	names := []string{"mles_history_store_written_total", "mles_history_store_dropped_total", "mles_history_store_queued",
		"mles_closes_total", "mles_odd_total", "mles_peer_sessions", "mles_broken_total", "mles_absent"}
	got := parseMetrics([]byte(sampleMetrics), names)
	want := map[string]float64{
		"mles_history_store_written_total": 123456,
		"mles_history_store_dropped_total": 0,
		"mles_history_store_queued":        1500,
		"mles_closes_total":                7, // summed over its labels
		"mles_odd_total":                   7, // quoted braces and a timestamp
		"mles_peer_sessions":               4, // not mles_peer_sessions_other
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got["mles_absent"]; ok {
		t.Error("a metric that is not there has a value")
	}
}

func TestLabelsEnd(t *testing.T) {
	for in, want := range map[string]int{
		`{a="b"} 1`:        6,
		`{a="}"} 1`:        6,
		`{a="\"}"} 1`:      8,
		`{a="x",b="y"} 1`:  12,
		`{a="never closed`: -1,
		`{`:                -1,
	} {
		if got := labelsEnd([]byte(in)); got != want {
			t.Errorf("labelsEnd(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestSplitListAndPIDs(t *testing.T) {
	if got := splitList(" ws://a/, ,ws://b/,"); len(got) != 2 || got[0] != "ws://a/" || got[1] != "ws://b/" {
		t.Errorf("splitList = %q", got)
	}
	pids, err := parsePIDs("12,34, 56")
	if err != nil || len(pids) != 3 || pids[0] != 12 || pids[2] != 56 {
		t.Errorf("parsePIDs = %v, %v", pids, err)
	}
	if _, err := parsePIDs("12,x"); err == nil {
		t.Error("parsePIDs accepted a name")
	}
}

// TestServerOf: the publisher (member 0) is on server 0 and the receivers
// are split evenly.
func TestServerOf(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7} {
		for _, members := range []int{10, 1000, 1001} {
			counts := make([]int, n)
			for i := 1; i < members; i++ {
				counts[serverOf(i, n)]++
			}
			if serverOf(0, n) != 0 {
				t.Fatalf("n=%d: the publisher is on server %d", n, serverOf(0, n))
			}
			lo, hi := counts[0], counts[0]
			for _, c := range counts {
				lo, hi = min(lo, c), max(hi, c)
			}
			if hi-lo > 1 {
				t.Errorf("n=%d members=%d: receivers per server %v", n, members, counts)
			}
		}
	}
}

func TestServerPartsFill(t *testing.T) {
	o := &Options{ServerPIDs: []int{0, 0, 0}}
	for _, a := range []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"} {
		o.targets = append(o.targets, &target{addr: a})
	}
	p := newServerParts(o, 3)
	var h0, h1, h2 histogram
	h0.record(1000)
	h1.record(2000)
	h2.record(4000)
	p.add(0, &histogram{}, 0, false) // the publisher
	p.add(0, &h0, 10, true)
	p.add(1, &h1, 10, true)
	p.add(2, &h2, 9, true)
	p.add(2, &histogram{}, 0, true)
	res := &Result{WindowS: 2}
	a := cpuSample{each: []float64{1, 2, -1}}
	b := cpuSample{each: []float64{1.5, 3, 4}}
	start := []map[string]float64{{"x": 1}, nil, {"x": 3}}
	p.fill(res, o, 10, a, b, start, nil, nil, []error{fmt.Errorf("boom")})
	if len(res.Servers) != 3 {
		t.Fatalf("servers %d", len(res.Servers))
	}
	s0, s2 := res.Servers[0], res.Servers[2]
	if s0.Receivers != 1 || s0.Expected != 10 || s0.Delivered != 10 || s0.DeliveryRatio != 1 || s0.DeliveredPerS != 5 {
		t.Errorf("server 0: %+v", s0.Part)
	}
	if s2.Receivers != 2 || s2.Expected != 20 || s2.Delivered != 9 {
		t.Errorf("server 2: %+v", s2.Part)
	}
	if s0.CPUS != 0.5 || res.Servers[1].CPUS != 1 || s2.CPUS != -1 {
		t.Errorf("cpu %v %v %v", s0.CPUS, res.Servers[1].CPUS, s2.CPUS)
	}
	if s0.MetricsStart["x"] != 1 || res.Servers[1].MetricsStart != nil || s0.MetricsErrors != 1 {
		t.Errorf("metrics %+v", s0)
	}
	r := res.Remote
	if r == nil || r.Receivers != 3 || r.Expected != 30 || r.Delivered != 19 || r.Samples != 2 {
		t.Fatalf("remote %+v", r)
	}
	if r.MaxMs < 3.9 || r.P50Ms < 1.9 || s0.P50Ms > 1.1 {
		t.Errorf("latency: remote p50 %v max %v, server 0 p50 %v", r.P50Ms, r.MaxMs, s0.P50Ms)
	}
}

func TestAwaitPeerSessions(t *testing.T) {
	var hits atomic.Int64
	// The first server's sessions come up on its third scrape.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if hits.Add(1) >= 3 {
			n = 2
		}
		fmt.Fprintf(w, "mles_peer_sessions %d\n", n)
	}))
	defer up.Close()
	always := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "mles_peer_sessions 2")
	}))
	defer always.Close()
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "mles_peer_sessions 1")
	}))
	defer never.Close()

	d, err := awaitPeerSessions(context.Background(), []string{up.URL, always.URL}, 2, 5*time.Second)
	if err != nil || hits.Load() < 3 || d <= 0 {
		t.Fatalf("await: %v after %v, %d scrapes", err, d, hits.Load())
	}
	_, err = awaitPeerSessions(context.Background(), []string{always.URL, never.URL}, 2, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "[2 1]") {
		t.Fatalf("a server without its sessions: %v", err)
	}
}

func TestValidateServers(t *testing.T) {
	base := func() Options {
		return Options{URL: "ws://127.0.0.1:1/,ws://127.0.0.1:2/", Scenario: ScenarioPeered, Mode: ModeMles, Duration: time.Second,
			Dialers: 1, Payload: 64, HTTPClient: HTTPClientRaw, Reader: ReaderGoroutine, PeerWait: time.Second}
	}
	o := base()
	if err := o.validate(map[string]bool{}); err != nil {
		t.Fatal(err)
	}
	if len(o.targets) != 2 || o.target != o.targets[0] || o.Members != 1000 || o.Rate != 1000 {
		t.Errorf("targets %d members %d rate %v", len(o.targets), o.Members, o.Rate)
	}
	for name, mod := range map[string]func(o *Options){
		"chat over servers":  func(o *Options) { o.Scenario = ScenarioChat },
		"pid count":          func(o *Options) { o.ServerPIDs = []int{1, 2, 3} },
		"admin count":        func(o *Options) { o.AdminURLs = []string{"http://127.0.0.1:3/metrics"} },
		"admin scheme":       func(o *Options) { o.AdminURLs = []string{"ws://a/", "ws://b/"} },
		"sessions, no admin": func(o *Options) { o.PeerSessions = 2 },
		"mixed schemes":      func(o *Options) { o.URL = "ws://127.0.0.1:1/,wss://127.0.0.1:2/" },
		"idle over servers":  func(o *Options) { o.Scenario = ScenarioIdle; o.Conns = 10 },
		"scrapes, no admin":  func(o *Options) { o.ScrapeEvery = time.Second },
		"await, no admin":    func(o *Options) { o.Await = []awaitCond{{"mles_nats_consumers", 1}} },
		"broker, idle": func(o *Options) {
			o.Scenario = ScenarioIdle
			o.URL = "ws://127.0.0.1:1/"
			o.Conns = 10
			o.BrokerPIDs = []int{1}
		},
	} {
		o := base()
		mod(&o)
		if err := o.validate(map[string]bool{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	o = base()
	o.Scenario = ScenarioPersistPub
	o.URL = "ws://127.0.0.1:1/"
	if err := o.validate(map[string]bool{}); err != nil || o.Members != 10 || o.Rate != 5000 {
		t.Errorf("persistpub defaults: %v members %d rate %v", err, o.Members, o.Rate)
	}
	o = base()
	o.Scenario = ScenarioAdmin
	o.URL = "ws://127.0.0.1:1/"
	o.AdminURLs = []string{"http://127.0.0.1:2/metrics"}
	o.ScrapeEvery = time.Second
	if err := o.validate(map[string]bool{}); err != nil || o.Members != 1000 || o.Rate != 1000 || o.Slow != 0 {
		t.Errorf("admin defaults: %v members %d rate %v slow %d", err, o.Members, o.Rate, o.Slow)
	}
}

func TestParseAwait(t *testing.T) {
	c, err := parseAwait("mles_nats_through_stream=1, mles_nats_consumers = 2.5")
	if err != nil || len(c) != 2 || c[0] != (awaitCond{"mles_nats_through_stream", 1}) || c[1] != (awaitCond{"mles_nats_consumers", 2.5}) {
		t.Fatalf("parseAwait = %v, %v", c, err)
	}
	for _, bad := range []string{"mles_nats_consumers", "=1", "a=x"} {
		if _, err := parseAwait(bad); err == nil {
			t.Errorf("parseAwait(%q) accepted", bad)
		}
	}
	o := Options{URL: "ws://127.0.0.1:1/,ws://127.0.0.1:2/", Scenario: ScenarioNATS, Mode: ModeCentrifugo, Duration: time.Second,
		Dialers: 1, Payload: 64, HTTPClient: HTTPClientRaw, Reader: ReaderGoroutine, BrokerPIDs: []int{1}}
	if err := o.validate(map[string]bool{}); err != nil || o.Members != 1000 || o.Rate != 1000 || o.Slow != 0 {
		t.Errorf("nats defaults: %v members %d rate %v slow %d", err, o.Members, o.Rate, o.Slow)
	}
}

func TestAwaitMetrics(t *testing.T) {
	var hits atomic.Int64
	// The stream answers at once; the channel's link comes up on the third scrape.
	late := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if hits.Add(1) >= 3 {
			n = 1
		}
		fmt.Fprintf(w, "mles_nats_through_stream 1\nmles_nats_consumers %d\n", n)
	}))
	defer late.Close()
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "mles_nats_consumers 1")
	}))
	defer never.Close()
	conds := []awaitCond{{"mles_nats_through_stream", 1}, {"mles_nats_consumers", 1}}
	d, err := awaitMetrics(context.Background(), []string{late.URL}, conds, 5*time.Second)
	if err != nil || hits.Load() < 3 || d <= 0 {
		t.Fatalf("await: %v after %v, %d scrapes", err, d, hits.Load())
	}
	_, err = awaitMetrics(context.Background(), []string{late.URL, never.URL}, conds, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "mles_nats_through_stream per server [1 -1]") {
		t.Fatalf("a server without the metric: %v", err)
	}
}

func TestParseCPUBusy(t *testing.T) {
	stat := []byte("cpu  368817 206 174718 167593 9254 0 11598 0 0 0\n" +
		"cpu0 100 1 50 900 7 2 3 4 0 0\n" +
		"cpu1 200 0 100 800 9 0 0 0 0 0\n" +
		"intr 12345\nctxt 999\n")
	got := parseCPUBusy(stat)
	// user+nice+system+irq+softirq+steal, in USER_HZ ticks.
	if len(got) != 2 || got[0] != 160.0/clockTicks || got[1] != 300.0/clockTicks {
		t.Fatalf("parseCPUBusy = %v", got)
	}
	if d := busyDelta([]float64{1, 2}, []float64{1.5, 4}); len(d) != 2 || d[0] != 0.5 || d[1] != 2 {
		t.Errorf("busyDelta = %v", d)
	}
	if d := busyDelta([]float64{1}, []float64{1, 2}); d != nil {
		t.Errorf("busyDelta of different CPUs = %v", d)
	}
	if b := cpuBusy(); len(b) == 0 {
		t.Error("cpuBusy read nothing from /proc/stat")
	}
}

// TestScraper: -scrape-every reads every server from the schedule's start
// to the window's end, half an interval off the edges, and counts what
// failed apart.
func TestScraper(t *testing.T) {
	var hits atomic.Int64
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintln(w, "mles_deliveries_total 5")
	}))
	defer ok.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer broken.Close()

	o := &Options{AdminURLs: []string{ok.URL, broken.URL}, Metrics: splitList(DefaultMetrics), ScrapeEvery: 100 * time.Millisecond}
	clk := clock{base: time.Now()}
	t0 := clk.now() + int64(20*time.Millisecond)
	winStart := t0 + int64(300*time.Millisecond)
	winEnd := winStart + int64(time.Second)
	s := startScraper(context.Background(), o, clk, t0, winStart, winEnd)
	res := &Result{}
	s.wait(res, o.ScrapeEvery)
	if clk.now() < winEnd-int64(100*time.Millisecond) {
		t.Errorf("the scrapes ended %v before the window's end", time.Duration(winEnd-clk.now()))
	}
	// At t0+50ms, +150ms, ..., +1250ms: 13 rounds, 10 of them in the window.
	if res.Scrapes != 13 || res.ScrapesFailed != 13 || res.ScrapesInWindow != 20 || hits.Load() != 13 {
		t.Errorf("scrapes %d failed %d in window %d (hits %d); want 13, 13, 20", res.Scrapes, res.ScrapesFailed, res.ScrapesInWindow, hits.Load())
	}
	if res.ScrapeEveryS != 0.1 || res.ScrapeP50Ms <= 0 || res.ScrapeMaxMs < res.ScrapeP50Ms || !strings.Contains(res.ScrapeFirstError, "status 500") {
		t.Errorf("every %v p50 %v max %v first error %q", res.ScrapeEveryS, res.ScrapeP50Ms, res.ScrapeMaxMs, res.ScrapeFirstError)
	}
	if !strings.Contains(res.summary(), "13 scraped (20 in the window), 13 failed") {
		t.Errorf("summary: %s", res.summary())
	}
}
