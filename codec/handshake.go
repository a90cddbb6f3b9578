package codec

import (
	"bytes"
	"encoding/base64"
	"strings"
)

// MaxHeaderBlock is the largest request header block accepted, request line
// and final empty line included. A longer one is refused with 431 Request
// Header Fields Too Large (RFC 6585 section 5), see ErrHeaderBlockTooLarge.
const MaxHeaderBlock = 8 << 10

// Subprotocol is the WebSocket subprotocol a Mles client must offer in
// Sec-WebSocket-Protocol and that the 101 reply selects (SPEC 1.1).
const Subprotocol = "mles-websocket"

// PeerSubprotocol is offered, before Subprotocol, by a Mles server that
// dials another as its peer (SPEC 1.5); a server that speaks it selects it,
// and the session then carries message ids for loop prevention and
// resync. Any other Mles server selects Subprotocol and sees a client.
const PeerSubprotocol = "mles-peer"

// Errors that UpgradeParser.Parse returns. Syntax errors apply to every
// request; the upgrade errors only to a request with "Upgrade: websocket".
const (
	// ErrHeaderBlockTooLarge: no end of the header block within
	// MaxHeaderBlock bytes.
	ErrHeaderBlockTooLarge HandshakeError = "request header fields too large"
	// ErrRequestLine: a request line that is not "METHOD SP target SP
	// HTTP/x.y" (RFC 7230 section 3.1.1).
	ErrRequestLine HandshakeError = "malformed request line"
	// ErrHTTPVersion: a protocol other than HTTP/1.0 or HTTP/1.1.
	ErrHTTPVersion HandshakeError = "HTTP version not supported"
	// ErrObsFold: a header line continued on the next line (obs-fold),
	// which RFC 7230 section 3.2.4 lets a server reject with 400.
	ErrObsFold HandshakeError = "obsolete header line folding"
	// ErrHeaderLine: a header line without a colon, with an invalid name or
	// with whitespace before the colon (RFC 7230 section 3.2.4).
	ErrHeaderLine HandshakeError = "malformed header line"
	// ErrHeaderValue: a control character in a header value (RFC 7230
	// section 3.2, field-vchar), a request smuggling vector.
	ErrHeaderValue HandshakeError = "invalid character in header value"
	// ErrDuplicateHost: more than one Host header (RFC 7230 section 5.4).
	ErrDuplicateHost HandshakeError = "duplicate Host header"
	// ErrUpgradeMethod: an upgrade with a method other than GET (RFC 6455
	// section 4.1).
	ErrUpgradeMethod HandshakeError = "websocket upgrade requires GET"
	// ErrUpgradeHTTP11: an upgrade in HTTP/1.0 (RFC 6455 section 4.1).
	ErrUpgradeHTTP11 HandshakeError = "websocket upgrade requires HTTP/1.1"
	// ErrUpgradeConnection: an upgrade without the "upgrade" token in
	// Connection (RFC 6455 section 4.2.1, item 4).
	ErrUpgradeConnection HandshakeError = "missing Connection: upgrade"
	// ErrWebSocketVersion: Sec-WebSocket-Version missing or not 13; the
	// reply is 426 with "Sec-WebSocket-Version: 13" (RFC 6455 section 4.2.2,
	// item 4).
	ErrWebSocketVersion HandshakeError = "unsupported Sec-WebSocket-Version, want 13"
	// ErrWebSocketKey: Sec-WebSocket-Key missing, repeated, or not the
	// base64 encoding of 16 bytes (RFC 6455 section 4.2.1, item 5).
	ErrWebSocketKey HandshakeError = "invalid Sec-WebSocket-Key"
	// ErrSubprotocol: Sec-WebSocket-Protocol does not offer mles-websocket
	// (SPEC 1.1).
	ErrSubprotocol HandshakeError = "missing subprotocol " + Subprotocol
)

// Request is what UpgradeParser found in a request header block.
type Request struct {
	// Method, Path (the request-target as sent) and Host (the Host header
	// as sent, port included; empty when absent) are copies that outlive
	// the parsed bytes. Common methods are interned; Path and Host share
	// one allocation.
	Method, Path, Host string
	// HTTP11 is set for HTTP/1.1, clear for HTTP/1.0.
	HTTP11 bool
	// Upgrade is set when the request asks for a WebSocket upgrade (an
	// Upgrade header holding the token "websocket", in any case). Such a
	// request has passed every check of RFC 6455 section 4.2.1 and SPEC 1.1
	// when Parse returns no error. A request without it is an ordinary
	// HTTP request for the server's HTTP side.
	Upgrade bool
	// Key is Sec-WebSocket-Key as sent, for AppendUpgradeResponse. It is
	// set only when Upgrade is.
	Key [24]byte
	// ForwardedFor is the X-Forwarded-For header, its lines joined with
	// ", " in order (RFC 7230 section 3.2.2); empty when absent. The server
	// reads it only from a trusted proxy.
	ForwardedFor string
	// Peer is set when Sec-WebSocket-Protocol offers PeerSubprotocol too:
	// a Mles server dialing its peer.
	Peer bool
}

// UpgradeParser parses an HTTP/1.1 request header block incrementally, as
// bytes arrive in any chunking. The zero value is ready to use; Reset makes
// it ready for another request. An UpgradeParser belongs to one connection
// and is not safe for concurrent use.
type UpgradeParser struct {
	// Request holds the parsed request once Parse has returned n > 0.
	Request Request

	scanned   int // bytes of buf already searched for line ends
	lineStart int // offset of the line being scanned
	begin     int // offset of the request line, past ignored empty lines
	n         int // header block length, once complete
	err       error
}

// Reset makes the parser ready for a new request.
func (p *UpgradeParser) Reset() { *p = UpgradeParser{} }

// Parse is called with all bytes received so far for this request; the
// caller keeps them, so buf grows between calls and buf[:previous len] is
// unchanged. Each byte is scanned once: the parser remembers how far it got
// and where the current line starts, so an end of block split across calls
// ("\r\n\r" then "\n") is found too.
//
// While the header block is incomplete Parse returns 0, nil. Once the empty
// line that ends it has arrived, Parse validates the block, fills
// p.Request and returns the block's length n: buf[n:] are bytes the client
// sent after the request (the first WebSocket frame) and must not be lost.
// Later calls return the same result. A request without a WebSocket upgrade
// is no error: Request.Upgrade is false and the server's HTTP side answers.
//
// Errors are *HandshakeError sentinels (ErrHeaderBlockTooLarge,
// ErrSubprotocol, ...) carrying the status to answer with.
//
// Lines may end in CRLF or, leniently, a bare LF, and empty lines before the
// request line are skipped (RFC 7230 section 3.5).
func (p *UpgradeParser) Parse(buf []byte) (n int, err error) {
	if p.err != nil {
		return 0, p.err
	}
	if p.n > 0 {
		return p.n, nil
	}
	// A block ending past MaxHeaderBlock is refused even when its end is at
	// hand, so the result does not depend on how the bytes were chunked.
	end := min(len(buf), MaxHeaderBlock)
	for p.scanned < end {
		i := bytes.IndexByte(buf[p.scanned:end], '\n')
		if i < 0 {
			p.scanned = end
			break
		}
		lf := p.scanned + i
		p.scanned = lf + 1
		if lf == p.lineStart || lf == p.lineStart+1 && buf[p.lineStart] == '\r' {
			if p.lineStart == p.begin {
				p.begin = lf + 1 // empty line before the request line
				p.lineStart = lf + 1
				continue
			}
			err = p.parseBlock(buf[p.begin:p.lineStart])
			if err != nil {
				p.err = err
				return 0, err
			}
			p.n = lf + 1
			return p.n, nil
		}
		p.lineStart = lf + 1
	}
	if p.scanned >= MaxHeaderBlock {
		p.err = ErrHeaderBlockTooLarge
		return 0, p.err
	}
	return 0, nil
}

// headerFacts collects what the checks of an upgrade need from the header
// lines.
type headerFacts struct {
	host         []byte
	hostSeen     bool
	upgradeWS    bool
	connUpgrade  bool
	versionSeen  bool
	versionOK    bool
	key          []byte
	keyCount     int
	offersMlesWS bool
	offersPeer   bool
	forwarded    []byte // X-Forwarded-For; a copy once a second line joins it
}

// parseBlock parses the request line and header lines of block (which
// excludes the final empty line) and runs the upgrade checks.
func (p *UpgradeParser) parseBlock(block []byte) error {
	line, rest := nextLine(block)
	method, target, http11, err := parseRequestLine(line)
	if err != nil {
		return err
	}
	var f headerFacts
	for len(rest) > 0 {
		line, rest = nextLine(rest)
		err = f.addLine(line)
		if err != nil {
			return err
		}
	}

	req := &p.Request
	*req = Request{Method: internMethod(method), HTTP11: http11}
	req.Path, req.Host = cloneStrings(target, f.host) // the bytes belong to the caller's read buffer
	if len(f.forwarded) > 0 {
		req.ForwardedFor = string(f.forwarded)
	}
	if !f.upgradeWS {
		return nil
	}
	switch {
	case string(method) != "GET":
		return ErrUpgradeMethod
	case !http11:
		return ErrUpgradeHTTP11
	case !f.connUpgrade:
		return ErrUpgradeConnection
	case !f.versionSeen || !f.versionOK:
		return ErrWebSocketVersion
	case f.keyCount != 1 || !validKey(f.key):
		return ErrWebSocketKey
	case !f.offersMlesWS:
		return ErrSubprotocol
	}
	req.Upgrade = true
	req.Peer = f.offersPeer
	copy(req.Key[:], f.key)
	return nil
}

// nextLine splits off the first line of b, without its CRLF or LF.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		line, rest = b, nil
	} else {
		line, rest = b[:i], b[i+1:]
	}
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

// parseRequestLine splits "METHOD SP request-target SP HTTP-version"
// (RFC 7230 section 3.1.1), single spaces only.
func parseRequestLine(line []byte) (method, target []byte, http11 bool, err error) {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return nil, nil, false, ErrRequestLine
	}
	method = line[:sp1]
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return nil, nil, false, ErrRequestLine
	}
	target = line[sp1+1 : sp1+1+sp2]
	version := line[sp1+1+sp2+1:]
	if !isToken(method) || !isVisible(target) {
		return nil, nil, false, ErrRequestLine
	}
	switch {
	case string(version) == "HTTP/1.1":
		return method, target, true, nil
	case string(version) == "HTTP/1.0":
		return method, target, false, nil
	case len(version) == 8 && string(version[:5]) == "HTTP/" && isDigit(version[5]) &&
		version[6] == '.' && isDigit(version[7]):
		return nil, nil, false, ErrHTTPVersion
	}
	return nil, nil, false, ErrRequestLine
}

// addLine parses one header line "name: value" and records the fields
// that matter to the upgrade. Names compare case-insensitively (RFC 7230
// section 3.2).
func (f *headerFacts) addLine(line []byte) error {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		return ErrObsFold
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !isToken(line[:colon]) {
		return ErrHeaderLine
	}
	name := line[:colon]
	value := trimOWS(line[colon+1:])
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7F {
			return ErrHeaderValue
		}
	}
	switch {
	case equalFold(name, "Host"):
		if f.hostSeen {
			return ErrDuplicateHost
		}
		f.hostSeen = true
		f.host = value
	case equalFold(name, "Upgrade"):
		f.upgradeWS = f.upgradeWS || listHas(value, "websocket", true)
	case equalFold(name, "Connection"):
		f.connUpgrade = f.connUpgrade || listHas(value, "upgrade", true)
	case equalFold(name, "Sec-WebSocket-Version"):
		// Every occurrence must say 13; a client offering several versions
		// is told which one we speak (RFC 6455 section 4.4).
		f.versionOK = string(value) == "13" && (f.versionOK || !f.versionSeen)
		f.versionSeen = true
	case equalFold(name, "Sec-WebSocket-Key"):
		f.key = value
		f.keyCount++
	case equalFold(name, "Sec-WebSocket-Protocol"):
		// Subprotocol names compare exactly (RFC 6455 section 4.1 uses the
		// token as sent); mles-rs wants the whole value, we also accept it
		// inside a list or in a repeated header (SPEC 1.1).
		f.offersMlesWS = f.offersMlesWS || listHas(value, Subprotocol, false)
		f.offersPeer = f.offersPeer || listHas(value, PeerSubprotocol, false)
	case equalFold(name, "X-Forwarded-For"):
		if len(f.forwarded) > 0 {
			f.forwarded = append(append(append([]byte(nil), f.forwarded...), ", "...), value...)
		} else {
			f.forwarded = value
		}
	}
	return nil
}

// listHas reports whether the comma-separated list holds token, comparing
// ASCII case-insensitively when fold is set (RFC 7230 section 7).
func listHas(list []byte, token string, fold bool) bool {
	for len(list) > 0 {
		var item []byte
		i := bytes.IndexByte(list, ',')
		if i < 0 {
			item, list = list, nil
		} else {
			item, list = list[:i], list[i+1:]
		}
		item = trimOWS(item)
		if fold && equalFold(item, token) || !fold && string(item) == token {
			return true
		}
	}
	return false
}

// validKey reports whether key is the base64 encoding of 16 bytes, which
// is 24 characters ending in "==" (RFC 6455 section 4.1, item 7).
func validKey(key []byte) bool {
	if len(key) != 24 {
		return false
	}
	var raw [18]byte
	n, err := base64.StdEncoding.Decode(raw[:], key)
	return err == nil && n == 16
}

// internMethod returns method as a string, without allocating for the
// common methods.
func internMethod(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	return string(m)
}

// trimOWS removes optional whitespace (SP and HTAB, RFC 7230 section 3.2.3)
// from both ends of b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b equals the ASCII string s, ignoring ASCII
// case, without allocating.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// isToken reports whether b is a non-empty token (RFC 7230 section 3.2.6).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

// isTokenChar reports whether c is a tchar (RFC 7230 section 3.2.6).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c):
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isVisible reports whether b is non-empty and holds no whitespace, control
// or non-ASCII byte, as a request-target must (RFC 7230 section 5.3).
func isVisible(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7F {
			return false
		}
	}
	return true
}

// isDigit reports whether c is an ASCII digit.
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
