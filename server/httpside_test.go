package server_test

// The HTTP side (SPEC 3): requests on the WebSocket port that are not
// upgrades go to Options.HTTP off the loops. Clients are net/http's own
// (not our code) and raw sockets that send a request one byte at a time;
// a large file goes to a client that stops reading, and WebSocket members
// on the same server keep exchanging messages meanwhile.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
	"github.com/mles/mles/server/www"
)

// bigFile is the size of the large file of the test site.
const bigFile = 8 << 20

// startSite starts a server whose HTTP side serves a test site for host
// "127.0.0.1": index.html and big.bin (bigFile bytes).
func startSite(t *testing.T, m mode, mods ...func(*server.Options)) (*testServer, []byte) {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "127.0.0.1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, bigFile)
	for i := range big {
		big[i] = byte(i * 31 >> 8)
	}
	for name, b := range map[string][]byte{"index.html": []byte("<h1>mles</h1>"), "big.bin": big} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, err := www.New(www.Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ts := startServer(t, m, func(o *server.Options) {
		o.HTTP = h
		for _, mod := range mods {
			mod(o)
		}
	})
	return ts, big
}

func (ts *testServer) httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{TLSClientConfig: clientTLSConfig(t), MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (ts *testServer) httpURL(path string) string {
	if ts.tls {
		return "https://" + ts.addr + path
	}
	return "http://" + ts.addr + path
}

// TestHTTPSide: net/http's client gets the site's files over our TLS and
// in plain mode, with keep-alive (the second request on the same
// connection), and a WebSocket client joins on the same port meanwhile.
func TestHTTPSide(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts, big := startSite(t, m)
		client := ts.httpClient(t)
		reused := make([]bool, 0, 3)
		for _, path := range []string{"/", "/big.bin", "/"} {
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) },
			})
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.httpURL(path), nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET %s: status %d, %v", path, resp.StatusCode, err)
			}
			want := []byte("<h1>mles</h1>")
			if path == "/big.bin" {
				want = big
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("GET %s: %d bytes differ from the file's %d", path, len(b), len(want))
			}
		}
		if len(reused) != 3 || reused[0] || !reused[1] || !reused[2] {
			t.Fatalf("connections reused %v, want [false true true] (keep-alive)", reused)
		}
		if r, err := client.Get(ts.httpURL("/missing")); err != nil || r.StatusCode != 404 {
			t.Fatalf("missing file: %v %v", r, err)
		}

		a, b := ts.join(t, "alice", "web"), ts.join(t, "bob", "web")
		defer a.Close()
		defer b.Close()
		a.mustSend(t, ws.OpText, []byte("hi"))
		b.expectData(t, ws.OpText, "hi")
	})
}

// TestHTTPSideByteByByte sends a request one byte per write (and so, in
// TLS mode, one record per byte) and two pipelined requests in one write.
func TestHTTPSideByteByByte(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts, _ := startSite(t, m)
		conn := ts.dialHTTP(t)
		defer conn.Close()
		req := "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
		for i := range len(req) {
			if _, err := conn.Write([]byte{req[i]}); err != nil {
				t.Fatal(err)
			}
		}
		br := bufio.NewReader(conn)
		expectIndex(t, br)
		if _, err := conn.Write([]byte(req + req)); err != nil {
			t.Fatal(err)
		}
		expectIndex(t, br)
		expectIndex(t, br)
	})
}

func (ts *testServer) dialHTTP(t *testing.T) net.Conn {
	t.Helper()
	var conn net.Conn
	var err error
	if ts.tls {
		cfg := clientTLSConfig(t).Clone()
		cfg.NextProtos = []string{"http/1.1"}
		conn, err = tls.Dial("tcp", ts.addr, cfg)
	} else {
		conn, err = net.Dial("tcp", ts.addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn
}

func expectIndex(t *testing.T, br *bufio.Reader) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(b) != "<h1>mles</h1>" {
		t.Fatalf("status %d, body %q, %v", resp.StatusCode, b, err)
	}
}

// TestHTTPSideSlowReader: clients fetch the large file and stop reading.
// Their handlers wait for the output to drain (the server does not buffer
// the file per client), WebSocket members on the same loops keep
// exchanging messages at once, and when the clients go, the handlers'
// goroutines and the connections are released.
func TestHTTPSideSlowReader(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts, _ := startSite(t, m)
		baseG := runtime.NumGoroutine()
		var mem0 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&mem0)
		const readers = 8
		var conns []net.Conn
		for range readers {
			c := ts.dialHTTP(t)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(16 << 10)
			}
			if _, err := fmt.Fprintf(c, "GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		// Each handler blocks once its output is full; the members still
		// talk, promptly.
		a, b := ts.join(t, "alice", "busy"), ts.join(t, "bob", "busy")
		defer a.Close()
		defer b.Close()
		for i := range 20 {
			start := time.Now()
			a.mustSend(t, ws.OpText, fmt.Appendf(nil, "m%d", i))
			b.expectData(t, ws.OpText, fmt.Sprintf("m%d", i))
			if d := time.Since(start); d > time.Second {
				t.Fatalf("message %d took %v beside %d stalled downloads", i, d, readers)
			}
		}
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		// Unread: 8 MiB files to 8 clients would be 64 MiB if buffered.
		grown := int64(ms.HeapAlloc) - int64(mem0.HeapAlloc)
		if grown > 16<<20 {
			t.Fatalf("heap grew %d MiB with %d stalled downloads of %d MiB", grown>>20, readers, bigFile>>20)
		}
		t.Logf("heap grew %d KiB with %d stalled downloads of %d MiB", grown>>10, readers, bigFile>>20)
		for _, c := range conns {
			c.Close()
		}
		poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if n := ts.Stats().Conns; n != 2 {
				return fmt.Errorf("Stats().Conns = %d, want the 2 members", n)
			}
			if g := runtime.NumGoroutine(); g > baseG+4 {
				return fmt.Errorf("%d goroutines, %d before the downloads", g, baseG)
			}
			return nil
		})
	})
}

// TestHTTPSideShutdown: an idle kept-alive HTTP connection and a stalled
// download do not hold up Shutdown.
func TestHTTPSideShutdown(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts, _ := startSite(t, m)
		idle := ts.dialHTTP(t)
		defer idle.Close()
		if _, err := fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		expectIndex(t, bufio.NewReader(idle))
		stalled := ts.dialHTTP(t)
		defer stalled.Close()
		if _, err := fmt.Fprintf(stalled, "GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ts.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Shutdown took %v", d)
		}
		_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, idle); err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("idle connection after Shutdown: %v", err)
		}
	})
}

// TestHTTPSideInputBound: a handler that has not read its request body yet
// holds the client's bytes up to the HTTP side's 1 MiB input bound: a body
// well under it arrives whole once the handler reads, one past it closes
// the connection without an answer, and the connection is released.
func TestHTTPSideInputBound(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		proceed := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select { // read nothing until the test says so
			case <-proceed:
			case <-r.Context().Done():
				return
			}
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d", n)
		})
		ts := startServer(t, m, func(o *server.Options) { o.HTTP = h })
		post := func(size int) net.Conn {
			c := ts.dialHTTP(t)
			hdr := fmt.Sprintf("POST /up HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n", size)
			go func() { _, _ = c.Write(append([]byte(hdr), make([]byte, size)...)) }()
			return c
		}

		// Under the bound (the header and 960 KiB): held, then read whole.
		const under = 960 << 10
		c := post(under)
		defer c.Close()
		poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if n := ts.Stats().Conns; n != 1 {
				return fmt.Errorf("Stats().Conns = %d", n)
			}
			return nil
		})
		// Past the bound: 2 MiB the handler does not read.
		over := post(2 << 20)
		defer over.Close()
		_ = over.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := io.ReadAll(over); len(b) != 0 {
			t.Fatalf("past the bound: %d bytes of answer (%q), want the connection closed", len(b), b)
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("past the bound: the connection was not closed")
		}
		close(proceed)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("under the bound: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != strconv.Itoa(under) {
			t.Fatalf("under the bound: %d %q, want 200 %d", resp.StatusCode, b, under)
		}
		c.Close()
		ts.waitConns(t, 0)
	})
}

// TestHTTPSideTimeouts: a kept-alive HTTP connection is closed once idle
// for the idle timeout, and one that starts a second request and does not
// finish its header block is closed at the header timeout (the handshake
// timeout), each with no other traffic to wake it.
func TestHTTPSideTimeouts(t *testing.T) {
	const short, long = 300 * time.Millisecond, 20 * time.Second
	for _, tc := range []struct {
		name         string
		idle, header time.Duration
		second       string // written after the first response
	}{
		{"idle", short, long, ""},
		{"header", long, short, "GET /index.html HTTP/1.1\r\nHost: 127."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := server.SetHTTPIdleTimeout(tc.idle)
			t.Cleanup(func() { server.SetHTTPIdleTimeout(old) })
			forModes(t, func(t *testing.T, m mode) {
				ts, _ := startSite(t, m, func(o *server.Options) { o.HandshakeTimeout = tc.header })
				c, _, err := ts.dialTransport(dialConfig{})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := io.WriteString(c, "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 || resp.Close {
					t.Fatalf("first response: %d, close %v, %v", resp.StatusCode, resp.Close, err)
				}
				if _, err := io.WriteString(c, tc.second); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				_ = c.SetReadDeadline(start.Add(long / 2))
				n, err := br.Read(make([]byte, 1))
				took := time.Since(start)
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("still open after %v", took)
				}
				if n != 0 || took < short*3/4 {
					t.Fatalf("read %d bytes, %v after %v; want the close after %v", n, err, took, short)
				}
				ts.waitConns(t, 0)
			})
		})
	}
}
