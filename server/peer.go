package server

// Peering (SPEC 1.5): for every channel with local client members the
// server keeps one Mles session to each --peer, dialed off the loops and
// then owned by a loop like any connection. A session between two of our
// servers speaks mles-peer (peerwire.go): message ids for loop prevention,
// and a vector exchange for resync; with any other Mles server it is an
// ordinary client session.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/tlsbridge"
)

// peerTarget is a parsed --peer URL.
type peerTarget struct {
	url  string
	addr string // host:port to dial
	host string // Host header and TLS server name
	path string
	tls  bool
}

func parsePeerURL(s string) (*peerTarget, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	t := &peerTarget{url: s, path: u.RequestURI()}
	switch u.Scheme {
	case "wss":
		t.tls = true
	case "ws":
	default:
		return nil, errors.New("scheme must be ws or wss")
	}
	if u.Hostname() == "" {
		return nil, errors.New("no host")
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if t.tls {
			port = "443"
		}
	}
	t.host = u.Host
	t.addr = net.JoinHostPort(u.Hostname(), port)
	return t, nil
}

// connRare holds what few connections need, so that every other one
// carries a single pointer for it: a pong held back behind a frame in
// slices, and the state of a peer session.
type connRare struct {
	pong []byte
	peer *peerSess
	// A joiner held while the channel's peers resync (peersync.go): its
	// header, and the bytes that came after it.
	hdr    *codec.Header
	held   []byte
	heldIn *channel
	// bus: the member's messages go through the NATS stream (natsbus.go).
	bus *busConn
}

// rareExt returns c.rare, allocating it.
func (c *conn) rareExt() *connRare {
	if c.rare == nil {
		c.rare = &connRare{}
	}
	return c.rare
}

// peerOf returns the connection's peer session, nil for a client.
func (c *conn) peerOf() *peerSess {
	if c.rare == nil {
		return nil
	}
	return c.rare.peer
}

// peerSess is one peer session, on either side.
type peerSess struct {
	out   bool      // we dialed it
	link  *peerLink // out: the link that redials it
	key   string    // out: Sec-WebSocket-Key sent
	plain bool      // out: the other side speaks only mles-websocket
	// remote names the other server (its --server-id) once known.
	remote string
	// vec is what the other side had when the session started: the
	// highest sequence per origin. The replay skips those.
	vec map[uint64]uint64
	// end is the sequence the replay of history ends at; a Lost read
	// below it is history evicted during the replay, not a lap.
	end uint64
	// scratch holds one outbound frame being enveloped and masked.
	scratch []byte
	// endSent: the 'S' that ends the replay went out (peersync.go).
	endSent bool
}

// chanPeer is a channel's peering state, made on first use.
type chanPeer struct {
	// origin names this channel instance's own messages: random, so
	// that a server restarted (or a channel swept and made again) never
	// reuses an identity its peers have seen.
	origin uint64
	// mu guards seen; an accepted message is published under it, so
	// that two sessions delivering the same message on two loops cannot
	// both publish it.
	mu   sync.Mutex
	seen map[uint64]uint64 // the highest sequence accepted per other origin
}

// maxOrigins bounds a channel's seen map: each origin is a channel
// instance of some server, so it grows by one per restart of a server
// that had clients on the channel. Past it the smallest entries go: a
// message of a forgotten origin arriving again would be accepted again.
const maxOrigins = 4096

// peering returns the channel's peering state, making it once.
func (ch *channel) peering() *chanPeer {
	if p := ch.peer.Load(); p != nil {
		return p
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	p := &chanPeer{origin: binary.LittleEndian.Uint64(b[:]) | 1, seen: make(map[uint64]uint64)}
	if ch.peer.CompareAndSwap(nil, p) {
		return p
	}
	return ch.peer.Load()
}

// peerLink keeps one session to one peer for one channel: dialed when the
// channel gets its first local member, redialed with backoff while it has
// some, closed when the last one leaves.
type peerLink struct {
	s       *Server
	ch      *channel
	t       *peerTarget
	stopped atomic.Bool
	c       atomic.Pointer[conn] // the session, once a loop owns it
	wait    atomic.Int64         // the next backoff
	timer   atomic.Pointer[time.Timer]
	synced  atomic.Bool // its first resync is in, or its first try failed (peersync.go)
	covered atomic.Bool // the peer's own session links us: this one does not dial (peerdedup.go)
}

// link starts what links the channel to other servers when it gets its
// first local member: a session to every peer, the consumer of its NATS
// subjects; joiners wait for their first resync (peersync.go). Call with
// ch.mu held.
func (s *Server) link(ch *channel) {
	ch.linked = true
	n := s.linkPeers(ch)
	if s.bus != nil {
		s.bus.subscribe(ch)
		n++
	}
	ch.startSync(s, n)
}

// unlink stops them when the last local member left. Call with ch.mu held.
func (ch *channel) unlink() {
	ch.linked = false
	ch.unlinkPeers()
	ch.unsubscribeNATS()
}

// linkPeers starts a link to every peer and returns how many it dials.
// Call with ch.mu held.
func (s *Server) linkPeers(ch *channel) int {
	dialing := 0
	for _, t := range s.peers {
		k := &peerLink{s: s, ch: ch, t: t}
		k.wait.Store(int64(s.opts.PeerRetry))
		ch.links = append(ch.links, k)
		if ch.coveredBy(s, s.peerIDOf(t)) {
			k.covered.Store(true) // the peer's session is here already
			k.synced.Store(true)
			continue
		}
		dialing++
		go k.dial()
	}
	return dialing
}

// unlinkPeers stops the channel's links; called with ch.mu held when its
// last local member left. Each session closes on its own loop.
func (ch *channel) unlinkPeers() {
	for _, k := range ch.links {
		k.stop()
	}
	clear(ch.links)
	ch.links = ch.links[:0]
	ch.syncing = 0
	if ch.syncEnd != nil {
		ch.syncEnd.Stop()
	}
}

func (k *peerLink) stop() {
	k.stopped.Store(true)
	if t := k.timer.Load(); t != nil {
		t.Stop()
	}
	k.closeSession(closePeerUnlinked)
}

// closeSession closes the link's session, if it has one, for reason r on
// the session's own loop.
func (k *peerLink) closeSession(r closeReason) {
	c := k.c.Load()
	if c == nil {
		return
	}
	_ = c.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		c.l.tick()
		c.closeWith(r) // nothing if it is closing or gone already
		c.l.runPending()
		return nil
	}))
}

// dial connects to the peer off the loops and hands the socket to a
// loop (gnet Register): OnOpen sees the link in the connection's context.
func (k *peerLink) dial() {
	s := k.s
	if k.stopped.Load() || k.covered.Load() || s.lameDuck.Load() || k.ch.gone.Load() {
		return
	}
	d := net.Dialer{Timeout: s.opts.HandshakeTimeout}
	nc, err := d.Dial("tcp", k.t.addr)
	if err != nil {
		s.log.Info("peer dial failed", "peer", k.t.url, "channel", k.ch.hid, "err", err)
		k.retry()
		return
	}
	ctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), k), nc)
	res, err := s.eng.Register(ctx)
	if err != nil {
		_ = nc.Close()
		k.retry()
		return
	}
	if r := <-res; r.Err != nil { // gnet closed nc
		s.log.Info("peer register failed", "peer", k.t.url, "err", r.Err)
		k.retry()
	}
}

// retry dials again after the backoff, doubled each time up to
// PeerRetryMax, with jitter so that the channels of one peer do not all
// redial at once.
func (k *peerLink) retry() {
	k.firstDone() // held joiners do not wait for a peer that is not there
	if k.stopped.Load() || k.covered.Load() || k.s.lameDuck.Load() {
		return
	}
	w := time.Duration(k.wait.Load())
	k.wait.Store(int64(min(2*w, k.s.opts.PeerRetryMax)))
	j, _ := rand.Int(rand.Reader, big.NewInt(int64(w/2)+1))
	k.timer.Store(time.AfterFunc(w/2+time.Duration(j.Int64()), k.dial))
}

// openPeer is OnOpen for a session we dialed: the TLS handshake (in the
// bridge's goroutine) or the upgrade request goes out at once.
func (h *handler) openPeer(gc gnet.Conn, k *peerLink) gnet.Action {
	s := h.s
	s.conns.Add(1)
	l := s.loopFor(gc.EventLoop())
	l.tick()
	c := &conn{s: s, l: l, gc: gc, id: s.nextID.Add(1), opened: uint32((l.now - s.started) / int64(100*time.Millisecond))}
	l.conns[c] = struct{}{}
	gc.SetContext(c)
	c.rare = &connRare{peer: &peerSess{out: true, link: k, key: codec.NewKey()}}
	k.c.Store(c)
	c.deadline = l.now + int64(s.opts.HandshakeTimeout)
	if k.stopped.Load() || s.lameDuck.Load() {
		c.closeWith(closePeerUnlinked)
		return gnet.None
	}
	if !k.t.tls {
		c.sendPeerRequest()
		return gnet.None
	}
	cfg := s.opts.PeerTLS.Clone()
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(k.t.addr)
	}
	c.state = stHandshake
	c.tls = tlsbridge.NewClientConn(tlsbridge.Config{
		TLS:     cfg,
		Wake:    func() { _ = gc.Wake(nil) },
		Timeout: s.opts.HandshakeTimeout,
	})
	c.tls.Start()
	c.flush()
	return gnet.None
}

// sendPeerRequest sends the upgrade request of a session we dialed.
func (c *conn) sendPeerRequest() {
	ps := c.rare.peer
	c.state = stPeerUpgrade
	c.up = newUpgradeState()
	c.send(codec.AppendDialRequest(c.l.out[:0], ps.link.t.host, ps.link.t.path, ps.key))
}

// onPeerResponse reads the peer's answer to the upgrade; once it is a
// 101, the session sends its header frame (and, with mles-peer, its
// vector) and reads frames.
func (c *conn) onPeerResponse(p []byte) {
	ps, u := c.rare.peer, c.up
	_, _ = u.buf.Write(p)
	n, proto, err := codec.ParseDialResponse(u.buf.B, ps.key)
	if err != nil {
		c.s.log.Warn("peer refused the session", "peer", ps.link.t.url, "channel", ps.link.ch.hid, "err", err)
		c.closeWith(closePeerRefused)
		return
	}
	if n == 0 {
		return
	}
	s, ch := c.s, ps.link.ch
	ps.plain = proto == codec.Subprotocol
	c.fr.Unmasked = true
	c.fr.MaxMessage = s.opts.MaxMessage + peerEnvelope
	c.ch = ch
	c.deadline = c.l.now + int64(s.opts.HeaderTimeout)
	c.pings = 0
	c.nextPing = c.l.now + int64(s.opts.PingInterval)
	c.state = stHeader
	hdr := fmt.Appendf(nil, `{"uid":%q,"channel":%q`, s.opts.ServerID, ch.name)
	if s.opts.KeySet {
		hdr = fmt.Appendf(hdr, `,"auth":%q`, codec.AuthToken(s.opts.ServerID, ch.name, s.opts.Key))
	}
	c.send(codec.AppendFrame(c.l.out[:0], 1, append(hdr, '}')))
	if ps.plain {
		// A plain Mles server: an ordinary member from now on, given
		// only live traffic (its own history already holds ours).
		c.peerJoin(nil, true)
	} else {
		c.sendVector()
	}
	rest := u.buf.B[n:]
	c.onFrames(rest)
	c.releaseUpgrade()
}

// onPeerHeader admits a session a peer dialed, once its header frame is
// in: it is not a member (no join frame, no duplicate rule); it sends its
// vector and waits for the peer's.
func (c *conn) onPeerHeader(h codec.Header) {
	s := c.s
	if h.UID == s.opts.ServerID {
		s.log.Warn("peer session from this server itself refused", "channel", s.ids.id(h.Channel))
		c.closeWith(closePeerSelf)
		return
	}
	ch := s.reg.channelFor(s, h.Channel)
	ps := c.rare.peer
	ps.remote = h.UID
	c.ch = ch
	c.fr.MaxMessage = s.opts.MaxMessage + peerEnvelope
	c.deadline = c.l.now + int64(s.opts.HeaderTimeout)
	c.sendVector()
}
