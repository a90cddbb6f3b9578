package server_test

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// proxyV formats a PROXY protocol header from src (with go-proxyproto, as
// HAProxy sends it) for a connection to the test server.
func proxyV(t testing.TB, version byte, cmd proxyproto.ProtocolVersionAndCommand, src string) []byte {
	t.Helper()
	s := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src))
	d := &net.TCPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 443}
	proto := proxyproto.TCPv4
	if s.IP.To4() == nil {
		proto, d = proxyproto.TCPv6, &net.TCPAddr{IP: net.ParseIP("2001:db8::443"), Port: 443}
	}
	b, err := (&proxyproto.Header{Version: version, Command: cmd, TransportProtocol: proto, SourceAddr: s, DestinationAddr: d}).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// leaveAll closes clients and waits until the server has no connection
// and no address counted by the per-address limit.
func (ts *testServer) leaveAll(t *testing.T, clients []*rawClient) {
	t.Helper()
	for _, c := range clients {
		_ = c.Close()
	}
	ts.waitConns(t, 0)
	poll.CheckFor(t, shortWait, 5*time.Millisecond, func() error {
		if n := ts.Stats().PerIPAddrs; n != 0 {
			return fmt.Errorf("PerIPAddrs = %d after every connection closed", n)
		}
		return nil
	})
}

// TestProxyProtocol: behind a proxy that sends the PROXY protocol, the
// per-address limit counts the clients the headers name, v1 and v2, whole
// or in pieces; a LOCAL header is the proxy's own connection; a connection
// without a valid header is closed; and every count is released.
func TestProxyProtocol(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) {
			o.ProxyProtocol = true
			o.MaxConnsPerIP = 2
		})
		var clients []*rawClient
		for i, cfg := range []dialConfig{
			{preface: proxyV(t, 2, proxyproto.PROXY, "192.0.2.1:5001"), prefaceChunk: 3},
			{preface: proxyV(t, 1, proxyproto.PROXY, "192.0.2.1:5002")},
			{preface: proxyV(t, 2, proxyproto.PROXY, "[2001:db8::1]:5003")},
			{preface: proxyV(t, 1, proxyproto.PROXY, "[2001:db8::2]:5004"), prefaceChunk: 1}, // the same /64
			{preface: proxyV(t, 2, proxyproto.LOCAL, "192.0.2.1:5005")},                      // counted as 127.0.0.1
		} {
			c, err := ts.joinErr(fmt.Sprintf("c%d", i), "pp", cfg)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			t.Cleanup(func() { c.Close() })
			clients = append(clients, c)
		}
		ts.waitMembers(t, int64(len(clients)))
		exchange(t, clients, "through the proxy")
		if n := ts.Stats().PerIPAddrs; n != 3 {
			t.Fatalf("PerIPAddrs = %d, want 3 (192.0.2.1, 2001:db8::/64, 127.0.0.1)", n)
		}

		// Over the limit by the header's address, not the socket's.
		for _, src := range []string{"192.0.2.1:6000", "[2001:db8::3]:6000"} {
			if c, err := ts.joinErr("over", "pp", dialConfig{preface: proxyV(t, 2, proxyproto.PROXY, src)}); err == nil {
				c.Close()
				t.Fatalf("a third connection from %s was admitted", src)
			}
		}
		if got := ts.Stats().RefusedPerIP; got != 2 {
			t.Fatalf("RefusedPerIP = %d, want 2", got)
		}

		// No header, or a broken one: closed without an answer.
		for name, pre := range map[string][]byte{
			"no header": nil,
			"bad v1":    []byte("PROXY TCP4 192.0.2.300 198.51.100.1 5000 443\r\n"),
			"bad v2":    append(append([]byte(nil), proxyV(t, 2, proxyproto.PROXY, "192.0.2.9:1")[:12]...), 0x29, 0x11, 0, 12),
		} {
			if c, err := ts.joinErr("bad", "pp", dialConfig{preface: pre}); err == nil {
				c.Close()
				t.Fatalf("%s: admitted", name)
			}
		}

		exchange(t, clients, "after the refusals")
		ts.leaveAll(t, clients)
	})
}

// TestProxyProtocolTrusted: with --trusted-proxies, only the proxies may
// connect to a --proxy-protocol server; a PROXY header from anyone else is
// not believed.
func TestProxyProtocolTrusted(t *testing.T) {
	ts := startServer(t, modes[1], func(o *server.Options) {
		o.ProxyProtocol = true
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
	})
	pre := proxyV(t, 2, proxyproto.PROXY, "192.0.2.1:5000")
	c, err := ts.joinErr("proxied", "ppt", dialConfig{localIP: "127.0.0.3", preface: pre})
	if err != nil {
		t.Fatalf("from the trusted proxy: %v", err)
	}
	defer c.Close()
	if c, err := ts.joinErr("direct", "ppt", dialConfig{localIP: "127.0.0.1", preface: pre}); err == nil {
		c.Close()
		t.Fatal("a connection from outside --trusted-proxies was admitted")
	}
	ts.waitConns(t, 1)
}

// TestForwardedFor: from a trusted proxy the per-address limit applies at
// the upgrade to the client X-Forwarded-For names (429 when over), and to
// the proxy itself without the header; from anyone else the header is
// ignored and the socket's address counts at accept.
func TestForwardedFor(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) {
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
			o.MaxConnsPerIP = 1
		})
		xff := func(v string) []string { return []string{"X-Forwarded-For: " + v} }
		proxy := func(h []string) dialConfig { return dialConfig{localIP: "127.0.0.3", headers: h} }
		var clients []*rawClient
		for i, cfg := range []dialConfig{
			proxy(xff("192.0.2.1")),
			proxy(xff("192.0.2.1, 198.51.100.7")),
			proxy(nil), // the proxy's own
			{localIP: "127.0.0.1", headers: xff("192.0.2.50")},
		} {
			c, err := ts.joinErr(fmt.Sprintf("c%d", i), "xff", cfg)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			t.Cleanup(func() { c.Close() })
			clients = append(clients, c)
		}
		ts.waitMembers(t, int64(len(clients)))
		exchange(t, clients, "through the proxy")

		for _, h := range [][]string{
			xff("192.0.2.1"),
			xff("203.0.113.9, 198.51.100.7"), // a client's claim on the left does not count
			nil,
		} {
			c, err := ts.dialUpgrade(proxy(h))
			if err != nil {
				t.Fatalf("%q: %v", h, err)
			}
			c.Close()
			if c.resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("%q: status %d, want 429", h, c.resp.StatusCode)
			}
		}
		if c, err := ts.joinErr("direct", "xff", dialConfig{localIP: "127.0.0.1", headers: xff("192.0.2.51")}); err == nil {
			c.Close()
			t.Fatal("X-Forwarded-For from an untrusted address was believed")
		}
		if got := ts.Stats().RefusedPerIP; got != 4 {
			t.Fatalf("RefusedPerIP = %d, want 4", got)
		}
		exchange(t, clients, "after the refusals")
		ts.leaveAll(t, clients)
	})
}

// TestProxyHeaderTimeout: a connection that sends no whole PROXY header
// is closed at the hello timeout, as one without a ClientHello is.
func TestProxyHeaderTimeout(t *testing.T) {
	ts := startServer(t, modes[1], func(o *server.Options) {
		o.ProxyProtocol = true
		o.HelloTimeout = 200 * time.Millisecond
	})
	pre := proxyV(t, 2, proxyproto.PROXY, "192.0.2.1:5000")
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(pre[:len(pre)-1]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(shortWait))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes, want the connection closed", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("not closed at the hello timeout")
	}
	ts.waitConns(t, 0)
}
