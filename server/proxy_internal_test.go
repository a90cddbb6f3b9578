package server

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/pires/go-proxyproto"
)

// proxyHeader formats a PROXY protocol header with go-proxyproto, as
// HAProxy would send it.
func proxyHeader(t testing.TB, version byte, cmd proxyproto.ProtocolVersionAndCommand, src, dst string) []byte {
	t.Helper()
	s, d := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst))
	proto := proxyproto.TCPv4
	if s.IP.To4() == nil {
		proto = proxyproto.TCPv6
	}
	h := &proxyproto.Header{Version: version, Command: cmd, TransportProtocol: proto, SourceAddr: s, DestinationAddr: d}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProxyHeaderLen: the end of a v1 or v2 header is found whole and at
// no shorter prefix (the bytes of a header arrive in any chunking), what
// follows it is left alone, and bytes that cannot begin a header, or one
// past the bounds, are refused.
func TestProxyHeaderLen(t *testing.T) {
	v2 := proxyHeader(t, 2, proxyproto.PROXY, "192.0.2.1:5000", "198.51.100.1:443")
	v2TLV := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv6,
		SourceAddr: &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, DestinationAddr: &net.TCPAddr{IP: net.ParseIP("2001:db8::2"), Port: 2}}
	if err := v2TLV.SetTLVs([]proxyproto.TLV{{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: []byte(strings.Repeat("u", 128))}}); err != nil {
		t.Fatal(err)
	}
	v2t, err := v2TLV.Format()
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string][]byte{
		"v1 tcp4":    proxyHeader(t, 1, proxyproto.PROXY, "192.0.2.1:5000", "198.51.100.1:443"),
		"v1 tcp6":    proxyHeader(t, 1, proxyproto.PROXY, "[2001:db8::1]:5000", "[2001:db8::2]:443"),
		"v1 unknown": []byte("PROXY UNKNOWN\r\n"),
		"v1 longest": []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		"v2 tcp4":    v2,
		"v2 tlv":     v2t,
		"v2 local":   proxyHeader(t, 2, proxyproto.LOCAL, "192.0.2.1:5000", "198.51.100.1:443"),
	}
	for name, h := range headers {
		in := append(append([]byte(nil), h...), "GET / HTTP/1.1\r\n"...)
		for i := range len(h) {
			if n, err := proxyHeaderLen(in[:i]); n != 0 || err != nil {
				t.Fatalf("%s: %d of %d bytes: %d, %v; want 0, nil (wait)", name, i, len(h), n, err)
			}
		}
		for _, end := range []int{len(h), len(in)} {
			if n, err := proxyHeaderLen(in[:end]); n != len(h) || err != nil {
				t.Fatalf("%s: %d bytes: %d, %v; want %d", name, end, n, err, len(h))
			}
		}
	}
	// The specification's bound is 107 bytes: one short of it without a
	// CRLF may still end, 107 without one cannot.
	noEnd := []byte("PROXY UNKNOWN" + strings.Repeat(" ", proxyV1Max))
	if n, err := proxyHeaderLen(noEnd[:proxyV1Max-1]); n != 0 || err != nil {
		t.Fatalf("%d bytes of v1 without CRLF: %d, %v; want 0, nil", proxyV1Max-1, n, err)
	}
	if _, err := proxyHeaderLen(noEnd[:proxyV1Max]); err == nil {
		t.Fatalf("%d bytes of v1 without CRLF: no error", proxyV1Max)
	}

	long := make([]byte, 16, 16+proxyV2Max)
	copy(long, proxySigV2)
	long[12], long[13] = 0x21, 0x11
	binary.BigEndian.PutUint16(long[14:], proxyV2Max-15) // one byte over
	bad := map[string][]byte{
		"tls hello":   {0x16, 0x03, 0x01, 0x00, 0xa5},
		"http":        []byte("GET / HTTP/1.1\r\n"),
		"v1 no crlf":  []byte("PROXY TCP4 192.0.2.1 198.51.100.1 5000 443" + strings.Repeat(" ", 70)),
		"v2 too long": long,
		"v2 bad sig":  []byte("\r\n\r\n\x00\r\nQUIX\n"),
	}
	for name, p := range bad {
		if n, err := proxyHeaderLen(p); err == nil {
			t.Errorf("%s: %d, nil; want an error", name, n)
		}
	}
}

// TestParseProxyHeader: the client is a PROXY command's TCP source; a
// LOCAL command (the proxy's health check) and v1 UNKNOWN name none; a
// header that go-proxyproto finds invalid is refused.
func TestParseProxyHeader(t *testing.T) {
	tests := []struct {
		name string
		h    []byte
		want string // "" for none
		bad  bool
	}{
		{"v1", proxyHeader(t, 1, proxyproto.PROXY, "192.0.2.1:5000", "198.51.100.1:443"), "192.0.2.1:5000", false},
		{"v2 v6", proxyHeader(t, 2, proxyproto.PROXY, "[2001:db8::7]:6000", "[2001:db8::2]:443"), "[2001:db8::7]:6000", false},
		{"v2 local", proxyHeader(t, 2, proxyproto.LOCAL, "192.0.2.1:5000", "198.51.100.1:443"), "", false},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), "", false},
		{"v1 bad address", []byte("PROXY TCP4 192.0.2.300 198.51.100.1 5000 443\r\n"), "", true},
		{"v1 bad family", []byte("PROXY TCP5 192.0.2.1 198.51.100.1 5000 443\r\n"), "", true},
	}
	for _, tc := range tests {
		got, err := parseProxyHeader(tc.h)
		if tc.bad {
			if err == nil {
				t.Errorf("%s: %v, nil; want an error", tc.name, got)
			}
			continue
		}
		if err != nil || (tc.want == "") != !got.IsValid() || tc.want != "" && got != netip.MustParseAddrPort(tc.want) {
			t.Errorf("%s: %v, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestForwardedClient: the client is the right-most X-Forwarded-For entry
// that is not a trusted proxy; what a client wrote to the left of it does
// not count, and an entry that is not an address voids the header.
func TestForwardedClient(t *testing.T) {
	trusted := func(a netip.Addr) bool {
		return netip.MustParsePrefix("10.0.0.0/8").Contains(a) || a == netip.MustParseAddr("2001:db8::53")
	}
	tests := []struct{ xff, want string }{
		{"", ""},
		{"192.0.2.1", "192.0.2.1"},
		{"203.0.113.66, 192.0.2.1", "192.0.2.1"}, // the left one is the client's claim
		{"192.0.2.1, 10.1.1.1, 10.2.2.2", "192.0.2.1"},
		{"192.0.2.1,10.1.1.1", "192.0.2.1"},
		{"[2001:db8::9]:5000, 2001:db8::53", "2001:db8::9"},
		{"192.0.2.1:80", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"10.1.1.1, 10.2.2.2", "10.1.1.1"}, // all trusted: the left-most
		{"unknown, 192.0.2.1", "192.0.2.1"},
		{"192.0.2.1, unknown", ""},
		{"192.0.2.1, , 10.1.1.1", ""},
	}
	for _, tc := range tests {
		got, ok := forwardedClient(tc.xff, trusted)
		if tc.want == "" {
			if ok {
				t.Errorf("%q: %v; want none", tc.xff, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tc.want) {
			t.Errorf("%q: %v %v; want %s", tc.xff, got, ok, tc.want)
		}
	}
}
