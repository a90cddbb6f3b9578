package server

// Fan-out, read top to bottom from a publish to the write: a member's
// message goes into its channel's ring once (channel.publish); each loop
// with members of the channel gets its group scheduled once per burst
// (loop.schedule on the publisher's loop, loop.post into another loop's
// inbox; loop.runPending); a group drains its members (group.drain): those
// at the group's common cursor get one shared batch (group.share), and a
// member's own drain (conn.drain) takes frames from its cursor to the
// ring's head into one write, small frames copied into the loop's batch
// buffer and large ones sent in slices of the ring's shared frame. A
// member whose output passes MaxPending is paused and waits on its loop's
// waiting list (loop.wait and loop.pump, in loop.go); one whose unread
// messages the ring lost is closed as a slow consumer (conn.lapped).

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/ring"
)

// publish stores m in the channel's ring, returns its sequence and wakes
// every loop that has members. The publisher's own loop drains after the
// poll round (or at once, every half ring); other loops get their group
// posted once per burst, not once per member.
//
// from is nil for a message from the NATS stream, published off the loops
// (natsbus.go): every loop with members gets its group posted.
func (ch *channel) publish(m *ring.Message, from *loop) uint64 {
	seq := ch.ring.Publish(m)
	if from != nil {
		ch.lastActive.Store(from.now)
	} else {
		ch.lastActive.Store(time.Now().UnixNano())
	}
	for i := range ch.groups {
		g := ch.groups[i].Load()
		if g == nil || g.n.Load() == 0 {
			continue
		}
		if g.l == from && seq >= g.next+uint64(ch.ring.Size()/2) {
			// This round's publishes on this loop alone (several
			// publishers, each read in one callback) would soon lap
			// members that keep up: drain them now, not after the round.
			g.drain()
			continue
		}
		if !g.dirty.CompareAndSwap(false, true) {
			continue
		}
		if g.l == from {
			from.schedule(g)
		} else {
			g.l.post(g)
		}
	}
	return seq
}

// post hands g to its loop from another loop: g goes into the loop's
// inbox, and the loop is woken once for whatever its inbox collects until
// it runs, however many channels publish to it meanwhile. (gnet's Execute
// allocates a closure per call; this makes that one per wake of a loop,
// not one per channel and burst.)
func (l *loop) post(g *group) {
	l.inboxMu.Lock()
	l.inbox = append(l.inbox, g)
	l.inboxMu.Unlock()
	if !l.woken.CompareAndSwap(false, true) {
		return // a wake is on its way and will find g
	}
	if err := l.el.Execute(context.Background(), l.inboxRun); err != nil {
		// Engine stopping: nothing will drain; let a later publish retry.
		l.woken.Store(false)
		g.dirty.Store(false)
	}
}

// takeInbox moves the groups posted by other loops to the pending list.
// woken is cleared first: a post after that wakes the loop again, and one
// before is in the inbox taken here.
func (l *loop) takeInbox() {
	l.woken.Store(false)
	l.inboxMu.Lock()
	l.pending = append(l.pending, l.inbox...)
	clear(l.inbox)
	l.inbox = l.inbox[:0]
	l.inboxMu.Unlock()
}

// schedule queues g for draining on this loop. The drain runs as a task
// after the socket events of the current poll round, so that every message
// read in the round (from any publisher on this loop) reaches a member
// in one write: under load, rounds grow and writes per message shrink.
func (l *loop) schedule(g *group) {
	l.pending = append(l.pending, g)
	if !l.flushing {
		l.flushing = true
		if err := l.el.Execute(context.Background(), l.flushRun); err != nil {
			l.flushing = false
			l.runPending() // engine stopping: drain now
		}
	}
}

// runPending drains the groups marked dirty on this loop. Draining
// publishes nothing, so the list should not grow while it runs; it is read
// by index all the same, so an append would be seen, and the slice keeps
// its capacity from round to round.
func (l *loop) runPending() {
	for i := 0; i < len(l.pending); i++ {
		l.pending[i].drain()
	}
	clear(l.pending)
	l.pending = l.pending[:0]
	l.trimScratch() // drains grow the batch buffer
}

// group is the set of a channel's members owned by one event loop. The
// publisher marks it dirty and wakes its loop once per burst; the loop then
// drains every member with one write each.
type group struct {
	ch *channel
	l  *loop

	dirty atomic.Bool  // a drain is scheduled and has not started yet
	n     atomic.Int32 // len(subs), readable from any loop
	// mark is at or below the cursor of every member of the group, so
	// the ring's byte caps never evict what they have not read yet.
	mark *ring.Mark

	subs []*conn // owned by l
	// next is the cursor most members are at: the highest cursor after
	// the last drain. Members there share one batch (group.drain).
	next uint64
}

// groupFor returns loop l's group of ch, creating it. Only l calls it for
// its own index, so a plain store suffices.
func (ch *channel) groupFor(l *loop) *group {
	if g := ch.groups[l.idx].Load(); g != nil {
		return g
	}
	g := &group{ch: ch, l: l, mark: ch.ring.NewMark()}
	ch.groups[l.idx].Store(g)
	return g
}

func (g *group) add(c *conn) {
	c.grp = g
	c.grpIdx = int32(len(g.subs))
	g.subs = append(g.subs, c)
	g.n.Store(int32(len(g.subs)))
}

func (g *group) remove(c *conn) {
	i, last := int(c.grpIdx), len(g.subs)-1
	g.subs[i] = g.subs[last]
	g.subs[i].grpIdx = int32(i)
	g.subs[last] = nil
	g.subs = g.subs[:last]
	g.n.Store(int32(len(g.subs)))
	c.grp = nil
	if last == 0 {
		g.mark.Set(ring.NoMark)
	}
}

// drain delivers everything new in the ring to each member of the group.
// The dirty flag is cleared before reading, so a publish that lands during the
// drain marks the group again and nothing is missed. Members at the group's
// common cursor (g.next) share one batch, read from the ring and copied
// once per drain instead of once per member (share); the others, and
// whatever follows the shared batch, drain on their own (conn.drain). Then
// it raises the group's mark to the lowest cursor and lets the ring trim
// what every member has read, should a byte cap be exceeded.
func (g *group) drain() {
	g.dirty.Store(false)
	l := g.l
	subs := append(l.subs[:0], g.subs...) // drains may close, and closing edits g.subs
	head := g.ch.ring.Head()
	var (
		shared []byte
		end    uint64
		built  bool
	)
	low, high := uint64(ring.NoMark), g.next
	for _, c := range subs {
		if c.sharesFrom(g.next) {
			if !built {
				shared, end = g.share(head)
				built = true
			}
			if len(shared) > 0 && !c.outputFull() {
				c.pausedAt = 0
				c.writeOut(shared)
				l.ctr.deliveries += end - c.cursor
				l.ctr.bytesOut += uint64(len(shared))
				c.cursor = end
			}
		}
		if c.cursor < head || c.flags&fShutdown != 0 {
			c.drain()
		}
		if c.grp == g {
			low = min(low, c.cursor)
			high = max(high, c.cursor)
		}
	}
	clear(subs)
	l.subs = subs[:0]
	if built {
		l.shared = shared[:0] // keep what share grew; a drain that built nothing leaves it
	}
	g.next = high // where the members that kept up are
	g.mark.Set(low)
	g.ch.ring.Trim()
}

// sharesFrom reports whether the member can take the group's shared batch
// from sequence from: a joined member at that cursor with nothing of its
// own in progress (a frame in slices, a history replay), that has published
// nothing from there on (the shared batch holds every member's frames, and
// a member never gets its own).
func (c *conn) sharesFrom(from uint64) bool {
	return c.cursor == from && c.state == stJoined && !c.dead &&
		c.part == nil && c.replay == nil && c.pubEnd <= from && c.peerOf() == nil &&
		(c.rare == nil || c.rare.bus == nil || c.rare.bus.echoEnd.Load() <= from)
}

// share copies the frames from the group's common cursor towards head into
// the loop's shared buffer, once per drain: up to the first message not
// ready, lost or large (those are for conn.drain), within one batch that
// fits a TLS write too. It returns the frames and the sequence after them.
func (g *group) share(head uint64) ([]byte, uint64) {
	r, b := g.ch.ring, g.l.shared[:0]
	limit := batchMax - tlsOverhead
	seq := g.next
	for ; seq < head; seq++ {
		m, st := r.Read(seq)
		if st != ring.Ready || len(m.Frame) >= copyMax || len(b)+len(m.Frame) > limit {
			break
		}
		b = append(b, m.Frame...)
	}
	return b, seq
}

// batchMax bounds one member's batch, so one huge backlog is written in
// slices and rechecked against MaxPending between them.
const batchMax = 256 << 10

// copyMax is the frame size from which drain writes a frame in slices
// instead of copying it into the batch.
const copyMax = 8 << 10

// sliceMax is the most of a large frame handed to gnet at once: gnet
// copies what the socket does not take, so this bounds the copy beyond
// MaxPending.
const sliceMax = 64 << 10

// tlsOverhead is room left in a write for the TLS records' headers and
// tags (small records at first, with crypto/tls's dynamic record sizing).
const tlsOverhead = 8 << 10

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
	if ps := c.peerOf(); ps != nil {
		c.peerDrain(ps)
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
				f := rp.joins[rp.next].Msg.Frame
				batch = append(batch, f...)
				l.ctr.deliveries++
				l.ctr.bytesOut += uint64(len(f))
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
			if c.historyLost() {
				// History evicted or overwritten while it was replayed:
				// skip to what is still there. Nothing live is lost.
				c.cursor = max(r.Tail(), c.cursor+1)
				continue
			}
			// Lapped: what it missed is gone. It gets what came before
			// the gap, then 1008 (SPEC 1.6), never a silent gap.
			c.lappedAfter(batch)
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
			l.ctr.deliveries++
			l.ctr.bytesOut += uint64(len(m.Frame))
			continue
		}
		// A large frame: what is batched goes first, then the frame in
		// slices of the ring's copy.
		if len(batch) > 0 {
			c.writeOut(batch)
			batch = batch[:0]
		}
		c.part, c.partOff = m, 0
		l.ctr.deliveries++ // in slices from here; a close waits for the rest
		l.ctr.bytesOut += uint64(len(m.Frame))
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
		c.partOff += int32(len(p))
		if int(c.partOff) == len(c.part.Frame) {
			c.part, c.partOff = nil, 0
		}
		c.writeOut(p)
		if c.part == nil && c.flags&fPong != 0 {
			c.flags &^= fPong
			c.send(codec.AppendFrame(c.l.out[:0], ws.OpPong, c.rare.pong))
			c.rare.pong = nil
			c.flush()
		}
	}
	return true
}

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
