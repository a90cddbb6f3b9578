package server_test

// End-to-end tests of the server's limits and of what it answers to
// requests that are not WebSocket: the connection cap, plain GETs, plain
// HTTP on the TLS port, and liveness pings.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
	"github.com/mles/mles/tlsbridge"
)

// exchange has every client send a message that every other client then
// receives (history and other traffic before it are skipped).
func exchange(t *testing.T, clients []*rawClient, tag string) {
	t.Helper()
	for i, from := range clients {
		text := fmt.Sprintf("%s from %d", tag, i)
		from.mustSend(t, ws.OpText, []byte(text))
		for j, to := range clients {
			if j != i {
				to.recvUntil(t, ws.OpText, text)
			}
		}
	}
}

// waitConns waits until the server counts n open connections.
func (ts *testServer) waitConns(t testing.TB, n int64) {
	t.Helper()
	poll.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := ts.Stats().Conns; got != n {
			return fmt.Errorf("Stats().Conns = %d, want %d", got, n)
		}
		return nil
	})
}

// expectRefused connects while the server is full and asserts the server
// closes the connection within quickClose without a 101: in plain mode
// the upgrade request gets no answer, in TLS mode the handshake fails.
func (ts *testServer) expectRefused(t *testing.T) {
	t.Helper()
	start := time.Now()
	tcp, err := net.DialTimeout("tcp", ts.addr, shortWait)
	if err != nil {
		t.Fatalf("dial: %v", err) // the kernel accepts; the server closes after
	}
	defer tcp.Close()
	conn := tcp
	if ts.tls {
		conn = tls.Client(tcp, clientTLSConfig(t))
	}
	_ = conn.SetDeadline(start.Add(quickClose))
	// In TLS mode Write runs the handshake, which fails when the server closes.
	_, err = conn.Write([]byte(mlestest.UpgradeRequest(ts.addr, newWSKey(), nil)))
	var got []byte
	if err == nil {
		got, err = io.ReadAll(conn) // nil at EOF
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection over MaxConns still open after %v (read %q)", quickClose, got)
	}
	if bytes.Contains(got, []byte(" 101 ")) {
		t.Fatalf("connection over MaxConns was upgraded: %q", got)
	}
	if len(got) > 0 {
		t.Fatalf("connection over MaxConns got an answer: %q", got)
	}
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// TestMaxConns: with MaxConns=5, five clients join and talk; the
// sixth to tenth connections are closed at accept; the five are unharmed;
// a freed slot admits a new client; the count returns to zero.
func TestMaxConns(t *testing.T) {
	const maxConns = 5
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) { o.MaxConns = maxConns })
		clients := make([]*rawClient, maxConns)
		for i := range clients {
			clients[i] = ts.joinSeq(t, fmt.Sprintf("u%d", i), "full")
		}
		ts.waitConns(t, maxConns)
		exchange(t, clients, "before")

		for range 5 {
			ts.expectRefused(t)
		}
		ts.waitConns(t, maxConns)
		exchange(t, clients, "after refusals")

		// Free one slot: a new client gets it, and the server is full again.
		_ = clients[0].Close()
		ts.waitMembers(t, maxConns-1)
		ts.waitConns(t, maxConns-1)
		clients[0] = ts.joinSeq(t, "newcomer", "full")
		exchange(t, clients, "with newcomer")
		ts.expectRefused(t)

		for _, c := range clients {
			_ = c.Close()
		}
		ts.waitConns(t, 0)
		ts.waitMembers(t, 0)
	})
}

// TestPlainGet: an HTTP request without Upgrade is answered 404 and the
// server closes the connection.
func TestPlainGet(t *testing.T) {
	cases := []struct {
		name string
		req  string
	}{
		// The smallest valid HTTP/1.1 request.
		{"root", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		// A browser asking to keep the connection: closed all the same.
		{"keep-alive", "GET /index.html?q=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n"},
	}
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				conn, _, err := ts.dialTransport(dialConfig{})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(quickClose))
				if _, err := io.WriteString(conn, tc.req); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
				if err != nil {
					t.Fatalf("read response: %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("status %d (%q), want 404", resp.StatusCode, body)
				}
				if resp.Header.Get("Sec-WebSocket-Accept") != "" {
					t.Fatal("404 carries Sec-WebSocket-Accept")
				}
				rest, err := io.ReadAll(br)
				if err != nil && !isReset(err) {
					t.Fatalf("connection not closed within %v after the 404: %v", quickClose, err)
				}
				if len(rest) > 0 {
					t.Fatalf("bytes after the 404: %q", rest)
				}
			})
		}
	})
}

// TestPlainHTTPOnTLSPort: clear-text HTTP on the TLS port gets the
// clear-text 400 answer (as net/http's server sends) and a close.
func TestPlainHTTPOnTLSPort(t *testing.T) {
	ts := startServer(t, modes[0], nil)
	conn, err := net.DialTimeout("tcp", ts.addr, shortWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(quickClose))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil && !isReset(err) {
		t.Fatalf("connection not closed within %v: %v (read %q)", quickClose, err, got)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.0 400 Bad Request\r\n") {
		t.Fatalf("answer %q, want the clear-text 400", got)
	}
	if string(got) != tlsbridge.PlainHTTPResponse {
		t.Fatalf("answer %q, want %q", got, tlsbridge.PlainHTTPResponse)
	}
	ts.waitConns(t, 0)
}

// TestPingLiveness: a joined client that sends nothing gets PingMax
// pings and is then closed with 1001; a client that answers pings, or
// sends frames of its own, stays connected.
func TestPingLiveness(t *testing.T) {
	const (
		interval = 200 * time.Millisecond
		pingMax  = 2
		// The silent client's close comes after pingMax+1 intervals plus
		// a tick at most (650 ms); closeBound leaves room for -race.
		closeBound = 1200 * time.Millisecond
		// alive is how long the active clients must stay connected:
		// more than twice the silent client's lifetime.
		alive = 1500 * time.Millisecond
	)
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) {
			o.PingInterval = interval
			o.PingMax = pingMax
			o.TickInterval = 50 * time.Millisecond
		})

		t.Run("silent", func(t *testing.T) {
			t.Parallel()
			c := ts.upgraded(t, dialConfig{})
			start := time.Now()
			c.mustSend(t, ws.OpText, headerJSON("silent", "live-silent"))
			pings := 0
			deadline := start.Add(closeBound)
			for {
				f, err := c.nextFrame(time.Until(deadline))
				if err != nil {
					t.Fatalf("after %d pings and %v: no close frame: %v", pings, time.Since(start), err)
				}
				switch f.Header.OpCode {
				case ws.OpPing:
					pings++
					continue
				case ws.OpClose:
				default:
					t.Fatalf("unexpected frame %v %q", f.Header.OpCode, trunc(f.Payload))
				}
				code, reason := ws.ParseCloseFrameData(f.Payload)
				elapsed := time.Since(start)
				t.Logf("closed %d %q after %v and %d pings", code, reason, elapsed.Round(time.Millisecond), pings)
				if code != ws.StatusGoingAway {
					t.Fatalf("close code %d (%q), want 1001", code, reason)
				}
				if pings != pingMax {
					t.Fatalf("%d pings before the close, want %d", pings, pingMax)
				}
				if elapsed < pingMax*interval {
					t.Fatalf("closed after %v, before %d ping intervals", elapsed, pingMax)
				}
				break
			}
			if err := c.awaitEOF(quickClose); err != nil {
				t.Fatal(err)
			}
		})

		cases := []struct {
			name string
			// answer runs on each server ping; background, if set, runs
			// in its own goroutine until stop closes.
			answer     func(c *rawClient, p []byte) error
			background func(c *rawClient, stop <-chan struct{}) error
		}{
			// Answers each ping with a pong carrying its payload.
			{name: "pong", answer: func(c *rawClient, p []byte) error { return c.send(ws.OpPong, p) }},
			// Never answers, but pings the server every 100 ms: any
			// inbound frame counts as life.
			{name: "own-pings", background: func(c *rawClient, stop <-chan struct{}) error {
				tk := time.NewTicker(interval / 2)
				defer tk.Stop()
				for {
					select {
					case <-stop:
						return nil
					case <-tk.C:
						if err := c.send(ws.OpPing, []byte("client")); err != nil {
							return err
						}
					}
				}
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				c := ts.join(t, tc.name, "live-"+tc.name)
				stop := make(chan struct{})
				var wg sync.WaitGroup
				var bgErr error
				if tc.background != nil {
					wg.Add(1)
					go func() { defer wg.Done(); bgErr = tc.background(c, stop) }()
				}
				end := time.Now().Add(alive)
				pings := 0
				for {
					f, err := c.nextFrame(time.Until(end))
					if errors.Is(err, os.ErrDeadlineExceeded) {
						break // alive for the whole period
					}
					if err != nil {
						t.Fatalf("after %d pings: %v", pings, err)
					}
					switch f.Header.OpCode {
					case ws.OpPing:
						pings++
						if tc.answer != nil {
							if err := tc.answer(c, f.Payload); err != nil {
								t.Fatalf("answer: %v", err)
							}
						}
					case ws.OpPong:
					case ws.OpClose:
						code, reason := ws.ParseCloseFrameData(f.Payload)
						t.Fatalf("closed %d %q after %d pings", code, reason, pings)
					}
				}
				close(stop)
				wg.Wait()
				if bgErr != nil {
					t.Fatalf("background: %v", bgErr)
				}
				// Server pings kept coming: the liveness check ran on it.
				if pings < 3 {
					t.Fatalf("%d server pings in %v, want several", pings, alive)
				}
				// Still connected: a ping round trip works.
				c.mustSend(t, ws.OpPing, []byte("still there"))
				deadline := time.Now().Add(shortWait)
				for {
					f, err := c.nextFrame(time.Until(deadline))
					if err != nil {
						t.Fatalf("no pong after %v alive: %v", alive, err)
					}
					if f.Header.OpCode == ws.OpPong && string(f.Payload) == "still there" {
						break
					}
				}
			})
		}
	})
}
