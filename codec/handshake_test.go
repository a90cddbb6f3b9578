package codec

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mles/mles/internal/mlestest"
)

// sampleKey is the key of RFC 6455 section 1.3, whose accept value the RFC
// gives.
const sampleKey = "dGhlIHNhbXBsZSBub25jZQ=="

// exampleHost is the Host of the requests that handshake tests build
// with mlestest.UpgradeRequest.
const exampleHost = "mles.example:443"

// parseResult is what a Parse run yields, compared across deliveries.
type parseResult struct {
	n   int
	err error
	req Request
}

// parseChunks delivers chunks to a fresh parser the way the server does:
// each call sees all bytes so far. It stops at the first n > 0 or error.
func parseChunks(t *testing.T, chunks [][]byte) parseResult {
	t.Helper()
	var p UpgradeParser
	var buf []byte
	for _, c := range chunks {
		buf = append(buf, c...)
		n, err := p.Parse(buf)
		if n < 0 || n > len(buf) {
			t.Fatalf("Parse returned n=%d for %d bytes", n, len(buf))
		}
		if n > 0 || err != nil {
			// Later calls repeat the result.
			n2, err2 := p.Parse(buf)
			if n2 != n || err2 != err {
				t.Fatalf("repeat Parse = %d, %v; first %d, %v", n2, err2, n, err)
			}
			return parseResult{n: n, err: err, req: p.Request}
		}
	}
	return parseResult{}
}

func TestUpgradeParser(t *testing.T) {
	var sampleKeyArr [24]byte
	copy(sampleKeyArr[:], sampleKey)
	valid := Request{Method: "GET", Path: "/chat?x=1", Host: "mles.example:443", HTTP11: true, Upgrade: true, Key: sampleKeyArr}
	tests := []struct {
		name   string
		in     string
		after  string  // bytes following the header block
		want   Request // for err == nil
		err    error
		status int
	}{
		{
			// The request MlesTalk sends.
			name:  "valid",
			in:    mlestest.UpgradeRequest(exampleHost, sampleKey, nil),
			after: "\x81\x85frame",
			want:  valid,
		},
		{
			// Subprotocol inside a comma list [beyond mles-rs].
			name: "valid/protocol-list",
			in:   mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Sec-WebSocket-Protocol: chat, mles-websocket ,other"}, "Sec-WebSocket-Protocol"),
			want: valid,
		},
		{
			// Subprotocol in the second of repeated headers.
			name: "valid/protocol-repeated",
			in:   mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: mles-websocket"}, "Sec-WebSocket-Protocol"),
			want: valid,
		},
		{
			// Header names and the upgrade tokens in any case, Connection as
			// a list, extra whitespace, bare LF line ends.
			name: "valid/case-and-lists",
			in: "GET / HTTP/1.1\nhost:x\nUPGRADE: WebSocket\nconnection: keep-alive,  Upgrade\n" +
				"sec-websocket-key: " + sampleKey + "\nSEC-WEBSOCKET-VERSION:13\n" +
				"Sec-WebSocket-Protocol:\tmles-websocket\t\nSec-WebSocket-Extensions: permessage-deflate\n\n",
			want: Request{Method: "GET", Path: "/", Host: "x", HTTP11: true, Upgrade: true, Key: sampleKeyArr},
		},
		{
			// Empty lines before the request line are skipped (RFC 7230
			// section 3.5).
			name: "valid/leading-crlf",
			in:   "\r\n\r\n" + mlestest.UpgradeRequest(exampleHost, sampleKey, nil),
			want: valid,
		},
		{
			// No Upgrade header: not an error, the HTTP side answers.
			name:  "plain-get",
			in:    "GET /index.html HTTP/1.1\r\nHost: mles.example\r\nAccept: */*\r\n\r\n",
			after: "ignored",
			want:  Request{Method: "GET", Path: "/index.html", Host: "mles.example", HTTP11: true},
		},
		{
			// HTTP/1.0 without Host is fine for the HTTP side.
			name: "plain-http10",
			in:   "HEAD / HTTP/1.0\r\n\r\n",
			want: Request{Method: "HEAD", Path: "/"},
		},
		{
			// Upgrade to something else is not a WebSocket upgrade.
			name: "plain-upgrade-h2c",
			in:   "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
			want: Request{Method: "GET", Path: "/", Host: "a", HTTP11: true},
		},
		{
			// Upgrade with POST.
			name:   "err/method",
			in:     strings.Replace(mlestest.UpgradeRequest(exampleHost, sampleKey, nil), "GET", "POST", 1),
			err:    ErrUpgradeMethod,
			status: 400,
		},
		{
			// Upgrade over HTTP/1.0.
			name:   "err/http10",
			in:     strings.Replace(mlestest.UpgradeRequest(exampleHost, sampleKey, nil), "HTTP/1.1", "HTTP/1.0", 1),
			err:    ErrUpgradeHTTP11,
			status: 400,
		},
		{
			// Unknown HTTP version.
			name:   "err/http2",
			in:     strings.Replace(mlestest.UpgradeRequest(exampleHost, sampleKey, nil), "HTTP/1.1", "HTTP/2.0", 1),
			err:    ErrHTTPVersion,
			status: 505,
		},
		{
			// Connection without the upgrade token.
			name:   "err/connection",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Connection: keep-alive"}, "Connection"),
			err:    ErrUpgradeConnection,
			status: 400,
		},
		{
			// Connection missing.
			name:   "err/no-connection",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, nil, "Connection"),
			err:    ErrUpgradeConnection,
			status: 400,
		},
		{
			// Version 8 gets 426 (RFC 6455 section 4.2.2).
			name:   "err/version-8",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Sec-WebSocket-Version: 8"}, "Sec-WebSocket-Version"),
			err:    ErrWebSocketVersion,
			status: 426,
		},
		{
			// Version missing.
			name:   "err/no-version",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, nil, "Sec-WebSocket-Version"),
			err:    ErrWebSocketVersion,
			status: 426,
		},
		{
			// 13 repeated with another version.
			name:   "err/version-repeated",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Sec-WebSocket-Version: 8"}),
			err:    ErrWebSocketVersion,
			status: 426,
		},
		{
			// Key missing.
			name:   "err/no-key",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, nil, "Sec-WebSocket-Key"),
			err:    ErrWebSocketKey,
			status: 400,
		},
		{
			// Key that decodes to 15 bytes.
			name:   "err/key-15-bytes",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(make([]byte, 15))}, "Sec-WebSocket-Key"),
			err:    ErrWebSocketKey,
			status: 400,
		},
		{
			// Key with a character outside base64.
			name:   "err/key-bad-char",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!="}, "Sec-WebSocket-Key"),
			err:    ErrWebSocketKey,
			status: 400,
		},
		{
			// Two keys.
			name:   "err/key-repeated",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Sec-WebSocket-Key: " + sampleKey}),
			err:    ErrWebSocketKey,
			status: 400,
		},
		{
			// No subprotocol offered (SPEC 1.1: 400, not 404).
			name:   "err/no-subprotocol",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, nil, "Sec-WebSocket-Protocol"),
			err:    ErrSubprotocol,
			status: 400,
		},
		{
			// Other subprotocols only; names compare exactly.
			name:   "err/other-subprotocol",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Sec-WebSocket-Protocol: chat, MLES-WEBSOCKET, mles-websocket2"}, "Sec-WebSocket-Protocol"),
			err:    ErrSubprotocol,
			status: 400,
		},
		{
			// obs-fold (RFC 7230 section 3.2.4).
			name:   "err/obs-fold",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"X-Long: a", " continued"}),
			err:    ErrObsFold,
			status: 400,
		},
		{
			// Header line without a colon.
			name:   "err/no-colon",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"X-Broken"}),
			err:    ErrHeaderLine,
			status: 400,
		},
		{
			// Whitespace between name and colon.
			name:   "err/space-before-colon",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Host : x"}, "Host"),
			err:    ErrHeaderLine,
			status: 400,
		},
		{
			// Control character in a value.
			name:   "err/value-ctl",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"X-A: a\x00b"}),
			err:    ErrHeaderValue,
			status: 400,
		},
		{
			// Two Host headers (RFC 7230 section 5.4).
			name:   "err/duplicate-host",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Host: other"}),
			err:    ErrDuplicateHost,
			status: 400,
		},
		{
			// Request line with two spaces.
			name:   "err/request-line-spaces",
			in:     "GET  / HTTP/1.1\r\n\r\n",
			err:    ErrRequestLine,
			status: 400,
		},
		{
			// Request line without a version.
			name:   "err/request-line-short",
			in:     "GET /\r\n\r\n",
			err:    ErrRequestLine,
			status: 400,
		},
		{
			// Garbage (a TLS ClientHello on the plain port).
			name:   "err/garbage",
			in:     "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
			err:    ErrRequestLine,
			status: 400,
		},
		{
			// Header block larger than 8 KiB.
			name:   "err/431",
			in:     mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"X-Pad: " + strings.Repeat("a", MaxHeaderBlock)}),
			err:    ErrHeaderBlockTooLarge,
			status: 431,
		},
		{
			// No terminator within 8 KiB, nothing after.
			name:   "err/431-unterminated",
			in:     "GET / HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", MaxHeaderBlock),
			err:    ErrHeaderBlockTooLarge,
			status: 431,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err != nil {
				var he HandshakeError
				if !errors.As(tc.err, &he) || he.Status() != tc.status {
					t.Fatalf("error %v: status %d, want %d", tc.err, he.Status(), tc.status)
				}
			}
			in := []byte(tc.in + tc.after)
			wantN := 0
			if tc.err == nil {
				wantN = len(tc.in)
			}
			for _, d := range deliveries(in) {
				got := parseChunks(t, d.chunks)
				if got.err != tc.err {
					t.Fatalf("%s: err = %v, want %v", d.name, got.err, tc.err)
				}
				if got.n != wantN {
					t.Fatalf("%s: n = %d, want %d", d.name, got.n, wantN)
				}
				if tc.err == nil && got.req != tc.want {
					t.Fatalf("%s: Request\n got %+v\nwant %+v", d.name, got.req, tc.want)
				}
			}
		})
	}
}

// TestUpgradeParserIncomplete checks that an unterminated block within the
// limit waits for more bytes, and that Reset starts over.
func TestUpgradeParserIncomplete(t *testing.T) {
	var p UpgradeParser
	in := []byte(mlestest.UpgradeRequest(exampleHost, sampleKey, nil))
	n, err := p.Parse(in[:len(in)-1])
	if n != 0 || err != nil {
		t.Fatalf("incomplete: %d, %v", n, err)
	}
	n, err = p.Parse(in)
	if n != len(in) || err != nil {
		t.Fatalf("complete: %d, %v", n, err)
	}
	p.Reset()
	if p.Request.Upgrade {
		t.Fatal("Reset kept the Request")
	}
	n, err = p.Parse([]byte("GET / HTTP/1.1\r\n\r\n"))
	if n == 0 || err != nil || p.Request.Upgrade {
		t.Fatalf("after Reset: %d, %v, %+v", n, err, p.Request)
	}
}

// TestUpgradeParserAllocs checks that parsing allocates only the one
// string behind Path and Host.
func TestUpgradeParserAllocs(t *testing.T) {
	in := []byte(mlestest.UpgradeRequest(exampleHost, sampleKey, nil))
	var p UpgradeParser
	allocs := testing.AllocsPerRun(100, func() {
		p.Reset()
		if n, err := p.Parse(in); n != len(in) || err != nil {
			t.Fatalf("Parse = %d, %v", n, err)
		}
	})
	if allocs > 1 {
		t.Errorf("Parse: %v allocs, want <= 1", allocs)
	}
}

func TestAcceptKey(t *testing.T) {
	var key [24]byte
	copy(key[:], sampleKey)
	// RFC 6455 section 1.3 gives this value for the sample key.
	if got := AcceptKey(&key); string(got[:]) != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("AcceptKey = %s", got)
	}
	// Cross-check with a direct computation on random-looking keys.
	for _, k := range []string{"AAAAAAAAAAAAAAAAAAAAAA==", "x3JJHMbDL1EzLkh9GBhXDw=="} {
		copy(key[:], k)
		sum := sha1.Sum([]byte(k + websocketGUID))
		if got := AcceptKey(&key); string(got[:]) != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Fatalf("AcceptKey(%s) = %s", k, got)
		}
	}
	if a := testing.AllocsPerRun(100, func() { AcceptKey(&key) }); a != 0 {
		t.Errorf("AcceptKey: %v allocs", a)
	}
}

func TestAppendUpgradeResponse(t *testing.T) {
	var key [24]byte
	copy(key[:], sampleKey)
	out := AppendUpgradeResponse([]byte("x"), &key)
	if out[0] != 'x' {
		t.Fatal("dst prefix lost")
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out[1:])), nil)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		"Upgrade":                "websocket",
		"Connection":             "Upgrade",
		"Sec-WebSocket-Accept":   "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
		"Sec-WebSocket-Protocol": "mles-websocket",
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, v := range checks {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	buf := make([]byte, 0, 256)
	if a := testing.AllocsPerRun(100, func() { AppendUpgradeResponse(buf, &key) }); a != 0 {
		t.Errorf("AppendUpgradeResponse: %v allocs", a)
	}
}

func TestAppendHTTPError(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		reason  string
		body    string
		version string // Sec-WebSocket-Version expected
	}{
		{
			// Subprotocol refusal.
			name:   "400",
			status: 400,
			reason: "missing subprotocol mles-websocket",
			body:   "missing subprotocol mles-websocket\n",
		},
		{
			// 426 tells the version we speak.
			name:    "426",
			status:  426,
			reason:  "unsupported Sec-WebSocket-Version, want 13",
			body:    "unsupported Sec-WebSocket-Version, want 13\n",
			version: "13",
		},
		{
			// A reason with a line break stays one line.
			name:   "431-newline",
			status: 431,
			reason: "too\r\nlarge",
			body:   "too  large\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := AppendHTTPError(nil, tc.status, tc.reason)
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			if err != nil {
				t.Fatal(err)
			}
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			if resp.StatusCode != tc.status || body.String() != tc.body || !resp.Close ||
				resp.Header.Get("Sec-WebSocket-Version") != tc.version ||
				resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Fatalf("response %d %+v body %q", resp.StatusCode, resp.Header, body.String())
			}
		})
	}
}

// TestUpgradeParserSplitTerminator checks the end of the block split across
// reads at each of its bytes, with the first frame following it.
func TestUpgradeParserSplitTerminator(t *testing.T) {
	req := mlestest.UpgradeRequest(exampleHost, sampleKey, nil)
	in := []byte(req + "\x81\x80abcd")
	for cut := len(req) - 4; cut < len(req); cut++ {
		var p UpgradeParser
		n, err := p.Parse(in[:cut])
		if n != 0 || err != nil {
			t.Fatalf("cut %d: first Parse = %d, %v", cut, n, err)
		}
		n, err = p.Parse(in)
		if n != len(req) || err != nil || !p.Request.Upgrade {
			t.Fatalf("cut %d: Parse = %d, %v, want %d", cut, n, err, len(req))
		}
	}
}

// TestUpgradeParserForwardedFor: X-Forwarded-For is kept, its lines joined
// in order, whole or fed one byte at a time; a request without it has none.
func TestUpgradeParserForwardedFor(t *testing.T) {
	tests := []struct {
		extra []string
		want  string
	}{
		{nil, ""},
		{[]string{"X-Forwarded-For: 192.0.2.1"}, "192.0.2.1"},
		{[]string{"x-forwarded-for:  192.0.2.1, 198.51.100.2 "}, "192.0.2.1, 198.51.100.2"},
		{[]string{"X-Forwarded-For: 192.0.2.1", "X-Real-IP: 1.1.1.1", "X-Forwarded-For: 2001:db8::1", "X-Forwarded-For: 198.51.100.9"},
			"192.0.2.1, 2001:db8::1, 198.51.100.9"},
	}
	for _, tc := range tests {
		in := []byte(mlestest.UpgradeRequest(exampleHost, sampleKey, tc.extra))
		var whole UpgradeParser
		if n, err := whole.Parse(in); n != len(in) || err != nil {
			t.Fatalf("%q: Parse = %d, %v", tc.extra, n, err)
		}
		if got := whole.Request.ForwardedFor; got != tc.want || !whole.Request.Upgrade {
			t.Errorf("%q: ForwardedFor %q (upgrade %v), want %q", tc.extra, got, whole.Request.Upgrade, tc.want)
		}
		var bytewise UpgradeParser
		for i := 1; i <= len(in); i++ {
			n, err := bytewise.Parse(in[:i])
			if err != nil || (n != 0) != (i == len(in)) {
				t.Fatalf("%q: byte %d: Parse = %d, %v", tc.extra, i, n, err)
			}
		}
		if got := bytewise.Request.ForwardedFor; got != tc.want {
			t.Errorf("%q byte by byte: ForwardedFor %q, want %q", tc.extra, got, tc.want)
		}
	}
}
