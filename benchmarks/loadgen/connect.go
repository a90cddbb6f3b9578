package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// errRefused reports a join the server answered with a close status other
// than 1000.
var errRefused = errors.New("loadgen: join refused")

// runConnect measures complete connection setups per second: -dialers loops
// each dial, (TLS handshake,) upgrade, join, and close, for warm-up plus
// duration; only setups started inside the window count.
func runConnect(ctx context.Context, o *Options) (*Result, error) {
	res := newResult(o)
	clk := clock{base: time.Now()}
	winStart := clk.now() + int64(o.Warmup)
	winEnd := winStart + int64(o.Duration)

	type loopStats struct {
		n, errs int64
		first   error
		hist    histogram
	}
	stats := make([]loopStats, o.Dialers)
	var wg sync.WaitGroup
	for l := range stats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[l]
			for j := 0; ctx.Err() == nil; j++ {
				// A fresh channel per connect: this scenario measures
				// connection setup and the join, not history replay (the
				// history scenario does), so no join inherits the joins
				// of the earlier connects.
				ch := o.name(fmt.Sprintf("conn%d-", l), j)
				t := clk.now()
				if t >= winEnd {
					return
				}
				err := connectOnce(ctx, o, clk, o.name(fmt.Sprintf("c%d", l), j), ch)
				if t < winStart {
					continue
				}
				if err != nil {
					st.errs++
					if st.first == nil {
						st.first = err
					}
					continue
				}
				st.n++
				st.hist.record((clk.now() - t) / 1000)
			}
		}()
	}
	sleepUntil(ctx, clk, winStart)
	a := sampleCPU(o.ServerPID)
	sleepUntil(ctx, clk, winEnd)
	b := sampleCPU(o.ServerPID)
	wg.Wait()
	res.setCPU(a, b, o.Duration.Seconds())

	var h histogram
	for i := range stats {
		st := &stats[i]
		h.merge(&st.hist)
		res.Connects += st.n
		res.ConnectErrors += st.errs
		if st.first != nil {
			res.addError(st.first)
			res.Errors += int(st.errs) - 1
		}
	}
	res.setLatency(&h)
	res.ConnectsPerS = float64(res.Connects) / res.WindowS
	res.finish(o)
	if res.ServerCPUS >= 0 && res.Connects > 0 {
		res.ServerCPUUsPerConn = res.ServerCPUS * 1e6 / float64(res.Connects)
	}
	if res.Connects == 0 {
		return nil, fmt.Errorf("no connection completed: %s", res.FirstError)
	}
	return res, ctx.Err()
}

// connectOnce is one setup. Mles: upgrade request, header and close (1000) go
// in one write and the server's close reply proves the header was processed
// (a refused join is closed with 1008 instead). Centrifugo: connect, subscribe, wait for the
// reply. rawtls: TCP connect and TLS handshake only.
func connectOnce(ctx context.Context, o *Options, clk clock, uid, ch string) error {
	if o.Mode == ModeRawTLS {
		d := net.Dialer{Timeout: 10 * time.Second}
		nc, err := d.DialContext(ctx, "tcp", o.target.addr)
		if err != nil {
			return err
		}
		nc.(*net.TCPConn).SetLinger(0)
		tc := tls.Client(nc, o.target.tlsConf)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.HandshakeContext(ctx)
		nc.Close() // no close_notify: the peer is measured on handshakes only
		return err
	}
	if o.Mode == ModeCentrifugo {
		c, err := dialWS(ctx, o.target, (&session{mode: o.Mode}).subprotocol(), 4096, true, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		s := &session{wsConn: c, mode: o.Mode, channel: ch, marker: o.marker}
		if err := s.join(uid, ""); err != nil {
			return err
		}
		return s.awaitSubscribed(clk, nil)
	}
	// Mles: the header and a close (1000) ride in the upgrade request's write,
	// as a pipelining client may send them, so the generator spends one TLS
	// write per setup and the server does all of upgrade, join and close.
	hdr := fmt.Sprintf(`{"uid":%q,"channel":%q}`, uid, ch)
	c, err := dialWS(ctx, o.target, (&session{mode: o.Mode}).subprotocol(), 4096, true,
		func(c *wsConn, dst []byte) []byte {
			dst = c.appendFrame(dst, opText, []byte(hdr))
			return c.appendFrame(dst, opClose, closePayload)
		})
	if err != nil {
		return err
	}
	// The server closes after its close reply; skip the close_notify alert
	// (as the rawtls mode does) so the generator spends its core on setups.
	defer closeRaw(c.nc)
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		for {
			op, _, p, ok := c.fr.next()
			if !ok {
				break
			}
			if op == opClose {
				if code := closeCode(p); code != 1000 {
					return fmt.Errorf("%w: %s", errRefused, closeReason(p))
				}
				return nil
			}
		}
		if err := c.fr.fill(c.nc); err != nil {
			return fmt.Errorf("waiting for the close reply: %w", err)
		}
	}
}

// closeRaw closes the TCP connection under nc without a TLS close_notify.
func closeRaw(nc net.Conn) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	nc.Close()
}
