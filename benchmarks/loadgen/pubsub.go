package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// readBufSize is each member's read buffer: large, so one read takes a whole
// burst the server coalesced.
const readBufSize = 64 << 10

// receiver is one member's receive-side accounting. It is owned by the
// member's reader goroutine; inWindow is also read (atomically) by the drain
// loop, the rest only after the reader has exited.
type receiver struct {
	inWindow atomic.Int64
	_        [56]byte // keep the hot counter off its neighbours' cache lines

	self             int   // own publisher id, whose echoes are ignored
	base             int   // publisher id of the channel's member 0
	srv              int   // index of the -url server the member joined
	winStart, winEnd int64 // measured window, clock ns
	last             []int64
	total            int64
	outOfOrder, gaps int64
	hist             histogram
	code             int // close status if the server closed us
	err              error
}

func newReceiver(self, base, members int, winStart, winEnd int64) *receiver {
	r := &receiver{self: self, base: base, winStart: winStart, winEnd: winEnd, last: make([]int64, members)}
	for i := range r.last {
		r.last[i] = -1
	}
	return r
}

func (r *receiver) onMsg(m message, now int64) {
	if m.pub == r.self {
		return
	}
	if i := m.pub - r.base; i >= 0 && i < len(r.last) {
		s, l := int64(m.seq), r.last[i]
		switch {
		case l < 0 || s == l+1:
		case s <= l:
			r.outOfOrder++
		default:
			r.gaps += s - l - 1
		}
		if s > l {
			r.last[i] = s
		}
	}
	r.total++
	if m.intended >= r.winStart && m.intended < r.winEnd {
		r.inWindow.Add(1)
		r.hist.record((now - m.intended) / 1000)
	}
}

// publisher sends one member's open-loop schedule.
type publisher struct {
	s               *session
	id              int
	sent, scheduled int64
	err             error
}

// run sends message k at intended time t0 + phase + k/rate for every k whose
// intended time is before winEnd. It never waits for the server: when behind
// it sends at once, still stamping the intended time, so the delay shows up
// as latency. Messages it could not write by hardEnd are never sent (and so
// count as lost).
func (p *publisher) run(clk clock, payloadSize int, rate float64, t0, winStart, winEnd, hardEnd int64) {
	interval := float64(time.Second) / rate
	phase := rand.Float64() * interval
	for k := 0; ; k++ {
		t := t0 + int64(phase+float64(k)*interval)
		if t >= winEnd {
			break
		}
		if t >= winStart {
			p.scheduled++
		}
	}
	p.s.nc.SetWriteDeadline(clk.base.Add(time.Duration(hardEnd)))
	payload := initPayload(p.s.marker, payloadSize)
	for k := 0; ; k++ {
		t := t0 + int64(phase+float64(k)*interval)
		if t >= winEnd {
			return
		}
		if d := t - clk.now(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		fillPayload(payload, p.id, uint64(k), t)
		if err := p.s.publish(payload); err != nil {
			p.err = err
			return
		}
		if t >= winStart {
			p.sent++
		}
	}
}

// runPubSub runs fanout, bigchannel, httpburst, slow and chat: channels of members that each join
// with one connection; publishers at a fixed rate; everyone else receives.
// With -http-rate, HTTP GETs go to the same server at a fixed rate alongside
// (httpBurst).
func runPubSub(ctx context.Context, o *Options) (*Result, error) {
	nch := 1
	if o.Scenario == ScenarioChat {
		nch = o.Channels
	}
	members := o.Members
	total := nch * members
	res := newResult(o)
	clk := clock{base: time.Now()}

	nsrv := len(o.targets)
	sessions := make([]*session, total)
	_, err := dialAll(ctx, o.Dialers, total, true, func(ctx context.Context, i int) error {
		ch := o.name(o.Scenario, i/members)
		s, err := openSessionAt(ctx, o, o.targets[serverOf(i, nsrv)], o.name("u", i), ch, readBufSize, false)
		if err != nil {
			return fmt.Errorf("member %d: %w", i, err)
		}
		if o.Mode == ModeCentrifugo {
			if err := s.awaitSubscribed(clk, nil); err != nil {
				s.Close()
				return fmt.Errorf("member %d: %w", i, err)
			}
		}
		sessions[i] = s
		return nil
	})
	closeAll := func() {
		for _, s := range sessions {
			if s != nil {
				s.Close()
			}
		}
	}
	if err != nil {
		closeAll()
		return nil, err
	}

	isPublisher := func(i int) bool { return o.Scenario == ScenarioChat || i == 0 }
	isSlow := func(i int) bool { return i >= 1 && i <= o.Slow } // channel 0 only (fanout/bigchannel/slow)
	receiversPerChannel := members - 1 - o.Slow

	// Peered servers: their sessions for the channel come up once members
	// joined; the schedule starts when every server has them.
	if o.PeerSessions > 0 {
		d, err := awaitPeerSessions(ctx, o.AdminURLs, o.PeerSessions, o.PeerWait)
		if err != nil {
			closeAll()
			return nil, err
		}
		res.PeerWaitS = d.Seconds()
	}
	// Servers joined by a broker (-await): e.g. ours on NATS, each with
	// its stream acknowledging and the channel's link up.
	if len(o.Await) > 0 {
		d, err := awaitMetrics(ctx, o.AdminURLs, o.Await, o.PeerWait)
		if err != nil {
			closeAll()
			return nil, err
		}
		res.AwaitS = d.Seconds()
	}

	// The schedule starts after a short pause that lets the last joins land
	// (and, with -http-rate, the burst's process start and connect; the
	// httpburst scenario takes the same pause without it, so that both runs
	// of a pair differ by the burst only).
	pause := 200 * time.Millisecond
	if o.HTTPRate > 0 || o.Scenario == ScenarioHTTPBurst {
		pause = time.Second
	}
	t0 := clk.now() + int64(pause)
	winStart := t0 + int64(o.Warmup)
	winEnd := winStart + int64(o.Duration)
	hardEnd := winEnd + int64(o.Drain)

	var (
		stopping atomic.Bool
		rwg      sync.WaitGroup
		recv     []*receiver
		ep       *epollReader
	)
	useEpoll := o.Reader == ReaderEpoll && !o.target.tls
	if useEpoll {
		if ep, err = newEpollReader(); err != nil {
			closeAll()
			return nil, err
		}
	}
	for i, s := range sessions {
		if isSlow(i) {
			continue
		}
		r := newReceiver(i, i/members*members, members, winStart, winEnd)
		r.srv = serverOf(i, nsrv)
		recv = append(recv, r)
		ended := func(code int, err error) {
			if !stopping.Load() {
				r.code, r.err = code, err
			}
		}
		if useEpoll {
			if err := ep.add(s, r.onMsg, ended); err != nil {
				closeAll()
				return nil, err
			}
			continue
		}
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			ended(s.readLoop(clk, r.onMsg))
		}()
	}
	if useEpoll {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			ep.run(clk, &stopping)
		}()
	}

	var pwg sync.WaitGroup
	var pubs []*publisher
	for i, s := range sessions {
		if !isPublisher(i) {
			continue
		}
		p := &publisher{s: s, id: i}
		pubs = append(pubs, p)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			p.run(clk, o.Payload, o.Rate, t0, winStart, winEnd, hardEnd)
		}()
	}

	var scr *scraper
	if o.ScrapeEvery > 0 {
		scr = startScraper(ctx, o, clk, t0, winStart, winEnd)
	}

	var burst *burstChild
	if o.HTTPRate > 0 {
		if burst, err = startBurstChild(ctx, o, clk, t0); err != nil {
			res.addError(err)
		}
	}

	// The servers' metrics are read just before the window and just after
	// it, outside the CPU samples (a scrape costs the server a little).
	var mStart, mEnd, mAfter []map[string]float64
	var mErrs []error
	scrapeNow := func() []map[string]float64 {
		if len(o.AdminURLs) == 0 {
			return nil
		}
		ms, err := scrapeAll(ctx, o.AdminURLs, o.Metrics)
		if err != nil {
			mErrs = append(mErrs, err)
		}
		return ms
	}
	sleepUntil(ctx, clk, winStart)
	mStart = scrapeNow()
	a := sampleServers(o)
	sleepUntil(ctx, clk, winEnd)
	b := sampleServers(o)
	mEnd = scrapeNow()
	res.setCPU(a, b, o.Duration.Seconds())
	res.setBrokers(o, a, b)
	res.CPUBusyS = busyDelta(a.busy, b.busy)
	if scr != nil {
		scr.wait(res, o.ScrapeEvery)
	}
	pwg.Wait()
	if burst != nil {
		burst.wait(res)
	}

	for _, p := range pubs {
		res.Sent += p.sent
		res.Scheduled += p.scheduled
		if p.err != nil {
			res.addError(fmt.Errorf("publisher %d: %w", p.id, p.err))
		}
	}
	res.Expected = res.Scheduled * int64(receiversPerChannel)
	// Drain: wait for late messages until all expected arrived or hardEnd.
	for clk.now() < hardEnd && ctx.Err() == nil {
		var got int64
		for _, r := range recv {
			got += r.inWindow.Load()
		}
		if got >= res.Expected {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	mAfter = scrapeNow()

	if o.Slow > 0 {
		n := 0
		for i := 1; i <= o.Slow; i++ {
			if closedByServer(sessions[i]) {
				n++
			}
		}
		res.SlowClosed = &n
	}
	res.finish(o) // RSS while everyone is still connected
	stopping.Store(true)
	if useEpoll {
		rwg.Wait() // the epoll reader must be out before the fds are closed
	}
	closeAll()
	rwg.Wait()

	var h histogram
	parts := newServerParts(o, nsrv)
	for _, r := range recv {
		h.merge(&r.hist)
		if parts != nil {
			parts.add(r.srv, &r.hist, r.inWindow.Load(), !isPublisher(r.self))
		}
		res.Delivered += r.inWindow.Load()
		res.OutOfOrder += r.outOfOrder
		res.Gaps += r.gaps
		if r.code != 0 || (r.err != nil && !errors.Is(r.err, net.ErrClosed)) {
			res.ServerClosed++
			if res.CloseCodes == nil {
				res.CloseCodes = map[string]int{}
			}
			key := strconv.Itoa(r.code)
			if r.code == 0 {
				key = "no close frame"
				res.addError(r.err)
			}
			res.CloseCodes[key]++
		}
	}
	// A slow member does not read: it does not count in expected, delivered
	// or latency ("healthy receivers only").
	res.setLatency(&h)
	if parts != nil {
		parts.fill(res, o, res.Scheduled, a, b, mStart, mEnd, mAfter, mErrs)
	}
	res.finish(o)
	if res.Sent < res.Scheduled {
		res.Notes = append(res.Notes, fmt.Sprintf("publishers wrote only %d of %d scheduled messages before the drain deadline", res.Sent, res.Scheduled))
	}
	return res, ctx.Err()
}

// serverOf is the -url server of member i among n: members are dealt round
// robin, so member 0 (the fan-out's publisher) joins server 0 and the
// receivers are split evenly (their counts differ by at most one).
func serverOf(i, n int) int {
	if n <= 1 {
		return 0
	}
	return i % n
}

// serverParts gathers the receivers per server after the run.
type serverParts struct {
	hists     []histogram
	delivered []int64
	receivers []int
}

// newServerParts returns nil when the record needs no per-server parts
// (one server and no -admin-url).
func newServerParts(o *Options, n int) *serverParts {
	if n <= 1 && len(o.AdminURLs) == 0 {
		return nil
	}
	return &serverParts{hists: make([]histogram, n), delivered: make([]int64, n), receivers: make([]int, n)}
}

// add counts one member's reader; the publisher's reads its own server's
// pings only, and is no receiver.
func (p *serverParts) add(srv int, h *histogram, delivered int64, receiver bool) {
	p.hists[srv].merge(h)
	p.delivered[srv] += delivered
	if receiver {
		p.receivers[srv]++
	}
}

// fill writes Servers and Remote (every server but the publisher's, server
// 0) into res. The fan-out has one publisher: each receiver expects every
// scheduled message.
func (p *serverParts) fill(res *Result, o *Options, scheduled int64, a, b cpuSample, mStart, mEnd, mAfter []map[string]float64, mErrs []error) {
	n := len(p.hists)
	res.Servers = make([]ServerPart, n)
	var remote histogram
	var rRecv int
	var rDelivered int64
	for i := range n {
		sp := &res.Servers[i]
		sp.URL = o.targets[i].addr
		sp.set(p.receivers[i], scheduled*int64(p.receivers[i]), p.delivered[i], res.WindowS, &p.hists[i])
		sp.CPUS = -1
		if i < len(a.each) && i < len(b.each) && a.each[i] >= 0 && b.each[i] >= 0 {
			sp.CPUS = b.each[i] - a.each[i]
		}
		sp.RSSAfterBytes = -1
		if i < len(o.ServerPIDs) {
			sp.PID = o.ServerPIDs[i]
			sp.RSSAfterBytes = procRSS(sp.PID)
		}
		if i < len(mStart) {
			sp.MetricsStart = mStart[i]
		}
		if i < len(mEnd) {
			sp.MetricsEnd = mEnd[i]
		}
		if i < len(mAfter) {
			sp.MetricsAfter = mAfter[i]
		}
		if i > 0 {
			remote.merge(&p.hists[i])
			rRecv += p.receivers[i]
			rDelivered += p.delivered[i]
		}
	}
	if len(mErrs) > 0 && n > 0 {
		res.Servers[0].MetricsErrors = len(mErrs)
		res.Servers[0].MetricsFirstError = mErrs[0].Error()
	}
	if n > 1 {
		res.Remote = &Part{}
		res.Remote.set(rRecv, scheduled*int64(rRecv), rDelivered, res.WindowS, &remote)
	}
}

// closedByServer drains a member that stopped reading and reports whether the
// server had closed it (close frame or end of stream) by now.
func closedByServer(s *session) bool {
	s.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	defer s.nc.SetReadDeadline(time.Time{})
	for {
		for {
			op, _, _, ok := s.fr.next()
			if !ok {
				break
			}
			if op == opClose {
				return true
			}
		}
		if err := s.fr.fill(s.nc); err != nil {
			var ne interface{ Timeout() bool }
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// sleepUntil sleeps until clock time t or ctx ends.
func sleepUntil(ctx context.Context, clk clock, t int64) {
	d := time.Duration(t - clk.now())
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}
