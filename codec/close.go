package codec

import (
	"errors"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Close codes the server sends, named for the reason it sends them. They are
// the ws.StatusCode values of RFC 6455 section 7.4.1; the names say when the
// server uses each one so that the server never picks a code by number.
const (
	// CloseNormal ends a session the peer asked to end, or echoes its close.
	CloseNormal = ws.StatusNormalClosure // 1000
	// CloseGoingAway is sent to every client on shutdown (SPEC 5).
	CloseGoingAway = ws.StatusGoingAway // 1001
	// CloseProtocolError answers a frame that breaks RFC 6455 (SPEC 1.3).
	CloseProtocolError = ws.StatusProtocolError // 1002
	// CloseInvalidPayload answers invalid UTF-8 in a text message or close
	// reason (RFC 6455 section 8.1).
	CloseInvalidPayload = ws.StatusInvalidFramePayloadData // 1007
	// ClosePolicyViolation answers a bad header frame, failed auth, a
	// duplicate session, or a slow consumer (SPEC 1.2, 1.6).
	ClosePolicyViolation = ws.StatusPolicyViolation // 1008
	// CloseMessageTooBig answers a message over FrameReader.MaxMessage.
	CloseMessageTooBig = ws.StatusMessageTooBig // 1009
	// CloseInternalError is sent when the server fails on its side.
	CloseInternalError = ws.StatusInternalServerError // 1011
)

// Close reasons the server sends for what is not a codec error (a codec
// error carries its own, see CloseCodeOf). They are short (a close reason
// holds at most 123 bytes, RFC 6455 section 5.5) and fixed, because clients
// and tests match them.
const (
	ReasonSlowConsumer  = "slow consumer"   // 1008, SPEC 1.6
	ReasonReplaced      = "replaced"        // 1008, SPEC 1.2, --replace-duplicate
	ReasonDuplicate     = "duplicate"       // 1008, SPEC 1.2
	ReasonHeaderTimeout = "header timeout"  // 1008, no header frame in time
	ReasonPingTimeout   = "ping timeout"    // 1001, no frame for --ping-max pings
	ReasonShutdown      = "server shutdown" // 1001, SPEC 5
)

// MaxCloseReason is the longest close reason that fits in a control frame:
// 125 bytes of payload minus the 2-byte code (RFC 6455 section 5.5).
const MaxCloseReason = 123

// ValidCloseCode reports whether code may appear in a close frame on the wire
// (RFC 6455 section 7.4.1 and 7.4.2): 1000-1003, 1007-1014 (1012-1014 were
// registered with IANA after the RFC) and the application range 3000-4999.
// 1004 is reserved, and 1005, 1006 and 1015 "MUST NOT be set as a status
// code in a Close control frame by an endpoint".
func ValidCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// ParseClose splits and validates a close frame payload as received from a
// peer (RFC 6455 section 5.5.1). An empty payload yields
// ws.StatusNoStatusRcvd (1005), which section 7.1.5 says to report for a close
// without a code. The reason aliases payload. FrameReader has already
// applied these checks to the payloads it reports with EventClose.
func ParseClose(payload []byte) (code ws.StatusCode, reason []byte, err error) {
	switch {
	case len(payload) == 0:
		return ws.StatusNoStatusRcvd, nil, nil
	case len(payload) == 1:
		return 0, nil, ErrBadClosePayload
	}
	code = ws.StatusCode(uint16(payload[0])<<8 | uint16(payload[1]))
	if !ValidCloseCode(code) {
		return 0, nil, ErrBadCloseCode
	}
	reason = payload[2:]
	if !utf8.Valid(reason) {
		return 0, nil, ErrInvalidUTF8
	}
	return code, reason, nil
}

// CloseCodeOf returns the close code and reason the server should send for
// err: the code and reason of a ProtocolError or PolicyError anywhere in
// err's chain, or
// CloseInternalError with an empty reason for any other error. It lets the
// server close every failed connection through one path.
func CloseCodeOf(err error) (ws.StatusCode, string) {
	switch e := err.(type) { // the codec's own errors, without errors.As's allocation
	case ProtocolError:
		return e.Code(), e.Reason()
	case PolicyError:
		return e.Code(), e.Reason()
	}
	var ce closeError
	if errors.As(err, &ce) { // wrapped
		return ce.Code(), ce.Reason()
	}
	return CloseInternalError, ""
}

// truncateReason cuts reason to at most MaxCloseReason bytes without
// splitting a UTF-8 sequence, since a close reason must be valid UTF-8
// (RFC 6455 section 5.5.1) and a cut rune would make the peer fail with 1007.
func truncateReason(reason string) string {
	if len(reason) <= MaxCloseReason {
		return reason
	}
	i := MaxCloseReason
	// Back up over continuation bytes (10xxxxxx) to the start of the rune
	// that crosses the limit; at most 3 steps for valid UTF-8.
	for i > 0 && i > MaxCloseReason-utf8.UTFMax && reason[i]&0xC0 == 0x80 {
		i--
	}
	return reason[:i]
}
