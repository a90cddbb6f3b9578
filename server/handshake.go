package server

// Before the WebSocket: a TLS connection's ClientHello waits in gnet's
// buffer until it is whole (onHello), then for a slot of the handshake
// gate (hsgate.go); the handshake runs in the bridge's goroutine and the
// loop drives the bridge (trafficTLS); then the HTTP upgrade request is
// parsed as it arrives (onUpgrade) and answered with 101 or an error.

import (
	"errors"
	"io"

	"github.com/valyala/bytebufferpool"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/tlsbridge"
)

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
			c.s.log.Info("tls handshake failed", "conn", c.id, "remote", c.remote(), "err", err)
			c.closeWith(closeTLSError)
			return
		}
		if !ok {
			return
		}
		k, _ := addrKey(c.clientAddr().Addr())
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
			if ps := c.peerOf(); ps != nil && ps.out {
				c.sendPeerRequest()
				data = nil
				break
			}
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
	c.s.log.Info("tls handshake failed", "conn", c.id, "remote", c.remote(), "err", err)
	c.closeWith(closeTLSError)
}

// onPlain consumes plaintext: first the upgrade request, then frames.
func (c *conn) onPlain(p []byte) error {
	switch c.state {
	case stUpgrade:
		c.onUpgrade(p) // consumes p whole, frames after the request included
	case stPeerUpgrade:
		c.onPeerResponse(p) // likewise with the peer's 101
	case stHeader, stJoined:
		c.onFrames(p)
	case stPeerWait:
		c.holdBytes(p)
	case stHTTP:
		c.onHTTP(p)
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
		var he codec.HandshakeError
		if errors.As(err, &he) {
			c.httpError(he.Status(), he.Reason())
		} else {
			c.httpError(400, err.Error())
		}
		return
	}
	if n == 0 {
		return
	}
	req := &u.p.Request
	if req.Upgrade && c.flags&fCounted == 0 && c.s.trusted(c.clientAddr().Addr()) && !c.admitForwarded(req.ForwardedFor) {
		return
	}
	if !req.Upgrade {
		if c.s.http == nil {
			c.httpError(404, "not found")
			return
		}
		c.startHTTP(u.buf.B)
		c.releaseUpgrade()
		return
	}
	if req.Peer {
		// A Mles server dialing its peer (SPEC 1.5): it speaks mles-peer.
		c.rareExt().peer = &peerSess{}
		c.send(codec.AppendUpgradeResponseFor(c.l.out[:0], &req.Key, codec.PeerSubprotocol))
	} else {
		c.send(codec.AppendUpgradeResponse(c.l.out[:0], &req.Key))
	}
	c.state = stHeader
	c.deadline = c.l.now + int64(c.s.opts.HeaderTimeout)
	c.fr.MaxMessage = headerFrameMax
	c.onFrames(u.buf.B[n:])
	c.releaseUpgrade()
}

func (c *conn) httpError(status int, reason string) {
	c.s.log.Info("upgrade refused", "conn", c.id, "remote", c.remote(), "status", status, "reason", reason)
	c.send(codec.AppendHTTPError(c.l.out[:0], status, reason))
	c.closeWith(closeHTTP)
}
