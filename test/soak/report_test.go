//go:build soak

package soak_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sample is one reading of the server process next to the test's state.
type sample struct {
	at        time.Duration // since the traffic started
	rssKiB    int64
	fds       int
	held      int64 // client connections open, read just after fds
	heldLo    int64 // the least and most connections open while fds was read
	heldHi    int64 // (plus the connects in progress, which the server may have accepted)
	storming  bool  // a reconnect storm was in progress
	traffic   bool  // taken during the traffic phase
	delivered uint64
	joins     int64
	load      float64 // the machine's 1-minute load average: other work competes for the 2 cores
}

// sampler reads the server every sampleEvery until stopped, and once more
// when stopped.
type sampler struct {
	r       *run
	mu      sync.Mutex
	samples []sample
	quit    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

func startSampler(r *run) *sampler {
	s := &sampler{r: r, quit: make(chan struct{})}
	r.inTraffic.Store(true)
	s.wg.Add(2)
	go s.loop()
	go s.watchStalls()
	return s
}

// watchStalls records the test process's longest scheduling delay: how
// late a 100 ms ticker fires. A long one means the clients themselves
// stalled (CPU starvation), which a loss or timeout must be read with.
func (s *sampler) watchStalls() {
	defer s.wg.Done()
	const period = 100 * time.Millisecond
	tick := time.NewTicker(period)
	defer tick.Stop()
	prev := time.Now()
	for {
		select {
		case <-s.quit:
			return
		case now := <-tick.C:
			if late := now.Sub(prev) - period; int64(late) > s.r.stall.Load() {
				s.r.stall.Store(int64(late))
			}
			prev = now
		}
	}
}

func (s *sampler) loop() {
	defer s.wg.Done()
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	s.take()
	for {
		select {
		case <-s.quit:
			s.take()
			return
		case <-tick.C:
			s.take()
		}
	}
}

func (s *sampler) take() {
	r := s.r
	before, dialing := r.held.Load(), r.dialing.Load()
	fds, err := countFDs(r.srv.pid)
	after := r.held.Load()
	dialing = max(dialing, r.dialing.Load())
	var ps procStats
	if err == nil {
		ps, err = readProc(r.srv.pid)
	}
	if err != nil {
		r.fails.add("sample the server process: %v", err)
		return
	}
	smp := sample{
		at:        time.Since(r.t0),
		rssKiB:    ps.rssKiB,
		fds:       fds,
		held:      after,
		heldLo:    min(before, after),
		heldHi:    max(before, after) + dialing,
		storming:  r.storming.Load(),
		traffic:   r.inTraffic.Load(),
		delivered: r.delivered.Load(),
		joins:     r.joins.Load(),
		load:      loadAvg(),
	}
	s.mu.Lock()
	s.samples = append(s.samples, smp)
	s.mu.Unlock()
}

// stop takes the last sample and ends the sampler; it may be called twice.
func (s *sampler) stop() {
	s.once.Do(func() { close(s.quit) })
	s.wg.Wait()
}

// loadAvg returns the 1-minute load average, or -1.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// rssCheck is the flat-RSS rule: after a warm-up of a fifth of the run, the
// largest RSS of the last third is at most 25% above the largest of the
// first third, plus rssSlackKiB.
type rssCheck struct {
	firstMax, lastMax, limit int64
	firstN, lastN            int
}

func checkRSS(samples []sample, ran time.Duration) rssCheck {
	warm := ran / 5
	span := ran - warm
	a, b := warm+span/3, warm+2*span/3
	var c rssCheck
	for _, s := range samples {
		if !s.traffic || s.at < warm {
			continue
		}
		switch {
		case s.at < a:
			c.firstN++
			c.firstMax = max(c.firstMax, s.rssKiB)
		case s.at >= b:
			c.lastN++
			c.lastMax = max(c.lastMax, s.rssKiB)
		}
	}
	c.limit = c.firstMax*5/4 + rssSlackKiB
	return c
}

// fdCheck is the flat-descriptor rule: outside storms, the server's fds
// minus the connections the test holds stay within fdSlack of the idle
// server's fds. Connections opened or closed while the fds were counted
// (a burst of churn) count either way.
type fdCheck struct {
	minDiff, maxDiff int
	n                int
	worst            sample
}

func checkFDs(samples []sample, idle int) fdCheck {
	c := fdCheck{minDiff: 1 << 30, maxDiff: -1 << 30}
	worst := -1
	for _, s := range samples {
		if !s.traffic || s.storming {
			continue
		}
		d := 0
		if hi := s.fds - int(s.heldLo) - idle; hi < 0 {
			d = hi
		} else if lo := s.fds - int(s.heldHi) - idle; lo > 0 {
			d = lo
		}
		c.n++
		c.minDiff, c.maxDiff = min(c.minDiff, d), max(c.maxDiff, d)
		if abs(d) > worst {
			worst, c.worst = abs(d), s
		}
	}
	return c
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// report logs the figures and prints them to stdout as a table.
func (r *run) report() {
	cfg := r.cfg
	samples := r.sampler.all()
	var rssMin, rssMax int64 = 1 << 62, 0
	fdMin, fdMax := 1<<30, 0
	loadMax := 0.0
	for _, s := range samples {
		rssMin, rssMax = min(rssMin, s.rssKiB), max(rssMax, s.rssKiB)
		fdMin, fdMax = min(fdMin, s.fds), max(fdMax, s.fds)
		loadMax = max(loadMax, s.load)
	}
	if len(samples) == 0 {
		rssMin, fdMin = 0, 0
	}
	r.stormsMu.Lock()
	storms := append([]stormStat(nil), r.storms...)
	r.stormsMu.Unlock()
	var stormConns int
	var closeMax, joinMax time.Duration
	var retries int64
	for _, st := range storms {
		stormConns = max(stormConns, st.conns)
		closeMax, joinMax = max(closeMax, st.closeTook), max(joinMax, st.joinTook)
		retries += st.retries
	}
	r.slowMu.Lock()
	slow := append([]slowResult(nil), r.slow...)
	r.slowMu.Unlock()
	var slowMin, slowMax time.Duration
	codes := map[string]int{}
	for i, s := range slow {
		if i == 0 || s.closedAfter < slowMin {
			slowMin = s.closedAfter
		}
		slowMax = max(slowMax, s.closedAfter)
		codes[s.code]++
	}
	var codeList []string
	for c, n := range codes {
		codeList = append(codeList, fmt.Sprintf("%d x %s", n, c))
	}
	rc := checkRSS(samples, r.ran)
	fc := checkFDs(samples, r.end.idleFDs)
	fdRange := "no sample"
	if fc.n > 0 {
		fdRange = fmt.Sprintf("%d..%d", fc.minDiff, fc.maxDiff)
	}
	nfail, _ := r.fails.snapshot()
	exit := "exit 0"
	if r.end.exitErr != nil {
		exit = r.end.exitErr.Error()
	}
	serving := "yes"
	if r.end.serving != nil {
		serving = "NO: " + r.end.serving.Error()
	}
	aborted := ""
	if r.aborted {
		aborted = " (ended early by a failure)"
	}

	rows := [][2]string{
		{"duration", fmt.Sprintf("%v of %v%s", r.ran.Round(time.Second), cfg.duration, aborted)},
		{"channels", fmt.Sprintf("%d x %d msg/s, %d receivers each; hot: %d msg/s, %d receivers",
			cfg.channels, cfg.rate, cfg.receivers, hotRate, hotReceivers)},
		{"peak connections", fmt.Sprint(r.peak.Load())},
		{"published", fmt.Sprintf("%d messages", r.end.published)},
		{"deliveries", fmt.Sprintf("%d verified; %d of %d receivers exact to the last seq", r.delivered.Load(), r.end.exact, r.end.verified)},
		{"latency", fmt.Sprintf("live deliveries p50 < %v, p99 < %v, max %v; test process stalled up to %v",
			r.latency.quantile(0.5), r.latency.quantile(0.99), time.Duration(r.latency.max.Load()).Round(time.Millisecond),
			time.Duration(r.stall.Load()).Round(time.Millisecond))},
		{"losses", fmt.Sprintf("%d lost, %d reordered", r.lost.Load(), r.reordered.Load())},
		{"joins/leaves", fmt.Sprintf("%d joins in all (%d retried); churn %d joins, %d leaves",
			r.joins.Load(), r.retries.Load(), r.churnJoins.Load(), r.churnLeaves.Load())},
		{"storms", fmt.Sprintf("%d x %d conns; closed in <= %v, rejoined in <= %v, %d retries; %d of %d resumed without a gap",
			len(storms), stormConns, closeMax.Round(time.Millisecond), joinMax.Round(time.Millisecond), retries,
			r.resumedNoGap.Load(), r.resumes.Load())},
		{"slow consumers", fmt.Sprintf("%d launched, %d closed by the server (%d logged) after %v..%v; 1008 on the wire: %d; client saw: %s",
			r.slowLaunched.Load(), r.slowClosed.Load(), r.end.logSlow, slowMin.Round(100*time.Millisecond),
			slowMax.Round(100*time.Millisecond), r.slow1008.Load(), strings.Join(codeList, ", "))},
		{"server RSS", fmt.Sprintf("min %s, max %s; max after warm-up: first third %s, last third %s (limit %s)",
			mib(rssMin), mib(rssMax), mib(rc.firstMax), mib(rc.lastMax), mib(rc.limit))},
		{"server fds", fmt.Sprintf("min %d, max %d; fds - conns - idle(%d): %s outside storms; %d after traffic",
			fdMin, fdMax, r.end.idleFDs, fdRange, r.end.endFDs-r.end.idleFDs)},
		{"serving at end", serving},
		{"shutdown", fmt.Sprintf("%d open at SIGTERM, %d got 1001; %s after %v", r.end.sigterm, r.end.got1001, exit,
			r.end.exitTook.Round(time.Millisecond))},
		{"server log", fmt.Sprintf("%d errors, %d unexpected warnings", r.end.logErrors, len(r.end.oddWarnings))},
		{"machine load", fmt.Sprintf("1-minute load average up to %.1f on %d CPUs", loadMax, runtime.NumCPU())},
		{"failures", fmt.Sprint(nfail)},
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n=== mles soak figures ===\n")
	for _, row := range rows {
		r.t.Logf("%s: %s", row[0], row[1])
		fmt.Fprintf(&b, "%-17s %s\n", row[0], row[1])
	}
	fmt.Fprintf(&b, "%-6s %6s %6s %9s %8s %8s %7s %5s\n", "t", "conns", "fds", "fds-conns", "RSS MiB", "deliv/s", "joins", "load")
	prev := -1
	for i, s := range samples {
		if i%reportSamples != 0 && i != len(samples)-1 {
			continue
		}
		rate := 0.0
		if prev >= 0 {
			p := samples[prev]
			if dt := (s.at - p.at).Seconds(); dt > 0 {
				rate = float64(s.delivered-p.delivered) / dt
			}
		}
		mark := ""
		if s.storming {
			mark = " storm"
		}
		if !s.traffic {
			mark += " (after traffic)"
		}
		fmt.Fprintf(&b, "%-6s %6d %6d %9d %8.1f %8.0f %7d %5.1f%s\n", clock(s.at), s.held, s.fds, s.fds-int(s.held),
			float64(s.rssKiB)/1024, rate, s.joins, s.load, mark)
		r.t.Logf("sample %s: conns %d, fds %d, RSS %s, %.0f deliveries/s%s", clock(s.at), s.held, s.fds, mib(s.rssKiB), rate, mark)
		prev = i
	}
	fmt.Print(b.String())
}

// checks turns the figures into pass or fail.
func (r *run) checks() {
	t := r.t
	n, list := r.fails.snapshot()
	for _, f := range list {
		t.Errorf("%s", f)
	}
	if n > len(list) {
		t.Errorf("... and %d more failures", n-len(list))
	}
	if l, o := r.lost.Load(), r.reordered.Load(); l != 0 || o != 0 {
		t.Errorf("members lost %d and reordered %d messages", l, o)
	}

	samples := r.sampler.all()
	if rc := checkRSS(samples, r.ran); rc.firstN == 0 || rc.lastN == 0 {
		t.Logf("RSS check skipped: %d samples in the first third after warm-up, %d in the last (run too short)", rc.firstN, rc.lastN)
	} else if rc.lastMax > rc.limit {
		t.Errorf("RSS grew: max %s in the last third, %s in the first third after warm-up (limit %s)",
			mib(rc.lastMax), mib(rc.firstMax), mib(rc.limit))
	}
	if fc := checkFDs(samples, r.end.idleFDs); fc.n == 0 {
		t.Errorf("no descriptor sample outside storms")
	} else if fc.minDiff < -fdSlack || fc.maxDiff > fdSlack {
		w := fc.worst
		t.Errorf("server fds not flat: fds - conns - idle ranged %d..%d (slack %d); worst at %s: %d fds, %d conns, idle %d",
			fc.minDiff, fc.maxDiff, fdSlack, clock(w.at), w.fds, w.held, r.end.idleFDs)
	}

	launched := r.slowLaunched.Load()
	if r.cfg.slowPerWave > 0 && launched == 0 {
		t.Errorf("no slow consumer was launched")
	}
	if c := r.slowClosed.Load(); c != launched {
		t.Errorf("%d of %d slow consumers closed by the server", c, launched)
	}
	if int64(r.end.logSlow) != launched {
		t.Errorf("server logged %d slow-consumer closes, want %d (one per slow consumer, none for a healthy member)",
			r.end.logSlow, launched)
	}
	if got := r.slow1008.Load(); got != launched {
		msg := fmt.Sprintf("%d of %d slow consumers received close 1008 \"slow consumer\" on the wire", got, launched)
		if r.cfg.strictSlowClose {
			t.Error(msg)
		} else {
			t.Logf("%s (not required: -soak.slow-close-frame=false)", msg)
		}
	}

	if r.end.serving != nil {
		t.Errorf("server not serving at the end: %v", r.end.serving)
	}
	if r.end.got1001 != r.end.sigterm {
		t.Errorf("after SIGTERM %d of %d connections got close 1001; others: %s",
			r.end.got1001, r.end.sigterm, strings.Join(r.end.not1001, "; "))
	}
	if r.end.exitErr != nil {
		t.Errorf("server after SIGTERM: %v", r.end.exitErr)
	}
	if r.end.logErrors > 0 {
		t.Errorf("server logged %d errors: %s", r.end.logErrors, strings.Join(r.srv.log.grep(logError, 5), "\n"))
	}
	for _, w := range r.end.oddWarnings {
		t.Logf("server warning: %s", w)
	}
	if st := time.Duration(r.stall.Load()); st > time.Second {
		t.Logf("the test process stalled for %v at worst (machine load up to %.1f): read timeouts and latencies with that in mind",
			st.Round(time.Millisecond), maxLoad(samples))
	}
}

func maxLoad(samples []sample) float64 {
	m := 0.0
	for _, s := range samples {
		m = max(m, s.load)
	}
	return m
}
