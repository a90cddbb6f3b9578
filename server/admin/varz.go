package admin

import (
	"encoding/json"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/mles/mles/server"
)

// Varz is the /varz document (in the manner of nats-server's /varz): who
// is running, since when, with which options, and the figures of one
// Metrics snapshot, the same that /metrics would show at that instant.
// Counters count since start; the others are values now.
type Varz struct {
	Version    string       `json:"version"`
	GoVersion  string       `json:"go"`
	Start      time.Time    `json:"start"`
	Now        time.Time    `json:"now"`
	Uptime     string       `json:"uptime"`         // Now - Start, rounded to the second
	UptimeSecs float64      `json:"uptime_seconds"` // the same in seconds
	Listen     string       `json:"listen,omitempty"`
	Options    *VarzOptions `json:"options,omitempty"`
	Ready      bool         `json:"ready"`    // what /readyz answers
	Draining   bool         `json:"draining"` // a drain or shutdown has started

	Connections          int64             `json:"connections"`
	Accepted             uint64            `json:"connections_accepted"`
	Refused              map[string]uint64 `json:"connections_refused"`
	TLSHandshakeFailures map[string]uint64 `json:"tls_handshake_failures"`
	HandshakesInFlight   int64             `json:"tls_handshakes_in_flight"`
	Channels             int               `json:"channels"`
	Members              int64             `json:"members"`
	MessagesIn           uint64            `json:"messages_in"`
	MessagesInBytes      uint64            `json:"messages_in_bytes"`
	Deliveries           uint64            `json:"deliveries"`
	DeliveriesBytes      uint64            `json:"deliveries_bytes"`
	SlowConsumerCloses   int64             `json:"slow_consumer_closes"`
	Closes               map[string]uint64 `json:"closes"`
	CloseCodesSent       map[int]uint64    `json:"close_codes_sent"`
	Dropped              map[string]uint64 `json:"messages_dropped"`
	HistoryMessages      int64             `json:"history_messages"`
	HistoryBytes         int64             `json:"history_bytes"`
	ReactorConnections   []int             `json:"reactor_connections"` // index: reactor number
	Goroutines           int               `json:"goroutines"`
}

// VarzOptions are the server options /varz shows: limits, timeouts and
// switches. Secrets have no field here: the key of auth tokens shows only
// as whether auth is required, the TLS configuration only as on or off. A
// field added to server.Options stays out until it is added here.
type VarzOptions struct {
	Addr              string   `json:"addr"`
	TLS               bool     `json:"tls"`
	Auth              bool     `json:"auth"` // MLES_KEY is set: clients send auth tokens
	HTTP              bool     `json:"http"` // requests that are not upgrades are served (static files, proxy)
	Reactors          int      `json:"reactors"`
	ReusePort         bool     `json:"reuseport"`
	History           int      `json:"history"`
	HistoryBytes      int64    `json:"history_bytes"`
	HistoryTotalBytes int64    `json:"history_total_bytes"`
	RingSize          int      `json:"ring_size"`
	MaxMessage        int      `json:"max_message"`
	MaxConns          int      `json:"max_conns"`
	MaxConnsPerIP     int      `json:"max_conns_per_ip"`
	RateLimit         int      `json:"rate_limit"`
	ProxyProtocol     bool     `json:"proxy_protocol"`
	TrustedProxies    []string `json:"trusted_proxies"`
	MaxPending        int      `json:"max_pending"`
	SlowGrace         string   `json:"slow_grace"`
	MaxUID            int      `json:"max_uid"`
	MaxChannel        int      `json:"max_channel"`
	MaxHandshakes     int      `json:"max_handshakes"`
	HelloTimeout      string   `json:"hello_timeout"`
	HandshakeTimeout  string   `json:"handshake_timeout"`
	HeaderTimeout     string   `json:"header_timeout"`
	PingInterval      string   `json:"ping_interval"`
	PingMax           int      `json:"ping_max"`
	ChannelIdle       string   `json:"channel_idle"`
	DrainTimeout      string   `json:"drain_timeout"`
	CloseLinger       string   `json:"close_linger"`
	ReplaceDuplicate  bool     `json:"replace_duplicate"`
}

// varzOptions copies the settings worth showing out of o, defaults filled
// in.
func varzOptions(o server.Options) *VarzOptions {
	o.SetDefaults()
	v := &VarzOptions{
		Addr:              o.Addr,
		TLS:               !o.Plain,
		Auth:              o.KeySet,
		HTTP:              o.HTTP != nil,
		Reactors:          o.Reactors,
		ReusePort:         o.ReusePort,
		History:           o.History,
		HistoryBytes:      o.HistoryBytes,
		HistoryTotalBytes: o.HistoryTotalBytes,
		RingSize:          o.RingSize,
		MaxMessage:        o.MaxMessage,
		MaxConns:          o.MaxConns,
		MaxConnsPerIP:     o.MaxConnsPerIP,
		RateLimit:         o.RateLimit,
		ProxyProtocol:     o.ProxyProtocol,
		TrustedProxies:    []string{},
		MaxPending:        o.MaxPending,
		SlowGrace:         o.SlowGrace.String(),
		MaxUID:            o.MaxUID,
		MaxChannel:        o.MaxChannel,
		MaxHandshakes:     o.MaxHandshakes,
		HelloTimeout:      o.HelloTimeout.String(),
		HandshakeTimeout:  o.HandshakeTimeout.String(),
		HeaderTimeout:     o.HeaderTimeout.String(),
		PingInterval:      o.PingInterval.String(),
		PingMax:           o.PingMax,
		ChannelIdle:       o.ChannelIdle.String(),
		DrainTimeout:      o.DrainTimeout.String(),
		CloseLinger:       o.CloseLinger.String(),
		ReplaceDuplicate:  o.ReplaceDuplicate,
	}
	for _, p := range o.TrustedProxies {
		v.TrustedProxies = append(v.TrustedProxies, p.String())
	}
	return v
}

// varzHandler serves /varz.
type varzHandler struct {
	src      Source
	version  string
	start    time.Time
	opts     *VarzOptions
	reactors int
}

func newVarz(cfg Config) *varzHandler {
	h := &varzHandler{src: cfg.Server, version: cfg.Version, start: cfg.Start}
	if cfg.Options != nil {
		h.opts = varzOptions(*cfg.Options)
		h.reactors = h.opts.Reactors
	}
	return h
}

// varz builds the document from one snapshot.
func (h *varzHandler) varz(r *http.Request) Varz {
	m := h.src.Metrics(r.Context())
	now := time.Now()
	v := Varz{
		Version:              h.version,
		GoVersion:            runtime.Version(),
		Start:                h.start,
		Now:                  now,
		Uptime:               now.Sub(h.start).Round(time.Second).String(),
		UptimeSecs:           now.Sub(h.start).Seconds(),
		Options:              h.opts,
		Ready:                h.src.Ready(),
		Draining:             m.Draining,
		Connections:          m.Conns,
		Accepted:             m.Accepted,
		Refused:              m.Refused,
		TLSHandshakeFailures: m.HandshakeFailures,
		HandshakesInFlight:   m.Handshakes,
		Channels:             m.Channels,
		Members:              m.Members,
		MessagesIn:           m.MessagesIn,
		MessagesInBytes:      m.BytesIn,
		Deliveries:           m.Deliveries,
		DeliveriesBytes:      m.BytesOut,
		SlowConsumerCloses:   m.SlowConsumers,
		Closes:               m.Closes,
		CloseCodesSent:       m.CloseCodes,
		Dropped:              m.Dropped,
		HistoryMessages:      m.HistoryMessages,
		HistoryBytes:         m.HistoryBytes,
		ReactorConnections:   reactorConns(m, h.reactors),
		Goroutines:           runtime.NumGoroutine(),
	}
	if a, ok := h.src.(interface{ Addr() net.Addr }); ok && a.Addr() != nil {
		v.Listen = a.Addr().String()
	}
	return v
}

func (h *varzHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := json.MarshalIndent(h.varz(r), "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}
