package server

import (
	"github.com/gobwas/ws"

	"github.com/mles/mles/codec"
)

// closeReason records why a connection ended. Each reason maps to the close
// code sent to the client (if the connection got as far as WebSocket) and to
// the word in the log line, the way nats-server keeps a ClosedState.
type closeReason uint8

const (
	closeNone             closeReason = iota
	closeEOF                          // the peer closed the TCP connection
	closeNetError                     // a read or write failed
	closeClient                       // the client sent a close frame; echoed
	closeProtocol                     // a frame the codec refused: RFC 6455 violation (1002), invalid UTF-8 (1007), message too big (1009)
	closeBadHeader                    // invalid Mles header frame (1008)
	closeAuth                         // auth missing or wrong (1008)
	closeDuplicate                    // a live member with the same (uid, channel, auth) exists (1008)
	closeReplaced                     // replaced by a newer member (--replace-duplicate) (1008)
	closeSlow                         // slow consumer (1008)
	closeHelloTimeout                 // no whole TLS ClientHello in time
	closeHandshakeTimeout             // slot wait, TLS handshake or HTTP upgrade not done in time
	closeHeaderTimeout                // header frame not received in time (1008)
	closePingTimeout                  // no inbound frame for PingMax pings (1001)
	closeShutdown                     // server shutting down (1001)
	closeTLSError                     // TLS handshake or record error
	closeHTTP                         // HTTP request answered with an error status or 404
	closeHTTPDone                     // the HTTP side closed its connection
	closeProxyHeader                  // no valid PROXY protocol header (--proxy-protocol)
	closeRefused                      // over a per-address limit once the PROXY header named the client
	closePeerUnlinked                 // a peer session the channel no longer needs: no local member (1000)
	closePeerRefused                  // the peer did not answer the upgrade with a 101
	closePeerSelf                     // a peer session from this server to itself (1008)
	closePeerProtocol                 // a frame a peer session must not carry (1002)
	closePeerCovered                  // the peer's own session links the two servers (1000)
	closeReasons                      // the number of reasons
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
	closeProtocol:         {0, "", "protocol error"}, // code and text from codec.CloseCodeOf
	closeBadHeader:        {0, "", "invalid header"}, // code and text from codec.CloseCodeOf
	closeAuth:             {0, "", "auth failed"},    // code and text from codec.CloseCodeOf
	closeDuplicate:        {codec.ClosePolicyViolation, codec.ReasonDuplicate, "duplicate"},
	closeReplaced:         {codec.ClosePolicyViolation, codec.ReasonReplaced, "replaced"},
	closeSlow:             {codec.ClosePolicyViolation, codec.ReasonSlowConsumer, "slow consumer"},
	closeHelloTimeout:     {0, "", "hello timeout"},
	closeHandshakeTimeout: {0, "", "handshake timeout"},
	closeHeaderTimeout:    {codec.ClosePolicyViolation, codec.ReasonHeaderTimeout, "header timeout"},
	closePingTimeout:      {codec.CloseGoingAway, codec.ReasonPingTimeout, "ping timeout"},
	closeShutdown:         {codec.CloseGoingAway, codec.ReasonShutdown, "shutdown"},
	closeTLSError:         {0, "", "tls error"},
	closeHTTP:             {0, "", "http"},
	closeHTTPDone:         {0, "", "http done"},
	closeProxyHeader:      {0, "", "proxy header"},
	closeRefused:          {0, "", "refused"},
	closePeerUnlinked:     {codec.CloseNormal, "no local members", "peer unlinked"},
	closePeerRefused:      {0, "", "peer refused"},
	closePeerSelf:         {codec.ClosePolicyViolation, "peer session to itself", "peer self"},
	closePeerProtocol:     {codec.CloseProtocolError, "invalid peer frame", "peer protocol"},
	closePeerCovered:      {codec.CloseNormal, "covered by the peer's session", "peer covered"},
}

func (r closeReason) String() string { return closeInfo[r].name }
