package server

// Joiners wait for the resync. When a channel links to its peers (its
// first local member, or the first after all had left), what the peers
// hold and this server lacks (everything, after a restart without
// --history-dir) arrives through the sessions' replays. A member that
// joined before would get it as live traffic, after messages that came
// later: after a restart, the new messages of a client of this server
// before its own older ones. So the joiners of a linking channel are held
// (stPeerWait: header in, not yet a member) until every link has brought
// its replay in ('S' from the peer), or failed its first try, or
// peerSyncWait has passed; then they join, and the history they get is
// whole and in order.

import (
	"context"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/mles/mles/codec"
)

// peerSyncWait bounds how long joiners wait for the peers' replays.
const peerSyncWait = 5 * time.Second

// heldMax bounds what a held joiner may send before it has joined; past
// it, it is closed like a header that never came.
const heldMax = 1 << 20

// peerSynced is the frame a side sends once its replay is out.
const peerSynced = 'S'

// holdForPeers starts the channel's links if it has none, and holds c if
// they are still resyncing. It reports whether c is held.
func (c *conn) holdForPeers(h codec.Header) bool {
	s := c.s
	if len(s.peers) == 0 && s.bus == nil {
		return false
	}
	ch := s.reg.channelFor(s, h.Channel)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if !ch.linked && len(ch.members) == 0 {
		s.link(ch)
	}
	if ch.syncing == 0 {
		return false
	}
	ch.held = append(ch.held, c)
	r := c.rareExt()
	r.hdr, r.heldIn = &h, ch
	c.state = stPeerWait
	c.deadline = c.l.now + int64(peerSyncWait+s.opts.HeaderTimeout)
	return true
}

// holdBytes keeps what a held joiner sent after its header.
func (c *conn) holdBytes(p []byte) {
	r := c.rareExt()
	if len(r.held)+len(p) > heldMax {
		c.s.log.Info("closing a held joiner: too much sent before its join", "conn", c.id)
		c.closeWith(closeHeaderTimeout)
		return
	}
	r.held = append(r.held, p...)
}

// startSync counts the links whose replay joiners wait for; called with
// ch.mu held, right after the links started.
func (ch *channel) startSync(s *Server, links int) {
	ch.syncing = links
	if ch.syncEnd != nil {
		ch.syncEnd.Stop()
	}
	ch.syncEnd = time.AfterFunc(peerSyncWait, func() {
		ch.mu.Lock()
		if ch.syncing > 0 {
			s.log.Info("peers did not resync in time: joiners proceed", "channel", ch.hid, "waiting", ch.syncing)
		}
		ch.syncing = 0
		held := ch.takeHeldLocked()
		ch.mu.Unlock()
		releaseHeld(held)
	})
}

// firstDone marks the link's first resync as in (or failed), once, and
// releases the held joiners when it was the last.
func (k *peerLink) firstDone() {
	if !k.synced.CompareAndSwap(false, true) {
		return
	}
	ch := k.ch
	ch.mu.Lock()
	current := false
	for _, x := range ch.links {
		current = current || x == k
	}
	if !current || ch.syncing == 0 {
		ch.mu.Unlock()
		return
	}
	held := ch.syncedOneLocked()
	ch.mu.Unlock()
	releaseHeld(held)
}

// syncedOneLocked counts one resync in (a peer link's or the NATS
// consumer's) and, when it was the last, returns the held joiners. Call
// with ch.mu held and ch.syncing > 0.
func (ch *channel) syncedOneLocked() []*conn {
	ch.syncing--
	if ch.syncing > 0 {
		return nil
	}
	ch.syncEnd.Stop()
	return ch.takeHeldLocked()
}

// takeHeldLocked empties the held list. Call with ch.mu held.
func (ch *channel) takeHeldLocked() []*conn {
	held := ch.held
	ch.held = nil
	return held
}

// releaseHeld has each held joiner join, on its own loop, then read what
// it sent meanwhile.
func releaseHeld(held []*conn) {
	for _, c := range held {
		_ = c.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if c.dead || c.state != stPeerWait {
				return nil
			}
			c.l.tick()
			r := c.rare
			h, rest := *r.hdr, r.held
			r.hdr, r.held, r.heldIn = nil, nil, nil
			c.state = stHeader
			c.join(h)
			c.onFrames(rest)
			c.flush()
			c.l.runPending()
			return nil
		}))
	}
}

// sendSynced tells the peer that the replay is out (peerDrain).
func (c *conn) sendSynced(ps *peerSess) {
	ps.endSent = true
	c.send(codec.AppendFrame(c.l.out[:0], ws.OpBinary, []byte{peerSynced}))
}

// unhold takes a held joiner that is closing off its channel's list; the
// last one gone with no member left stops the links it started.
func (c *conn) unhold() {
	r := c.rare
	ch := r.heldIn
	r.hdr, r.held, r.heldIn = nil, nil, nil
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for i, x := range ch.held {
		if x == c {
			ch.held = append(ch.held[:i], ch.held[i+1:]...)
			break
		}
	}
	if len(ch.held) == 0 && len(ch.members) == 0 {
		ch.unlink()
	}
}
