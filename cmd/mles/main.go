// Command mles runs the Mles server: a publish/subscribe data service over
// TLS WebSockets, wire-compatible with the reference server mles-rs.
//
// With no flags it serves TLS on port 443 with an ephemeral self-signed
// certificate for localhost. Every flag can also be set from the environment
// as MLES_<NAME> (dashes become underscores: --max-conns is MLES_MAX_CONNS)
// or from a --config file (TOML or YAML, keys named as the long flags; see
// config.go); the command line wins over the environment, which wins over
// the file. MLES_KEY is the shared key of the auth token; RUST_LOG sets the
// log level when --log-level is not given, as with mles-rs.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/mles/mles/server"
	"github.com/mles/mles/server/admin"
	"github.com/mles/mles/server/store"
	"github.com/mles/mles/server/www"
	"github.com/mles/mles/tlsbridge"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mles:", err)
		os.Exit(exitCode(err))
	}
}

type flags struct {
	port       int
	addr       string
	plain      bool
	tlsCert    string
	tlsKey     string
	logLevel   string
	logFormat  string
	cpuProf    string
	wwwroot    string
	fileLimit  int
	zcacheMB   int
	proxies    []string
	redirect   bool
	redirPort  int
	domains    []string
	emails     []string
	cacheDir   string
	staging    bool
	acmeDir    string
	trusted    []string
	drainTime  time.Duration
	admin      string // --admin: address of the admin listener
	pprof      bool
	ticketKeys string
	peerCA     string // --peer-ca
	peerNoCert bool   // --peer-insecure
	nats       natsFlags
	opts       server.Options

	config      string            // --config
	printConfig bool              // --print-config
	version     bool              // --version
	args        []string          // the command line, parsed again on SIGHUP
	src         map[string]source // where each flag's value came from (config.go)
	values      map[string]any    // each flag's value before defaulting, as a config file has it
}

// parsePrefix parses a CIDR, or one address as the prefix of its full
// length.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func parse(args []string) (*flags, *pflag.FlagSet, error) {
	f := &flags{}
	o := &f.opts
	fs := pflag.NewFlagSet("mles", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringArrayVarP(&f.domains, "domains", "d", nil, "domain of the ACME (Let's Encrypt) certificate, repeatable (as mles-rs)")
	fs.StringArrayVarP(&f.emails, "email", "e", nil, "contact email of the ACME account, repeatable (as mles-rs; the CA gets the first)")
	fs.StringVarP(&f.cacheDir, "cache", "c", "", "directory keeping the ACME account and certificates across restarts (as mles-rs; none: in memory)")
	fs.BoolVarP(&f.staging, "staging", "s", false, "use Let's Encrypt's staging CA (as mles-rs)")
	fs.StringVar(&f.acmeDir, "acme-directory", "", "ACME directory URL of another CA (default: Let's Encrypt, or its staging with -s)")
	fs.IntVarP(&f.port, "port", "p", 443, "TCP port to listen on")
	fs.StringVar(&f.addr, "addr", "", "IP address to listen on (default: all interfaces)")
	fs.IntVarP(&o.History, "limit", "l", server.DefaultHistory, fmt.Sprintf("messages of history kept per channel (1..%d)", server.MaxHistory))
	fs.StringVarP(&f.wwwroot, "wwwroot", "w", "", "serve static files from DIR/<host>/ to requests that are not WebSocket upgrades (as mles-rs)")
	fs.IntVarP(&f.fileLimit, "filelimit", "f", www.DefaultFileLimit, "static files read at once (as mles-rs)")
	fs.IntVarP(&f.zcacheMB, "compression-cache", "C", www.DefaultCompressionCacheMB, "MB of brotli/zstd/gzip-compressed static files kept (0: no compression; as mles-rs)")
	fs.StringArrayVarP(&f.proxies, "proxy", "P", nil, "reverse proxy /prefix=http://upstream for requests under the prefix, repeatable (as mles-rs)")
	fs.BoolVarP(&f.redirect, "redirect", "r", false, "answer plain HTTP on --redirect-port with 301 to https, path and query kept (as mles-rs)")
	fs.IntVar(&f.redirPort, "redirect-port", 80, "port of the --redirect listener")
	fs.BoolVar(&f.plain, "plain", false, "serve WebSocket without TLS (behind a TLS-terminating proxy, or for local tests)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate chain file (reloaded on SIGHUP)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key file (reloaded on SIGHUP)")
	fs.StringVar(&f.ticketKeys, "tls-ticket-keys", "", "TLS session ticket keys, one 64-hex-digit key per line, the first encrypting (shared across restarts and servers so that reconnects resume; reloaded on SIGHUP)")
	fs.IntVar(&o.Reactors, "reactors", 0, "event loops (default: number of CPUs)")
	fs.BoolVar(&o.ReusePort, "reuseport", false, "set SO_REUSEPORT on the listener")
	fs.BoolVar(&o.LockOSThread, "lock-os-thread", false, "pin each event loop to an OS thread")
	fs.IntVar(&o.ReadBufferCap, "read-buffer-cap", server.DefaultReadBufferCap, "bytes read per socket read, per event loop")
	fs.IntVar(&o.WriteBufferCap, "write-buffer-cap", server.DefaultWriteBufferCap, "initial outbound buffer per connection in bytes (grows on demand)")
	fs.IntVar(&o.MaxMessage, "max-message", server.DefaultMaxMessage, "largest accepted message in bytes (close 1009 beyond)")
	fs.IntVar(&o.MaxConns, "max-conns", 0, "maximum concurrent connections (0: unlimited)")
	fs.IntVar(&o.MaxConnsPerIP, "max-conns-per-ip", 0, "maximum concurrent connections from one IPv4 address or IPv6 /64 (0: unlimited)")
	fs.IntVar(&o.RateLimit, "rate-limit", 0, "new connections per minute from one IPv4 address or IPv6 /64, refused at accept before TLS (0: unlimited)")
	fs.BoolVar(&o.ProxyProtocol, "proxy-protocol", false, "expect a PROXY protocol v1/v2 header (HAProxy send-proxy, nginx proxy_protocol) on every connection and take the client's address from it")
	fs.StringSliceVar(&f.trusted, "trusted-proxies", nil, "addresses or CIDRs of proxies trusted for X-Forwarded-For (and, with --proxy-protocol, the only ones that may connect)")
	fs.IntVar(&o.MaxPending, "max-pending", server.DefaultMaxPending, "unsent bytes per subscriber before it is paused as a slow consumer")
	fs.DurationVar(&o.SlowGrace, "slow-grace", server.DefaultSlowGrace, "how long a subscriber may stay above --max-pending before it is closed")
	fs.IntVar(&o.MaxUID, "max-uid", server.DefaultMaxUID, "longest uid in bytes")
	fs.IntVar(&o.MaxChannel, "max-channel", server.DefaultMaxChannel, "longest channel name in bytes")
	fs.IntVar(&o.MaxHandshakes, "max-handshakes", 0, fmt.Sprintf("concurrent TLS handshakes; one client address holds at most half (default: %d per reactor)", server.DefaultHandshakesPerLoop))
	fs.Int64Var(&o.HistoryBytes, "history-bytes", server.DefaultHistoryBytes, "history byte cap per channel")
	fs.Int64Var(&o.HistoryTotalBytes, "history-total-bytes", server.DefaultHistoryTotalBytes, "history byte cap for all channels")
	fs.IntVar(&o.RingSize, "ring-size", 0, fmt.Sprintf("ring slots per channel, a power of two: how far a reader may lag (default: max(%d, 2 x limit))", server.DefaultMinRing))
	fs.DurationVar(&o.HelloTimeout, "hello-timeout", server.DefaultHelloTimeout, "time for a TLS client's whole ClientHello after connecting")
	fs.DurationVar(&o.HandshakeTimeout, "handshake-timeout", server.DefaultHandshakeTimeout, "time for the TLS handshake and HTTP upgrade, from when a handshake slot is free (the wait for one is bounded by it too)")
	fs.DurationVar(&o.HeaderTimeout, "header-timeout", server.DefaultHeaderTimeout, "time for the Mles header frame after the upgrade")
	fs.DurationVar(&o.PingInterval, "ping-interval", server.DefaultPingInterval, "liveness ping period")
	fs.IntVar(&o.PingMax, "ping-max", server.DefaultPingMax, "pings without any inbound frame before the connection is closed")
	fs.DurationVar(&o.ChannelIdle, "channel-idle", server.DefaultChannelIdle, "how long a channel without members keeps its history before it is dropped")
	fs.DurationVar(&f.drainTime, "drain-time", 10*time.Second, "on SIGTERM or SIGUSR2, spread the 1001 closes over this long (lame duck); SIGINT closes at once")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", server.DefaultDrainTimeout, "graceful shutdown bound")
	fs.DurationVar(&o.CloseLinger, "close-linger", server.DefaultCloseLinger, "how long a closing connection keeps flushing its queued output before it is closed hard")
	fs.DurationVar(&o.ReleaseQuiet, "release-quiet", server.DefaultReleaseQuiet, "return free heap memory to the OS once no connection has opened for this long (negative: never)")
	fs.BoolVar(&o.ReplaceDuplicate, "replace-duplicate", false, "a new session with the same (uid, channel, auth) replaces the old one instead of being refused")
	fs.StringVar(&o.HistoryDir, "history-dir", "", "keep the history on disk in this directory, so that a restart keeps it (default: in memory)")
	fs.StringVar(&o.HistorySync, "history-sync", store.DefaultSync, "with --history-dir: fsync every batch (always), every DURATION, or never (none: the OS writes back)")
	fs.StringArrayVar(&o.Peers, "peer", nil, "another Mles server, ws://host:port/ or wss://host:port/, repeatable: every channel with local members is linked to it, history resynced both ways (SPEC 1.5)")
	fs.StringVar(&o.ServerID, "server-id", "", "this server's name to its peers (default: host name and port)")
	fs.StringVar(&f.peerCA, "peer-ca", "", "PEM file of the CA certificates that wss:// peers are checked against (default: the system roots)")
	fs.BoolVar(&f.peerNoCert, "peer-insecure", false, "do not check the certificates of wss:// peers (tests only)")
	f.nats.define(fs, o)
	fs.StringVar(&f.admin, "admin", "", "serve /metrics, /healthz, /readyz, /varz and a status page on this address, e.g. 127.0.0.1:9090 (default: off)")
	fs.BoolVar(&f.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof/ on --admin")
	fs.StringVar(&f.logLevel, "log-level", "", "error, warn, info, debug or trace (default: RUST_LOG, else warn)")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&f.cpuProf, "cpuprofile", "", "write a Go CPU profile to this file until shutdown (for benchmarks)")
	f.defineCommandFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, fs, err
	}
	if f.version {
		return f, fs, nil // before the environment and the file, which may be broken
	}
	if err := f.applySources(fs, args); err != nil { // MLES_<NAME>, then --config
		return nil, fs, err
	}
	if f.pprof && f.admin == "" {
		return nil, fs, errors.New("--pprof needs --admin")
	}
	if f.zcacheMB < 0 {
		return nil, fs, fmt.Errorf("-C/--compression-cache %d: must be 0 (off) or positive", f.zcacheMB)
	}
	for _, t := range f.trusted {
		p, err := parsePrefix(t)
		if err != nil {
			return nil, fs, fmt.Errorf("--trusted-proxies %q: not an address or CIDR", t)
		}
		o.TrustedProxies = append(o.TrustedProxies, p)
	}
	if f.fileLimit < 1 {
		return nil, fs, fmt.Errorf("-f/--filelimit %d: must be at least 1", f.fileLimit)
	}
	// Checked here, before any startup log line. server.Options reads 0 as
	// "the default", but on the command line -l 0 is a mistake to name.
	if h := o.History; h < 1 || h > server.MaxHistory {
		return nil, fs, fmt.Errorf("-l/--limit %d: out of range 1..%d", h, server.MaxHistory)
	}
	if o.ServerID == "" {
		host, _ := os.Hostname()
		o.ServerID = net.JoinHostPort(host, strconv.Itoa(f.port))
	}
	// The one defaulting step and the one validation step, also before
	// any log line; the errors name the flag. New repeats both, which
	// changes nothing.
	o.SetDefaults()
	if err := o.Validate(); err != nil {
		return nil, fs, err
	}
	return f, fs, nil
}

// ensureHandshakeProc gives TLS handshakes a Go P of their own. An idle
// reactor sits in epoll_wait holding its P; with GOMAXPROCS equal to the
// reactor count (as under taskset on one core), a handshake goroutine made
// runnable by the loop then waits for the scheduler to take that P back,
// and the loop waits for the handshake: measured here, 1 reactor on 1 core
// took 1,900 TLS connect+join/s with GOMAXPROCS=1 and 2,250-2,340/s with 2,
// for the same CPU. An explicit GOMAXPROCS in the environment is left alone.
func ensureHandshakeProc(reactors int, plain bool) {
	if plain {
		return
	}
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		return
	}
	if runtime.GOMAXPROCS(0) < reactors+1 {
		runtime.GOMAXPROCS(reactors + 1)
	}
}

// logLevel maps --log-level, else RUST_LOG (mles-rs), to a slog level.
func logLevel(flag string) (slog.Level, error) {
	v := flag
	if v == "" {
		v = os.Getenv("RUST_LOG")
		// RUST_LOG may be a directive list such as "mles=debug,info"; take
		// the last bare or mles-scoped level.
		lvl := ""
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			if i := strings.IndexByte(d, '='); i >= 0 {
				if !strings.HasPrefix(d[:i], "mles") {
					continue
				}
				d = d[i+1:]
			}
			lvl = d
		}
		v = lvl
		if v == "" {
			v = "warn"
		}
	}
	switch strings.ToLower(v) {
	case "error":
		return slog.LevelError, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "info":
		return slog.LevelInfo, nil
	case "debug", "trace":
		return slog.LevelDebug, nil
	case "off":
		return slog.LevelError + 4, nil
	}
	return 0, fmt.Errorf("unknown log level %q", v)
}

func run(args []string) error {
	// Signals are caught from the start, before the server listens: one
	// sent as soon as the port accepts (a SIGHUP's default is to exit)
	// waits in the channel for serve.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sig)
	f, fs, err := parse(args)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if f.version {
		return printVersion(os.Stdout)
	}
	if f.printConfig {
		return printConfig(os.Stdout, fs, f)
	}
	lvl, err := logLevel(f.logLevel)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar) // SIGHUP may change it
	level.Set(lvl)
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, hopts)
	if f.logFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, hopts)
	} else if f.logFormat != "text" {
		return fmt.Errorf("unknown log format %q", f.logFormat)
	}
	limited := newLimitHandler(h) // so that no client can fill the disk
	defer limited.lim.flush()
	log := slog.New(limited)
	o := &f.opts
	o.Logger = log
	o.Addr = net.JoinHostPort(f.addr, strconv.Itoa(f.port))
	o.Key, o.KeySet = os.LookupEnv("MLES_KEY")
	o.Plain = f.plain
	if f.peerCA != "" || f.peerNoCert {
		o.PeerTLS = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.peerNoCert} //nolint:gosec // --peer-insecure is for tests
		if f.peerCA != "" {
			pem, err := os.ReadFile(f.peerCA)
			if err != nil {
				return fmt.Errorf("--peer-ca: %w", err)
			}
			o.PeerTLS.RootCAs = x509.NewCertPool()
			if !o.PeerTLS.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--peer-ca %s: no PEM certificate in it", f.peerCA)
			}
		}
	}
	if err := f.nats.apply(o); err != nil {
		return err
	}

	var files *tlsbridge.FileSource
	var acme *tlsbridge.ACME
	switch {
	case len(f.domains) > 0:
		if f.plain || f.tlsCert != "" || f.tlsKey != "" {
			return errors.New("-d/--domains (ACME) excludes --plain and --tls-cert/--tls-key")
		}
		dir := f.acmeDir
		if dir == "" && f.staging {
			dir = tlsbridge.LetsEncryptStaging
		}
		acme, err = tlsbridge.NewACME(tlsbridge.ACMEConfig{Domains: f.domains, Emails: f.emails, CacheDir: f.cacheDir, DirectoryURL: dir, Logger: log})
		if err != nil {
			return err
		}
		defer acme.Close()
		o.TLS = acme.TLSConfig()
		log.Warn("certificates from ACME", "domains", strings.Join(f.domains, ","), "directory", dir, "cache", f.cacheDir)
	case f.plain:
		if f.tlsCert != "" || f.tlsKey != "" {
			return errors.New("--plain and --tls-cert/--tls-key exclude each other")
		}
	case f.tlsCert != "" || f.tlsKey != "":
		if f.tlsCert == "" || f.tlsKey == "" {
			return errors.New("--tls-cert and --tls-key go together")
		}
		files, err = tlsbridge.NewFileSource(f.tlsCert, f.tlsKey)
		if err != nil {
			return err
		}
		o.TLS = tlsbridge.ServerConfig(files.GetCertificate)
	default:
		cert, err := tlsbridge.SelfSigned(nil)
		if err != nil {
			return err
		}
		log.Warn("no certificate configured: using an ephemeral self-signed certificate for localhost (clients must skip verification)")
		o.TLS = tlsbridge.ServerConfig(tlsbridge.Static(cert))
	}
	if f.ticketKeys != "" {
		if o.TLS == nil {
			return errors.New("--tls-ticket-keys needs TLS (not --plain)")
		}
		if err := tlsbridge.SetTicketKeys(o.TLS, f.ticketKeys); err != nil {
			return err
		}
	}

	var rules []www.ProxyRule
	for _, p := range f.proxies {
		rule, err := www.ParseProxy(p)
		if err != nil {
			return fmt.Errorf("-P/--proxy: %w", err)
		}
		rules = append(rules, rule)
	}
	var site http.Handler
	if f.wwwroot != "" {
		h, err := www.New(www.Config{Root: f.wwwroot, FileLimit: f.fileLimit, CompressionCache: int64(f.zcacheMB) << 20})
		if err != nil {
			return err
		}
		defer h.Close()
		site = h
	}
	if site != nil || len(rules) > 0 {
		o.HTTP = www.OnlyHosts(f.domains, www.Routes(rules, site))
	}

	srv, err := server.New(*o)
	if err != nil {
		return err
	}
	ensureHandshakeProc(o.Reactors, o.Plain)
	if f.cpuProf != "" {
		pf, err := os.Create(f.cpuProf)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = pf.Close()
		}()
	}
	if err := srv.Start(); err != nil {
		return err
	}
	if f.redirect {
		var h http.Handler = www.Redirect(f.port)
		if acme != nil {
			h = acme.HTTPHandler(h) // HTTP-01 challenges first
		}
		stop, err := serveRedirect(net.JoinHostPort(f.addr, strconv.Itoa(f.redirPort)), h, log)
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return err
		}
		defer stop()
	}
	if f.admin != "" {
		h := admin.New(admin.Config{Server: srv, Options: o, Pprof: f.pprof, Logger: log})
		stop, err := admin.Serve(f.admin, h, log)
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return err
		}
		defer stop() // after serve's drain: /readyz answers 503 through it
	}
	return serve(srv, f, log, sig, func() {
		reload(f, files, level, log)
		if f.ticketKeys != "" {
			if err := tlsbridge.SetTicketKeys(o.TLS, f.ticketKeys); err != nil {
				log.Error("ticket key reload failed; keeping the old keys", "err", err)
			} else {
				log.Warn("ticket keys reloaded")
			}
		}
	})
}

// serve waits for signals (SPEC 5): SIGHUP reloads; SIGTERM is the
// lame-duck drain (not ready, no new connections, the 1001 closes spread
// over --drain-time), then the exit; SIGUSR2 the same drain without the
// exit, for a rolling restart beside a new process (--reuseport); SIGINT
// shuts down at once.
func serve(srv *server.Server, f *flags, log *slog.Logger, sig <-chan os.Signal, onHUP func()) error {
	for s := range sig {
		switch s {
		case syscall.SIGHUP:
			onHUP()
			continue
		case syscall.SIGUSR2:
			log.Warn("SIGUSR2: draining, staying up", "drain-time", f.drainTime)
			go func() { _ = srv.Drain(context.Background(), f.drainTime) }()
			continue
		case syscall.SIGTERM:
			log.Warn("SIGTERM: draining, then exiting", "drain-time", f.drainTime)
			if err := srv.Drain(context.Background(), f.drainTime); err != nil {
				log.Warn("drain", "err", err)
			}
		default:
			log.Warn("signal received, shutting down", "signal", s.String())
		}
		break
	}
	return srv.Shutdown(context.Background())
}

// reload applies SIGHUP: the --config file's reloadable keys (the log
// level; reloadConfig) and the certificate files.
func reload(f *flags, files *tlsbridge.FileSource, level *slog.LevelVar, log *slog.Logger) {
	reloadConfig(f, level, log)
	if files == nil {
		log.Warn("SIGHUP: no certificate files to reload")
		return
	}
	if err := files.Reload(); err != nil {
		log.Error("certificate reload failed; keeping the old one", "err", err)
	} else {
		log.Warn("certificate reloaded")
	}
}

// serveRedirect runs the -r listener on addr with h (the redirect to https,
// behind ACME's HTTP-01 answers). The returned stop closes it.
func serveRedirect(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-r/--redirect: %w", err)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelInfo),
	}
	go func() { _ = hs.Serve(ln) }()
	log.Warn("redirecting to https", "addr", ln.Addr().String())
	return func() { _ = hs.Close() }, nil
}
