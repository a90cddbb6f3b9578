package server

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/ring"
	"github.com/mles/mles/tlsbridge"
)

// connState is where a connection is in its life. Each state but closing
// has a deadline or a liveness check (SPEC 1.1-1.3).
type connState uint8

const (
	stHello     connState = iota // TLS: waiting for the whole ClientHello (no goroutine yet)
	stQueued                     // TLS: ClientHello in, waiting for a handshake slot
	stHandshake                  // TLS handshake in its goroutine
	stUpgrade                    // reading the HTTP upgrade request
	stHeader                     // waiting for the Mles header frame
	stJoined                     // member of a channel
	stClosing                    // close decided; waiting for gnet to close the socket
)

// headerFrameMax bounds the header frame before the join; it is far above
// any valid header (two names of MaxUID/MaxChannel bytes and a token).
const headerFrameMax = 64 << 10

// batchMax bounds one member's batch, so one huge backlog is written in
// slices and rechecked against MaxPending between them.
const batchMax = 256 << 10

// errStop ends the plaintext callback once the connection is closing.
var errStop = errors.New("server: connection closing")

// conn is one client connection. Every field is owned by the event loop l,
// which is the only goroutine that touches it after OnOpen. Every connection
// has one, so the small fields are packed together (320 bytes on amd64).
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
	fr  codec.FrameReader

	// Membership, set by join.
	ch       *channel
	key      memberKey
	uidID    string // hashed uid for logs
	grp      *group
	grpIdx   int32
	pings    int32   // pings sent since the last inbound bytes
	cursor   uint64  // next ring sequence to deliver
	replay   *replay // stored joins still to deliver; nil once the history is out
	pausedAt int64   // when the member went above MaxPending; 0 when not paused
	nextPing int64

	// Output in progress. A frame of copyMax bytes or more is written in
	// slices of the ring's shared frame while the output has room, never
	// copied whole per member: part is that frame, partOff how much of
	// it has gone to gnet. A close waits for it, so no frame is cut.
	part    *ring.Message
	partOff int
	pong    *[]byte // the payload of a ping answered once part is out (rare)

	closeText string // the close frame's reason (fCloseFrame)
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
)

// replay holds the stored join frames of a joiner's history, merged into
// the messages by position as the cursor passes them.
type replay struct {
	joins []ring.JoinAt
	next  int
	end   uint64 // the span's End: messages below are history, from End on live
}

// upgradeState holds the request bytes received so far, which the
// incremental parser rescans from where it stopped. The buffer comes from
// bytebufferpool and goes back once the upgrade is answered.
type upgradeState struct {
	p   codec.UpgradeParser
	buf *bytebufferpool.ByteBuffer
}

func newUpgradeState() *upgradeState {
	return &upgradeState{buf: bytebufferpool.Get()}
}

// releaseUpgrade returns the request buffer to the pool, once.
func (c *conn) releaseUpgrade() {
	if c.up != nil {
		bytebufferpool.Put(c.up.buf)
		c.up = nil
	}
}

// OnOpen admits a connection, or refuses it when the server is draining or
// full. A TLS connection then waits for its ClientHello at the cost of a
// plain one: no bridge, no goroutine, no handshake slot until it is in.
func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := h.s
	n := s.conns.Add(1)
	if s.draining.Load() || (s.opts.MaxConns > 0 && n > int64(s.opts.MaxConns)) {
		s.conns.Add(-1)
		s.log.Info("connection refused", "remote", gc.RemoteAddr().String(), "conns", n-1, "draining", s.draining.Load())
		return nil, gnet.Close
	}
	if !s.perIP.acquire(gc.RemoteAddr()) {
		s.conns.Add(-1)
		s.refusedPerIP.Add(1)
		s.log.Info("connection refused", "remote", gc.RemoteAddr().String(), "reason", "max-conns-per-ip")
		return nil, gnet.Close
	}
	l := s.loopFor(gc.EventLoop())
	l.tick()
	c := &conn{s: s, l: l, gc: gc, id: s.nextID.Add(1)}
	l.conns[c] = struct{}{}
	gc.SetContext(c)
	if s.opts.Plain {
		c.state = stUpgrade
		c.deadline = l.now + int64(s.opts.HandshakeTimeout)
		c.up = newUpgradeState()
		return nil, gnet.None
	}
	c.state = stHello
	c.deadline = l.now + int64(s.opts.HelloTimeout)
	return nil, gnet.None
}

// onHello leaves the client's first bytes in gnet's inbound buffer until
// they hold a whole ClientHello, then claims a handshake slot, and once it
// holds one starts the handshake goroutine with those bytes. A Wake from
// the gate brings a queued connection back here.
func (c *conn) onHello() {
	p, _ := c.gc.Peek(-1)
	if c.state == stHello {
		ok, err := tlsbridge.HelloComplete(p)
		if errors.Is(err, tlsbridge.ErrNotHandshake) && len(p) < 5 {
			return // too few bytes to tell plain HTTP from garbage
		}
		if err != nil {
			if tlsbridge.LooksLikeHTTP(p) {
				_, _ = c.gc.Write([]byte(tlsbridge.PlainHTTPResponse))
			}
			c.s.log.Info("tls handshake failed", "conn", c.id, "remote", c.gc.RemoteAddr().String(), "err", err)
			c.closeWith(closeTLSError)
			return
		}
		if !ok {
			return
		}
		k, _ := ipKey(c.gc.RemoteAddr())
		var granted bool
		c.hs, granted = c.s.gate.acquire(c.gc, k)
		if !granted {
			// The wait is bounded on its own; the handshake's timeout
			// starts with the slot.
			c.state = stQueued
			c.deadline = c.l.now + int64(c.s.opts.HandshakeTimeout)
			return
		}
	} else if !c.s.gate.isGranted(c.hs) {
		return
	}
	c.state = stHandshake
	c.inHS = true
	c.s.handshakes.Add(1)
	c.deadline = c.l.now + int64(c.s.opts.HandshakeTimeout)
	gc := c.gc
	c.tls = tlsbridge.NewConn(tlsbridge.Config{
		TLS:     c.s.opts.TLS,
		Wake:    func() { _ = gc.Wake(nil) },
		Timeout: c.s.opts.HandshakeTimeout,
	})
	c.tls.Start()
	data, _ := c.gc.Next(-1)
	c.trafficTLS(data)
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
	if s.draining.Load() && c.state == stJoined {
		return gnet.None // shutting down: nothing more is accepted
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

// trafficTLS drives the bridge: ciphertext goes to the handshake goroutine
// until it is done, then is decrypted inline.
func (c *conn) trafficTLS(data []byte) {
	if c.state == stHandshake {
		if len(data) > 0 {
			if err := c.tls.Feed(data); err != nil {
				// More ciphertext than any handshake needs (tlsbridge
				// MaxBuffered): garbage or abuse.
				c.s.log.Info("tls handshake input refused", "conn", c.id, "err", err)
				c.endHandshake()
				c.closeWith(closeTLSError)
				return
			}
		}
		switch c.tls.State() {
		case tlsbridge.Handshaking:
			return
		case tlsbridge.Established:
			c.endHandshake()
			c.state = stUpgrade
			c.up = newUpgradeState()
			data = nil // already fed; ReadPlain picks up what the handshake left
		default:
			c.endHandshake()
			c.handshakeFailed()
			return
		}
	}
	err := c.tls.ReadPlain(data, c.l.plain, c.onPlain)
	if err == nil || errors.Is(err, errStop) || c.state == stClosing {
		return
	}
	if errors.Is(err, io.EOF) {
		c.closeWith(closeEOF)
		return
	}
	c.s.log.Debug("tls read failed", "conn", c.id, "err", err)
	c.closeWith(closeTLSError)
}

// endHandshake gives back the connection's handshake slot, or its place in
// the line for one, once.
func (c *conn) endHandshake() {
	if c.hs != nil {
		c.s.gate.release(c.hs)
		c.hs = nil
	}
	if c.inHS {
		c.inHS = false
		c.s.handshakes.Add(-1)
	}
}

func (c *conn) handshakeFailed() {
	err := c.tls.HandshakeErr()
	if tlsbridge.IsPlainHTTP(err) {
		_, _ = c.gc.Write([]byte(tlsbridge.PlainHTTPResponse))
	}
	c.s.log.Info("tls handshake failed", "conn", c.id, "remote", c.gc.RemoteAddr().String(), "err", err)
	c.closeWith(closeTLSError)
}

// onPlain consumes plaintext: first the upgrade request, then frames.
func (c *conn) onPlain(p []byte) error {
	switch c.state {
	case stUpgrade:
		c.onUpgrade(p) // consumes p whole, frames after the request included
	case stHeader, stJoined:
		c.onFrames(p)
	}
	if c.state == stClosing {
		return errStop
	}
	return nil
}

// onUpgrade adds p to the request and, once the header block is complete,
// answers it and parses the bytes after the header block as frames: they
// are the first frame, sent in the same write as the request.
func (c *conn) onUpgrade(p []byte) {
	u := c.up
	_, _ = u.buf.Write(p)
	n, err := u.p.Parse(u.buf.B)
	if err != nil {
		var he *codec.HandshakeError
		if errors.As(err, &he) {
			c.httpError(he.Status, he.Reason)
		} else {
			c.httpError(400, err.Error())
		}
		return
	}
	if n == 0 {
		return
	}
	req := &u.p.Request
	if !req.Upgrade {
		c.httpError(404, "not found")
		return
	}
	c.send(codec.AppendUpgradeResponse(c.l.out[:0], &req.Key))
	c.state = stHeader
	c.deadline = c.l.now + int64(c.s.opts.HeaderTimeout)
	c.fr.MaxMessage = headerFrameMax
	c.onFrames(u.buf.B[n:])
	c.releaseUpgrade()
}

func (c *conn) httpError(status int, reason string) {
	c.s.log.Info("upgrade refused", "conn", c.id, "remote", c.gc.RemoteAddr().String(), "status", status, "reason", reason)
	c.send(codec.AppendHTTPError(c.l.out[:0], status, reason))
	c.closeWith(closeHTTP)
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
				p := append([]byte(nil), c.fr.Control()...)
				c.pong = &p
				c.flags |= fPong
				continue
			}
			c.send(codec.AppendFrame(c.l.out[:0], ws.OpPong, c.fr.Control()))
		case codec.EventClose:
			c.onClientClose()
		}
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

// onMessage handles a complete data message: the header frame before the
// join, a message to publish after it.
func (c *conn) onMessage() {
	if c.state == stHeader {
		c.onHeader()
		return
	}
	frame := c.fr.TakeFrame()
	c.ch.publish(&ring.Message{Frame: frame, From: c.id}, c.l)
}

func (c *conn) onHeader() {
	s := c.s
	op, payload := c.fr.Message()
	if op != ws.OpText {
		c.fr.ReleaseMessage()
		c.refuse(closeBadHeader, codec.ErrHeaderBinary)
		return
	}
	h, err := codec.DecodeHeader(payload, codec.HeaderLimits{MaxUID: s.opts.MaxUID, MaxChannel: s.opts.MaxChannel})
	// The header does not point into the reader's buffer, and most members
	// stay quiet for long: free the buffer now rather than keep it per
	// connection (a message sent later gets a fresh one, handed to the ring).
	c.fr.Release()
	if err != nil {
		c.refuse(closeBadHeader, err)
		return
	}
	if err := codec.CheckAuth(h, s.opts.Key, s.opts.KeySet); err != nil {
		c.refuse(closeAuth, err)
		return
	}
	c.join(h)
}

// refuse closes a connection whose header frame was not accepted, at once
// and with 1008 (SPEC 1.2): err is a codec header or auth error.
func (c *conn) refuse(r closeReason, err error) {
	c.closeErr(r, err)
}

// join makes c a member of the channel the header names: history first,
// then its auth-stripped join frame into the history, then live traffic, all
// on one cursor so that replay and live messages cannot interleave.
func (c *conn) join(h codec.Header) {
	s, l := c.s, c.l
	key := memberKey{uid: h.UID, auth: h.Auth}
	ch, old, ok := s.reg.join(s, h.Channel, key, c, l.now)
	if !ok {
		c.s.log.Info(closeDuplicate.String(), "conn", c.id, "uid", h.UID, "channel", h.Channel)
		c.closeWith(closeDuplicate)
		return
	}
	c.ch, c.key, c.uidID = ch, key, s.ids.id(h.UID)
	c.state = stJoined
	c.deadline = 0
	c.fr.MaxMessage = s.opts.MaxMessage
	c.pings = 0
	c.nextPing = l.now + int64(s.opts.PingInterval)
	s.members.Add(1)
	if old != nil {
		old.replacedBy(ch)
	}

	// History first, then the auth-stripped join frame, in one step of
	// the ring: a member joining at the same time on another loop is
	// either in this history or gets this join frame in its own. The
	// group's mark holds the history back from the byte caps until it is
	// read, even if the join frame pushes the channel over them (a
	// history that fits its caps is replayed whole).
	g := ch.groupFor(l)
	span := ch.ring.Join(&ring.Message{Frame: codec.AppendJoinFrame(nil, h.UID, h.Channel), From: c.id}, g.mark)
	c.cursor = span.Start
	if span.Len() > 0 {
		c.replay = &replay{joins: span.Joins, end: span.End}
	}
	g.add(c)
	ch.lastActive.Store(l.now)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("joined", "conn", c.id, "uid", c.uidID, "channel", ch.hid, "history", span.Len())
	}
	c.drain()
}

// replacedBy closes an older member whose key a new one took over
// (--replace-duplicate). It may run on any loop: the close happens on old's own.
func (c *conn) replacedBy(ch *channel) {
	_ = c.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if c.ch == ch && c.state == stJoined && !c.dead {
			c.l.tick()
			c.closeWith(closeReplaced)
			c.l.runPending()
		}
		return nil
	}))
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

// drain delivers the member's backlog from its cursor to the ring head
// with one write per batch: small frames are copied into the loop's batch
// buffer and written with one write (plain) or one tls.Conn.Write (TLS);
// a large frame goes out in slices of the ring's frame, without a copy.
// While the output holds more than MaxPending it stops: the ring is the
// member's queue, and the loop's waiting list resumes it.
//
// Why a copy and not writev: x/sys/unix.Writev, which gnet calls, allocates
// its iovec array on every call (and again as it grows past 8 entries). For
// frames below copyMax a memmove into a reused buffer is cheaper than that
// allocation and keeps delivery allocation-free.
func (c *conn) drain() {
	if c.state != stJoined || c.dead {
		return
	}
	l, r := c.l, c.ch.ring
	if !c.writePart() || c.outputFull() {
		return
	}
	c.pausedAt = 0
	head := r.Head()
	batch := l.batch[:0]
	for {
		if rp := c.replay; rp != nil {
			// Stored joins due before the message at the cursor.
			for rp.next < len(rp.joins) && rp.joins[rp.next].Pos <= c.cursor {
				batch = append(batch, rp.joins[rp.next].Msg.Frame...)
				rp.next++
			}
			if rp.next == len(rp.joins) && c.cursor >= rp.end {
				c.replay = nil // the history is out
			}
		}
		if c.cursor >= head {
			break
		}
		m, st := r.Read(c.cursor)
		if st == ring.NotReady {
			break // its publisher's wake brings this loop back
		}
		if st == ring.Lost {
			if !c.lapped() {
				// History evicted or overwritten while it was replayed:
				// skip to what is still there. Nothing live is lost.
				c.cursor = max(r.Tail(), c.cursor+1)
				continue
			}
			// Lapped: what it missed is gone. It gets what came before
			// the gap, then 1008 (SPEC 1.6), never a silent gap.
			if len(batch) > 0 {
				c.writeOut(batch)
			}
			l.batch = batch[:0]
			c.slowConsumer("lapped by the ring")
			return
		}
		c.cursor++
		if m.From == c.id {
			continue
		}
		if len(m.Frame) < copyMax {
			if len(batch)+len(m.Frame) > c.writeMax(batchMax) {
				c.writeOut(batch)
				batch = batch[:0]
				if c.dead || c.outputFull() {
					c.cursor-- // not delivered: read it again when resumed
					break
				}
			}
			batch = append(batch, m.Frame...)
			continue
		}
		// A large frame: what is batched goes first, then the frame in
		// slices of the ring's copy.
		if len(batch) > 0 {
			c.writeOut(batch)
			batch = batch[:0]
		}
		c.part, c.partOff = m, 0
		if !c.writePart() {
			break
		}
		if c.dead || c.state != stJoined || c.outputFull() {
			break
		}
	}
	if len(batch) > 0 && !c.dead {
		c.writeOut(batch)
	}
	l.batch = batch[:0]
	if c.flags&fShutdown != 0 && c.state == stJoined && c.part == nil && c.replay == nil && c.cursor >= r.Head() {
		c.closeWith(closeShutdown) // everything accepted before the shutdown is out
	}
}

// copyMax is the frame size from which drain writes a frame in slices
// instead of copying it into the batch.
const copyMax = 8 << 10

// sliceMax is the most of a large frame handed to gnet at once: gnet
// copies what the socket does not take, so this bounds the copy beyond
// MaxPending.
const sliceMax = 64 << 10

// writePart writes the rest of the large frame in progress, in slices,
// while the output holds at most MaxPending, and reports whether it is
// done (true also when there is none). When the output is full it pauses
// the connection and returns false.
func (c *conn) writePart() bool {
	for c.part != nil {
		if c.dead {
			return false
		}
		if c.outputFull() {
			return false
		}
		c.pausedAt = 0
		p := c.part.Frame[c.partOff:]
		if n := c.writeMax(sliceMax); len(p) > n {
			p = p[:n]
		}
		c.partOff += len(p)
		if c.partOff == len(c.part.Frame) {
			c.part, c.partOff = nil, 0
		}
		c.writeOut(p)
		if c.part == nil && c.flags&fPong != 0 {
			c.flags &^= fPong
			c.send(codec.AppendFrame(c.l.out[:0], ws.OpPong, *c.pong))
			c.pong = nil
			c.flush()
		}
	}
	return true
}

// tlsOverhead is room left in a write for the TLS records' headers and
// tags (small records at first, with crypto/tls's dynamic record sizing).
const tlsOverhead = 8 << 10

// writeMax returns the most plaintext to hand to one write so that what
// gnet may have to copy, n bytes or their ciphertext, stays within n's
// power-of-two size class of gnet's buffer pool.
func (c *conn) writeMax(n int) int {
	if c.tls != nil {
		return n - tlsOverhead
	}
	return n
}

// writeOut writes frames to the member: encrypted and flushed in TLS
// mode, straight to gnet (which copies only what the socket did not take)
// in plain mode.
func (c *conn) writeOut(p []byte) {
	if c.tls != nil {
		_, _ = c.tls.Write(p)
		c.flush()
		return
	}
	_, _ = c.gc.Write(p)
}

// outputFull reports whether the connection's unsent output is above
// MaxPending, and if so pauses it.
func (c *conn) outputFull() bool {
	if c.gc.OutboundBuffered() <= c.s.opts.MaxPending {
		return false
	}
	c.pause()
	return true
}

// pause notes that the member's output is over MaxPending and puts it
// on the loop's waiting list, which resumes it once the output drains.
func (c *conn) pause() {
	if c.pausedAt == 0 {
		c.pausedAt = c.l.now
	}
	c.l.wait(c)
}

// resume continues a connection from the loop's waiting list: a paused
// member drains on (or is closed past its grace), a closing one
// flushes on.
func (c *conn) resume() {
	if c.dead {
		return
	}
	switch c.state {
	case stJoined:
		if c.flags&fShutdown != 0 && c.l.now >= c.s.shutdownData.Load() {
			c.slowConsumer("behind at shutdown")
			return
		}
		if c.pausedAt != 0 && c.l.now-c.pausedAt >= int64(c.s.opts.SlowGrace) {
			c.slowConsumer("pending above max-pending past the grace period")
			return
		}
		if c.lapped() {
			// Known before the paused output even drains: what it has
			// not read is gone (a lap, or past the ring's Hold).
			c.slowConsumer("lapped by the ring")
			return
		}
		c.drain()
	case stClosing:
		c.finishClose()
	}
}

// lapped reports whether messages the member has not read yet are gone
// from the ring. History lost during a replay does not count while nothing
// live is missing.
func (c *conn) lapped() bool {
	t := c.ch.ring.Tail()
	if t <= c.cursor {
		return false
	}
	rp := c.replay
	return rp == nil || c.cursor >= rp.end || t > rp.end
}

func (c *conn) slowConsumer(why string) {
	c.s.slow.Add(1)
	c.s.log.Info("slow consumer", "conn", c.id, "uid", c.uidID, "channel", c.ch.hid, "why", why)
	c.closeWith(closeSlow)
}

// sweep runs once per tick on the loop: state deadlines, paused
// members, liveness pings.
func (c *conn) sweep() {
	now := c.l.now
	switch c.state {
	case stHello:
		if now >= c.deadline {
			c.closeWith(closeHelloTimeout)
		}
	case stQueued, stHandshake, stUpgrade:
		if now >= c.deadline {
			c.closeWith(closeHandshakeTimeout)
		}
	case stHeader:
		if now >= c.deadline {
			c.closeWith(closeHeaderTimeout)
		}
	case stJoined:
		if c.tls != nil {
			c.tls.Shrink() // an idle member keeps no empty bridge buffers
		}
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
	upgraded := c.state == stHeader || c.state == stJoined
	established := c.state > stHandshake
	c.endHandshake() // a slot goes to the next client now, not at OnClose
	c.state = stClosing
	c.reason = r
	c.replay = nil
	c.leave()
	c.deadline = c.l.now + int64(c.s.opts.CloseLinger)
	if c.s.draining.Load() {
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

// leave releases the channel membership, once.
func (c *conn) leave() {
	ch := c.ch
	if ch == nil {
		return
	}
	c.ch = nil
	if c.grp != nil {
		c.grp.remove(c)
	}
	c.s.reg.leave(ch, c.key, c, c.l.now)
	c.s.members.Add(-1)
	c.s.log.Debug("left", "conn", c.id, "uid", c.uidID, "channel", ch.hid, "reason", c.reason.String())
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
		c.state = stClosing
		c.leave()
	}
	c.dead = true
	c.part, c.pong, c.replay = nil, nil, nil // the waiting list may hold c a little longer
	c.endHandshake()
	if c.tls != nil {
		c.tls.Close()
	}
	c.fr.Release()
	c.releaseUpgrade()
	delete(l.conns, c)
	s.conns.Add(-1)
	s.perIP.release(gc.RemoteAddr())
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("closed", "conn", c.id, "reason", c.reason.String(), "err", err)
	}
	return gnet.None
}
