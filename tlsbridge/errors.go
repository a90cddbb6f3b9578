package tlsbridge

import (
	"crypto/tls"
	"errors"
)

// Sentinel errors. Errors from crypto/tls (alerts, tls.RecordHeaderError) are
// returned as they are.
var (
	// ErrHandshakeTimeout is the HandshakeErr of a handshake that did not
	// finish within Config.Timeout.
	ErrHandshakeTimeout = errors.New("tlsbridge: handshake timeout")
	// ErrBufferFull is returned when more than Config.MaxBuffered bytes of
	// ciphertext would wait for the handshake goroutine.
	ErrBufferFull = errors.New("tlsbridge: too much ciphertext buffered")
	// ErrNotEstablished is returned by loop methods that need a finished
	// handshake.
	ErrNotEstablished = errors.New("tlsbridge: handshake not established")
)

// PlainHTTPResponse is what to send, in clear text, before closing a
// connection whose handshake failed with IsPlainHTTP; it is net/http's answer.
const PlainHTTPResponse = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"

// IsPlainHTTP reports whether a handshake error means that the client spoke
// plain HTTP to the TLS port: crypto/tls rejected the first record header
// (tls.RecordHeaderError) and its five bytes look like an HTTP method and
// path. The server then writes PlainHTTPResponse to the socket itself (never
// to RecordHeaderError.Conn, which is the bridge's internal transport).
func IsPlainHTTP(err error) bool {
	var rhe tls.RecordHeaderError
	if !errors.As(err, &rhe) {
		return false
	}
	return LooksLikeHTTP(rhe.RecordHeader[:])
}
