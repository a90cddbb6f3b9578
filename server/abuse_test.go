package server_test

// The abuse suite (issue 4): hostile and broken clients over real sockets,
// TLS first. Each test checks the answer (close code or status, and how
// fast), that nothing leaks afterwards (connections, handshakes, per-IP
// entries, fds), and that well-behaved clients beside the abuser keep being
// served. Frame-level RFC 6455 violations are in wire_test.go
// (TestProtocolErrors), header-frame errors in TestInvalidHeader,
// upgrade-request errors in upgrade_test.go, half-open clients in
// TestPingLiveness, the connection cap in TestMaxConns.

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// fdWait bounds the wait for the test process's fd count to return to its
// baseline: closes on both ends are prompt, but a loaded CI machine
// (go test runs packages in parallel) can delay them by seconds.
const fdWait = 30 * time.Second

// TestHugeDeclaredLength: a frame header that declares an enormous
// payload is refused from the header alone, at once, without the server
// allocating for it: 2^63-1 bytes (the largest legal 64-bit length) is over
// --max-message (1009); 2^63 sets the most significant bit, which RFC 6455
// section 5.2 forbids (1002).
func TestHugeDeclaredLength(t *testing.T) {
	header := func(length uint64) []byte {
		b := []byte{0x80 | byte(ws.OpBinary), 0x80 | 127}
		b = binary.BigEndian.AppendUint64(b, length)
		return append(b, 1, 2, 3, 4) // masking key; no payload follows
	}
	cases := []struct {
		name   string
		length uint64
		want   ws.StatusCode
	}{
		{"2^63-1", 1<<63 - 1, ws.StatusMessageTooBig},
		{"2^63", 1 << 63, ws.StatusProtocolError},
		{"2^32", 1 << 32, ws.StatusMessageTooBig},
		{"max-message+1", 16<<20 + 1, ws.StatusMessageTooBig},
	}
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil) // the default --max-message, 16 MiB
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := ts.join(t, fmt.Sprintf("huge%d", i), "huge")
				ts.waitMembers(t, 1)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				if err := c.write(header(tc.length)); err != nil {
					t.Fatal(err)
				}
				c.expectClose(t, tc.want, quickClose)
				runtime.ReadMemStats(&after)
				// A reader that reserved even --max-message for the
				// declared length would show 16 MiB here; the test
				// process's own allocations in this window are far below.
				if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
					t.Errorf("allocated %d bytes while refusing a %d-byte frame header", grew, tc.length)
				}
				_ = c.Close()
				ts.waitMembers(t, 0)
			})
		}
	})
}

// TestHeaderFrameAbuse: header frames built to hurt, beyond the invalid
// ones of TestInvalidHeader: a 1 MB channel name, control characters
// (the names end up in logs and history), a header sent as a fragmented
// binary message, and nested JSON. Each is closed at once with 1008 and
// creates no channel.
func TestHeaderFrameAbuse(t *testing.T) {
	big := strings.Repeat("c", 1<<20)
	cases := []struct {
		name  string
		bytes []byte
	}{
		{"channel-1MB", maskedFrame(ws.OpText, true, 0, []byte(`{"uid":"u","channel":"`+big+`"}`))},
		{"uid-1MB-fragmented", bytes.Join([][]byte{
			maskedFrame(ws.OpText, false, 0, []byte(`{"uid":"`+big[:512<<10])),
			maskedFrame(ws.OpContinuation, true, 0, []byte(big[:512<<10]+`","channel":"c"}`)),
		}, nil)},
		{"uid-newline", maskedFrame(ws.OpText, true, 0, []byte(`{"uid":"a\nINFO forged","channel":"ctl"}`))},
		{"uid-nul", maskedFrame(ws.OpText, true, 0, []byte(`{"uid":"a\u0000b","channel":"ctl"}`))},
		{"channel-escape", maskedFrame(ws.OpText, true, 0, []byte(`{"uid":"u","channel":"\u001b[31mred"}`))},
		{"channel-del", maskedFrame(ws.OpText, true, 0, []byte("{\"uid\":\"u\",\"channel\":\"a\x7f\"}"))},
		{"binary-fragmented", bytes.Join([][]byte{
			maskedFrame(ws.OpBinary, false, 0, []byte(`{"uid":"u",`)),
			maskedFrame(ws.OpContinuation, true, 0, []byte(`"channel":"bin"}`)),
		}, nil)},
		{"deep-nesting", maskedFrame(ws.OpText, true, 0, []byte(`{"uid":"u","channel":"c","x":`+
			strings.Repeat("[", 10000)+strings.Repeat("]", 10000)+`}`))},
		{"uid-array", maskedFrame(ws.OpText, true, 0, []byte(`{"uid":["u"],"channel":"c"}`))},
		{"channel-bool", maskedFrame(ws.OpText, true, 0, []byte(`{"uid":"u","channel":true}`))},
	}
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := ts.upgraded(t, dialConfig{})
				defer c.Close()
				start := time.Now()
				if err := c.write(tc.bytes); err != nil {
					// The server may close before it read everything; the
					// close frame is still there to read.
					t.Logf("write: %v", err)
				}
				c.expectClose(t, ws.StatusPolicyViolation, quickClose)
				if d := time.Since(start); d > quickClose {
					t.Fatalf("closed after %v", d)
				}
			})
		}
		ts.waitConns(t, 0)
		if got := ts.Stats().Channels; got != 0 {
			t.Fatalf("Channels = %d after refused headers, want 0", got)
		}
	})
}

// TestTLSGarbage: what arrives on the TLS port that is not TLS, or not
// all of it, is closed (quickly when it is wrong, at the handshake timeout
// when it stops), and leaves no connection, handshake or fd behind.
func TestTLSGarbage(t *testing.T) {
	const hsTimeout = 500 * time.Millisecond
	ts := startServer(t, mode{"tls", true}, func(o *server.Options) {
		o.HelloTimeout = hsTimeout // a ClientHello that stops, or never starts
		o.HandshakeTimeout = hsTimeout
	})
	hello := clientHelloPrefix(t) // the first half of a real ClientHello
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	random[0] = 0xff // no TLS record type: otherwise 1 run in 256 starts a record and waits for it
	cases := []struct {
		name   string
		bytes  []byte
		fin    bool          // half-close after writing
		within time.Duration // the server closes within this
	}{
		{"random-bytes", random, false, quickClose},
		{"clienthello-of-4-bytes", []byte{0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef}, false, quickClose},
		{"plain-http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false, quickClose},
		{"sslv2-hello", []byte{0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}, false, quickClose},
		{"record-of-64KiB-declared", []byte{0x16, 0x03, 0x01, 0xff, 0xff}, false, quickClose},
		{"truncated-hello-fin", hello, true, quickClose},
		{"truncated-hello-silent", hello, false, hsTimeout + quickClose},
		{"nothing", nil, false, hsTimeout + quickClose},
	}
	base := openFDs(t)
	var wg sync.WaitGroup
	errs := make([]error, len(cases))
	for i, tc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				nc, err := net.DialTimeout("tcp", ts.addr, shortWait)
				if err != nil {
					return err
				}
				defer nc.Close()
				start := time.Now()
				if len(tc.bytes) > 0 {
					if _, err := nc.Write(tc.bytes); err != nil {
						return err
					}
				}
				if tc.fin {
					_ = nc.(*net.TCPConn).CloseWrite()
				}
				_ = nc.SetReadDeadline(start.Add(tc.within))
				got, err := io.ReadAll(nc)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return fmt.Errorf("still open after %v (read %d bytes)", tc.within, len(got))
				}
				if bytes.Contains(got, []byte("HTTP/1.1 101")) {
					return fmt.Errorf("upgraded: %q", got)
				}
				t.Logf("%s: closed after %v, %d bytes back", tc.name, time.Since(start).Round(time.Millisecond), len(got))
				return nil
			}()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", cases[i].name, err)
		}
	}
	ts.waitConns(t, 0)
	poll.CheckFor(t, fdWait, 10*time.Millisecond, func() error {
		if h := ts.Stats().Handshakes; h != 0 {
			return fmt.Errorf("Handshakes = %d", h)
		}
		if n := openFDs(t); n > base {
			return fmt.Errorf("fds %d, baseline %d", n, base)
		}
		return nil
	})
}

// TestMaxConnsPerIP: with MaxConnsPerIP=3, a flood from one address is
// refused at accept beyond 3 while its 3 members and the members from
// another address keep talking; refused sockets and the per-address entries
// are released; a freed slot admits the next connection.
func TestMaxConnsPerIP(t *testing.T) {
	const perIP = 3
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) { o.MaxConnsPerIP = perIP })
		base := openFDs(t)
		var clients []*rawClient
		for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
			for i := range perIP {
				c, err := ts.joinErr(fmt.Sprintf("%s-%d", ip, i), "perip", dialConfig{localIP: ip})
				if err != nil {
					t.Fatalf("join from %s: %v", ip, err)
				}
				clients = append(clients, c)
			}
		}
		ts.waitMembers(t, 2*perIP)
		exchange(t, clients, "before the flood")

		// The flood: 50 concurrent connections from the first address.
		const flood = 50
		var wg sync.WaitGroup
		var mu sync.Mutex
		var upgraded int
		for range flood {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := ts.joinErr("flood", "perip", dialConfig{localIP: "127.0.0.1"})
				if err == nil {
					mu.Lock()
					upgraded++
					mu.Unlock()
					c.Close()
				}
			}()
		}
		wg.Wait()
		if upgraded > 0 {
			t.Fatalf("%d flood connections over the per-IP limit were upgraded", upgraded)
		}
		if got := ts.Stats().RefusedPerIP; got != flood {
			t.Fatalf("RefusedPerIP = %d, want %d", got, flood)
		}
		ts.waitConns(t, 2*perIP)
		exchange(t, clients, "after the flood")

		// A freed slot admits a new connection from that address.
		_ = clients[0].Close()
		ts.waitConns(t, 2*perIP-1)
		c, err := ts.joinErr("newcomer", "perip", dialConfig{localIP: "127.0.0.1"})
		if err != nil {
			t.Fatalf("join into a freed slot: %v", err)
		}
		clients[0] = c
		ts.waitMembers(t, 2*perIP)
		exchange(t, clients, "with the newcomer")

		for _, c := range clients {
			_ = c.Close()
		}
		ts.waitConns(t, 0)
		poll.CheckFor(t, fdWait, 10*time.Millisecond, func() error {
			if n := ts.Stats().PerIPAddrs; n != 0 {
				return fmt.Errorf("PerIPAddrs = %d after every connection closed", n)
			}
			if n := openFDs(t); n > base {
				return fmt.Errorf("fds %d, baseline %d", n, base)
			}
			return nil
		})
	})
}

// TestSlowloris: clients that dribble one byte every 50 ms through the
// TLS handshake, the HTTP upgrade or the header frame are closed at their
// deadline (the handshake timeout covers the handshake and the upgrade, the
// header timeout the header frame), while a pair of members on the same
// reactor keeps its round-trip latency.
func TestSlowloris(t *testing.T) {
	const (
		// Long enough that the honest TLS handshakes of the upgrade and
		// header phases (60 at once, under -race, on a busy 2-core
		// machine) finish well inside them.
		hsTimeout = 3 * time.Second
		// Below the 2.1 s the dribbled header frame (42 bytes) takes, and
		// counted from the 101: the handshake's duration does not eat it.
		hdrTimeout = 1500 * time.Millisecond
		perPhase   = 20
		drip       = 50 * time.Millisecond
		// The server checks deadlines every tick (50 ms in these tests);
		// slack covers that, the scheduler and the race detector.
		slack = 700 * time.Millisecond
	)
	ts := startServer(t, mode{"tls", true}, func(o *server.Options) {
		o.Reactors = 1 // everyone on the same loop
		o.HelloTimeout = hsTimeout
		o.HandshakeTimeout = hsTimeout
		o.HeaderTimeout = hdrTimeout
	})
	a := ts.join(t, "probe-a", "probe")
	b := ts.join(t, "probe-b", "probe")
	ts.waitMembers(t, 2)

	// probe measures a->b latency, one message every 10 ms, for d or, when
	// d is 0, until stop is closed.
	probe := func(d time.Duration, stop <-chan struct{}) []time.Duration {
		var lat []time.Duration
		end := time.Now().Add(d)
		for i := 0; ; i++ {
			if d > 0 && time.Now().After(end) {
				break
			}
			if stop != nil {
				select {
				case <-stop:
					return lat
				default:
				}
			}
			text := fmt.Sprintf("probe %d", i)
			start := time.Now()
			a.mustSend(t, ws.OpText, []byte(text))
			b.recvUntil(t, ws.OpText, text)
			lat = append(lat, time.Since(start))
			time.Sleep(10 * time.Millisecond) // the probe's send rate
		}
		return lat
	}
	p99 := func(lat []time.Duration) time.Duration {
		s := slices.Clone(lat)
		slices.Sort(s)
		return s[len(s)*99/100]
	}
	baseline := probe(time.Second, nil)

	hello := clientHelloPrefix(t)
	type result struct {
		phase  string
		closed time.Duration // from the start of the phase's deadline
		err    error
	}
	results := make(chan result, 3*perPhase)
	// ready counts the slowloris clients that are dribbling: the probe
	// measures from then until the last of them is closed.
	var ready sync.WaitGroup
	ready.Add(3 * perPhase)
	dribble := func(c net.Conn, p []byte) {
		for _, b := range p {
			if _, err := c.Write([]byte{b}); err != nil {
				return // closed by the server: what we wait for
			}
			time.Sleep(drip) // the slowloris pace itself
		}
	}
	// awaitClose reads until the server closes c and reports when, relative
	// to from.
	awaitClose := func(phase string, c net.Conn, from time.Time, limit time.Duration) {
		_ = c.SetReadDeadline(from.Add(limit + slack + time.Second))
		_, err := io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			results <- result{phase: phase, err: fmt.Errorf("not closed within %v", limit+slack+time.Second)}
			return
		}
		results <- result{phase: phase, closed: time.Since(from)}
	}
	var wg sync.WaitGroup
	for range perPhase {
		wg.Add(3)
		// The TLS handshake: the ClientHello a byte at a time.
		go func() {
			defer wg.Done()
			// start is taken before the dial: the server's deadline
			// cannot begin earlier, while a timestamp after it may be
			// late on a busy machine.
			start := time.Now()
			nc, err := net.DialTimeout("tcp", ts.addr, shortWait)
			if err != nil {
				results <- result{phase: "handshake", err: err}
				return
			}
			defer nc.Close()
			go dribble(nc, hello)
			ready.Done()
			awaitClose("handshake", nc, start, hsTimeout)
		}()
		// The upgrade request, after a complete TLS handshake.
		go func() {
			defer wg.Done()
			start := time.Now()
			conn, _, err := ts.dialTransport(dialConfig{})
			ready.Done()
			if err != nil {
				results <- result{phase: "upgrade", err: err}
				return
			}
			defer conn.Close()
			go dribble(conn, []byte(mlestest.UpgradeRequest(ts.addr, newWSKey(), nil)))
			awaitClose("upgrade", conn, start, hsTimeout)
		}()
		// The header frame, after the upgrade.
		go func() {
			defer wg.Done()
			c, err := ts.dialUpgrade(dialConfig{})
			// The header deadline starts when the server sends its 101,
			// just before this: not before the TLS handshake and upgrade.
			start := time.Now()
			ready.Done()
			if err != nil {
				results <- result{phase: "header", err: err}
				return
			}
			defer c.Close()
			go dribble(c.conn, maskedFrame(ws.OpText, true, 0, headerJSON("slow", "slowloris")))
			awaitClose("header", c.conn, start, hdrTimeout)
		}()
	}
	ready.Wait()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	during := probe(0, done)
	close(results)

	for r := range results {
		limit := hsTimeout
		if r.phase == "header" {
			limit = hdrTimeout
		}
		switch {
		case r.err != nil:
			t.Errorf("%s: %v", r.phase, r.err)
		case r.closed > limit+slack:
			t.Errorf("%s: closed after %v, deadline %v", r.phase, r.closed, limit)
		case r.closed < limit-500*time.Millisecond:
			// Closed early: the server refused something it should have
			// waited for.
			t.Errorf("%s: closed after %v, before its deadline %v", r.phase, r.closed, limit)
		}
	}
	pb, pd := p99(baseline), p99(during)
	t.Logf("probe p99: %v before, %v with %d slowloris clients", pb, pd, 3*perPhase)
	// A loop blocked by a slow client would stall the probe for a
	// deadline's length (hundreds of ms); the bound leaves room for the
	// TLS work and closes of 60 clients in this same process.
	if bound := max(5*pb, pb+50*time.Millisecond); pd > bound {
		t.Errorf("probe p99 %v with slowloris clients on the loop, above %v (baseline %v)", pd, bound, pb)
	}
	ts.waitConns(t, 2)
	exchange(t, []*rawClient{a, b}, "after")
}

// TestChannelChurn: 100,000 channels created (one join each) and
// abandoned are all held (their history outlives the member) until the idle
// sweep drops them; then the heap returns near where it started. The sweep
// is run directly (SweepIdleChannels, the ticker's own code) instead of
// waiting for ChannelIdle; TestIdleChannelSweep covers the ticker.
func TestChannelChurn(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	ts := startServer(t, mode{"plain", false}, func(o *server.Options) {
		o.ChannelIdle = time.Hour // nothing is dropped while the test creates
		o.History = 1
	})
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()

	// Each join is one connection that sends its upgrade request, header
	// frame and a close in one write and waits for the close echo: the
	// channel now exists and holds the join frame.
	const dialers = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int)
	for range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := churnJoin(ts.addr, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("join %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	start := time.Now()
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	created := time.Since(start)
	ts.waitConns(t, 0)
	ts.waitMembers(t, 0)
	if c := ts.Stats().Channels; c != n {
		t.Fatalf("Channels = %d after %d joins to distinct channels, want %d", c, n, n)
	}
	peak := heap()
	t.Logf("%d channels created and abandoned in %v; heap %d KiB before, %d KiB with them",
		n, created.Round(time.Millisecond), before>>10, peak>>10)

	ts.SweepIdleChannels(time.Now().Add(time.Second)) // every channel is idle by then
	if c := ts.Stats().Channels; c != 0 {
		t.Fatalf("Channels = %d after the idle sweep, want 0", c)
	}
	after := heap()
	t.Logf("heap after the sweep: %d KiB (%d KiB at the peak)", after>>10, peak>>10)
	// "Near baseline": within 4 MiB of where it started, while the
	// abandoned channels held far more (the log line above shows how much).
	if after > before+4<<20 {
		t.Fatalf("heap %d KiB after the sweep, %d KiB before the churn", after>>10, before>>10)
	}
}

// churnJoin joins channel "churn-i" and leaves.
func churnJoin(addr string, i int) error {
	nc, err := net.DialTimeout("tcp", addr, shortWait)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(shortWait))
	req := []byte(mlestest.UpgradeRequest(addr, newWSKey(), nil))
	req = append(req, maskedFrame(ws.OpText, true, 0, headerJSON(fmt.Sprintf("u%d", i), fmt.Sprintf("churn-%d", i)))...)
	req = append(req, maskedFrame(ws.OpClose, true, 0, ws.NewCloseFrameBody(1000, ""))...)
	if _, err := nc.Write(req); err != nil {
		return err
	}
	got, err := io.ReadAll(nc)
	if err != nil && !isReset(err) {
		return err
	}
	// The echo of our close: an unmasked close frame with code 1000.
	if !bytes.Contains(got, []byte{0x88, 0x02, 0x03, 0xe8}) {
		return fmt.Errorf("no close echo in %q", trunc(got))
	}
	return nil
}

// TestRateLimit: with RateLimit=3, the 4th connection from 127.0.0.1
// within the minute is closed at accept (before TLS: it never upgrades)
// while 127.0.0.2 still connects, and the same holds on an IPv6 loopback
// listener for ::1; the members admitted keep talking.
func TestRateLimit(t *testing.T) {
	const perMinute = 3
	forModes(t, func(t *testing.T, m mode) {
		for _, tc := range []struct{ listen, first, second string }{
			{"127.0.0.1:0", "127.0.0.1", "127.0.0.2"},
			{"[::1]:0", "::1", ""},
		} {
			ts := startServer(t, m, func(o *server.Options) {
				o.Addr = tc.listen
				o.RateLimit = perMinute
			})
			var clients []*rawClient
			for i := range perMinute {
				c, err := ts.joinErr(fmt.Sprintf("a%d", i), "rate", dialConfig{localIP: tc.first})
				if err != nil {
					t.Fatalf("%s: connection %d of %d: %v", tc.first, i+1, perMinute, err)
				}
				t.Cleanup(func() { c.Close() })
				clients = append(clients, c)
			}
			if c, err := ts.joinErr("over", "rate", dialConfig{localIP: tc.first}); err == nil {
				c.Close()
				t.Fatalf("%s: connection %d within a minute was admitted", tc.first, perMinute+1)
			}
			if got := ts.Stats().RefusedRate; got != 1 {
				t.Fatalf("RefusedRate = %d, want 1", got)
			}
			if tc.second != "" {
				c, err := ts.joinErr("other", "rate", dialConfig{localIP: tc.second})
				if err != nil {
					t.Fatalf("%s, after %s used its allowance: %v", tc.second, tc.first, err)
				}
				t.Cleanup(func() { c.Close() })
				clients = append(clients, c)
			}
			ts.waitMembers(t, int64(len(clients)))
			exchange(t, clients, "after the refusal")
		}
	})
}
