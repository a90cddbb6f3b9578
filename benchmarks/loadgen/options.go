package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Scenario names, as given to -scenario.
const (
	ScenarioFanout  = "fanout"
	ScenarioChat    = "chat"
	ScenarioIdle    = "idle"
	ScenarioConnect = "connect"
	ScenarioHistory = "history"
	ScenarioSlow    = "slow"
	// ScenarioBigChannel is fanout under its own name (so that the report
	// keeps it apart from the fan-out sweep), with one big channel by
	// default: 15000 members, 5 msg/s.
	ScenarioBigChannel = "bigchannel"
	// ScenarioStatic is closed-loop HTTP GETs of one static file (-url
	// http://...), no WebSocket.
	ScenarioStatic = "static"
	// ScenarioHTTPBurst is fanout under its own name, meant with -http-rate
	// (the HTTP burst on the same port) and without it as the baseline.
	ScenarioHTTPBurst = "httpburst"
	// ScenarioStorm is a reconnect storm after a server restart: -conns
	// TLS clients join and keep their session tickets, -restart-cmd
	// restarts the server, and all of them reconnect at once (storm.go).
	ScenarioStorm = "storm"
	// ScenarioPersist is fanout under its own name, meant for our server
	// with its history in memory and on disk (--history-dir) beside it.
	ScenarioPersist = "persist"
	// ScenarioPersistPub is the same with a small channel and high publish
	// rates (default 10 members, 5000 msg/s): the history store's write
	// rate is what limits it.
	ScenarioPersistPub = "persistpub"
	// ScenarioPeered is fanout over several peered servers (-url with a
	// comma-separated list): member i joins server i mod n, the publisher
	// (member 0) server 0; the record has each server's receivers apart.
	ScenarioPeered = "peered"
	// ScenarioAdmin is fanout under its own name, meant for our server
	// without and with --admin, whose /metrics the generator reads every
	// -scrape-every during the warm-up and the window.
	ScenarioAdmin = "admin"
	// ScenarioNATS is fanout under its own name, meant for servers joined
	// by a broker (ours on NATS, Centrifugo with its NATS broker) and the
	// same servers alone: members spread over the -url servers as in
	// peered, the broker's process measured with -broker-pid.
	ScenarioNATS = "nats"
)

// scenarioNames is the list in messages.
const scenarioNames = "fanout, bigchannel, chat, idle, connect, history, slow, static, httpburst, storm, persist, persistpub, peered, admin or nats"

// Readers, as given to -reader.
const (
	ReaderEpoll     = "epoll"
	ReaderGoroutine = "goroutine"
)

// Options is one run's configuration; main only turns flags into it and
// validate fills the scenario-dependent defaults.
type Options struct {
	URL      string        // server URL; ws:// or wss:// picks plain or TLS; pub/sub but chat: a comma-separated list of servers
	Scenario string        // one of the Scenario constants
	Mode     Mode          // protocol; default mles
	Label    string        // server name in the results (default: mode)
	Duration time.Duration // measured window; default 10s
	Warmup   time.Duration // traffic before the window, not counted; default 3s
	Drain    time.Duration // wait after the window for late messages; default 5s
	Payload  int           // payload bytes (at least 39); default 64
	Dialers  int           // concurrent dialers; default 64
	Insecure bool          // skip TLS certificate verification
	// TLSCurves is "x25519" (default: the classic handshake, cheap for the
	// generator) or "default" (Go's defaults, which include X25519MLKEM768).
	TLSCurves string
	ServerPID int    // server process for CPU and RSS; 0: not measured
	Out       string // JSON lines file to append to; empty: stdout

	// ServerPIDs are the server processes, one per -url (-server-pid
	// takes a comma-separated list); ServerPID is the first.
	ServerPIDs []int
	// AdminURLs are the servers' Prometheus endpoints
	// (http://host:port/metrics), one per -url or none: Metrics are read
	// from them at the window's edges and after the drain.
	AdminURLs []string
	Metrics   []string // metric names recorded from AdminURLs
	// PeerSessions: before the schedule starts, wait until every
	// AdminURLs server reports at least this many mles_peer_sessions.
	PeerSessions int
	PeerWait     time.Duration // how long to wait for them (and for Await) at most
	// Await: before the schedule starts (after PeerSessions), wait until
	// every AdminURLs server reports each metric at least its minimum
	// (-await name=min,...).
	Await []awaitCond
	// BrokerPIDs are processes beside the -url servers whose CPU and RSS
	// count as the server side's (a NATS server, Redis): added to the
	// server's figures and recorded one by one.
	BrokerPIDs []int
	// ScrapeEvery: GET every AdminURLs server's /metrics this often from
	// the schedule's start to the window's end, as a Prometheus server
	// would (0: only at the window's edges).
	ScrapeEvery time.Duration

	// Reader is how members read: "goroutine" (default, one per connection) or "epoll" (one goroutine, one
	// read per ready socket; plain ws:// only, TLS always uses goroutines).
	// Measured equal on one core; epoll is kept for experiments.
	Reader string

	Members  int     // members per channel, publisher included; fanout 1000, bigchannel 15000, chat 10, idle 10, storm 10
	Rate     float64 // msg/s per publisher; fanout 1000, bigchannel 5, chat 10, history 10 (live, during joins)
	Channels int     // chat channels; default 100
	Slow     int     // members that stop reading (slow scenario); default 1
	Conns    int     // idle connections, default 15000; static: HTTP connections, default 32; storm: clients, default 10000
	Stored   int     // history messages published before the joins; default 100
	Joiners  int     // history joiners; default 50
	JoinPar  int     // history joiners in flight; default 8

	// HTTP (static, and the burst beside a pub/sub scenario).
	// HTTPRate: pub/sub, GETs/s of HTTPURL during warm-up and window, open
	// loop, from a child process (0: none); static, the same open loop
	// over Conns connections instead of the closed loop (what the child
	// runs).
	HTTPRate       float64
	HTTPConns      int    // pub/sub: keep-alive connections the burst is spread over; default 8
	BurstCPU       int    // pub/sub: run the burst process on this CPU at idle priority (-1: inherit the generator's)
	HTTPURL        string // pub/sub: the burst's URL, http://host:port/path
	AcceptEncoding string // Accept-Encoding of every HTTP request; default Chromium's
	HTTPClient     string // "raw" (hand-written, default) or "std" (net/http)
	StartAt        int64  // static with HTTPRate: wall-clock start of the schedule (Unix ns; 0: now)

	// RestartCmd (storm): a program that restarts the server and prints
	// its new PID on stdout; empty: the storm goes to the same process.
	RestartCmd string

	target  *target         // the first of targets
	targets []*target       // one per -url server
	run     uint16          // random run id, in every payload, uid and channel
	marker  [markerLen]byte // "~LG" + run
}

func (o *Options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.URL, "url", "", "server URL, ws://host:port/path or wss://...; pub/sub scenarios but chat: a comma-separated list of servers (member i joins server i mod n, the publisher server 0)")
	fs.StringVar(&o.Scenario, "scenario", "", scenarioNames)
	fs.StringVar((*string)(&o.Mode), "mode", string(ModeMles), "protocol: mles, centrifugo or rawtls (connect only)")
	fs.StringVar(&o.Label, "label", "", "server name in the results (default: the mode)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&o.Warmup, "warmup", 3*time.Second, "traffic before the window, not counted")
	fs.DurationVar(&o.Drain, "drain", 5*time.Second, "wait after the window for late messages (they count as lost after it)")
	fs.IntVar(&o.Payload, "payload", 64, "payload bytes (at least 39)")
	fs.IntVar(&o.Dialers, "dialers", 64, "concurrent dialers")
	fs.BoolVar(&o.Insecure, "insecure", false, "skip TLS certificate verification")
	fs.StringVar(&o.TLSCurves, "tls-curves", "x25519", "TLS key exchange offered: x25519 or default (Go's, with X25519MLKEM768)")
	fs.Func("server-pid", "server PID, for CPU time and RSS from /proc; with several -url servers, their PIDs comma-separated in the same order (CPU and RSS are summed)", func(v string) error {
		pids, err := parsePIDs(v)
		if err != nil {
			return err
		}
		o.ServerPIDs = pids
		o.ServerPID = 0
		if len(pids) > 0 {
			o.ServerPID = pids[0]
		}
		return nil
	})
	fs.Func("admin-url", "the servers' Prometheus text endpoints, http://host:port/metrics, comma-separated, one per -url server: -metrics are recorded at the window's edges and after the drain", func(v string) error {
		o.AdminURLs = splitList(v)
		return nil
	})
	o.Metrics = splitList(DefaultMetrics)
	fs.Func("metrics", "metric names recorded from -admin-url, comma-separated (samples of one name are summed over their labels); default "+DefaultMetrics, func(v string) error {
		o.Metrics = splitList(v)
		return nil
	})
	fs.Func("await", "before the schedule, wait until every -admin-url server reports each metric at least its minimum: name=min, comma-separated (at most -peer-wait)", func(v string) error {
		c, err := parseAwait(v)
		if err != nil {
			return err
		}
		o.Await = c
		return nil
	})
	fs.Func("broker-pid", "processes beside the -url servers whose CPU and RSS count as the server side's (a NATS server, Redis), comma-separated: added to the server's and recorded each", func(v string) error {
		pids, err := parsePIDs(v)
		if err != nil {
			return err
		}
		o.BrokerPIDs = pids
		return nil
	})
	fs.IntVar(&o.PeerSessions, "peer-sessions", 0, "before the schedule, wait until every -admin-url server reports at least this many mles_peer_sessions (0: no wait)")
	fs.DurationVar(&o.PeerWait, "peer-wait", 30*time.Second, "how long -peer-sessions and -await wait at most (then the run fails)")
	fs.DurationVar(&o.ScrapeEvery, "scrape-every", 0, "pub/sub: also GET every -admin-url this often during the warm-up and the window, half an interval off the window's edges (0: only at the edges); scrapes done and failed are recorded")
	fs.StringVar(&o.Out, "out", "", "append one JSON object per run to this file (default: stdout)")
	fs.StringVar(&o.Reader, "reader", ReaderGoroutine, "member reads: epoll (one goroutine, plain ws only) or goroutine (one per connection; always with TLS)")
	fs.IntVar(&o.Members, "members", 0, "members per channel incl. the publisher (default fanout/slow 1000, bigchannel 15000, chat 10, idle 10)")
	fs.Float64Var(&o.Rate, "rate", 0, "msg/s per publisher (default fanout/slow 1000, bigchannel 5, chat 10, history 10 live during the joins; 0 there: none)")
	fs.IntVar(&o.Channels, "channels", 100, "chat: channels")
	fs.IntVar(&o.Slow, "slow", 1, "slow: members that stop reading after joining")
	fs.IntVar(&o.Conns, "conns", 15000, "idle: connections to join; static: keep-alive HTTP connections (default 32); storm: TLS clients (default 10000)")
	fs.IntVar(&o.Stored, "stored", 100, "history: messages stored before the joins")
	fs.IntVar(&o.Joiners, "joiners", 50, "history: joiners")
	fs.IntVar(&o.JoinPar, "join-concurrency", 8, "history: joiners in flight")
	fs.Float64Var(&o.HTTPRate, "http-rate", 0, "fanout/httpburst (any pub/sub scenario): open-loop HTTP GETs/s of -http-url during warm-up and window, from a child loadgen process (0: none); static: open loop at this rate instead of the closed loop")
	fs.IntVar(&o.HTTPConns, "http-conns", 8, "keep-alive connections the -http-rate burst is spread over")
	fs.IntVar(&o.BurstCPU, "burst-cpu", -1, "run the -http-rate burst process on this CPU under SCHED_IDLE (taskset, chrt --idle), off the members' core (-1: on the generator's)")
	fs.StringVar(&o.HTTPURL, "http-url", "", "URL of the -http-rate burst, http://host:port/path")
	fs.StringVar(&o.AcceptEncoding, "accept-encoding", DefaultAcceptEncoding, "Accept-Encoding of every HTTP request (static, burst); empty: none")
	fs.StringVar(&o.HTTPClient, "http-client", HTTPClientRaw, "HTTP client: raw (hand-written HTTP/1.1 keep-alive, no allocation per request) or std (net/http, for comparison)")
	fs.StringVar(&o.RestartCmd, "restart-cmd", "", "storm: program run between the phases that restarts the server and prints its new PID (used for CPU and RSS from then on); empty: no restart")
	fs.Int64Var(&o.StartAt, "start-at", 0, "static with -http-rate: wall-clock start of the schedule in Unix ns (how a pub/sub run aligns its child's burst)")
}

// validate checks the options and fills scenario defaults; set holds the
// names of flags given on the command line.
func (o *Options) validate(set map[string]bool) error {
	if o.URL == "" {
		return errors.New("-url is required")
	}
	if o.Label == "" {
		o.Label = string(o.Mode)
	}
	switch o.Mode {
	case ModeMles, ModeCentrifugo:
	case ModeRawTLS:
		if o.Scenario != ScenarioConnect {
			return errors.New("-mode rawtls is for -scenario connect only")
		}
	default:
		return fmt.Errorf("-mode %q: want mles, centrifugo or rawtls", o.Mode)
	}
	defMembers, defRate := 0, 0.0
	switch o.Scenario {
	case ScenarioFanout, ScenarioHTTPBurst, ScenarioSlow, ScenarioPersist, ScenarioPeered, ScenarioAdmin, ScenarioNATS:
		defMembers, defRate = 1000, 1000
		if o.Scenario != ScenarioSlow && !set["slow"] {
			o.Slow = 0
		}
	case ScenarioPersistPub:
		defMembers, defRate = 10, 5000
		if !set["slow"] {
			o.Slow = 0
		}
	case ScenarioBigChannel:
		defMembers, defRate = 15000, 5
		if !set["slow"] {
			o.Slow = 0
		}
	case ScenarioChat:
		defMembers, defRate = 10, 10
	case ScenarioIdle:
		defMembers = 10
	case ScenarioStorm:
		defMembers = 10
		if !set["conns"] {
			o.Conns = 10000
		}
	case ScenarioConnect:
	case ScenarioHistory:
		defRate = 10
	case ScenarioStatic:
		if !set["conns"] {
			o.Conns = 32
		}
	default:
		return fmt.Errorf("-scenario %q: want %s", o.Scenario, scenarioNames)
	}
	if !set["members"] {
		o.Members = defMembers
	}
	if !set["rate"] {
		o.Rate = defRate
	}
	if o.Scenario != ScenarioChat {
		o.Channels = 0
	}
	if !isPubSub(o.Scenario) || o.Scenario == ScenarioChat {
		o.Slow = 0
	}
	if o.HTTPClient != HTTPClientRaw && o.HTTPClient != HTTPClientStd {
		return fmt.Errorf("-http-client %q: want raw or std", o.HTTPClient)
	}
	if o.Reader != ReaderEpoll && o.Reader != ReaderGoroutine {
		return fmt.Errorf("-reader %q: want epoll or goroutine", o.Reader)
	}
	if o.Payload < minPayload {
		o.Payload = minPayload
	}
	if o.Dialers < 1 || o.Duration <= 0 || o.Warmup < 0 || o.Drain < 0 {
		return errors.New("-dialers and -duration must be positive, -warmup and -drain not negative")
	}
	switch o.Scenario {
	case ScenarioFanout, ScenarioBigChannel, ScenarioHTTPBurst, ScenarioSlow, ScenarioChat, ScenarioPersist, ScenarioPersistPub, ScenarioPeered, ScenarioAdmin, ScenarioNATS:
		if o.Members < 2 || o.Rate <= 0 {
			return errors.New("-members must be at least 2 and -rate positive")
		}
		if o.Slow >= o.Members-1 {
			return errors.New("-slow must leave at least one healthy receiver")
		}
		if o.Scenario == ScenarioChat && o.Channels < 1 {
			return errors.New("-channels must be at least 1")
		}
	case ScenarioIdle, ScenarioStorm:
		if o.Conns < 1 || o.Members < 1 {
			return errors.New("-conns and -members must be positive")
		}
	case ScenarioStatic:
		if o.Conns < 1 {
			return errors.New("-conns must be positive")
		}
		if !strings.HasPrefix(o.URL, "http://") && !strings.HasPrefix(o.URL, "https://") {
			return errors.New("-scenario static needs an http:// (or https://) -url")
		}
	case ScenarioHistory:
		if o.Stored < 1 || o.Joiners < 1 || o.JoinPar < 1 {
			return errors.New("-stored, -joiners and -join-concurrency must be positive")
		}
	}
	urls := splitList(o.URL)
	if len(urls) == 0 {
		return errors.New("-url is required")
	}
	if len(urls) > 1 && (!isPubSub(o.Scenario) || o.Scenario == ScenarioChat) {
		return errors.New("several -url servers are for the pub/sub scenarios with one publisher (fanout, peered, ...), not " + o.Scenario)
	}
	o.targets = o.targets[:0]
	for _, u := range urls {
		t, err := parseTarget(u, o.Insecure, o.TLSCurves)
		if err != nil {
			return err
		}
		if len(o.targets) > 0 && t.tls != o.targets[0].tls {
			return errors.New("-url servers must be all ws:// or all wss://")
		}
		o.targets = append(o.targets, t)
	}
	if len(o.targets) > o.Members-1-o.Slow && len(o.targets) > 1 {
		return errors.New("more -url servers than receiving members")
	}
	if len(o.ServerPIDs) > 1 && len(o.ServerPIDs) != len(o.targets) {
		return fmt.Errorf("-server-pid has %d PIDs for %d -url servers", len(o.ServerPIDs), len(o.targets))
	}
	if len(o.AdminURLs) > 0 {
		if len(o.AdminURLs) != len(o.targets) {
			return fmt.Errorf("-admin-url has %d URLs for %d -url servers", len(o.AdminURLs), len(o.targets))
		}
		if !isPubSub(o.Scenario) {
			return errors.New("-admin-url is for the pub/sub scenarios")
		}
		for _, a := range o.AdminURLs {
			if !strings.HasPrefix(a, "http://") {
				return fmt.Errorf("-admin-url %q: want http://host:port/metrics", a)
			}
		}
	}
	if o.PeerSessions < 0 || (o.PeerSessions > 0 && len(o.AdminURLs) == 0) {
		return errors.New("-peer-sessions needs -admin-url (and must not be negative)")
	}
	if len(o.Await) > 0 && len(o.AdminURLs) == 0 {
		return errors.New("-await needs -admin-url")
	}
	if len(o.BrokerPIDs) > 0 && !isPubSub(o.Scenario) {
		return errors.New("-broker-pid is for the pub/sub scenarios")
	}
	if o.ScrapeEvery < 0 || (o.ScrapeEvery > 0 && len(o.AdminURLs) == 0) {
		return errors.New("-scrape-every needs -admin-url (and must not be negative)")
	}
	t := o.targets[0]
	if o.Mode == ModeRawTLS && !t.tls {
		return errors.New("-mode rawtls needs a wss:// (or https://) URL")
	}
	if o.Scenario == ScenarioStorm && (!t.tls || o.Mode != ModeMles) {
		return errStormNeedsTLS
	}
	if o.RestartCmd != "" && o.Scenario != ScenarioStorm {
		return errors.New("-restart-cmd is for -scenario storm")
	}
	o.target = t
	switch {
	case o.HTTPRate < 0:
		return errors.New("-http-rate must not be negative")
	case o.HTTPRate > 0:
		switch o.Scenario {
		case ScenarioStatic:
		case ScenarioFanout, ScenarioBigChannel, ScenarioHTTPBurst, ScenarioSlow, ScenarioChat, ScenarioPersist, ScenarioPersistPub, ScenarioPeered, ScenarioAdmin, ScenarioNATS:
			if o.HTTPConns < 1 {
				return errors.New("-http-conns must be positive")
			}
			if !strings.HasPrefix(o.HTTPURL, "http://") && !strings.HasPrefix(o.HTTPURL, "https://") {
				return errors.New("-http-rate needs -http-url http://host:port/path")
			}
			if _, err := parseTarget(o.HTTPURL, o.Insecure, o.TLSCurves); err != nil {
				return fmt.Errorf("-http-url: %w", err)
			}
		default:
			return errors.New("-http-rate is for static and the pub/sub scenarios (fanout, httpburst, ...)")
		}
	}
	o.run = uint16(rand.Uint32())
	o.marker = newMarker(o.run)
	return nil
}

// name returns a per-run name for uids and channels: runs never share a
// channel's history and never collide with a previous run's stale sessions.
func (o *Options) name(kind string, i int) string {
	return fmt.Sprintf("%s-%04x-%d", kind, o.run, i)
}

// isPubSub reports whether scenario is one of the publish/subscribe ones
// runPubSub runs.
func isPubSub(scenario string) bool {
	switch scenario {
	case ScenarioFanout, ScenarioBigChannel, ScenarioHTTPBurst, ScenarioChat, ScenarioSlow, ScenarioPersist, ScenarioPersistPub, ScenarioPeered, ScenarioAdmin, ScenarioNATS:
		return true
	}
	return false
}

// splitList splits a comma-separated list, dropping empty items and spaces.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// awaitCond is one -await condition: metric name at least min.
type awaitCond struct {
	name string
	min  float64
}

func (c awaitCond) String() string { return fmt.Sprintf("%s>=%g", c.name, c.min) }

// parseAwait parses -await's comma-separated name=min list.
func parseAwait(v string) ([]awaitCond, error) {
	var out []awaitCond
	for _, item := range splitList(v) {
		name, val, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		m, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if !ok || name == "" || err != nil {
			return nil, fmt.Errorf("-await %q: want name=min", item)
		}
		out = append(out, awaitCond{name: name, min: m})
	}
	return out, nil
}

// parsePIDs parses a comma-separated list of process ids.
func parsePIDs(v string) ([]int, error) {
	var pids []int
	for _, item := range splitList(v) {
		pid, err := strconv.Atoi(item)
		if err != nil || pid < 0 {
			return nil, fmt.Errorf("PID %q: want a number", item)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
