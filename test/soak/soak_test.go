//go:build soak

// Package soak_test runs the mles binary for a long time under mixed
// traffic and checks that it loses nothing and leaks nothing (make soak).
//
// The server runs as a child process (TLS with its ephemeral self-signed
// certificate); the clients, gorilla/websocket over loopback, run in the
// test process. For the whole duration, all at once:
//
//   - healthy traffic: on each of -soak.channels channels a publisher sends
//     sequence-numbered binary messages of 64-1024 bytes at -soak.rate per
//     second to -soak.receivers receivers, each of which checks that every
//     message after its first (history included) is the previous one plus
//     one, with the right size and content; a "hot" channel carries 2-6 KiB
//     messages at 100 per second to 5 receivers;
//   - churn: -soak.churners members join a random channel, stay 1-20 s,
//     check they got the channel's traffic up to their leave, and leave;
//   - slow consumers: every few minutes -soak.slow members join the hot
//     channel with a 4 KiB receive buffer and stop reading; the server must
//     close them (close 1008 "slow consumer", --max-pending 256 KiB,
//     --slow-grace 2 s) while the receivers on that channel lose nothing;
//   - reconnect storms: every few minutes -soak.storm members (10 a channel)
//     are closed at once and reconnect at once.
//
// Every 10 s the test samples the server's RSS and open descriptors. At the
// end it stops the publishers, waits for every receiver to reach the last
// sequence, checks exact counts, checks that the server still serves,
// sends SIGTERM and expects close 1001 on every connection and a clean
// exit; then it asserts RSS and descriptors stayed flat and prints the
// figures.
package soak_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

var (
	flagDuration  = flag.Duration("soak.duration", 30*time.Minute, "how long the mixed traffic runs")
	flagChannels  = flag.Int("soak.channels", 50, "channels with a publisher and healthy receivers")
	flagReceivers = flag.Int("soak.receivers", 10, "healthy receivers per channel")
	flagRate      = flag.Int("soak.rate", 20, "messages per second of each channel's publisher")
	flagChurners  = flag.Int("soak.churners", 150, "members that join, stay 1-20 s and leave, over and over")
	flagStorm     = flag.Int("soak.storm", 500, "connections each reconnect storm closes and reopens at once")
	flagSlow      = flag.Int("soak.slow", 4, "slow consumers per wave")
	// The server queues 1008 behind the backlog that made the member slow
	// and gnet drops unsent output when it closes, so a reader that never
	// drains sees the TCP connection end without the close frame (README,
	// Reliability). The default checks what the server guarantees.
	flagSlowClose = flag.Bool("soak.slow-close-frame", false,
		"require close 1008 on the wire for every slow consumer; when false a missing close frame is only reported "+
			"(the server's side of the connection must close either way)")
	flagSeed = flag.Uint64("soak.seed", 0, "random seed for churn (0: from the clock)")
)

// Fixed parts of the setup.
const (
	maxConns      = 3000 // test-side budget; the process fd limit is 20,000
	hotRate       = 100  // messages per second on the hot channel
	hotReceivers  = 5
	maxPending    = 256 << 10
	slowGrace     = 2 * time.Second
	sampleEvery   = 10 * time.Second
	rssSlackKiB   = 16 << 10 // absolute slack of the RSS check
	fdSlack       = 32       // |server fds - connections held - idle fds| during traffic
	fdEndSlack    = 8        // the same once traffic stopped
	historyLimit  = 200      // --limit
	joinParallel  = 32       // concurrent dials while setting up
	reportSamples = 6        // samples per printed row: one a minute

	// ioWait bounds a write, a close handshake or a catch-up before it is
	// a failure. Generous: other work on the 2 cores can starve the test
	// process for seconds, and a starved client is no server bug (the
	// report shows the process's longest stall and the machine load).
	ioWait = 30 * time.Second
)

// expectedWarnings are the server's warn lines of a normal run: its
// certificate choice, its listen address and the SIGTERM.
var expectedWarnings = []string{`msg="no certificate configured`, `msg=listening`, `msg="signal received`}

// config is the soak's shape, from the flags.
type config struct {
	duration        time.Duration
	channels        int
	receivers       int
	rate            int
	churners        int
	storm           int
	slowPerWave     int
	strictSlowClose bool
	seed            uint64

	stormEvery, slowEvery time.Duration
	slowWait              time.Duration // from a slow consumer's join to the server's close
}

func newConfig(t *testing.T) config {
	c := config{
		duration:        *flagDuration,
		channels:        *flagChannels,
		receivers:       *flagReceivers,
		rate:            *flagRate,
		churners:        *flagChurners,
		storm:           *flagStorm,
		slowPerWave:     *flagSlow,
		strictSlowClose: *flagSlowClose,
		seed:            *flagSeed,
		slowWait:        2 * time.Minute,
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	// Storms and slow waves every few minutes over 30 minutes (5 storms,
	// 10 waves), at least a few in a short run.
	c.stormEvery = min(max(c.duration/6, 30*time.Second), 5*time.Minute)
	c.slowEvery = min(max(c.duration/10, 20*time.Second), 3*time.Minute)
	if c.channels < 1 || c.receivers < 1 || c.rate < 1 || c.rate > 1000 || c.churners < 0 || c.storm < 0 || c.slowPerWave < 0 {
		t.Fatalf("bad soak flags: %+v", c)
	}
	if n := c.peakPlanned(); n > maxConns {
		t.Fatalf("the flags plan up to %d connections, more than the %d budget", n, maxConns)
	}
	return c
}

// peakPlanned is the most connections the test opens at once (slow waves
// may overlap twice).
func (c config) peakPlanned() int {
	return c.channels*(1+c.receivers) + 1 + hotReceivers + c.storm + c.churners + 2*c.slowPerWave + 3
}

func (c config) serverArgs() []string {
	return []string{
		"--log-level", "info", // slow consumer closes are logged at info
		"--limit", strconv.Itoa(historyLimit),
		"--max-pending", strconv.Itoa(maxPending),
		"--slow-grace", slowGrace.String(),
		"--drain-timeout", "5s",
	}
}

// run is the state of one soak.
type run struct {
	t   *testing.T
	cfg config
	srv *serverProc
	url string

	rootCtx context.Context // ends on cleanup: unblocks every dial
	cancel  context.CancelFunc

	regular []*channel
	hot     *channel
	all     []*channel

	fails *failures

	held      atomic.Int64 // client TCP connections open now
	dialing   atomic.Int64 // TCP connects in progress: the server may have accepted them
	retries   atomic.Int64 // joins repeated after a failed attempt
	peak      atomic.Int64
	joins     atomic.Int64 // headers sent, all kinds
	delivered atomic.Uint64
	lost      atomic.Uint64 // sequences missing, summed over receivers
	reordered atomic.Uint64
	latency   latencies
	stall     atomic.Int64 // the test process's longest scheduling delay, nanoseconds

	liveMu  sync.Mutex
	live    map[*session]struct{} // sessions whose connection may be open
	readers sync.WaitGroup

	pubs    []*session
	pubWG   sync.WaitGroup
	healthy []*session // healthy receivers of all channels, hot included

	stormMu   sync.Mutex
	stormers  []*session // current session of each storm member
	storming  atomic.Bool
	inTraffic atomic.Bool // the sampler marks its samples with it
	stormsMu  sync.Mutex
	storms    []stormStat

	actWG        sync.WaitGroup // churners and schedulers
	churnJoins   atomic.Int64
	churnLeaves  atomic.Int64
	resumes      atomic.Int64
	resumedNoGap atomic.Int64

	slowWG       sync.WaitGroup
	slowLaunched atomic.Int64
	slowClosed   atomic.Int64 // the server's side closed
	slow1008     atomic.Int64
	slowMu       sync.Mutex
	slow         []slowResult
	tcpMu        sync.Mutex
	tcpEst       map[int]bool // serverEstablished's last reading (read-only once stored)
	tcpAt        time.Time

	sampler *sampler
	t0      time.Time     // traffic start
	ran     time.Duration // how long the traffic phase ran
	aborted bool          // ended early by a failure

	end endFigures
}

// endFigures are the results of the end phase.
type endFigures struct {
	published   uint64
	verified    int // receiver sessions checked for exact counts
	exact       int // of which got exactly every message to the last
	serving     error
	sigterm     int // connections open at SIGTERM
	got1001     int
	not1001     []string
	exitTook    time.Duration
	exitErr     error
	idleFDs     int // server fds with no client
	endFDs      int // server fds minus connections held, after traffic
	logSlow     int
	logErrors   int
	oddWarnings []string // warnings other than the expected start and stop lines
}

func (r *run) track(s *session) {
	r.liveMu.Lock()
	r.live[s] = struct{}{}
	r.liveMu.Unlock()
}

func (r *run) untrack(s *session) {
	r.liveMu.Lock()
	delete(r.live, s)
	r.liveMu.Unlock()
}

func (r *run) liveSessions() []*session {
	r.liveMu.Lock()
	defer r.liveMu.Unlock()
	out := make([]*session, 0, len(r.live))
	for s := range r.live {
		out = append(out, s)
	}
	return out
}

func TestSoak(t *testing.T) {
	cfg := newConfig(t)
	bin := buildServer(t)
	srv := startServer(t, bin, mlestest.FreePort(t), cfg.serverArgs())

	r := &run{
		t:     t,
		cfg:   cfg,
		srv:   srv,
		url:   "wss://" + srv.addr() + "/",
		fails: newFailures(),
		live:  make(map[*session]struct{}),
	}
	r.rootCtx, r.cancel = context.WithCancel(context.Background())
	// Cleanup runs before the server's (LIFO): every client goes first.
	t.Cleanup(r.cleanup)

	idle, err := readProc(srv.pid)
	if err != nil {
		t.Fatalf("sample server: %v", err)
	}
	r.end.idleFDs = idle.fds
	t.Logf("server idle: RSS %d KiB, %d fds; seed %d; storms every %v, slow waves every %v",
		idle.rssKiB, idle.fds, cfg.seed, cfg.stormEvery, cfg.slowEvery)

	pubCtx, stopPubs := context.WithCancel(r.rootCtx)
	defer stopPubs()
	r.setup(pubCtx)
	r.traffic()
	stopPubs()
	r.finish()
	r.report()
	r.checks()
}

// setup creates the channels, their publishers, the healthy receivers and
// the storm members.
func (r *run) setup(pubCtx context.Context) {
	t, cfg := r.t, r.cfg
	start := time.Now()
	for i := range cfg.channels {
		r.regular = append(r.regular, &channel{
			name: fmt.Sprintf("soak-%02d", i), id: uint32(i + 1), rate: cfg.rate, minSize: 64, maxSize: 1024,
		})
	}
	r.hot = &channel{name: "soak-hot", id: 1000, rate: hotRate, minSize: 2 << 10, maxSize: 6 << 10}
	r.all = append(append([]*channel(nil), r.regular...), r.hot)

	pubs, err := r.joinAll(r.rootCtx, len(r.all), joinParallel, func(i int) (string, *channel, kind) {
		return "pub-" + r.all[i].name, r.all[i], kindPublisher
	})
	if err != nil {
		t.Fatalf("publishers: %v", err)
	}
	r.pubs = pubs
	for i, s := range pubs {
		r.pubWG.Add(1)
		go r.publish(pubCtx, r.all[i], s)
	}

	nHealthy := cfg.channels*cfg.receivers + hotReceivers
	r.healthy, err = r.joinAll(r.rootCtx, nHealthy, joinParallel, func(i int) (string, *channel, kind) {
		if i < cfg.channels*cfg.receivers {
			ch := r.regular[i%cfg.channels]
			return fmt.Sprintf("rcv%02d.%s", i/cfg.channels, ch.name), ch, kindHealthy
		}
		return fmt.Sprintf("rcv%02d.%s", i-cfg.channels*cfg.receivers, r.hot.name), r.hot, kindHealthy
	})
	if err != nil {
		t.Fatalf("healthy receivers: %v", err)
	}
	r.stormers, err = r.joinAll(r.rootCtx, cfg.storm, joinParallel, func(i int) (string, *channel, kind) {
		return fmt.Sprintf("storm%03d.g0", i), r.regular[i%cfg.channels], kindStorm
	})
	if err != nil {
		t.Fatalf("storm members: %v", err)
	}
	t.Logf("setup: %d publishers, %d healthy receivers, %d storm members joined in %v",
		len(r.pubs), len(r.healthy), len(r.stormers), time.Since(start).Round(time.Millisecond))
}

// traffic runs churn, storms and slow consumers next to the publishers
// for the duration (or until the first failure) and stops them.
func (r *run) traffic() {
	cfg := r.cfg
	r.t0 = time.Now()
	r.sampler = startSampler(r)
	actCtx, stop := context.WithCancel(r.rootCtx)
	defer stop()

	for i := range cfg.churners {
		rng := rand.New(rand.NewPCG(cfg.seed, uint64(i)))
		r.actWG.Add(1)
		go r.churner(actCtx, i, rng)
	}
	if cfg.storm > 0 {
		r.actWG.Add(1)
		go func() {
			defer r.actWG.Done()
			every(actCtx, cfg.stormEvery, cfg.stormEvery, func(k int) {
				st := r.storm(k)
				r.stormsMu.Lock()
				r.storms = append(r.storms, st)
				r.stormsMu.Unlock()
				r.t.Logf("storm %d at %v: %d connections closed in %v, rejoined in %v (%d retries)",
					k+1, time.Since(r.t0).Round(time.Second), st.conns, st.closeTook.Round(time.Millisecond),
					st.joinTook.Round(time.Millisecond), st.retries)
			})
		}()
	}
	if cfg.slowPerWave > 0 {
		r.actWG.Add(1)
		go func() {
			defer r.actWG.Done()
			every(actCtx, cfg.slowEvery/2, cfg.slowEvery, func(k int) {
				// On the hot channel, next to healthy receivers that must
				// lose nothing. Not on the ordinary channels: the server's
				// socket buffer on loopback grows to about 2.5 MiB, which
				// 11 KB/s takes minutes to fill, so the liveness ping
				// (3 x 24 s) closes a stalled member there first (1001).
				for j := range cfg.slowPerWave {
					r.slowWG.Add(1)
					go r.slowConsumer(fmt.Sprintf("slow%02d.%d", k, j), r.hot)
				}
			})
		}()
	}

	timer := time.NewTimer(cfg.duration)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.fails.first:
		r.aborted = true
		r.t.Logf("traffic phase ended early at %v by a failure", time.Since(r.t0).Round(time.Second))
	}
	r.ran = time.Since(r.t0)
	r.inTraffic.Store(false)
	stop()
	if err := waitGroup(&r.actWG, 3*time.Minute); err != nil {
		r.fails.add("churn and storms did not stop: %v", err)
	}
	if err := waitGroup(&r.slowWG, cfg.slowWait+time.Minute); err != nil {
		r.fails.add("slow consumers did not finish: %v", err)
	}
}

// finish stops the publishers, checks every receiver's exact count, checks
// that the server still serves, and shuts it down with SIGTERM.
func (r *run) finish() {
	if err := waitGroup(&r.pubWG, 30*time.Second); err != nil {
		r.fails.add("publishers did not stop: %v", err)
	}
	for _, ch := range r.all {
		r.end.published += ch.sent.Load()
	}

	// Every receiver reaches its publisher's last message, and got exactly
	// the messages from its first to that one.
	rcv := append([]*session(nil), r.healthy...)
	r.stormMu.Lock()
	for _, s := range r.stormers {
		if s != nil {
			rcv = append(rcv, s)
		}
	}
	r.stormMu.Unlock()
	if err := caughtUp(rcv, time.Minute, func(s *session) uint64 { return s.ch.sent.Load() }); err != nil {
		r.fails.add("receivers did not get the publishers' last messages: %v", err)
	}
	for _, s := range rcv {
		s.checkJoin()
		if s.kind == kindStorm {
			r.noteResume(s)
		}
		first, last, got, sent := s.first.Load(), s.last.Load(), s.got.Load(), s.ch.sent.Load()
		if last != sent || first == 0 || got != last-first+1 {
			s.fail("exact count: publisher sent seqs up to %d; received %d messages, seqs %d..%d (want %d)",
				sent, got, first, last, sent-first+1)
		} else if !s.broken.Load() {
			r.end.exact++
		}
		r.end.verified++
	}

	r.end.serving = r.probe()

	// Descriptors back to idle plus the connections still held.
	err := poll.Until(r.rootCtx, 20*time.Second, 100*time.Millisecond, func() error {
		ps, err := readProc(r.srv.pid)
		if err != nil {
			return err
		}
		r.end.endFDs = ps.fds - int(r.held.Load())
		if d := r.end.endFDs - r.end.idleFDs; d > fdEndSlack || d < -fdEndSlack {
			return fmt.Errorf("server fds %d - connections held %d = %d, idle %d", ps.fds, r.held.Load(), r.end.endFDs, r.end.idleFDs)
		}
		return nil
	})
	if err != nil {
		r.fails.add("descriptors after traffic: %v", err)
	}
	r.sampler.stop()

	// SIGTERM: every open connection gets 1001, the process exits.
	open := r.liveSessions()
	r.end.sigterm = len(open)
	r.end.logSlow = r.srv.log.count(logSlow)
	termStart := time.Now()
	if err := r.srv.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.fails.add("SIGTERM: %v", err)
	}
	waitDone := func(ss []*session, d time.Duration) error {
		return poll.Until(r.rootCtx, d, 50*time.Millisecond, func() error {
			for _, s := range ss {
				select {
				case <-s.done:
				default:
					return fmt.Errorf("%s %s still open", s.kind, s.uid)
				}
			}
			return nil
		})
	}
	if err := waitDone(open, 20*time.Second); err != nil {
		r.fails.add("after SIGTERM: %v", err)
	}
	for _, s := range open {
		select {
		case <-s.done:
		default:
			continue
		}
		if websocket.IsCloseError(s.endErr, websocket.CloseGoingAway) {
			r.end.got1001++
		} else if len(r.end.not1001) < 5 {
			r.end.not1001 = append(r.end.not1001, fmt.Sprintf("%s %s: %s", s.kind, s.uid, closeCode(s.endErr)))
		}
	}
	select {
	case <-r.srv.Done:
		r.end.exitTook = time.Since(termStart)
		r.end.exitErr = r.srv.Err
	case <-time.After(15 * time.Second):
		r.end.exitTook = time.Since(termStart)
		r.end.exitErr = fmt.Errorf("still running %v after SIGTERM", r.end.exitTook.Round(time.Millisecond))
	}
	r.end.logErrors = r.srv.log.count(logError)
	for _, w := range r.srv.log.grep(logWarn, 50) {
		expected := false
		for _, e := range expectedWarnings {
			expected = expected || strings.Contains(w, e)
		}
		if !expected {
			r.end.oddWarnings = append(r.end.oddWarnings, w)
		}
	}
}

// probe checks that the server still serves after the soak: a new member
// of a soak channel gets its history up to the last message, and two new
// members of a new channel exchange messages, with no echo.
func (r *run) probe() error {
	ch := r.regular[0]
	s, err := r.join(r.rootCtx, "probe-history", ch, kindProbe, joinOpts{})
	if err != nil {
		return err
	}
	s.start()
	if err := caughtUp([]*session{s}, ioWait, func(*session) uint64 { return ch.sent.Load() }); err != nil {
		return fmt.Errorf("history after the soak: %w", err)
	}
	if f, want := s.first.Load(), ch.sent.Load(); want > historyLimit && f+historyLimit <= want {
		return fmt.Errorf("history replay started at seq %d, more than --limit %d before the last %d", f, historyLimit, want)
	}
	if err := s.leave(true); err != nil {
		return fmt.Errorf("history probe: %w", err)
	}

	pc := &channel{name: "soak-probe", id: 4242, rate: 1, minSize: 64, maxSize: 64}
	b, err := r.join(r.rootCtx, "probe-b", pc, kindProbe, joinOpts{})
	if err != nil {
		return err
	}
	b.start()
	a, err := r.join(r.rootCtx, "probe-a", pc, kindPublisher, joinOpts{})
	if err != nil {
		return err
	}
	a.start()
	for seq := uint64(1); seq <= 2; seq++ {
		if err := a.ws.WriteMessage(websocket.BinaryMessage, pc.payload(nil, seq)); err != nil {
			return fmt.Errorf("probe publish: %w", err)
		}
		pc.sent.Store(seq)
	}
	if err := caughtUp([]*session{b}, ioWait, func(*session) uint64 { return 2 }); err != nil {
		return fmt.Errorf("new channel: %w", err)
	}
	if err := b.leave(true); err != nil {
		return fmt.Errorf("probe-b: %w", err)
	}
	if err := a.leave(true); err != nil {
		return fmt.Errorf("probe-a: %w", err)
	}
	if a.broken.Load() || b.broken.Load() || s.broken.Load() {
		return fmt.Errorf("a probe failed its checks (see the failures)")
	}
	return nil
}

// cleanup closes every client connection and waits for the goroutines:
// the test leaves nothing running, also when it failed half-way.
func (r *run) cleanup() {
	r.cancel()
	for _, s := range r.liveSessions() {
		s.ws.Close()
	}
	if r.sampler != nil {
		r.sampler.stop()
	}
	for _, wg := range []*sync.WaitGroup{&r.pubWG, &r.actWG, &r.slowWG, &r.readers} {
		if err := waitGroup(wg, time.Minute); err != nil {
			r.t.Errorf("cleanup: %v", err)
		}
	}
}

// waitGroup waits for wg at most d.
func waitGroup(wg *sync.WaitGroup, d time.Duration) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(d):
		return fmt.Errorf("goroutines still running after %v", d)
	}
}
