package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mles/mles/server"
)

// Config configures the handler New returns.
type Config struct {
	// Server is the server whose figures are served: a *server.Server.
	// Required.
	Server Source
	// Version is the build shown by /varz and mles_build_info. Default:
	// the main module's version from the build information, with its VCS
	// revision when known.
	Version string
	// Options are the server's options, shown by /varz with their
	// defaults filled in: only the listed settings (varzOptions), never
	// the key of auth tokens, the TLS configuration or the logger. Nil
	// shows none.
	Options *server.Options
	// Pprof serves net/http/pprof under /debug/pprof/. Default off: 404.
	Pprof bool
	// Start is when the server started, for /varz's uptime. Default: when
	// New was called.
	Start time.Time
	// Logger receives the errors of /metrics. Default slog.Default().
	Logger *slog.Logger
}

// ErrNoServer is New's panic value for a Config without a Server: a
// programming error, caught at startup.
var ErrNoServer = errors.New("admin: Config.Server is nil")

// New returns the admin handler: /metrics, /healthz, /readyz, /varz, the
// status page at / and, with Config.Pprof, /debug/pprof/. It panics with
// ErrNoServer when cfg.Server is nil. The handler is safe for concurrent
// use; each /metrics or /varz request takes one Metrics snapshot.
func New(cfg Config) http.Handler {
	if cfg.Server == nil {
		panic(ErrNoServer)
	}
	if cfg.Version == "" {
		cfg.Version = buildVersion()
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	v := newVarz(cfg)
	// A registry of this handler's own: servers in one process (tests)
	// do not clash, and nothing registered globally shows up here.
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCollector(cfg.Server, cfg.Version, v.reactors),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Server.Ready() {
			plain(w, http.StatusOK, "ok")
			return
		}
		plain(w, http.StatusServiceUnavailable, "not ready")
	})
	mux.Handle("GET /varz", v)
	mux.HandleFunc("GET /{$}", statusPage)
	if cfg.Pprof {
		// On this mux, not http.DefaultServeMux (which the pprof
		// package's init fills but nothing here serves).
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// plain writes a short text answer that no cache keeps.
func plain(w http.ResponseWriter, code int, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, text)
}

// buildVersion is the main module's version and VCS revision.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// Timeouts of the listener Serve runs: a scrape or page is small, and a
// CPU profile or trace asks for its own duration (30 s by default), which
// the write timeout must leave room for.
const (
	readHeaderTimeout = 10 * time.Second
	writeTimeout      = 5 * time.Minute
	idleTimeout       = 2 * time.Minute
	// stopWait bounds how long stop waits for requests in flight.
	stopWait = 2 * time.Second
)

// Serve listens on addr (host:port) and serves h there from a goroutine
// of its own. stop closes the listener, lets the requests in flight
// finish for up to two seconds and closes what is left; it may be called
// once. The listen error names --admin, for the command line.
func Serve(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--admin: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelInfo),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener", "err", err)
		}
	}()
	log.Warn("admin listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopWait)
		defer cancel()
		if hs.Shutdown(ctx) != nil {
			_ = hs.Close()
		}
		<-done
	}, nil
}
