package codec

import (
	"errors"
	"testing"
)

// TestDialRoundTrip: the request a server sends its peer passes the
// server's own parser with Peer set (fed whole and byte by byte), and the
// answer for either subprotocol is accepted once its header block is in,
// not before; a wrong key, another status or no subprotocol is refused.
func TestDialRoundTrip(t *testing.T) {
	key := NewKey()
	req := AppendDialRequest(nil, "peer.example:8443", "/", key)
	for _, d := range deliveries(req) {
		var p UpgradeParser
		var buf []byte
		n := 0
		for _, c := range d.chunks {
			buf = append(buf, c...)
			var err error
			if n, err = p.Parse(buf); err != nil {
				t.Fatalf("%s: %v", d.name, err)
			}
		}
		if n != len(req) || !p.Request.Upgrade || !p.Request.Peer || p.Request.Host != "peer.example:8443" {
			t.Fatalf("%s: n %d of %d, %+v", d.name, n, len(req), p.Request)
		}
	}
	var k [24]byte
	copy(k[:], key)
	for _, proto := range []string{PeerSubprotocol, Subprotocol} {
		resp := append(AppendUpgradeResponseFor(nil, &k, proto), 0x81, 0x00)
		for i := 0; i < len(resp)-2; i++ {
			if n, _, err := ParseDialResponse(resp[:i], key); n != 0 || err != nil {
				t.Fatalf("%s: %d of %d bytes: n %d, err %v", proto, i, len(resp), n, err)
			}
		}
		n, got, err := ParseDialResponse(resp, key)
		if err != nil || n != len(resp)-2 || got != proto {
			t.Fatalf("%s: n %d, %q, %v", proto, n, got, err)
		}
	}
	bad := map[string][]byte{
		"wrong key":      AppendUpgradeResponse(nil, &[24]byte{'x'}),
		"status 403":     AppendHTTPError(nil, 403, "forbidden"),
		"no subprotocol": []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + string(func() []byte { a := AcceptKey(&k); return a[:] }()) + "\r\n\r\n"),
	}
	for name, resp := range bad {
		if _, _, err := ParseDialResponse(resp, key); !errors.Is(err, ErrDialResponse) {
			t.Fatalf("%s: %v, want ErrDialResponse", name, err)
		}
	}
}
