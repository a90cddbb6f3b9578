package server

// Joining a channel: the header frame (onHeader) is checked and the
// connection joins (join), gets the channel's history through its replay
// and then live traffic on one cursor; leave undoes it.

import (
	"context"
	"log/slog"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/ring"
)

// replay holds the stored join frames of a joiner's history, merged into
// the messages by position as the cursor passes them.
type replay struct {
	joins []ring.JoinAt
	next  int
	end   uint64 // the span's End: messages below are history, from End on live
}

// onMessage handles a complete data message: the header frame before the
// join, a message to publish after it.
func (c *conn) onMessage() {
	if ps := c.peerOf(); ps != nil {
		c.onPeerFrame(ps)
		return
	}
	if c.state == stHeader {
		c.onHeader()
		return
	}
	if b := c.s.bus; b != nil {
		// On NATS: the message enters the ring when it comes back from
		// the stream, in the stream's order (natsbus.go).
		frame := c.fr.Frame()
		if b.sendThrough(c, frame) {
			c.fr.ReleaseMessage()
			c.l.ctr.messagesIn++
			c.l.ctr.bytesIn += uint64(len(frame))
			return
		}
	}
	// A small frame is copied into a message allocated with it, and the
	// reader keeps its buffer for the next one: one allocation. A larger
	// one is handed over without a copy.
	var m *ring.Message
	if frame := c.fr.Frame(); len(frame) <= ring.InlineMax {
		m = ring.NewMessage(frame, c.id)
		c.fr.ReleaseMessage()
	} else {
		m = &ring.Message{Frame: c.fr.TakeFrame(), From: c.id}
	}
	seq := c.ch.publish(m, c.l)
	c.s.persist(c.ch, m, seq)
	c.pubEnd = seq + 1
	if b := c.s.bus; b != nil {
		// Delivered here; the other servers get it once NATS takes it.
		b.send(c, busMessage, busLocal, m.Frame)
	}
	c.l.ctr.messagesIn++
	c.l.ctr.bytesIn += uint64(len(m.Frame))
	if c.cursor == seq {
		// A member that has been sent everything before its own message
		// skips it now rather than at its next drain: a burst of its own
		// messages longer than the ring, read in one callback, would
		// otherwise lap it and close a member that is not slow at all.
		c.cursor = seq + 1
	}
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
	if c.peerOf() != nil {
		c.onPeerHeader(h)
		return
	}
	if c.holdForPeers(h) {
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
		c.s.log.Info(closeDuplicate.String(), "conn", c.id, "uid", s.ids.id(h.UID), "channel", s.ids.id(h.Channel))
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
	jm := &ring.Message{Frame: codec.AppendJoinFrame(nil, h.UID, h.Channel), From: c.id}
	span := ch.ring.Join(jm, g.mark)
	s.persistJoin(ch, jm, span.End)
	if s.bus != nil {
		s.bus.send(c, busJoin, 0, jm.Frame) // for the other servers' histories
	}
	c.cursor = span.Start
	if span.Len() > 0 {
		c.replay = &replay{joins: span.Joins, end: span.End}
	}
	g.add(c)
	ch.lastActive.Store(l.now)
	if s.log.Enabled(context.Background(), slog.LevelInfo) {
		s.log.Info("joined", "conn", c.id, "reactor", l.idx, "remote", c.remote(), "uid", c.uidID, "channel", ch.hid, "history", span.Len())
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

// leave releases the channel membership, once.
func (c *conn) leave() {
	if c.rare != nil && c.rare.heldIn != nil {
		c.unhold()
		return
	}
	ch := c.ch
	if ch == nil {
		return
	}
	c.ch = nil
	joined := c.grp != nil
	if joined {
		c.grp.remove(c)
	}
	if ps := c.peerOf(); ps != nil {
		if joined {
			c.s.peerSessions.Add(-1)
			if !ps.out {
				c.incomingDown(ps, ch)
			}
		}
		return // a peer session is no member: nothing in the registry
	}
	if c.s.bus != nil {
		c.s.bus.forget(c)
	}
	c.s.reg.leave(ch, c.key, c, c.l.now)
	c.s.members.Add(-1)
	c.s.log.Debug("left", "conn", c.id, "uid", c.uidID, "channel", ch.hid, "reason", c.reason.String())
}
