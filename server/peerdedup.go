package server

// One session per pair of servers. In a mesh where every server lists the
// others, two servers with local members on a channel both dial: each
// message would then cross both sessions (and come back on the other). So
// the server with the larger --server-id closes its own session once the
// other's is up and synced, and dials again only when that one goes. A
// link learns its peer's server id from its first session; a later link
// to the same peer starts covered if the other's session is already there.

// learnPeerID records the server id behind a --peer target.
func (s *Server) learnPeerID(t *peerTarget, id string) {
	s.peerIDsMu.Lock()
	s.peerIDs[t] = id
	s.peerIDsMu.Unlock()
}

// peerIDOf returns the server id behind t, empty while unknown.
func (s *Server) peerIDOf(t *peerTarget) string {
	s.peerIDsMu.Lock()
	defer s.peerIDsMu.Unlock()
	return s.peerIDs[t]
}

// coveredBy reports whether a link to a server with id is redundant:
// that server's id is the smaller and its session to us is up. Call with
// ch.mu held.
func (ch *channel) coveredBy(s *Server, id string) bool {
	return id != "" && id < s.opts.ServerID && ch.incoming[id] != nil
}

// incomingUp notes a synced session a peer dialed, and covers our own
// links to that peer when they are redundant and past their first sync.
func (c *conn) incomingUp(ps *peerSess) {
	s, ch := c.s, c.ch
	var cover []*peerLink
	ch.mu.Lock()
	if ch.incoming == nil {
		ch.incoming = make(map[string]*conn)
	}
	ch.incoming[ps.remote] = c
	for _, k := range ch.links {
		if k.synced.Load() && ch.coveredBy(s, s.peerIDOf(k.t)) {
			cover = append(cover, k)
		}
	}
	ch.mu.Unlock()
	for _, k := range cover {
		k.cover()
	}
}

// incomingDown forgets a session a peer dialed; links it covered dial
// again.
func (c *conn) incomingDown(ps *peerSess, ch *channel) {
	s := c.s
	var uncover []*peerLink
	ch.mu.Lock()
	if ch.incoming[ps.remote] == c {
		delete(ch.incoming, ps.remote)
		for _, k := range ch.links {
			if k.covered.Load() && s.peerIDOf(k.t) == ps.remote {
				uncover = append(uncover, k)
			}
		}
	}
	ch.mu.Unlock()
	for _, k := range uncover {
		if k.covered.CompareAndSwap(true, false) {
			go k.dial()
		}
	}
}

// outboundSynced runs when a session we dialed has the peer's replay in:
// if the peer's own session covers it, it closes.
func (c *conn) outboundSynced(ps *peerSess) {
	s, ch := c.s, c.ch
	ch.mu.Lock()
	redundant := ch.coveredBy(s, ps.remote)
	ch.mu.Unlock()
	if redundant {
		ps.link.cover()
	}
}

// cover closes the link's session, on its loop, and keeps it from
// dialing until the peer's session goes.
func (k *peerLink) cover() {
	if k.covered.CompareAndSwap(false, true) {
		k.closeSession(closePeerCovered)
	}
}
