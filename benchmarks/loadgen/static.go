package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// runStatic measures static file requests per second: -conns keep-alive
// HTTP/1.1 connections, each a closed loop of GETs of the one -url (the next
// request goes as soon as the previous response is read whole), during the
// warm-up and the window. Requests started inside the window count: their
// latency (request written to response read), body bytes, Content-Encoding
// (the same on every response, else an error) and status (anything but 200
// is an error). Being closed-loop, this is a throughput figure: its
// latencies are those of a saturated server with -conns requests in flight.
// With -http-rate it is an open loop instead (runStaticOpen).
func runStatic(ctx context.Context, o *Options) (*Result, error) {
	if o.HTTPRate > 0 {
		return runStaticOpen(ctx, o)
	}
	res := newResult(o)
	clk := clock{base: time.Now()}

	// Every connection gets one request before the clock starts: a server
	// that does not serve the URL is a setup failure, not a run of errors.
	doers := make([]httpDoer, o.Conns)
	closeAll := func() {
		for _, d := range doers {
			if d != nil {
				d.Close()
			}
		}
	}
	setupEnd := clk.base.Add(30 * time.Second)
	for i := range doers {
		doers[i] = newHTTPDoer(o.HTTPClient, o.target, o.AcceptEncoding)
		if err := firstRequest(ctx, doers[i], setupEnd); err != nil {
			closeAll()
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
	}

	winStart := clk.now() + int64(o.Warmup)
	winEnd := winStart + int64(o.Duration)
	hardEnd := winEnd + int64(o.Drain)
	for _, d := range doers {
		if r, ok := d.(*rawHTTP); ok {
			r.setDeadline(clk.base.Add(time.Duration(hardEnd)))
		}
	}
	tallies := make([]httpTally, len(doers))
	var wg sync.WaitGroup
	for i, d := range doers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &tallies[i]
			for ctx.Err() == nil {
				t := clk.now()
				if t >= winEnd {
					return
				}
				resp, err := d.do(ctx)
				if t >= winStart {
					st.add(resp, err, (clk.now()-t)/1000)
				}
				if err != nil {
					// Do not spin on a server that refuses: the error is counted.
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	sleepUntil(ctx, clk, winStart)
	a := sampleCPU(o.ServerPID)
	sleepUntil(ctx, clk, winEnd)
	b := sampleCPU(o.ServerPID)
	res.setCPU(a, b, o.Duration.Seconds())
	wg.Wait()
	closeAll()

	var total httpTally
	for i := range tallies {
		total.merge(&tallies[i])
	}
	res.setLatency(&total.hist)
	res.setHTTP(&total)
	res.Requests = total.n
	if res.WindowS > 0 {
		res.RequestsPerS = float64(total.n) / res.WindowS
	}
	if total.n > 0 {
		res.ClientCPUUsPerRequest = res.ClientCPUS * 1e6 / float64(total.n)
		if res.ServerCPUS >= 0 {
			res.ServerCPUUsPerRequest = res.ServerCPUS * 1e6 / float64(total.n)
		}
	}
	res.finish(o)
	return res, ctx.Err()
}

// firstRequest does one request on d and wants a 200.
func firstRequest(ctx context.Context, d httpDoer, deadline time.Time) error {
	if r, ok := d.(*rawHTTP); ok {
		r.setDeadline(deadline)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	resp, err := d.do(ctx)
	if err != nil {
		return err
	}
	if resp.status != 200 {
		return fmt.Errorf("status %d", resp.status)
	}
	return nil
}

// httpBurst is open-loop HTTP load: GETs of one URL at a fixed total rate
// over keep-alive connections, each connection 1/conns of the rate from a
// random start phase. A request goes at its intended time, or as soon as
// its connection's previous response is in when that is later (HTTP/1.1
// without pipelining: one request in flight per connection); its latency is
// counted from the intended time, so a server that falls behind shows it (as
// the fan-out's publishers do). Requests intended inside the window count.
// Each connection has a goroutine that sleeps until its next intended time.
type httpBurst struct {
	doers     []httpDoer
	tallies   []httpTally
	scheduled []int64 // per connection: requests intended in the window
	answered  []int64 // per connection: 200s received in the window (whenever intended)
	wg        sync.WaitGroup
}

// newHTTPBurst connects conns connections (one request each, before the
// schedule starts).
func newHTTPBurst(ctx context.Context, o *Options, conns int) (*httpBurst, error) {
	b := &httpBurst{
		doers:     make([]httpDoer, conns),
		tallies:   make([]httpTally, conns),
		scheduled: make([]int64, conns),
		answered:  make([]int64, conns),
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := range b.doers {
		b.doers[i] = newHTTPDoer(o.HTTPClient, o.target, o.AcceptEncoding)
		if err := firstRequest(ctx, b.doers[i], deadline); err != nil {
			b.close()
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
	}
	return b, nil
}

func (b *httpBurst) close() {
	for _, d := range b.doers {
		if d != nil {
			d.Close()
		}
	}
}

// start runs every connection's schedule from t0 to winEnd; no request is
// started after hardEnd.
func (b *httpBurst) start(ctx context.Context, clk clock, rate float64, t0, winStart, winEnd, hardEnd int64) {
	interval := float64(time.Second) * float64(len(b.doers)) / rate
	for i, d := range b.doers {
		if r, ok := d.(*rawHTTP); ok {
			r.setDeadline(clk.base.Add(time.Duration(hardEnd)))
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			st := &b.tallies[i]
			phase := rand.Float64() * interval
			for k := 0; ctx.Err() == nil; k++ {
				t := t0 + int64(phase+float64(k)*interval)
				if t >= winEnd {
					return
				}
				inWindow := t >= winStart
				if inWindow {
					b.scheduled[i]++
				}
				now := clk.now()
				if now >= hardEnd {
					continue // never sent: counts as scheduled, not answered
				}
				if d := t - now; d > 0 {
					time.Sleep(time.Duration(d))
				}
				resp, err := d.do(ctx)
				done := clk.now()
				if err != nil && done >= hardEnd {
					err = fmt.Errorf("no response by the end of the drain (%w)", err)
				}
				if inWindow {
					st.add(resp, err, (done-t)/1000)
				}
				if err == nil && resp.status == 200 && done >= winStart && done < winEnd {
					b.answered[i]++
				}
			}
		}()
	}
}

// finish waits for the schedules and fills the result's HTTP fields, and
// returns the merged tally.
func (b *httpBurst) finish(res *Result) *httpTally {
	b.wg.Wait()
	b.close()
	var (
		total    httpTally
		answered int64
	)
	for i := range b.tallies {
		total.merge(&b.tallies[i])
		res.HTTPScheduled += b.scheduled[i]
		answered += b.answered[i]
	}
	res.setHTTP(&total)
	ms := func(us uint64) float64 { return float64(us) / 1000 }
	res.HTTPRequests = total.n
	if res.WindowS > 0 {
		res.HTTPPerS = float64(answered) / res.WindowS
	}
	res.HTTPP50Ms = ms(total.hist.quantile(0.50))
	res.HTTPP99Ms = ms(total.hist.quantile(0.99))
	res.HTTPMaxMs = ms(total.hist.max)
	return &total
}

// runStaticOpen is static with -http-rate: the open loop over -conns
// connections from -start-at (what a pub/sub run's burst process runs).
func runStaticOpen(ctx context.Context, o *Options) (*Result, error) {
	res := newResult(o)
	clk := clock{base: time.Now()}
	b, err := newHTTPBurst(ctx, o, o.Conns)
	if err != nil {
		return nil, err
	}
	t0 := clk.now()
	if o.StartAt != 0 {
		t0 = o.StartAt - time.Now().UnixNano() + clk.now()
		if t0 < clk.now() {
			res.Notes = append(res.Notes, fmt.Sprintf("connected %.0f ms after the schedule's start", float64(clk.now()-t0)/1e6))
		}
	}
	winStart := t0 + int64(o.Warmup)
	winEnd := winStart + int64(o.Duration)
	hardEnd := winEnd + int64(o.Drain)
	b.start(ctx, clk, o.HTTPRate, t0, winStart, winEnd, hardEnd)
	sleepUntil(ctx, clk, winStart)
	a := sampleCPU(o.ServerPID)
	sleepUntil(ctx, clk, winEnd)
	c := sampleCPU(o.ServerPID)
	res.setCPU(a, c, o.Duration.Seconds())
	total := b.finish(res)
	res.setLatency(&total.hist)
	res.Requests = total.n
	res.RequestsPerS = res.HTTPPerS
	if total.n > 0 {
		res.ClientCPUUsPerRequest = res.ClientCPUS * 1e6 / float64(total.n)
		if res.ServerCPUS >= 0 {
			res.ServerCPUUsPerRequest = res.ServerCPUS * 1e6 / float64(total.n)
		}
	}
	res.finish(o)
	return res, ctx.Err()
}

// burstChild is the HTTP burst beside a pub/sub run (-http-rate): a second
// loadgen process, "-scenario static -http-rate R -conns N -start-at T0", on
// the same CPU (it inherits the affinity), whose schedule starts at the
// pub/sub run's t0 and whose window is the same. Its own process, not
// goroutines beside the members' readers: on the one P of this process an
// HTTP connection's goroutine waits in the run queue behind the hundreds of
// readers each message wakes, which held every connection to about 50
// responses/s (measured: 8 connections answered ~400/s of 5000/s offered,
// while a separate process, closed-loop on 8 connections, got 5700/s from
// the same server during the same fan-out). The kernel wakes the child when its responses arrive.
type burstChild struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	errc chan error
}

func startBurstChild(ctx context.Context, o *Options, clk clock, t0 int64) (*burstChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("http burst: %w", err)
	}
	args := []string{
		"-scenario", ScenarioStatic, "-url", o.HTTPURL, "-label", o.Label + "-http",
		"-http-rate", strconv.FormatFloat(o.HTTPRate, 'g', -1, 64), "-conns", strconv.Itoa(o.HTTPConns),
		"-accept-encoding", o.AcceptEncoding, "-http-client", o.HTTPClient,
		"-warmup", o.Warmup.String(), "-duration", o.Duration.String(), "-drain", o.Drain.String(),
		"-start-at", strconv.FormatInt(clk.base.Add(time.Duration(t0)).UnixNano(), 10),
	}
	if o.Insecure {
		args = append(args, "-insecure")
	}
	name := self
	if o.BurstCPU >= 0 {
		// On another CPU at idle priority: it runs only when that CPU has
		// nothing else to do, so it neither delays the members' readers
		// (as a second process on their core does: the kernel's time
		// slices between the two added milliseconds to the members' p99)
		// nor takes CPU from the server it shares a core with.
		args = append([]string{"-c", strconv.Itoa(o.BurstCPU), "chrt", "--idle", "0", self}, args...)
		name = "taskset"
	}
	c := &burstChild{cmd: exec.CommandContext(ctx, name, args...), errc: make(chan error, 1)}
	c.cmd.Stdout = &c.out
	c.cmd.Stderr = os.Stderr
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("http burst: %w", err)
	}
	go func() { c.errc <- c.cmd.Wait() }()
	return c, nil
}

// wait collects the child's result into res: the burst's HTTP figures and
// its CPU, which counts towards client_bound (both processes share the
// generator's core).
func (c *burstChild) wait(res *Result) {
	if err := <-c.errc; err != nil {
		res.addError(fmt.Errorf("http burst process: %w", err))
		return
	}
	var r Result
	if err := json.Unmarshal(bytes.TrimSpace(c.out.Bytes()), &r); err != nil {
		res.addError(fmt.Errorf("http burst process: result: %w", err))
		return
	}
	res.HTTPScheduled, res.HTTPRequests, res.HTTPPerS = r.HTTPScheduled, r.HTTPRequests, r.HTTPPerS
	res.HTTPP50Ms, res.HTTPP99Ms, res.HTTPMaxMs = r.HTTPP50Ms, r.HTTPP99Ms, r.HTTPMaxMs
	res.HTTPEncoding, res.HTTPResponseBytes = r.HTTPEncoding, r.HTTPResponseBytes
	res.HTTPErrors, res.HTTPFirstError = r.HTTPErrors, r.HTTPFirstError
	res.HTTPClientCPUS = r.ClientCPUS
	for _, n := range r.Notes {
		res.Notes = append(res.Notes, "http burst: "+n)
	}
	if res.WindowS > 0 && res.ClientCPUS+r.ClientCPUS > 0.9*res.WindowS {
		res.ClientBound = true
	}
}
