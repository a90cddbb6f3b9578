package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The storm scenario: a reconnect storm after a server restart, with TLS
// session resumption.
//
//  1. -conns clients connect over TLS, each with its own one-entry session
//     cache, join (channels of -members) and keep the session ticket the
//     server sends after the handshake. Then every client closes.
//  2. -restart-cmd restarts the server and prints the new PID.
//  3. All clients reconnect at once (-dialers at a time) with their
//     session caches and join: the storm. Measured: the time until the last
//     one joined, connects/s, failures, how many resumed their session
//     (ConnectionState().DidResume), the server's CPU per reconnect, the
//     generator's CPU, and each client's connect+join latency.
//
// Whether the restarted server can read the tickets issued before the
// restart is up to the server (mles: --tls-ticket-keys); the generator only
// records what happened.

// stormTicketWait bounds the extra read for a session ticket a client did
// not have after its join (the ticket normally precedes the upgrade
// response: crypto/tls sends it with the server's first flight, and the
// client processes it on its first read).
const stormTicketWait = 200 * time.Millisecond

// stormJoinTimeout bounds the wait for the pong that proves a join.
const stormJoinTimeout = 10 * time.Second

// restartTimeout bounds -restart-cmd.
const restartTimeout = 2 * time.Minute

// oneSession is a tls.ClientSessionCache of one entry: every storm client
// has its own (the key is the server name, the same for all of them).
type oneSession struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (c *oneSession) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cs, c.cs != nil
}

func (c *oneSession) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	c.cs = cs // nil: forget
	c.mu.Unlock()
}

func (c *oneSession) has() bool {
	_, ok := c.Get("")
	return ok
}

// stormClient is one client across both phases.
type stormClient struct {
	cache oneSession
	t     target // o.target with a tls.Config of its own (the session cache)
	c     *wsConn
}

// stormJoin dials, does the TLS handshake and the upgrade, and joins. The
// header frame and a ping ride in the upgrade request's write; the server
// processes a connection's frames in order, so its pong proves the join was
// done (a refused join is closed instead). Frames before the pong (history
// of the channel) are skipped.
func stormJoin(ctx context.Context, t *target, uid, ch string) (*wsConn, error) {
	hdr := fmt.Sprintf(`{"uid":%q,"channel":%q}`, uid, ch)
	c, err := dialWS(ctx, t, mlesSubprotocol, 512, true, func(c *wsConn, dst []byte) []byte {
		dst = c.appendFrame(dst, opText, []byte(hdr))
		return c.appendFrame(dst, opPing, nil)
	})
	if err != nil {
		return nil, err
	}
	c.nc.SetReadDeadline(time.Now().Add(stormJoinTimeout))
	for {
		for {
			op, _, p, ok := c.fr.next()
			if !ok {
				break
			}
			switch op {
			case opPong:
				c.nc.SetReadDeadline(time.Time{})
				return c, nil
			case opClose:
				closeRaw(c.nc)
				return nil, fmt.Errorf("%w: %s", errRefused, closeReason(p))
			}
		}
		if err := c.fr.fill(c.nc); err != nil {
			closeRaw(c.nc)
			return nil, fmt.Errorf("waiting for the pong after the join: %w", err)
		}
	}
}

// stormPhase is one phase's connects: count, failures, latency, elapsed
// time and both processes' CPU.
type stormPhase struct {
	joined, failed int
	first          error
	hist           histogram
	elapsed        float64 // s, from the first dial to the last join
	window         float64 // s, from the first dial to the last attempt's end (CPU)
	cpuA, cpuB     cpuSample
}

// connectAll runs one phase: every client connects and joins (-dialers at a
// time) and stays connected; after(i) runs on each joined client.
func connectAll(ctx context.Context, o *Options, clients []*stormClient, pid int, after func(sc *stormClient)) *stormPhase {
	ph := &stormPhase{}
	lat := make([]int64, len(clients)) // us; -1: failed or not tried
	for i := range lat {
		lat[i] = -1
	}
	clk := clock{base: time.Now()}
	var last atomic.Int64
	ph.cpuA = sampleCPU(pid)
	ph.cpuA.busy = cpuBusy()
	failed, first := dialAll(ctx, o.Dialers, len(clients), false, func(ctx context.Context, i int) error {
		sc := clients[i]
		t0 := clk.now()
		c, err := stormJoin(ctx, &sc.t, o.name("u", i), o.name("storm", i/o.Members))
		if err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		t1 := clk.now()
		lat[i] = (t1 - t0) / 1000
		for {
			l := last.Load()
			if t1 <= l || last.CompareAndSwap(l, t1) {
				break
			}
		}
		sc.c = c
		if after != nil {
			after(sc)
		}
		return nil
	})
	ph.window = float64(clk.now()) / 1e9
	ph.cpuB = sampleCPU(pid)
	ph.cpuB.busy = cpuBusy()
	ph.elapsed = float64(last.Load()) / 1e9
	ph.failed, ph.first = failed, first
	for _, us := range lat {
		if us >= 0 {
			ph.hist.record(us)
		}
	}
	ph.joined = int(ph.hist.total)
	return ph
}

// closeClients closes every connection without a TLS close_notify (a reset,
// as the clients dial with linger 0: no TIME_WAIT between the phases).
func closeClients(clients []*stormClient) {
	for _, sc := range clients {
		if sc.c != nil {
			closeRaw(sc.c.nc)
			sc.c = nil
		}
	}
}

// restartServer runs cmd, which restarts the server and prints its new PID
// (the last line of its standard output).
func restartServer(ctx context.Context, cmd string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	var out bytes.Buffer
	c := exec.CommandContext(ctx, cmd)
	c.Stdout = &out
	c.Stderr = os.Stderr
	// A server started in the background that kept our stdout would hold
	// Wait until it exits.
	c.WaitDelay = 5 * time.Second
	if err := c.Run(); err != nil {
		return 0, fmt.Errorf("-restart-cmd %s: %w", cmd, err)
	}
	lines := strings.Fields(out.String())
	if len(lines) == 0 {
		return 0, fmt.Errorf("-restart-cmd %s printed no PID", cmd)
	}
	pid, err := strconv.Atoi(lines[len(lines)-1])
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("-restart-cmd %s: last output %q is not a PID", cmd, lines[len(lines)-1])
	}
	return pid, nil
}

// runStorm runs the storm scenario (see the top of this file).
func runStorm(ctx context.Context, o *Options) (*Result, error) {
	res := newResult(o)
	res.Conns = o.Conns
	clients := make([]*stormClient, o.Conns)
	for i := range clients {
		sc := &stormClient{t: *o.target}
		sc.t.tlsConf = o.target.tlsConf.Clone()
		sc.t.tlsConf.ClientSessionCache = &sc.cache
		clients[i] = sc
	}
	defer closeClients(clients)

	// Phase 1: full handshakes; every client keeps its ticket. The
	// server's certificate (its key type and size) is recorded from the
	// first join: it is what a full handshake signs with and the clients
	// verify the signature of.
	var tickets, late atomic.Int64
	var certOnce sync.Once
	p1 := connectAll(ctx, o, clients, o.ServerPID, func(sc *stormClient) {
		certOnce.Do(func() {
			if tc, ok := sc.c.nc.(*tls.Conn); ok {
				if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
					res.Params.Cert = certName(pc[0])
				}
			}
		})
		if !sc.cache.has() {
			late.Add(1)
			// Not there yet: one short read processes a ticket that
			// arrives after the pong (the read itself times out).
			sc.c.nc.SetReadDeadline(time.Now().Add(stormTicketWait))
			_ = sc.c.fr.fill(sc.c.nc)
			sc.c.nc.SetReadDeadline(time.Time{})
		}
		if sc.cache.has() {
			tickets.Add(1)
		}
		sc.c.fr = frameReader{} // joined members do not read: release the buffer
	})
	res.Phase1S = p1.elapsed
	res.Phase1Failed = p1.failed
	if p1.elapsed > 0 {
		res.Phase1ConnectsPerS = float64(p1.joined) / p1.elapsed
	}
	if p1.cpuA.server >= 0 && p1.cpuB.server >= 0 && p1.joined > 0 {
		res.Phase1ServerCPUUsPerConn = (p1.cpuB.server - p1.cpuA.server) * 1e6 / float64(p1.joined)
	}
	res.Phase1WindowS = p1.window
	res.Phase1ClientCPUS = p1.cpuB.self - p1.cpuA.self
	if p1.joined > 0 {
		res.Phase1ClientCPUUsPerConn = res.Phase1ClientCPUS * 1e6 / float64(p1.joined)
	}
	if p1.cpuA.server >= 0 && p1.cpuB.server >= 0 {
		res.Phase1ServerCPUS = p1.cpuB.server - p1.cpuA.server
	}
	res.Phase1P50Ms = float64(p1.hist.quantile(0.50)) / 1000
	res.Phase1P99Ms = float64(p1.hist.quantile(0.99)) / 1000
	res.TicketsHeld = int(tickets.Load())
	res.TicketsLate = int(late.Load())
	if p1.joined == 0 || ctx.Err() != nil {
		err := p1.first
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("phase 1: no client joined: %w", err)
	}
	closeClients(clients)

	// Restart: the clients are gone; the server stops and starts again.
	pid := o.ServerPID
	if o.RestartCmd != "" {
		t := time.Now()
		var err error
		if pid, err = restartServer(ctx, o.RestartCmd); err != nil {
			return nil, err
		}
		res.RestartS = time.Since(t).Seconds()
		res.ServerPID = pid
	}
	res.ServerRSSBeforeBytes = procRSS(pid)

	// Phase 2, the storm: everyone at once, with the session caches.
	var resumed atomic.Int64
	p2 := connectAll(ctx, o, clients, pid, func(sc *stormClient) {
		if tc, ok := sc.c.nc.(*tls.Conn); ok && tc.ConnectionState().DidResume {
			resumed.Add(1)
		}
		sc.c.fr = frameReader{}
	})
	res.setCPU(p2.cpuA, p2.cpuB, p2.window)
	res.CPUBusyS = busyDelta(p2.cpuA.busy, p2.cpuB.busy)
	res.setLatency(&p2.hist)
	res.StormS = p2.elapsed
	res.Connects = int64(p2.joined)
	res.ConnectErrors = int64(p2.failed)
	res.JoinFailed = p2.failed
	res.Resumed = int(resumed.Load())
	if p2.joined > 0 {
		share := float64(res.Resumed) / float64(p2.joined)
		res.ResumedShare = &share
	}
	if p2.elapsed > 0 {
		res.ConnectsPerS = float64(p2.joined) / p2.elapsed
	}
	if res.ServerCPUS >= 0 && p2.joined > 0 {
		res.ServerCPUUsPerConn = res.ServerCPUS * 1e6 / float64(p2.joined)
	}
	if p2.joined > 0 {
		res.ClientCPUUsPerConn = res.ClientCPUS * 1e6 / float64(p2.joined)
	}
	// Errors: failed connects of both phases; the first error of the
	// storm, else of phase 1.
	res.Errors = p1.failed + p2.failed
	switch {
	case p2.first != nil:
		res.FirstError = "storm: " + p2.first.Error()
	case p1.first != nil:
		res.FirstError = "phase 1: " + p1.first.Error()
	}
	// RSS with every client of the storm still connected.
	res.ServerRSSAfterBytes = procRSS(pid)
	res.rssTaken = true
	res.finish(o)
	if p2.joined == 0 {
		return nil, fmt.Errorf("storm: no client joined: %s", res.FirstError)
	}
	return res, ctx.Err()
}

// certName names a certificate's key as "ECDSA P-256", "RSA 2048",
// "Ed25519".
func certName(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

// errStormNeedsTLS: the scenario is about TLS session resumption.
var errStormNeedsTLS = errors.New("-scenario storm needs a wss:// -url and -mode mles")
