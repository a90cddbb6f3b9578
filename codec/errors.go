package codec

import "github.com/gobwas/ws"

// ProtocolError is an error that ends a WebSocket session. Code is the close
// code to send and Reason a short text (at most MaxCloseReason bytes, no
// client data in it) to send with it, so the server closes every failed
// connection the same way: AppendClose(dst, e.Code, e.Reason), or
// CloseCodeOf(err).
//
// The codec returns the package's sentinel values themselves (ErrUnmasked,
// ErrHeaderUID, ...), so both errors.Is(err, ErrUnmasked) and errors.As(err,
// &pe) work and the error path does not allocate. Callers must not modify
// the sentinels.
type ProtocolError struct {
	Code   ws.StatusCode
	Reason string
}

// Error returns "codec: " followed by the reason.
func (e *ProtocolError) Error() string { return "codec: " + e.Reason }

// protocolError builds a sentinel with the close code for rule violations
// of RFC 6455 (1002) and reason.
func protocolError(reason string) *ProtocolError {
	return &ProtocolError{Code: ws.StatusProtocolError, Reason: reason}
}

// policyError builds a sentinel with the close code the SPEC assigns to a
// bad header frame or failed auth, 1008 (SPEC 1.2).
func policyError(reason string) *ProtocolError {
	return &ProtocolError{Code: ws.StatusPolicyViolation, Reason: reason}
}

// Both error types satisfy error through their pointers, which is how the
// sentinels are returned.
var (
	_ error = (*ProtocolError)(nil)
	_ error = (*HandshakeError)(nil)
)
