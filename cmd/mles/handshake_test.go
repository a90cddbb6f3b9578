package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/mlestest"
)

// startLoopbackMles builds mles into dir and runs it on 127.0.0.1 at a
// free port with args, until the test ends; it returns the process and
// the address it listens on.
func startLoopbackMles(t *testing.T, dir string, args ...string) (*mlestest.Proc, string) {
	t.Helper()
	mles := mlestest.BuildBin(t, dir, "mles", "github.com/mles/mles/cmd/mles")
	port := mlestest.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	argv := append([]string{"--addr", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)
	return mlestest.StartProc(t, mles, addr, nil, nil, argv...), addr
}

// TestSilentTLSConnections: 3,000 TCP connections to the TLS port that
// never send a byte cost the server under 4 KiB of RSS each, measured as
// the idle benchmark does (VmRSS after the connections minus before,
// divided by their number), and a normal client still joins at once. A
// handshake goroutine started at accept cost one goroutine stack and a
// tls.Conn per silent connection, for the whole handshake timeout.
func TestSilentTLSConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and opens 3,000 connections")
	}
	const silent = 3000
	// Long timeouts: the connections must still be there when RSS is read.
	srv, addr := startLoopbackMles(t, t.TempDir(), "--handshake-timeout", "2m", "--hello-timeout", "2m")
	pid := srv.Cmd.Process.Pid

	// Warm the server up (certificate, first handshake, first channel)
	// before the baseline.
	if d, err := joinRoundTrip(addr, "warm"); err != nil {
		t.Fatalf("warm-up join: %v", err)
	} else {
		t.Logf("warm-up join: %v", d)
	}
	before := settledRSS(t, pid)

	conns := make([]net.Conn, 0, silent)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range silent {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	d, err := joinRoundTrip(addr, "beside-silent")
	if err != nil {
		t.Fatalf("join beside %d silent connections: %v", silent, err)
	}
	t.Logf("join beside %d silent connections: %v", silent, d)
	if d > time.Second {
		t.Errorf("a join beside %d silent connections took %v, want under 1s", silent, d)
	}
	after := settledRSS(t, pid)
	per := float64(after-before) / silent
	t.Logf("server RSS %.1f MiB -> %.1f MiB: %.0f bytes per silent connection", float64(before)/(1<<20), float64(after)/(1<<20), per)
	if per >= 4096 {
		t.Errorf("%.0f bytes of server RSS per silent connection, want under 4096", per)
	}

	// They are all still open: the measure was of held connections.
	var open atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			var b [1]byte
			_, err := c.Read(b[:])
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				open.Add(1)
			}
		})
	}
	wg.Wait()
	if n := open.Load(); n != silent {
		t.Errorf("%d of %d silent connections still open at the end, want all", n, silent)
	}
}

// TestHandshakeSlotHolders: with --max-handshakes 4, connections that send
// the first 3 bytes of a TLS record and go silent, and reconnect as soon as
// they are closed, do not keep a legitimate client from joining: each of
// its joins takes under 1 s. Such holders used to take every handshake slot
// for the whole handshake timeout, and the wait for a slot counted against
// the client's own timeout.
func TestHandshakeSlotHolders(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const holders = 12
	_, addr := startLoopbackMles(t, t.TempDir(), "--max-handshakes", "4")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64
	defer func() { close(stop); wg.Wait() }()
	for range holders {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					continue
				}
				if _, err := c.Write([]byte{0x16, 0x03, 0x01}); err == nil {
					sent.Add(1)
				}
				// Hold until the server closes (or the test ends).
				done := make(chan struct{})
				go func() {
					var b [64]byte
					for {
						if _, err := c.Read(b[:]); err != nil {
							break
						}
					}
					close(done)
				}()
				select {
				case <-done:
				case <-stop:
				}
				c.Close()
				<-done
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for sent.Load() < holders {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d holders connected", sent.Load(), holders)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 5 {
		d, err := joinRoundTrip(addr, fmt.Sprintf("legit-%d", i))
		if err != nil {
			t.Fatalf("join %d beside %d slot holders: %v", i, holders, err)
		}
		t.Logf("join %d beside %d slot holders: %v", i, holders, d)
		if d > time.Second {
			t.Errorf("join %d beside %d slot holders took %v, want under 1s", i, holders, d)
		}
	}
}

// joinRoundTrip joins two members to channel over wss with a third-party
// client (gorilla/websocket) and returns how long the second one took from
// its dial to the first member's message: TLS handshake, upgrade, header
// frame and delivery.
func joinRoundTrip(addr, channel string) (time.Duration, error) {
	return joinRoundTripTLS(addr, channel, &tls.Config{InsecureSkipVerify: true}) // the self-signed default
}

// joinRoundTripTLS is joinRoundTrip with the client's TLS configuration.
func joinRoundTripTLS(addr, channel string, cfg *tls.Config) (time.Duration, error) {
	dialer := websocket.Dialer{
		Subprotocols:     []string{"mles-websocket"},
		TLSClientConfig:  cfg,
		HandshakeTimeout: 15 * time.Second,
	}
	join := func(uid string) (*websocket.Conn, error) {
		c, _, err := dialer.Dial("wss://"+addr+"/", nil)
		if err != nil {
			return nil, err
		}
		hdr := fmt.Sprintf(`{"uid":%q,"channel":%q}`, uid, channel)
		if err := c.WriteMessage(websocket.TextMessage, []byte(hdr)); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	a, err := join("a")
	if err != nil {
		return 0, fmt.Errorf("first member: %w", err)
	}
	defer a.Close()
	start := time.Now()
	b, err := join("b")
	if err != nil {
		return time.Since(start), fmt.Errorf("second member after %v: %w", time.Since(start), err)
	}
	defer b.Close()
	if err := a.WriteMessage(websocket.BinaryMessage, []byte("hello "+channel)); err != nil {
		return 0, err
	}
	_ = b.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		_, p, err := b.ReadMessage()
		if err != nil {
			return time.Since(start), fmt.Errorf("second member after %v: %w", time.Since(start), err)
		}
		if string(p) == "hello "+channel {
			return time.Since(start), nil
		}
	}
}

// settledRSS reads the process's VmRSS once it has stopped moving: three
// readings 300 ms apart within 64 KiB of each other, at least 2.5 s after
// the call (mles returns free heap pages to the OS 2 s after the last
// connection opened).
func settledRSS(t *testing.T, pid int) int64 {
	t.Helper()
	start := time.Now()
	var last []int64
	for {
		rss := readRSS(t, pid)
		last = append(last, rss)
		if len(last) > 3 {
			last = last[1:]
		}
		if len(last) == 3 && time.Since(start) > 2500*time.Millisecond {
			lo, hi := min(last[0], last[1], last[2]), max(last[0], last[1], last[2])
			if hi-lo <= 64<<10 {
				return rss
			}
		}
		if time.Since(start) > 30*time.Second {
			t.Logf("RSS did not settle in 30s: last readings %v", last)
			return rss
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func readRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
