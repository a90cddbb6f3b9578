package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
	"golang.org/x/sys/unix"

	"github.com/mles/mles/ring"
	"github.com/mles/mles/server/store"
)

// Server is a Mles server: gnet event loops owning the sockets, a TLS bridge
// per connection, and a registry of channels whose rings carry the traffic.
//
// All methods are safe for concurrent use. Everything a connection owns is
// touched only on the event loop that owns the connection.
type Server struct {
	opts Options
	log  *slog.Logger
	ids  idHasher

	budget *ring.Budget
	reg    registry
	gate   *hsGate
	perIP  *ipLimiter   // nil without MaxConnsPerIP
	rate   *rateLimiter // nil without RateLimit
	http   *httpSide    // nil without Options.HTTP

	loopsMu sync.Mutex
	loopIdx map[gnet.EventLoop]*loop
	loops   atomic.Pointer[[]*loop] // copy-on-write list for the ticker

	lastIdleSweep time.Time    // owned by the ticker goroutine (OnTick)
	mem           *memReleaser // owned by the ticker goroutine (OnTick)

	eng     gnet.Engine
	addr    net.Addr
	started int64 // unix nanoseconds at New: conn.opened counts from it
	booted  chan struct{}
	running chan struct{} // closed by the first OnTick: every loop's poller is open
	runOnce sync.Once
	stopped chan struct{}
	runErr  error

	nextID  atomic.Uint64
	conns   atomic.Int64
	members atomic.Int64
	// peerSessions counts peer sessions exchanging messages; peers are
	// the parsed Options.Peers.
	peerSessions atomic.Int64
	peers        []*peerTarget
	// peerIDs are the server ids behind the targets (peerdedup.go).
	peerIDsMu sync.Mutex
	peerIDs   map[*peerTarget]string
	// store keeps the history on disk (--history-dir); nil without.
	store *store.Store
	// bus links the channels to a NATS cluster (--nats); nil without.
	bus        *natsBus
	handshakes atomic.Int64
	slow       atomic.Int64
	// refusedPerIP counts connections closed at accept by MaxConnsPerIP.
	refusedPerIP atomic.Int64
	refusedRate  atomic.Int64
	// refusedMax and refusedUntrusted count the other refusals at
	// accept: MaxConns, not a trusted proxy.
	refusedMax       atomic.Int64
	refusedUntrusted atomic.Int64
	// lameDuck is set when a drain starts, once the listeners are closed:
	// Ready reports false; members keep talking until their turn.
	// draining is set once every remaining connection is being closed:
	// nothing more is read from members.
	lameDuck atomic.Bool
	draining atomic.Bool
	// During shutdown (unix nanoseconds): members still behind at
	// shutdownData are closed 1008 instead of 1001; closing connections
	// wait for their output until shutdownEnd at most.
	shutdownData atomic.Int64
	shutdownEnd  atomic.Int64

	startOnce    sync.Once
	drainOnce    sync.Once
	drainErr     error
	shutdownOnce sync.Once
	shutdownErr  error
}

// handler receives gnet's event-loop callbacks (OnBoot, OnOpen, OnTraffic,
// OnClose, OnTick). They run on gnet's goroutines with the ownership rules
// of each callback, so they are not methods of Server, whose methods are
// safe for any caller.
type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

var _ gnet.EventHandler = (*handler)(nil)

// Stats is a snapshot of the server's counters.
type Stats struct {
	Conns         int64 // open connections, in any state
	Members       int64 // joined channel memberships
	Channels      int   // channels in the registry (history outlives members)
	Handshakes    int64 // TLS handshakes in flight
	SlowConsumers int64 // connections closed as slow consumers since start
	RefusedPerIP  int64 // connections refused by MaxConnsPerIP since start
	RefusedRate   int64 // connections refused by RateLimit since start
	RateAddrs     int   // client addresses (IPv6: /64s) RateLimit tracks now (seen in the last minute)
	PerIPAddrs    int   // client addresses (IPv6: /64s) counted by MaxConnsPerIP now
}

// New fills in opts' defaults, validates them and returns a Server that is
// not yet listening.
func New(opts Options) (*Server, error) {
	opts.SetDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.TLS == nil && !opts.Plain {
		return nil, ErrNoTLS
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		ids:     newIDHasher(),
		budget:  ring.NewBudget(opts.HistoryTotalBytes),
		gate:    newHSGate(opts.MaxHandshakes),
		perIP:   newIPLimiter(opts.MaxConnsPerIP),
		rate:    newRateLimiter(opts.RateLimit),
		loopIdx: make(map[gnet.EventLoop]*loop),
		booted:  make(chan struct{}),
		started: time.Now().UnixNano(),
		running: make(chan struct{}),
		mem:     newMemReleaser(opts.ReleaseQuiet),
		stopped: make(chan struct{}),
	}
	s.reg.m = make(map[string]*channel)
	s.peerIDs = make(map[*peerTarget]string)
	for _, u := range opts.Peers {
		t, _ := parsePeerURL(u) // Validate checked it
		s.peers = append(s.peers, t)
	}
	if err := s.openStore(); err != nil {
		return nil, err
	}
	s.reg.store = s.store
	if len(opts.NATS) > 0 {
		b, err := newNATSBus(s)
		if err != nil {
			return nil, err
		}
		s.bus = b
	}
	if opts.HTTP != nil {
		s.http = newHTTPSide(s)
	}
	empty := []*loop{}
	s.loops.Store(&empty)
	return s, nil
}

// Start starts the event loops and returns once the server listens and its
// loops run, or with the error that kept it from listening.
func (s *Server) Start() error {
	err := errors.New("server: already started")
	s.startOnce.Do(func() {
		err = nil
		go s.run()
		// gnet calls OnBoot before it opens the loops' pollers; the ticker
		// starts after them.
		select {
		case <-s.running:
			if s.http != nil {
				s.http.ln.addr = s.addr
				go func() { _ = s.http.srv.Serve(s.http.ln) }()
			}
		case <-s.stopped:
			err = s.runErr
			if err == nil {
				err = errors.New("server: stopped before listening")
			}
		}
	})
	return err
}

// Run starts the server and blocks until it stops.
func (s *Server) Run() error {
	if err := s.Start(); err != nil {
		return err
	}
	<-s.stopped
	return s.runErr
}

func (s *Server) run() {
	defer close(s.stopped)
	o := &s.opts
	s.runErr = gnet.Run(&handler{s: s}, "tcp://"+o.Addr,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(o.Reactors),
		gnet.WithReusePort(o.ReusePort),
		gnet.WithReuseAddr(true),
		gnet.WithLockOSThread(o.LockOSThread),
		gnet.WithReadBufferCap(o.ReadBufferCap),
		gnet.WithWriteBufferCap(o.WriteBufferCap),
		gnet.WithLoadBalancing(gnet.LeastConnections),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTicker(true),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithLogLevel(logging.DebugLevel), // filtered by s.log's own level
	)
}

// Addr returns the address the server listens on, with port 0 resolved. It
// is nil before Start returns.
func (s *Server) Addr() net.Addr { return s.addr }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Conns:         s.conns.Load(),
		Members:       s.members.Load(),
		Channels:      s.reg.len(),
		Handshakes:    s.handshakes.Load(),
		SlowConsumers: s.slow.Load(),
		RefusedPerIP:  s.refusedPerIP.Load(),
		PerIPAddrs:    s.perIP.len(),
		RefusedRate:   s.refusedRate.Load(),
		RateAddrs:     s.rate.len(),
	}
}

// OnBoot records the engine and the resolved listen address.
func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.s
	s.eng = eng
	s.addr = s.listenAddr()
	s.log.Warn("listening", "addr", s.addr.String(), "tls", !s.opts.Plain, "reactors", s.opts.Reactors)
	close(s.booted)
	return gnet.None
}

// listenAddr asks the kernel which address the listener got, so that port 0
// in tests resolves to the real port.
func (s *Server) listenAddr() net.Addr {
	fallback, _ := net.ResolveTCPAddr("tcp", s.opts.Addr)
	fd, err := s.eng.Dup()
	if err != nil {
		return fallback
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fallback
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return fallback
}

// OnTick runs on gnet's ticker goroutine: it asks every loop to sweep its
// connections (deadlines, liveness, paused members) and drops channels
// idle past ChannelIdle.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	s := h.s
	s.runOnce.Do(func() { close(s.running) })
	for _, l := range *s.loops.Load() {
		_ = l.el.Execute(context.Background(), l.sweepRun)
	}
	// Dropping idle channels walks the whole registry under its lock, so it
	// runs at most once a minute (more often only for short test idles).
	now := time.Now()
	if now.Sub(s.lastIdleSweep) >= min(time.Minute, s.opts.ChannelIdle/2) {
		s.lastIdleSweep = now
		s.reg.sweepIdle(now.Add(-s.opts.ChannelIdle).UnixNano())
	}
	s.mem.tick(now, s.nextID.Load())
	s.rate.prune(now)
	return s.opts.TickInterval, gnet.None
}

// loopFor returns the state of the event loop el, creating it on first use.
func (s *Server) loopFor(el gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	if l, ok := s.loopIdx[el]; ok {
		return l
	}
	l := newLoop(s, len(s.loopIdx), el)
	s.loopIdx[el] = l
	next := append(append([]*loop(nil), *s.loops.Load()...), l)
	s.loops.Store(&next)
	return l
}
