package server

import "github.com/gobwas/ws"

// closeReason records why a connection ended. Each reason maps to the close
// code sent to the client (if the connection got as far as WebSocket) and to
// the word in the log line, the way nats-server keeps a ClosedState.
type closeReason uint8

const (
	closeNone             closeReason = iota
	closeEOF                          // the peer closed the TCP connection
	closeNetError                     // a read or write failed
	closeClient                       // the client sent a close frame; echoed
	closeProtocol                     // RFC 6455 violation (1002)
	closeInvalidUTF8                  // invalid UTF-8 in a text message or close reason (1007)
	closeTooBig                       // message over --max-message (1009)
	closeBadHeader                    // invalid Mles header frame (1008)
	closeAuth                         // auth missing or wrong (1008)
	closeDuplicate                    // a live session with the same (uid, channel, auth) exists (1008)
	closeReplaced                     // replaced by a newer session (--replace-duplicate) (1008)
	closeSlow                         // slow consumer (1008)
	closeHandshakeTimeout             // TLS handshake or HTTP upgrade not done in time
	closeHeaderTimeout                // header frame not received in time (1008)
	closePingTimeout                  // no inbound frame for PingMax pings (1001)
	closeShutdown                     // server shutting down (1001)
	closeTLSError                     // TLS handshake or record error
	closeHTTP                         // HTTP request answered with an error status or 404
)

// closeInfo is the close code and reason text a closeReason sends. Code 0
// sends no close frame.
var closeInfo = [...]struct {
	code ws.StatusCode
	text string
	name string
}{
	closeNone:             {0, "", "none"},
	closeEOF:              {0, "", "eof"},
	closeNetError:         {0, "", "net error"},
	closeClient:           {0, "", "client close"},
	closeProtocol:         {ws.StatusProtocolError, "protocol error", "protocol error"},
	closeInvalidUTF8:      {ws.StatusInvalidFramePayloadData, "invalid utf-8", "invalid utf-8"},
	closeTooBig:           {ws.StatusMessageTooBig, "message too big", "message too big"},
	closeBadHeader:        {ws.StatusPolicyViolation, "invalid header", "invalid header"},
	closeAuth:             {ws.StatusPolicyViolation, "auth failed", "auth failed"},
	closeDuplicate:        {ws.StatusPolicyViolation, "duplicate", "duplicate"},
	closeReplaced:         {ws.StatusPolicyViolation, "replaced", "replaced"},
	closeSlow:             {ws.StatusPolicyViolation, "slow consumer", "slow consumer"},
	closeHandshakeTimeout: {0, "", "handshake timeout"},
	closeHeaderTimeout:    {ws.StatusPolicyViolation, "header timeout", "header timeout"},
	closePingTimeout:      {ws.StatusGoingAway, "ping timeout", "ping timeout"},
	closeShutdown:         {ws.StatusGoingAway, "server shutdown", "shutdown"},
	closeTLSError:         {0, "", "tls error"},
	closeHTTP:             {0, "", "http"},
}

func (r closeReason) String() string { return closeInfo[r].name }

// reasonForCode maps the close code of a codec protocol error to a reason.
func reasonForCode(code ws.StatusCode) closeReason {
	switch code {
	case ws.StatusInvalidFramePayloadData:
		return closeInvalidUTF8
	case ws.StatusMessageTooBig:
		return closeTooBig
	case ws.StatusPolicyViolation:
		return closeBadHeader
	}
	return closeProtocol
}
