package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"
)

// The client's address behind a proxy: the PROXY protocol header that
// HAProxy (send-proxy, send-proxy-v2) and nginx (proxy_protocol) put first
// on a connection, and X-Forwarded-For on the upgrade request from a
// trusted proxy. The limits (MaxConnsPerIP, RateLimit, the handshake
// gate's per-address share) and the logs then see the client, not the
// proxy. github.com/pires/go-proxyproto parses the header; this file only
// finds where it ends in the bytes gnet has buffered, so that a header
// split across reads waits without a goroutine.

const (
	// proxyV1Max is the longest v1 header, CRLF included (the PROXY
	// protocol specification, section 2.1).
	proxyV1Max = 107
	// proxyV2Max bounds a v2 header: its 16 fixed bytes and the addresses
	// with TLVs. The format allows 64 KiB; senders put an address block
	// and a few small TLVs (HAProxy's longest, the unique id, is 128
	// bytes), so a longer header is refused rather than buffered.
	proxyV2Max = 16 + 4096
)

var (
	proxySigV1 = []byte("PROXY ")
	proxySigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")

	errNoProxyHeader = errors.New("no PROXY protocol header")
	errProxyTooLong  = errors.New("PROXY protocol header too long")
)

// proxyHeaderLen is the length of the PROXY protocol header that p starts
// with: 0 while p may still become one, an error once it cannot.
func proxyHeaderLen(p []byte) (int, error) {
	switch {
	case bytes.HasPrefix(p, proxySigV1):
		end := bytes.Index(p[:min(len(p), proxyV1Max)], []byte("\r\n"))
		if end >= 0 {
			return end + 2, nil
		}
		if len(p) >= proxyV1Max {
			return 0, errProxyTooLong
		}
		return 0, nil
	case bytes.HasPrefix(p, proxySigV2):
		if len(p) < 16 {
			return 0, nil
		}
		n := 16 + int(binary.BigEndian.Uint16(p[14:16]))
		if n > proxyV2Max {
			return 0, errProxyTooLong
		}
		if len(p) < n {
			return 0, nil
		}
		return n, nil
	case bytes.HasPrefix(proxySigV1, p[:min(len(p), len(proxySigV1))]),
		bytes.HasPrefix(proxySigV2, p[:min(len(p), len(proxySigV2))]):
		return 0, nil // a prefix of either signature (or nothing yet)
	}
	return 0, errNoProxyHeader
}

// parseProxyHeader parses the whole header h and returns the client's
// address: the source of a PROXY command over TCP, or the zero AddrPort
// when the header says the connection is the proxy's own (LOCAL, a health
// check) or carries no TCP address (v1 UNKNOWN, UDP, a UNIX socket).
func parseProxyHeader(h []byte) (netip.AddrPort, error) {
	hdr, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(h), len(h)+16))
	if err != nil {
		return netip.AddrPort{}, err
	}
	if !hdr.Command.IsProxy() {
		return netip.AddrPort{}, nil
	}
	src, _, ok := hdr.TCPAddrs()
	if !ok {
		return netip.AddrPort{}, nil
	}
	return tcpAddrPort(src), nil
}

// onProxy reads the PROXY header once gnet has buffered it whole, takes
// the client's address from it, applies the limits and moves on to the
// TLS ClientHello or the upgrade request. It reports whether the
// connection goes on to them in this callback (the bytes after the header
// may already be buffered).
func (c *conn) onProxy() bool {
	p, _ := c.gc.Peek(-1)
	n, err := proxyHeaderLen(p)
	if err == nil && n == 0 {
		return false
	}
	var client netip.AddrPort
	if err == nil {
		client, err = parseProxyHeader(p[:n])
	}
	if err != nil {
		c.s.log.Info("proxy protocol header refused", "conn", c.id, "remote", c.remote(), "err", err)
		c.closeWith(closeProxyHeader)
		return false
	}
	_, _ = c.gc.Discard(n)
	if client.IsValid() {
		c.client = &client
	}
	if !c.s.trusted(c.clientAddr().Addr()) {
		if reason := c.s.admit(c.clientAddr().Addr()); reason != "" {
			c.s.log.Info("connection refused", "conn", c.id, "remote", c.remote(), "reason", reason)
			c.closeWith(closeRefused)
			return false
		}
		c.flags |= fCounted
	}
	c.begin()
	return true
}

// admit applies RateLimit and MaxConnsPerIP to a new connection from a and
// counts it, or returns the reason it is refused.
func (s *Server) admit(a netip.Addr) string {
	if !s.rate.allow(a, time.Now()) {
		s.refusedRate.Add(1)
		return "rate-limit"
	}
	if !s.perIP.acquire(a) {
		s.refusedPerIP.Add(1)
		return "max-conns-per-ip"
	}
	return ""
}

// trusted reports whether a is one of Options.TrustedProxies.
func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// admitForwarded runs at the upgrade of a connection from a trusted proxy,
// whose limits wait for it: the client is the right-most address of
// X-Forwarded-For that is not a trusted proxy (each proxy appends the
// address it saw, so the ones left of it are the client's word only). It
// reports false, with a 429 sent, when the client is over a limit.
func (c *conn) admitForwarded(xff string) bool {
	if client, ok := forwardedClient(xff, c.s.trusted); ok {
		ap := netip.AddrPortFrom(client, 0)
		c.client = &ap
	}
	if reason := c.s.admit(c.clientAddr().Addr()); reason != "" {
		c.httpError(429, reason)
		return false
	}
	c.flags |= fCounted
	return true
}

// forwardedClient walks X-Forwarded-For from the right past trusted
// proxies. An entry that is not an address (with or without a port) ends
// the walk with no answer: the header is then not to be believed.
func forwardedClient(xff string, trusted func(netip.Addr) bool) (netip.Addr, bool) {
	var last netip.Addr
	for xff != "" {
		var item string
		if i := strings.LastIndexByte(xff, ','); i >= 0 {
			item, xff = xff[i+1:], xff[:i]
		} else {
			item, xff = xff, ""
		}
		a, err := parseForwarded(strings.TrimSpace(item))
		if err != nil {
			return netip.Addr{}, false
		}
		last = a
		if !trusted(a) {
			return a, true
		}
	}
	return last, last.IsValid() // all trusted: the left-most is the client
}

// parseForwarded parses one X-Forwarded-For entry: an address, or an
// address and port ("192.0.2.1:5000", "[2001:db8::1]:5000").
func parseForwarded(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

// clientAddr is the client's address: from the PROXY header or
// X-Forwarded-For when one named it, else the socket's peer.
func (c *conn) clientAddr() netip.AddrPort {
	if c.client != nil {
		return *c.client
	}
	return tcpAddrPort(c.gc.RemoteAddr())
}

// remote is clientAddr for a log line.
func (c *conn) remote() string {
	if c.client == nil {
		if a := c.gc.RemoteAddr(); a != nil {
			return a.String()
		}
		return ""
	}
	if c.client.Port() == 0 {
		return c.client.Addr().String() // from X-Forwarded-For: no port
	}
	return c.client.String()
}

// begin starts the connection's first state after accept (and the PROXY
// header): the TLS ClientHello, or in plain mode the upgrade request.
func (c *conn) begin() {
	if c.s.opts.Plain {
		c.state = stUpgrade
		c.deadline = c.l.now + int64(c.s.opts.HandshakeTimeout)
		c.up = newUpgradeState()
		return
	}
	c.state = stHello
	c.deadline = c.l.now + int64(c.s.opts.HelloTimeout)
}
