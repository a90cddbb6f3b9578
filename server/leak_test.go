package server_test

// Acceptance 6 (issue 2): 1,000 connections that each end a different way
// leave no goroutine, fd, connection or membership behind.

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// clientHelloPrefix returns the first half of a ClientHello, for
// connections that stop mid-handshake.
func clientHelloPrefix(t testing.TB) []byte {
	t.Helper()
	hello := fullClientHello(t)
	return hello[:len(hello)/2]
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// ending is one way for a connection to end.
type ending struct {
	name string
	run  func(ts *testServer, i int) error
}

func leakEndings(t testing.TB, hello []byte) []ending {
	const wait = 5 * time.Second // bound for the server to act on a timeout
	// tcpOnly dials TCP without TLS, even in TLS mode.
	tcpOnly := func(ts *testServer) (*net.TCPConn, error) {
		c, err := net.DialTimeout("tcp", ts.addr, shortWait)
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	// waitClosed waits for the server to close a connection that sits.
	waitClosed := func(c net.Conn) error {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				if isReset(err) {
					return nil
				}
				return fmt.Errorf("server did not close: %w", err)
			}
		}
	}
	upgraded := func(ts *testServer) (*rawClient, error) {
		c, err := ts.dialUpgrade(dialConfig{})
		if err != nil {
			return nil, err
		}
		if c.resp.StatusCode != 101 {
			c.Close()
			return nil, fmt.Errorf("status %d", c.resp.StatusCode)
		}
		return c, nil
	}
	join := func(ts *testServer, i int) (*rawClient, error) {
		return ts.joinErr(fmt.Sprintf("leak%d", i), fmt.Sprintf("leak-%d", i%5), dialConfig{})
	}
	halfRequest := func(ts *testServer) []byte {
		r := []byte(mlestest.UpgradeRequest(ts.addr, newWSKey(), nil))
		return r[:len(r)/2]
	}
	return []ending{
		// Clean close after join: close 1000, echo, FIN.
		{"clean-close", func(ts *testServer, i int) error {
			c, err := join(ts, i)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.send(ws.OpClose, ws.NewCloseFrameBody(1000, "")); err != nil {
				return err
			}
			code, reason, err := c.awaitClose(wait)
			if err != nil {
				return err
			}
			if code != 1000 {
				return fmt.Errorf("echo %d %q, want 1000", code, reason)
			}
			return nil
		}},
		// TCP reset after join.
		{"reset-after-join", func(ts *testServer, i int) error {
			c, err := join(ts, i)
			if err != nil {
				return err
			}
			_ = c.tcp.SetLinger(0)
			return c.tcp.Close()
		}},
		// Gone in the middle of the TLS handshake (plain: right after
		// connect, before any byte).
		{"abort-handshake", func(ts *testServer, i int) error {
			c, err := tcpOnly(ts)
			if err != nil {
				return err
			}
			if ts.tls {
				_, _ = c.Write(hello)
			}
			_ = c.SetLinger(0)
			return c.Close()
		}},
		// Gone in the middle of the upgrade request.
		{"abort-upgrade", func(ts *testServer, i int) error {
			c, tcp, err := ts.dialTransport(dialConfig{})
			if err != nil {
				return err
			}
			if _, err := c.Write(halfRequest(ts)); err != nil {
				c.Close()
				return err
			}
			_ = tcp.SetLinger(0)
			return tcp.Close()
		}},
		// Gone after the 101, before the header frame.
		{"abort-before-header", func(ts *testServer, i int) error {
			c, err := upgraded(ts)
			if err != nil {
				return err
			}
			return c.Close()
		}},
		// Sits in the TLS handshake (plain: connected, silent) until the
		// handshake timeout.
		{"timeout-handshake", func(ts *testServer, i int) error {
			c, err := tcpOnly(ts)
			if err != nil {
				return err
			}
			defer c.Close()
			if ts.tls {
				if _, err := c.Write(hello); err != nil {
					return err
				}
			}
			return waitClosed(c)
		}},
		// Sits in the middle of the upgrade request.
		{"timeout-upgrade", func(ts *testServer, i int) error {
			c, _, err := ts.dialTransport(dialConfig{})
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.Write(halfRequest(ts)); err != nil {
				return err
			}
			return waitClosed(c)
		}},
		// Sits after the 101 without a header frame.
		{"timeout-header", func(ts *testServer, i int) error {
			c, err := upgraded(ts)
			if err != nil {
				return err
			}
			defer c.Close()
			return c.awaitEOF(wait)
		}},
		// Joined, then silent: never answers the liveness pings.
		{"timeout-joined", func(ts *testServer, i int) error {
			c, err := join(ts, i)
			if err != nil {
				return err
			}
			defer c.Close()
			return c.awaitEOF(wait)
		}},
		// A bad header frame: 1008 at once.
		{"bad-header", func(ts *testServer, i int) error {
			c, err := upgraded(ts)
			if err != nil {
				return err
			}
			defer c.Close()
			body := fmt.Sprintf(`{"uid":"","channel":"bad-%d"}`, i)
			if err := c.send(ws.OpText, []byte(body)); err != nil {
				return err
			}
			code, reason, err := c.awaitClose(wait)
			if code != 1008 || reason != "invalid uid" {
				return fmt.Errorf("close %d %q (%v), want 1008 \"invalid uid\"", code, reason, err)
			}
			return err
		}},
		// No subprotocol: 400, then the client leaves.
		{"bad-subprotocol", func(ts *testServer, i int) error {
			c, err := ts.dialUpgrade(dialConfig{noProtocol: true})
			if err != nil {
				return err
			}
			defer c.Close()
			if c.resp.StatusCode != 400 {
				return fmt.Errorf("status %d, want 400", c.resp.StatusCode)
			}
			return nil
		}},
		// Garbage: plain HTTP on the TLS port, random bytes on the plain
		// one; the server closes it (at once or at the handshake timeout).
		{"garbage", func(ts *testServer, i int) error {
			c, err := tcpOnly(ts)
			if err != nil {
				return err
			}
			defer c.Close()
			junk := []byte("\x00\x01garbage\xff\xfe not http at all")
			if ts.tls {
				junk = []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			if _, err := c.Write(junk); err != nil {
				return err
			}
			return waitClosed(c)
		}},
	}
}

// TestNoLeaks runs 1,000 connections round robin over the endings, 100
// at a time, then waits for goroutines and fds to return to their baseline
// and the server counters to zero.
func TestNoLeaks(t *testing.T) {
	const (
		total       = 1000
		concurrency = 100
	)
	hello := clientHelloPrefix(t)
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) {
			// The timeouts are what the timeout endings wait for (each
			// within leakEndings' 5 s), and long enough that the 100
			// honest clients running beside them, under -race on a busy
			// 2-core machine, never hit one: a TLS handshake, or the
			// header frame after the 101 (its deadline starts when the
			// server queues the 101, before the client has read it),
			// can take a second there.
			o.HelloTimeout = 2 * time.Second
			o.HandshakeTimeout = 2 * time.Second
			o.HeaderTimeout = 2 * time.Second
			o.PingInterval = 500 * time.Millisecond
			o.PingMax = 2
			o.TickInterval = 20 * time.Millisecond
		})
		endings := leakEndings(t, hello)

		// Warm up: one of each ending, so lazily started pools and
		// timers are part of the baseline.
		for i, e := range endings {
			if err := e.run(ts, total+i); err != nil {
				t.Fatalf("warm-up %s: %v", e.name, err)
			}
		}
		for i := range 5 { // create the five channels joins use
			if err := endings[0].run(ts, i); err != nil {
				t.Fatalf("warm-up join: %v", err)
			}
		}
		settle := func() error {
			if s := ts.Stats(); s.Conns != 0 || s.Members != 0 || s.Handshakes != 0 {
				return fmt.Errorf("stats %+v", s)
			}
			return nil
		}
		poll.CheckFor(t, 10*time.Second, 20*time.Millisecond, settle)
		runtime.GC()
		baseG, baseFD := runtime.NumGoroutine(), openFDs(t)
		baseChannels := ts.Stats().Channels

		start := time.Now()
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			fails = map[string][]string{}
			sem   = make(chan struct{}, concurrency)
		)
		for i := range total {
			e := endings[i%len(endings)]
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := e.run(ts, i); err != nil {
					mu.Lock()
					fails[e.name] = append(fails[e.name], err.Error())
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		t.Logf("%d connections in %v", total, time.Since(start))
		if len(fails) > 0 {
			var b strings.Builder
			for name, errs := range fails {
				fmt.Fprintf(&b, " [%s: %d failed, e.g. %s]", name, len(errs), errs[0])
			}
			t.Errorf("client-side failures:%s", b.String())
		}

		poll.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
			if err := settle(); err != nil {
				return err
			}
			if g := runtime.NumGoroutine(); g > baseG+5 {
				return fmt.Errorf("%d goroutines, baseline %d", g, baseG)
			}
			if fd := openFDs(t); fd > baseFD+2 {
				return fmt.Errorf("%d open fds, baseline %d", fd, baseFD)
			}
			return nil
		})
		// Joined endings used five channels, all made in the warm-up;
		// refused headers (bad-%d) must not have added any.
		if got := ts.Stats().Channels; got != baseChannels {
			t.Fatalf("Stats().Channels %d, was %d: refused joins created channels", got, baseChannels)
		}
		t.Logf("after: %d goroutines (baseline %d), %d fds (baseline %d), stats %+v",
			runtime.NumGoroutine(), baseG, openFDs(t), baseFD, ts.Stats())
	})
}
