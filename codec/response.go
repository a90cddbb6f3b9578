package codec

// The server's answers to an upgrade request: 101 with the accept key, or
// an HTTP error with a one-line reason.

import (
	"crypto/sha1"
	"encoding/base64"
	"strconv"
)

// websocketGUID is appended to the key before hashing (RFC 6455 section
// 1.3).
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey returns the Sec-WebSocket-Accept value for key: the base64 of
// the SHA-1 of the key followed by the WebSocket GUID (RFC 6455 section
// 4.2.2, item 5.4). It does not allocate.
func AcceptKey(key *[24]byte) [28]byte {
	var in [len(key) + len(websocketGUID)]byte
	copy(in[:], key[:])
	copy(in[len(key):], websocketGUID)
	sum := sha1.Sum(in[:])
	var out [28]byte
	base64.StdEncoding.Encode(out[:], sum[:])
	return out
}

// AppendUpgradeResponse appends the 101 Switching Protocols response that
// completes the handshake for key (RFC 6455 section 4.2.2): it selects the
// mles-websocket subprotocol and no extension. It does not allocate beyond
// growing dst.
func AppendUpgradeResponse(dst []byte, key *[24]byte) []byte {
	return AppendUpgradeResponseFor(dst, key, Subprotocol)
}

// AppendUpgradeResponseFor is AppendUpgradeResponse selecting subprotocol
// (Subprotocol or PeerSubprotocol).
func AppendUpgradeResponseFor(dst []byte, key *[24]byte, subprotocol string) []byte {
	accept := AcceptKey(key)
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\n"+
		"Connection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "...)
	dst = append(dst, accept[:]...)
	dst = append(dst, "\r\nSec-WebSocket-Protocol: "...)
	dst = append(dst, subprotocol...)
	return append(dst, "\r\n\r\n"...)
}

// AppendHTTPError appends a complete HTTP/1.1 error response: status line,
// "Content-Type: text/plain; charset=utf-8", Content-Length,
// "Connection: close" (the server closes after it), and reason plus a
// newline as the body. A 426 also carries "Upgrade: websocket" (RFC 7231
// section 6.5.15) and "Sec-WebSocket-Version: 13" (RFC 6455 section 4.4).
// Control characters in reason become spaces, so the body stays one line.
func AppendHTTPError(dst []byte, status int, reason string) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, statusText(status)...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(reason)+1), 10)
	dst = append(dst, "\r\nConnection: close\r\n"...)
	if status == 426 {
		dst = append(dst, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	for i := range len(reason) {
		c := reason[i]
		if c < ' ' || c == 0x7F {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\n')
}

// statusText returns the reason phrase for the statuses the server sends.
// net/http's StatusText would do, but this package stays free of net/http.
func statusText(status int) string {
	switch status {
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 426:
		return "Upgrade Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 503:
		return "Service Unavailable"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}
