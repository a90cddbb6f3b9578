package server

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/ring"
	"github.com/mles/mles/tlsbridge"
)

// connState is where a connection is in its life. Each state but closing
// has a deadline or a liveness check (SPEC 1.1-1.3).
type connState uint8

const (
	stHello       connState = iota // TLS: waiting for the whole ClientHello (no goroutine yet)
	stProxy                        // --proxy-protocol: waiting for the PROXY header (proxy.go)
	stQueued                       // TLS: ClientHello in, waiting for a handshake slot
	stHandshake                    // TLS handshake in its goroutine
	stUpgrade                      // reading the HTTP upgrade request
	stPeerUpgrade                  // a peer session we dialed: reading the peer's 101 (peer.go)
	stHeader                       // waiting for the Mles header frame
	stPeerWait                     // header in: the join waits for the peers' resync (peersync.go)
	stJoined                       // member of a channel
	stHTTP                         // a request that is not an upgrade: the HTTP side (httpside.go)
	stClosing                      // close decided; waiting for gnet to close the socket
)

// headerFrameMax bounds the header frame before the join; it is far above
// any valid header (two names of MaxUID/MaxChannel bytes and a token).
const headerFrameMax = 64 << 10

// errStop ends the plaintext callback once the connection is closing.
var errStop = errors.New("server: connection closing")

// conn is one client connection. Every field is owned by the event loop l,
// which is the only goroutine that touches it after OnOpen. Every connection
// has one, so the small fields are packed together (352 bytes on amd64,
// in the allocator's 352-byte class).
type conn struct {
	s  *Server
	l  *loop
	gc gnet.Conn
	id uint64 // unique per connection; ring messages carry it to skip echo

	// deadline is the state's deadline in unix nanoseconds: ClientHello,
	// slot wait, handshake, upgrade and header; in closing, when to stop
	// waiting for the output to flush and close hard.
	deadline    int64
	state       connState
	inHS        bool // counted in Server.handshakes
	dead        bool // OnClose ran: gc must not be touched any more
	reason      closeReason
	flags       connFlags
	closeStatus ws.StatusCode // the close frame's code, sent once part is out (fCloseFrame)

	tls *tlsbridge.Conn // nil in plain mode and until the ClientHello is in
	hs  *hsTicket       // claim on a handshake slot, from the ClientHello to the handshake's end
	up  *upgradeState   // only while reading the upgrade request
	hc  *httpConn       // the HTTP side's connection (stHTTP)
	fr  codec.FrameReader

	// Membership, set by join.
	ch       *channel
	key      memberKey
	uidID    string // hashed uid for logs
	grp      *group
	grpIdx   int32
	pings    int32   // pings sent since the last inbound bytes
	cursor   uint64  // next ring sequence to deliver
	pubEnd   uint64  // the sequence after the member's last message; 0 if none
	replay   *replay // stored joins still to deliver; nil once the history is out
	pausedAt int64   // when the member went above MaxPending; 0 when not paused
	nextPing int64

	// Output in progress. A frame of copyMax bytes or more is written in
	// slices of the ring's shared frame while the output has room, never
	// copied whole per member: part is that frame, partOff how much of
	// it has gone to gnet. A close waits for it, so no frame is cut.
	part    *ring.Message
	partOff int32
	// opened is when the connection was accepted, in tenths of a second
	// since the server started (logs; 13 years of range).
	opened uint32
	rare   *connRare // a pong held back, a peer session: what few connections need (peer.go)

	closeText string // the close frame's reason (fCloseFrame)

	// client is the client's address when a PROXY header or
	// X-Forwarded-For named it; nil when it is the socket's peer.
	client *netip.AddrPort
}

// connFlags are the connection's small yes/no states, packed.
type connFlags uint8

const (
	fWaiting    connFlags = 1 << iota // in the loop's waiting list (loop.wait)
	fShutdown                         // deliver up to the head, then close 1001
	fCloseFrame                       // a close frame is due once part is out
	fNotify                           // a TLS close_notify is due with it
	fHardClose                        // gc.Close was called
	fPong                             // a pong is due once part is out
	fCounted                          // counted by the per-address limits (released at close)
)

// OnOpen admits a connection, or refuses it when the server is full. A
// drain closes the listeners before it starts, so one accepted while it
// runs was queued before: it is served, and closed in the drain's turn. A TLS connection then waits for its ClientHello at the cost of a
// plain one: no bridge, no goroutine, no handshake slot until it is in.
func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := h.s
	if k, ok := gc.Context().(*peerLink); ok {
		return nil, h.openPeer(gc, k)
	}
	n := s.conns.Add(1)
	if s.opts.MaxConns > 0 && n > int64(s.opts.MaxConns) {
		s.conns.Add(-1)
		s.refusedMax.Add(1)
		s.log.Info("connection refused", "remote", gc.RemoteAddr().String(), "conns", n-1)
		return nil, gnet.Close
	}
	peer := tcpAddrPort(gc.RemoteAddr()).Addr()
	switch {
	case s.opts.ProxyProtocol && len(s.opts.TrustedProxies) > 0 && !s.trusted(peer):
		s.conns.Add(-1)
		s.refusedUntrusted.Add(1)
		s.log.Info("connection refused", "remote", gc.RemoteAddr().String(), "reason", "not a trusted proxy")
		return nil, gnet.Close
	case s.opts.ProxyProtocol || s.trusted(peer):
		// The limits wait for the client's address: the PROXY header,
		// or X-Forwarded-For at the upgrade (proxy.go).
	default:
		if reason := s.admit(peer); reason != "" {
			s.conns.Add(-1)
			s.log.Info("connection refused", "remote", gc.RemoteAddr().String(), "reason", reason)
			return nil, gnet.Close
		}
	}
	l := s.loopFor(gc.EventLoop())
	l.tick()
	c := &conn{s: s, l: l, gc: gc, id: s.nextID.Add(1), opened: uint32((l.now - s.started) / int64(100*time.Millisecond))}
	l.conns[c] = struct{}{}
	l.ctr.accepted++
	gc.SetContext(c)
	switch {
	case s.opts.ProxyProtocol:
		c.state = stProxy
		c.deadline = l.now + int64(s.opts.HelloTimeout)
		return nil, gnet.None
	case !s.trusted(peer):
		c.flags |= fCounted
	}
	c.begin()
	return nil, gnet.None
}

// OnTraffic feeds the bytes that arrived (or, after a Wake from the
// handshake goroutine, none) through TLS, HTTP and WebSocket parsing and
// flushes this connection. Messages it published are delivered by the
// loop's flush task after the poll round (loop.schedule).
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	s := h.s
	c, _ := gc.Context().(*conn)
	if c == nil {
		return gnet.Close
	}
	l := c.l
	l.tick()
	if c.state == stProxy && !c.onProxy() {
		c.flush()
		return gnet.None
	}
	if c.state == stHello || c.state == stQueued {
		c.onHello()
		c.flush()
		return gnet.None
	}
	data, _ := gc.Next(-1) // valid until this callback returns
	if c.state == stClosing {
		c.finishClose() // the peer may have read everything (a close echo)
		return gnet.None
	}
	if c.state == stJoined && (c.flags&fShutdown != 0 || s.draining.Load()) {
		return gnet.None // closing for a drain: nothing more is accepted
	}
	if len(data) > 0 && c.state == stJoined {
		c.pings = 0
	}
	if c.tls != nil {
		c.trafficTLS(data)
	} else {
		_ = c.onPlain(data)
	}
	c.flush()
	l.trimScratch()
	return gnet.None
}

// onFrames parses frames out of p, which it consumes whole.
func (c *conn) onFrames(p []byte) {
	for len(p) > 0 && (c.state == stHeader || c.state == stJoined) {
		ev, n, err := c.fr.Next(p)
		p = p[n:]
		if err != nil {
			c.protocolError(err)
			return
		}
		switch ev {
		case codec.EventMessage:
			c.onMessage()
		case codec.EventPing:
			if c.part != nil {
				// A frame is going out in slices: the pong follows it.
				c.rareExt().pong = append([]byte(nil), c.fr.Control()...)
				c.flags |= fPong
				continue
			}
			c.send(codec.AppendFrame(c.l.out[:0], ws.OpPong, c.fr.Control()))
		case codec.EventClose:
			c.onClientClose()
		}
	}
	if len(p) > 0 && c.state == stPeerWait {
		c.holdBytes(p) // what came after the header: read once it has joined
	}
}

// protocolError closes c for a codec error. In the header state a frame
// over the header frame's limit is a bad header (1008), not a message too
// big (1009).
func (c *conn) protocolError(err error) {
	r := closeProtocol
	if c.state == stHeader && errors.Is(err, codec.ErrFrameTooLarge) {
		r, err = closeBadHeader, codec.ErrHeaderTooLong
	}
	c.closeErr(r, err)
}

// closeErr is the one way a codec error closes a connection: its close code
// and short reason come from codec.CloseCodeOf, and one log line names both
// and the error.
func (c *conn) closeErr(r closeReason, err error) {
	code, text := codec.CloseCodeOf(err)
	if c.state == stJoined {
		switch code {
		case ws.StatusMessageTooBig:
			c.l.ctr.dropped[dropTooLarge]++
		case ws.StatusInvalidFramePayloadData:
			c.l.ctr.dropped[dropInvalid]++
		}
	}
	c.s.log.Info(r.String(), "conn", c.id, "code", int(code), "reason", text, "err", err)
	c.closeCode(r, code, text)
}

// onClientClose echoes the client's close code (RFC 6455 5.5.1) and closes
// once the echo is flushed.
func (c *conn) onClientClose() {
	code := c.fr.CloseCode()
	if code == ws.StatusNoStatusRcvd {
		code = 0 // a close without a status is echoed as an empty close frame
	}
	c.closeCode(closeClient, code, "")
}

// send writes a frame or response for this connection: through the TLS
// bridge (flushed by flush) or straight to gnet.
func (c *conn) send(p []byte) {
	if c.dead {
		return
	}
	if cap(p) > cap(c.l.out) {
		c.l.out = p[:0] // keep the grown scratch
	}
	if ps := c.peerOf(); ps != nil && ps.out && c.state != stPeerUpgrade {
		p = c.maskFrame(ps, p) // a frame from the dialing side is masked
	}
	if c.tls != nil {
		_, _ = c.tls.Write(p)
		return
	}
	_, _ = c.gc.Write(p)
}

// flush hands pending TLS output to gnet in one write. gnet writes what
// the socket takes and copies the rest, so the bridge's buffer is free after.
func (c *conn) flush() {
	if c.tls == nil || c.dead || c.tls.Pending() == 0 {
		return
	}
	out := c.tls.PeekOutput()
	_, _ = c.gc.Write(out)
	if !c.dead {
		c.tls.DiscardOutput(len(out))
	}
}

// sweep runs once per tick on the loop: state deadlines, paused
// members, liveness pings.
func (c *conn) sweep() {
	now := c.l.now
	switch c.state {
	case stProxy, stHello:
		if now >= c.deadline {
			c.closeWith(closeHelloTimeout)
		}
	case stQueued, stHandshake, stUpgrade, stPeerUpgrade:
		if now >= c.deadline {
			c.closeWith(closeHandshakeTimeout)
		}
	case stHeader, stPeerWait:
		if now >= c.deadline {
			c.closeWith(closeHeaderTimeout)
		}
	case stJoined:
		if c.tls != nil {
			c.tls.Shrink() // an idle member keeps no empty bridge buffers
		}
		c.fr.Shrink() // nor a message buffer kept from its last message
		if c.pausedAt != 0 || c.flags&fShutdown != 0 {
			c.resume() // the waiting list's backstop
			if c.state != stJoined {
				return
			}
		}
		if now < c.nextPing {
			return
		}
		if int(c.pings) >= c.s.opts.PingMax {
			c.closeWith(closePingTimeout)
			return
		}
		c.pings++
		c.nextPing = now + int64(c.s.opts.PingInterval)
		if c.part == nil { // a ping must not cut a frame in slices
			c.send(codec.AppendFrame(c.l.out[:0], ws.OpPing, nil))
			c.flush()
		}
	case stClosing:
		c.finishClose()
	}
}

// closeWith closes the connection for reason r with r's close code.
func (c *conn) closeWith(r closeReason) {
	c.closeCode(r, closeInfo[r].code, closeInfo[r].text)
}

// closeCode leaves the channel at once, stops data, and closes politely:
// the rest of a frame in slices, then a close frame with code (if the
// connection speaks WebSocket and code is not 0) and a TLS close_notify,
// then the socket once the output is flushed or CloseLinger passes. No
// frame is ever cut by the close frame. It runs once.
func (c *conn) closeCode(r closeReason, code ws.StatusCode, text string) {
	if c.state == stClosing || c.dead {
		return
	}
	upgraded := c.state == stHeader || c.state == stPeerWait || c.state == stJoined
	established := c.state > stHandshake
	c.countClose(r, c.state)
	c.endHandshake() // a slot goes to the next client now, not at OnClose
	c.state = stClosing
	c.reason = r
	c.replay = nil
	c.leave()
	c.deadline = c.l.now + int64(c.s.opts.CloseLinger)
	if c.s.lameDuck.Load() {
		c.deadline = min(c.deadline, c.s.shutdownEnd.Load())
	}
	if upgraded && (code != 0 || r == closeClient) {
		c.flags |= fCloseFrame
		c.closeStatus, c.closeText = code, text
	}
	if c.tls != nil && established {
		c.flags |= fNotify
	}
	c.finishClose()
}

// finishClose moves a closing connection on: the rest of a sliced frame,
// the close frame, then the socket once gnet has flushed the output (or
// at the deadline, whatever is left). The loop's waiting list calls it
// again until then; so does any traffic from the peer (its close echo).
func (c *conn) finishClose() {
	if c.dead || c.flags&fHardClose != 0 {
		return
	}
	done := c.writePart()
	if done && c.flags&fCloseFrame != 0 {
		c.flags &^= fCloseFrame
		if c.closeStatus == 0 {
			c.send(codec.AppendFrameHeader(c.l.out[:0], ws.OpClose, 0))
		} else {
			c.send(codec.AppendClose(c.l.out[:0], c.closeStatus, c.closeText))
			c.countCode(c.closeStatus)
		}
		c.closeText = ""
	}
	if done && c.flags&fNotify != 0 {
		c.flags &^= fNotify
		c.tls.CloseNotify()
	}
	c.flush()
	if c.dead {
		return
	}
	if (done && c.gc.OutboundBuffered() == 0) || c.l.now >= c.deadline {
		c.flags |= fHardClose
		_ = c.gc.Close()
		return
	}
	c.l.wait(c)
}

// OnClose releases everything the connection holds, exactly once, whatever
// ended it.
func (h *handler) OnClose(gc gnet.Conn, err error) gnet.Action {
	s := h.s
	c, _ := gc.Context().(*conn)
	if c == nil {
		return gnet.None
	}
	gc.SetContext(nil)
	l := c.l
	l.tick()
	if c.state != stClosing {
		c.reason = closeEOF
		if err != nil {
			c.reason = closeNetError
		}
		c.countClose(c.reason, c.state)
		c.state = stClosing
		c.leave()
	}
	c.dead = true
	if c.hc != nil {
		c.hc.fail() // the handler reads EOF and its writes fail
	}
	c.part, c.replay = nil, nil // the waiting list may hold c a little longer
	if c.rare != nil {
		c.rare.pong = nil
		if ps := c.rare.peer; ps != nil && ps.out {
			ps.link.c.CompareAndSwap(c, nil)
			ps.link.retry()
		}
	}
	c.endHandshake()
	if c.tls != nil {
		c.tls.Close()
	}
	c.fr.Release()
	c.releaseUpgrade()
	delete(l.conns, c)
	s.conns.Add(-1)
	if c.flags&fCounted != 0 {
		s.perIP.release(c.clientAddr().Addr())
	}
	if s.log.Enabled(context.Background(), slog.LevelInfo) {
		// One line per connection (SPEC 5): ids hashed, never a uid or
		// channel name.
		d := time.Duration(l.now-s.started) - time.Duration(c.opened)*100*time.Millisecond
		attrs := []any{"conn", c.id, "reactor", l.idx, "remote", c.remote(), "duration", d.Round(100 * time.Millisecond), "reason", c.reason.String()}
		if c.closeStatus != 0 {
			attrs = append(attrs, "code", int(c.closeStatus))
		}
		if err != nil {
			attrs = append(attrs, "err", err)
		}
		s.log.Info("closed", attrs...)
	}
	return gnet.None
}
