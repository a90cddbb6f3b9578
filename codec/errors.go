package codec

import (
	"strconv"

	"github.com/gobwas/ws"
)

// ProtocolError is a frame that breaks RFC 6455: it ends the WebSocket
// session with close code 1002, or 1007 for ErrInvalidUTF8 and 1009 for
// ErrFrameTooLarge (section 7.4.1). Its text is the short reason sent in
// the close frame (at most MaxCloseReason bytes, no client data in it).
//
// The errors are constants of string types, as gobwas/ws defines its own
// (check.go): nobody can change them, errors.Is compares them, and
// returning one allocates nothing.
type ProtocolError string

// Error returns "codec: " followed by the reason.
func (e ProtocolError) Error() string { return "codec: " + string(e) }

// Reason is the close frame's reason.
func (e ProtocolError) Reason() string { return string(e) }

// Code is the close code to send.
func (e ProtocolError) Code() ws.StatusCode {
	switch e {
	case ErrInvalidUTF8:
		return CloseInvalidPayload
	case ErrFrameTooLarge:
		return CloseMessageTooBig
	}
	return CloseProtocolError
}

// PolicyError is a header frame or an auth token the server refuses: the
// session ends with close code 1008 (SPEC 1.2) and the error's text as the
// reason.
type PolicyError string

// Error returns "codec: " followed by the reason.
func (e PolicyError) Error() string { return "codec: " + string(e) }

// Reason is the close frame's reason.
func (e PolicyError) Reason() string { return string(e) }

// Code is the close code to send: 1008.
func (e PolicyError) Code() ws.StatusCode { return ClosePolicyViolation }

// HandshakeError is a request the server refuses before the WebSocket
// session starts: it answers with the HTTP status Status and the error's
// text as the body, AppendHTTPError(dst, e.Status(), e.Reason()).
type HandshakeError string

// Error returns "codec: handshake: " followed by the status and reason.
func (e HandshakeError) Error() string {
	return "codec: handshake: " + strconv.Itoa(e.Status()) + " " + string(e)
}

// Reason is the response body's one line.
func (e HandshakeError) Reason() string { return string(e) }

// Status is the HTTP status to answer with: 431, 505 or 426 for the errors
// that name them, 400 for the others.
func (e HandshakeError) Status() int {
	switch e {
	case ErrHeaderBlockTooLarge:
		return 431
	case ErrHTTPVersion:
		return 505
	case ErrWebSocketVersion:
		return 426
	}
	return 400
}

// closeError is what CloseCodeOf looks for: ProtocolError and PolicyError.
type closeError interface {
	error
	Code() ws.StatusCode
	Reason() string
}

var (
	_ closeError = ProtocolError("")
	_ closeError = PolicyError("")
	_ error      = HandshakeError("")
)
