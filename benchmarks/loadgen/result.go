package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Params are the inputs that make runs comparable: the report groups runs by
// scenario, Params and label. Fields that do not apply are omitted.
type Params struct {
	Members   int     `json:"members,omitempty"`
	Channels  int     `json:"channels,omitempty"`
	Rate      float64 `json:"rate,omitempty"`
	Payload   int     `json:"payload,omitempty"`
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s,omitempty"`
	Dialers   int     `json:"dialers,omitempty"`
	Slow      int     `json:"slow,omitempty"`
	Conns     int     `json:"conns,omitempty"`
	Stored    int     `json:"stored,omitempty"`
	Joiners   int     `json:"joiners,omitempty"`
	TLS       bool    `json:"tls,omitempty"`
	// static: the request's Accept-Encoding, and the open loop's rate;
	// fan-out/httpburst: the HTTP burst's rate (req/s) and connections, and
	// its Accept-Encoding.
	HTTPRate       float64 `json:"http_rate,omitempty"`
	HTTPConns      int     `json:"http_conns,omitempty"`
	AcceptEncoding string  `json:"accept_encoding,omitempty"`
	HTTPClient     string  `json:"http_client,omitempty"` // "std" only: the raw client is the default
	// Servers: the -url servers the members are spread over (peered: always,
	// 1 included; other scenarios only when more than one).
	Servers int `json:"servers,omitempty"`
	// Cert (storm): the server's certificate key as seen by the first
	// client of phase 1, "ECDSA P-256" or "RSA 2048".
	Cert string `json:"cert,omitempty"`
}

// Part is the receive side of one group of members: those on one server
// (Result.Servers), or those on every server but the publisher's
// (Result.Remote). Counts, latency and expected as in Result.
type Part struct {
	URL           string  `json:"url,omitempty"`
	Receivers     int     `json:"receivers"` // healthy receiving members (the publisher excluded)
	Expected      int64   `json:"expected"`
	Delivered     int64   `json:"delivered"`
	DeliveredPerS float64 `json:"delivered_per_s"`
	DeliveryRatio float64 `json:"delivery_ratio"`
	P50Ms         float64 `json:"p50_ms"`
	P90Ms         float64 `json:"p90_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p999_ms"`
	MaxMs         float64 `json:"max_ms"`
	Samples       uint64  `json:"samples"`
}

// ServerPart is one -url server: its members' Part, its process's CPU over
// the window (-1: unknown; with a -server-pid per server) and RSS, and
// the -metrics read from its -admin-url at the window's start and end and
// after the drain.
type ServerPart struct {
	Part
	PID               int                `json:"pid,omitempty"`
	CPUS              float64            `json:"cpu_s"`
	RSSAfterBytes     int64              `json:"rss_after_bytes"`
	MetricsStart      map[string]float64 `json:"metrics_start,omitempty"`
	MetricsEnd        map[string]float64 `json:"metrics_end,omitempty"`
	MetricsAfter      map[string]float64 `json:"metrics_after,omitempty"`
	MetricsErrors     int                `json:"metrics_errors,omitempty"`
	MetricsFirstError string             `json:"metrics_first_error,omitempty"`
}

// BrokerPart is one -broker-pid process (a NATS server, Redis): its CPU
// over the window (-1: unknown) and RSS, both also in the server's sums.
type BrokerPart struct {
	PID           int     `json:"pid"`
	Name          string  `json:"name,omitempty"` // /proc/PID/comm
	CPUS          float64 `json:"cpu_s"`
	RSSAfterBytes int64   `json:"rss_after_bytes"`
}

// Result is one run, one JSON line. Latencies are milliseconds; counts cover
// only messages whose intended send time lies inside the measured window.
type Result struct {
	Time     string `json:"time"`
	Label    string `json:"label"`
	Scenario string `json:"scenario"`
	Mode     string `json:"mode"`
	URL      string `json:"url"`
	Params   Params `json:"params"`

	WindowS       float64 `json:"window_s"`
	Sent          int64   `json:"sent"`      // messages written whose intended time is in the window
	Scheduled     int64   `json:"scheduled"` // messages the open-loop schedule put in the window
	Expected      int64   `json:"expected"`  // scheduled x receivers of the channel
	Delivered     int64   `json:"delivered"`
	DeliveredPerS float64 `json:"delivered_per_s"`
	DeliveryRatio float64 `json:"delivery_ratio"`
	P50Ms         float64 `json:"p50_ms"`
	P90Ms         float64 `json:"p90_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p999_ms"`
	MaxMs         float64 `json:"max_ms"`
	Samples       uint64  `json:"samples"` // values in the latency histogram

	ClientCPUS float64 `json:"client_cpu_s"`
	// CPUBusyS: each CPU's busy seconds over the window (/proc/stat; pub/sub
	// scenarios, and the storm's phase 2). benchmarks/run pins the server(s) to CPU 0 and loadgen to
	// CPU 1, so busy minus their CPU is what else ran on their cores.
	CPUBusyS               []float64 `json:"cpu_busy_s,omitempty"`
	ServerCPUS             float64   `json:"server_cpu_s"` // -1: no -server-pid
	ServerCPUUsPerDelivery float64   `json:"server_cpu_us_per_delivery"`
	ClientBound            bool      `json:"client_bound"`
	ServerRSSBeforeBytes   int64     `json:"server_rss_before_bytes"`
	ServerRSSAfterBytes    int64     `json:"server_rss_after_bytes"`

	// Anomalies the server should never produce.
	OutOfOrder   int64          `json:"out_of_order"` // a sequence number at or below one already seen (duplicate or reorder)
	Gaps         int64          `json:"gaps"`         // sequence numbers skipped between two received
	ServerClosed int            `json:"server_closed"`
	CloseCodes   map[string]int `json:"close_codes,omitempty"`
	Errors       int            `json:"errors"`
	FirstError   string         `json:"first_error,omitempty"`

	// Several servers (-url list), or -admin-url: each server's members,
	// CPU and metrics; Remote merges the members of every server but the
	// publisher's (server 0), whose latency includes the hop between
	// servers. PeerWaitS is how long -peer-sessions waited after the joins.
	Servers   []ServerPart `json:"servers,omitempty"`
	Remote    *Part        `json:"remote,omitempty"`
	PeerWaitS float64      `json:"peer_wait_s,omitempty"`
	// -await: how long the servers took to meet it after the joins.
	AwaitS float64 `json:"await_s,omitempty"`
	// -broker-pid: the broker processes, and their CPU summed over the
	// window (-1: one unknown); server_cpu_s includes it.
	Brokers    []BrokerPart `json:"brokers,omitempty"`
	BrokerCPUS float64      `json:"broker_cpu_s,omitempty"`

	// -scrape-every: the /metrics reads during the warm-up and the window
	// (every -admin-url server's, one request at a time): answered with
	// metrics, failed (an error, a status other than 200, or none of
	// -metrics in the body), and of all of them those started inside the
	// window; the answered ones' time from request to body read.
	ScrapeEveryS     float64 `json:"scrape_every_s,omitempty"`
	Scrapes          int     `json:"scrapes,omitempty"`
	ScrapesFailed    int     `json:"scrapes_failed,omitempty"`
	ScrapesInWindow  int     `json:"scrapes_in_window,omitempty"`
	ScrapeP50Ms      float64 `json:"scrape_p50_ms,omitempty"`
	ScrapeMaxMs      float64 `json:"scrape_max_ms,omitempty"`
	ScrapeFirstError string  `json:"scrape_first_error,omitempty"`

	// Scenario-specific.
	SlowClosed         *int    `json:"slow_closed,omitempty"` // slow members the server had closed by the end
	JoinRate           float64 `json:"join_rate,omitempty"`   // idle: joins/s
	JoinFailed         int     `json:"join_failed,omitempty"`
	Conns              int     `json:"conns,omitempty"`
	ConnsAlive         int     `json:"conns_alive,omitempty"`
	RSSPerConnBytes    float64 `json:"rss_per_conn_bytes,omitempty"`
	KernelPerConnBytes float64 `json:"kernel_per_conn_bytes,omitempty"` // Slab delta / conns, both loopback ends
	KernelPerConnNote  string  `json:"kernel_per_conn_note,omitempty"`
	ConnectsPerS       float64 `json:"connects_per_s,omitempty"`
	ServerCPUUsPerConn float64 `json:"server_cpu_us_per_connect,omitempty"`
	Connects           int64   `json:"connects,omitempty"`
	ConnectErrors      int64   `json:"connect_errors,omitempty"`
	// storm (storm.go): phase 2's figures are in the common fields
	// (connects, connect_errors, connects_per_s, server_cpu_us_per_connect,
	// p50_ms..., client_cpu_s and server_cpu_s over the storm, window_s);
	// server_rss_after_bytes is read with every client of the storm
	// connected, server_rss_before_bytes right after the restart.
	StormS                   float64  `json:"storm_s,omitempty"`              // first dial to last join of the storm
	Resumed                  int      `json:"resumed,omitempty"`              // storm joins whose TLS session was resumed
	ResumedShare             *float64 `json:"resumed_share,omitempty"`        // resumed / joined in the storm (0 is a figure)
	TicketsHeld              int      `json:"tickets_held,omitempty"`         // phase-1 clients whose cache held a session
	TicketsLate              int      `json:"tickets_late,omitempty"`         // phase-1 clients without a session at the pong, which read once more for it
	RestartS                 float64  `json:"restart_s,omitempty"`            // -restart-cmd's run time
	ServerPID                int      `json:"server_pid_restarted,omitempty"` // the restarted server
	Phase1S                  float64  `json:"phase1_s,omitempty"`
	Phase1Failed             int      `json:"phase1_failed,omitempty"`
	Phase1ConnectsPerS       float64  `json:"phase1_connects_per_s,omitempty"`
	Phase1ServerCPUUsPerConn float64  `json:"phase1_server_cpu_us_per_connect,omitempty"`
	Phase1WindowS            float64  `json:"phase1_window_s,omitempty"`                  // first dial to the last attempt's end (the CPU samples)
	Phase1ClientCPUS         float64  `json:"phase1_client_cpu_s,omitempty"`              // the generator's CPU over phase 1
	Phase1ServerCPUS         float64  `json:"phase1_server_cpu_s,omitempty"`              // the first server's CPU over phase 1
	Phase1ClientCPUUsPerConn float64  `json:"phase1_client_cpu_us_per_connect,omitempty"` // the generator's CPU per phase-1 join
	ClientCPUUsPerConn       float64  `json:"client_cpu_us_per_connect,omitempty"`        // the generator's CPU per storm join
	Phase1P50Ms              float64  `json:"phase1_p50_ms,omitempty"`
	Phase1P99Ms              float64  `json:"phase1_p99_ms,omitempty"`
	HistoryOK                *bool    `json:"history_ok,omitempty"`
	HistoryReached           int      `json:"history_reached,omitempty"`  // joiners that got every message stored before they dialed
	HistoryComplete          int      `json:"history_complete,omitempty"` // joiners whose history started at sequence 0
	HistoryMsgsMin           int      `json:"history_msgs_min,omitempty"`
	HistoryMsgsMedian        float64  `json:"history_msgs_median,omitempty"`
	Notes                    []string `json:"notes,omitempty"`

	// HTTP: the static scenario's requests, or the burst beside a fan-out
	// (-http-rate). Counted over requests started (static) or intended
	// (burst) inside the window; errors are failed requests, statuses other
	// than 200, and a Content-Encoding that differs from the first one.
	HTTPEncoding      string  `json:"http_encoding,omitempty"`       // Content-Encoding of every response; "identity" when none
	HTTPResponseBytes float64 `json:"http_response_bytes,omitempty"` // body bytes per response, as sent (compressed)
	HTTPErrors        int64   `json:"http_errors,omitempty"`
	HTTPFirstError    string  `json:"http_first_error,omitempty"`
	// static
	Requests              int64   `json:"requests,omitempty"`
	RequestsPerS          float64 `json:"requests_per_s,omitempty"`
	ServerCPUUsPerRequest float64 `json:"server_cpu_us_per_request,omitempty"`
	ClientCPUUsPerRequest float64 `json:"client_cpu_us_per_request,omitempty"`
	// burst
	HTTPScheduled int64   `json:"http_scheduled,omitempty"` // requests the open-loop schedule put in the window
	HTTPRequests  int64   `json:"http_requests,omitempty"`  // of those, answered 200 (by the end of the drain)
	HTTPPerS      float64 `json:"http_per_s,omitempty"`     // 200s received inside the window, per second: the rate achieved
	HTTPP50Ms     float64 `json:"http_p50_ms,omitempty"`    // from intended send time
	HTTPP99Ms     float64 `json:"http_p99_ms,omitempty"`
	HTTPMaxMs     float64 `json:"http_max_ms,omitempty"`
	// The burst's child process: its CPU over the window, on the
	// generator's core beside client_cpu_s (client_bound counts both).
	HTTPClientCPUS float64 `json:"http_client_cpu_s,omitempty"`

	rssTaken bool // ServerRSSAfterBytes is set (finish)
}

func newResult(o *Options) *Result {
	r := &Result{
		Time:     time.Now().UTC().Format(time.RFC3339),
		Label:    o.Label,
		Scenario: o.Scenario,
		Mode:     string(o.Mode),
		URL:      o.URL,
		Params: Params{
			Members:   o.Members,
			Channels:  o.Channels,
			Rate:      o.Rate,
			Payload:   o.Payload,
			DurationS: o.Duration.Seconds(),
			WarmupS:   o.Warmup.Seconds(),
			Dialers:   o.Dialers,
			Slow:      o.Slow,
			TLS:       o.target.tls,
		},
		ServerCPUS:           -1,
		ServerRSSBeforeBytes: serverRSS(o),
	}
	if len(o.targets) > 1 || o.Scenario == ScenarioPeered || o.Scenario == ScenarioNATS {
		r.Params.Servers = len(o.targets)
	}
	switch o.Scenario {
	case ScenarioIdle:
		r.Params.Conns = o.Conns
		r.Params.Rate, r.Params.Payload, r.Params.WarmupS = 0, 0, 0
	case ScenarioConnect:
		r.Params.Members, r.Params.Rate, r.Params.Payload = 0, 0, 0
	case ScenarioStorm:
		r.Params.Conns = o.Conns
		r.Params.Rate, r.Params.Payload, r.Params.WarmupS, r.Params.DurationS = 0, 0, 0, 0
	case ScenarioHistory:
		r.Params.Stored, r.Params.Joiners = o.Stored, o.Joiners
		r.Params.WarmupS = 0
	case ScenarioStatic:
		r.Params.Members, r.Params.Rate, r.Params.Payload, r.Params.Dialers = 0, 0, 0, 0
		r.Params.Conns = o.Conns
		r.Params.AcceptEncoding = o.AcceptEncoding
		r.Params.HTTPRate = o.HTTPRate
	default:
		if o.HTTPRate > 0 {
			r.Params.HTTPRate, r.Params.HTTPConns = o.HTTPRate, o.HTTPConns
			r.Params.AcceptEncoding = o.AcceptEncoding
		}
	}
	if (o.Scenario == ScenarioStatic || o.HTTPRate > 0) && o.HTTPClient != HTTPClientRaw {
		r.Params.HTTPClient = o.HTTPClient
	}
	return r
}

// setHTTP fills the HTTP fields both the static scenario and the burst have.
func (r *Result) setHTTP(t *httpTally) {
	r.HTTPEncoding = t.encodingName()
	if t.n > 0 {
		r.HTTPResponseBytes = float64(t.bytes) / float64(t.n)
	}
	r.HTTPErrors = t.errs
	if t.firstError != nil {
		r.HTTPFirstError = t.firstError.Error()
	}
}

// serverRSS is the RSS of the server, or the sum over several and the
// -broker-pid processes (-1 when one is not known).
func serverRSS(o *Options) int64 {
	pids := o.ServerPIDs
	if len(pids) <= 1 {
		pids = []int{o.ServerPID}
	}
	var sum int64
	for _, pid := range append(slices.Clone(pids), o.BrokerPIDs...) {
		v := procRSS(pid)
		if v < 0 {
			return -1
		}
		sum += v
	}
	return sum
}

// setBrokers records the -broker-pid processes' CPU over the window (from
// samples a and b) and their RSS now.
func (r *Result) setBrokers(o *Options, a, b cpuSample) {
	if len(o.BrokerPIDs) == 0 {
		return
	}
	r.Brokers = make([]BrokerPart, len(o.BrokerPIDs))
	for i, pid := range o.BrokerPIDs {
		bp := &r.Brokers[i]
		bp.PID, bp.Name, bp.CPUS, bp.RSSAfterBytes = pid, procName(pid), -1, procRSS(pid)
		if i < len(a.brokers) && i < len(b.brokers) && a.brokers[i] >= 0 && b.brokers[i] >= 0 {
			bp.CPUS = b.brokers[i] - a.brokers[i]
		}
		if bp.CPUS < 0 || r.BrokerCPUS < 0 {
			r.BrokerCPUS = -1
			continue
		}
		r.BrokerCPUS += bp.CPUS
	}
}

// set fills a Part's counts and percentiles (h in microseconds).
func (p *Part) set(receivers int, expected, delivered int64, window float64, h *histogram) {
	ms := func(us uint64) float64 { return float64(us) / 1000 }
	p.Receivers, p.Expected, p.Delivered = receivers, expected, delivered
	if window > 0 {
		p.DeliveredPerS = float64(delivered) / window
	}
	if expected > 0 {
		p.DeliveryRatio = float64(delivered) / float64(expected)
	}
	p.Samples = h.total
	p.P50Ms = ms(h.quantile(0.50))
	p.P90Ms = ms(h.quantile(0.90))
	p.P99Ms = ms(h.quantile(0.99))
	p.P999Ms = ms(h.quantile(0.999))
	p.MaxMs = ms(h.max)
}

// setLatency fills the percentiles from h (microseconds).
func (r *Result) setLatency(h *histogram) {
	ms := func(us uint64) float64 { return float64(us) / 1000 }
	r.Samples = h.total
	r.P50Ms = ms(h.quantile(0.50))
	r.P90Ms = ms(h.quantile(0.90))
	r.P99Ms = ms(h.quantile(0.99))
	r.P999Ms = ms(h.quantile(0.999))
	r.MaxMs = ms(h.max)
}

// setCPU fills CPU figures from samples at the window's edges.
func (r *Result) setCPU(a, b cpuSample, window float64) {
	r.WindowS = window
	r.ClientCPUS = b.self - a.self
	r.ClientBound = window > 0 && r.ClientCPUS > 0.9*window
	if a.server >= 0 && b.server >= 0 {
		r.ServerCPUS = b.server - a.server
	}
}

// finish derives rates and ratios once counts are in. The server's RSS is
// read at the first call only: pubsub calls it while every member is still
// connected, and again after closing them.
func (r *Result) finish(o *Options) {
	if r.WindowS > 0 {
		r.DeliveredPerS = float64(r.Delivered) / r.WindowS
	}
	if r.Expected > 0 {
		r.DeliveryRatio = float64(r.Delivered) / float64(r.Expected)
	}
	if r.ServerCPUS >= 0 && r.Delivered > 0 {
		r.ServerCPUUsPerDelivery = r.ServerCPUS * 1e6 / float64(r.Delivered)
	}
	if !r.rssTaken {
		r.ServerRSSAfterBytes = serverRSS(o)
		r.rssTaken = true
	}
}

func (r *Result) addError(err error) {
	r.Errors++
	if r.FirstError == "" {
		r.FirstError = err.Error()
	}
}

func (r *Result) write(path string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// summary is the one-line human report for stderr.
func (r *Result) summary() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s:", r.Label, r.Scenario)
	switch r.Scenario {
	case ScenarioIdle:
		fmt.Fprintf(&sb, " %d/%d joined at %.0f/s, %d alive; server RSS %.0f B/conn, kernel slab %.0f B/conn",
			r.Conns-r.JoinFailed, r.Conns, r.JoinRate, r.ConnsAlive, r.RSSPerConnBytes, r.KernelPerConnBytes)
	case ScenarioConnect:
		fmt.Fprintf(&sb, " %.0f connects/s (%d errors), p50 %.2f ms p99 %.2f ms, server %.0f us/connect", r.ConnectsPerS, r.ConnectErrors, r.P50Ms, r.P99Ms, r.ServerCPUUsPerConn)
	case ScenarioStatic:
		fmt.Fprintf(&sb, " %.0f req/s (%d errors), %s %.0f B/response; p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f ms",
			r.RequestsPerS, r.HTTPErrors, r.HTTPEncoding, r.HTTPResponseBytes, r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs)
		if r.Params.HTTPRate > 0 {
			fmt.Fprintf(&sb, " (open loop at %.0f/s: %d/%d answered)", r.Params.HTTPRate, r.HTTPRequests, r.HTTPScheduled)
		}
	case ScenarioStorm:
		fmt.Fprintf(&sb, " %s; phase 1 %d joined in %.2fs (%.0f/s, server %.0f us/connect, generator %.0f), %d/%d kept a ticket; restart %.2fs;"+
			" storm %d/%d joined in %.2fs (%.0f/s, %d failed), resumed %d (%.3f), p50 %.2f ms p99 %.2f ms, server %.0f us/connect, generator %.0f",
			r.Params.Cert, r.Conns-r.Phase1Failed, r.Phase1S, r.Phase1ConnectsPerS, r.Phase1ServerCPUUsPerConn, r.Phase1ClientCPUUsPerConn,
			r.TicketsHeld, r.Conns, r.RestartS,
			r.Connects, r.Conns, r.StormS, r.ConnectsPerS, r.ConnectErrors, r.Resumed, deref(r.ResumedShare), r.P50Ms, r.P99Ms,
			r.ServerCPUUsPerConn, r.ClientCPUUsPerConn)
	case ScenarioHistory:
		ok := r.HistoryOK != nil && *r.HistoryOK
		fmt.Fprintf(&sb, " ok=%v reached %d/%d, complete %d, msgs min %d; replay p50 %.2f p99 %.2f max %.2f ms",
			ok, r.HistoryReached, r.Params.Joiners, r.HistoryComplete, r.HistoryMsgsMin, r.P50Ms, r.P99Ms, r.MaxMs)
	default:
		fmt.Fprintf(&sb, " %.0f delivered/s, %d/%d (%.4f); p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f ms",
			r.DeliveredPerS, r.Delivered, r.Expected, r.DeliveryRatio, r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs)
		if r.Remote != nil && len(r.Servers) > 0 {
			l := r.Servers[0]
			fmt.Fprintf(&sb, "; publisher's server %d/%d p50 %.2f p99 %.2f ms, other servers %d/%d p50 %.2f p99 %.2f ms",
				l.Delivered, l.Expected, l.P50Ms, l.P99Ms, r.Remote.Delivered, r.Remote.Expected, r.Remote.P50Ms, r.Remote.P99Ms)
		}
		if r.PeerWaitS > 0 {
			fmt.Fprintf(&sb, " (peer sessions up after %.2fs)", r.PeerWaitS)
		}
		if r.AwaitS > 0 {
			fmt.Fprintf(&sb, " (-await met after %.2fs)", r.AwaitS)
		}
		if r.ScrapeEveryS > 0 {
			fmt.Fprintf(&sb, "; /metrics every %gs: %d scraped (%d in the window), %d failed, p50 %.2f max %.2f ms",
				r.ScrapeEveryS, r.Scrapes, r.ScrapesInWindow, r.ScrapesFailed, r.ScrapeP50Ms, r.ScrapeMaxMs)
			if r.ScrapeFirstError != "" {
				fmt.Fprintf(&sb, " (%s)", r.ScrapeFirstError)
			}
		}
		for i, sp := range r.Servers {
			if sp.MetricsAfter == nil {
				continue
			}
			if w, ok := sp.MetricsAfter["mles_history_store_written_total"]; ok {
				fmt.Fprintf(&sb, "; server %d store written %.0f (window %.0f/s) dropped %.0f queued %.0f", i, w,
					(sp.MetricsEnd["mles_history_store_written_total"]-sp.MetricsStart["mles_history_store_written_total"])/r.WindowS,
					sp.MetricsAfter["mles_history_store_dropped_total"], sp.MetricsAfter["mles_history_store_queued"])
			}
		}
	}
	fmt.Fprintf(&sb, "; cpu client %.2fs", r.ClientCPUS)
	if r.ServerCPUS >= 0 {
		fmt.Fprintf(&sb, " server %.2fs", r.ServerCPUS)
		if r.ServerCPUUsPerDelivery > 0 {
			fmt.Fprintf(&sb, " (%.2f us/delivery)", r.ServerCPUUsPerDelivery)
		}
		for _, bp := range r.Brokers {
			fmt.Fprintf(&sb, ", of which %s %.2fs", bp.Name, bp.CPUS)
		}
		if r.ServerCPUUsPerRequest > 0 {
			fmt.Fprintf(&sb, " (%.2f us/request; client %.2f)", r.ServerCPUUsPerRequest, r.ClientCPUUsPerRequest)
		}
	}
	if r.Params.HTTPRate > 0 && r.Scenario != ScenarioStatic {
		fmt.Fprintf(&sb, "; http burst %.0f req/s offered, %.0f/s answered in the window, %d/%d answered, %d errors, %s %.0f B, p50 %.2f p99 %.2f max %.2f ms",
			r.Params.HTTPRate, r.HTTPPerS, r.HTTPRequests, r.HTTPScheduled, r.HTTPErrors, r.HTTPEncoding, r.HTTPResponseBytes, r.HTTPP50Ms, r.HTTPP99Ms, r.HTTPMaxMs)
		fmt.Fprintf(&sb, " (burst process cpu %.2fs)", r.HTTPClientCPUS)
	}
	if r.ClientBound {
		sb.WriteString(" CLIENT-BOUND")
	}
	if r.OutOfOrder+r.Gaps > 0 {
		fmt.Fprintf(&sb, "; ANOMALIES out_of_order=%d gaps=%d", r.OutOfOrder, r.Gaps)
	}
	if r.ServerClosed > 0 {
		fmt.Fprintf(&sb, "; server closed %d %v", r.ServerClosed, r.CloseCodes)
	}
	if r.Errors > 0 {
		fmt.Fprintf(&sb, "; %d errors (%s)", r.Errors, r.FirstError)
	}
	if r.HTTPFirstError != "" {
		fmt.Fprintf(&sb, "; first HTTP error: %s", r.HTTPFirstError)
	}
	if r.SlowClosed != nil {
		fmt.Fprintf(&sb, "; slow closed %d", *r.SlowClosed)
	}
	return sb.String()
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}
