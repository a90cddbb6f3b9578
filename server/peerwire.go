package server

// The mles-peer exchange, between two of our servers (SPEC 1.5). After
// the header frame both sides send one vector frame: for each origin, the
// highest sequence they hold. Each then replays its history from the
// start, skipping what the other's vector covers, and goes on with live
// traffic on the same cursor, never sending back a message that came from
// that session. Every message carries its id (origin, sequence); a server
// accepts a message only if its sequence is above the highest it accepted
// from that origin, under the channel's lock, so in any topology each
// server publishes each message once and nothing circulates.
//
// Frames, all binary:
//
//	'V' JSON {"id": server id, "v": {origin: highest sequence, ...}}
//	'M' op(1) origin(8) sequence(8) payload   (big-endian)
//
// With a server that selected mles-websocket (any other Mles server) the
// session is an ordinary member both ways, without ids: see README.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"

	"github.com/gobwas/ws"
	json "github.com/goccy/go-json"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/ring"
)

// peerEnvelope is the bytes an 'M' frame adds to a message's payload.
const peerEnvelope = 1 + 1 + 8 + 8

const (
	peerVector  = 'V'
	peerMessage = 'M'
)

// errPeerFrame is a frame a peer session must not carry.
var errPeerFrame = errors.New("server: invalid peer frame")

type vectorFrame struct {
	ID string            `json:"id"`
	V  map[uint64]uint64 `json:"v"`
}

// sendVector sends what the channel holds: the highest sequence accepted
// per origin, and its own origin's up to the ring's head.
func (c *conn) sendVector() {
	p := c.ch.peering()
	p.mu.Lock()
	v := vectorFrame{ID: c.s.opts.ServerID, V: make(map[uint64]uint64, len(p.seen)+1)}
	for o, q := range p.seen {
		v.V[o] = q
	}
	v.V[p.origin] = c.ch.ring.Head()
	p.mu.Unlock()
	b, _ := json.Marshal(v)
	c.send(codec.AppendFrame(c.l.out[:0], ws.OpBinary, append([]byte{peerVector}, b...)))
}

// onPeerFrame handles a data message on a peer session: the header (a
// session a peer dialed), then the peer's vector, then messages.
func (c *conn) onPeerFrame(ps *peerSess) {
	op, payload := c.fr.Message()
	switch {
	case c.ch == nil:
		c.onHeader() // the header frame of a session a peer dialed
		return
	case ps.plain:
		c.onPeerPlain()
		return
	case op != ws.OpBinary || len(payload) == 0:
		c.fr.ReleaseMessage()
		c.peerError(errPeerFrame)
		return
	}
	switch {
	case c.state == stHeader && payload[0] == peerVector:
		var v vectorFrame
		err := json.Unmarshal(payload[1:], &v)
		c.fr.ReleaseMessage()
		if err != nil {
			c.peerError(err)
			return
		}
		if v.ID == c.s.opts.ServerID {
			c.s.log.Warn("peer session to this server itself closed", "peer", ps.remote)
			c.closeWith(closePeerSelf)
			return
		}
		ps.remote = v.ID
		if ps.out {
			c.s.learnPeerID(ps.link.t, v.ID)
		}
		c.peerJoin(v.V, false)
	case c.state == stJoined && payload[0] == peerMessage && len(payload) >= peerEnvelope:
		c.acceptPeerMessage(payload)
		c.fr.ReleaseMessage()
	case c.state == stJoined && payload[0] == peerSynced && len(payload) == 1:
		c.fr.ReleaseMessage()
		if ps.out {
			ps.link.firstDone() // its replay is in: held joiners may join
			c.outboundSynced(ps)
		}
	default:
		c.fr.ReleaseMessage()
		c.peerError(errPeerFrame)
	}
}

func (c *conn) peerError(err error) {
	c.s.log.Warn("peer session error", "conn", c.id, "peer", c.peerOf().remote, "err", err)
	c.closeWith(closePeerProtocol)
}

// peerJoin makes the session a relay member of its channel: from the
// start of the history (filtered by vec), or from the head (live only).
func (c *conn) peerJoin(vec map[uint64]uint64, live bool) {
	s, l, ch, ps := c.s, c.l, c.ch, c.rare.peer
	g := ch.groupFor(l)
	ps.vec = vec
	if live {
		c.cursor = ch.ring.Head()
	} else {
		sp := ch.ring.HistorySpan()
		g.mark.Lower(sp.Start)
		c.cursor, ps.end = sp.Start, sp.End
	}
	c.state = stJoined
	c.deadline = 0
	c.pings = 0
	c.nextPing = l.now + int64(s.opts.PingInterval)
	g.add(c)
	s.peerSessions.Add(1)
	if ps.out {
		ps.link.wait.Store(int64(s.opts.PeerRetry))
		if ps.plain {
			ps.link.firstDone() // a plain peer replays nothing we can tell apart
		}
	}
	if !ps.out && !ps.plain {
		c.incomingUp(ps)
	}
	if s.log.Enabled(context.Background(), slog.LevelInfo) {
		s.log.Info("peer session up", "conn", c.id, "peer", ps.remote, "dialed", ps.out, "plain", ps.plain, "channel", ch.hid, "history", c.cursor)
	}
	c.drain()
}

// acceptPeerMessage publishes an 'M' frame's message unless the channel
// already has it (or it is the channel's own).
func (c *conn) acceptPeerMessage(payload []byte) {
	op := ws.OpCode(payload[1])
	origin := binary.BigEndian.Uint64(payload[2:10])
	seq := binary.BigEndian.Uint64(payload[10:18])
	body := payload[peerEnvelope:]
	if op != ws.OpText && op != ws.OpBinary {
		c.peerError(errPeerFrame)
		return
	}
	p := c.ch.peering()
	if origin == p.origin {
		return
	}
	p.mu.Lock()
	if seq <= p.seen[origin] {
		p.mu.Unlock()
		c.l.ctr.peerDuplicates++
		return
	}
	frame := codec.AppendFrame(make([]byte, 0, codec.FrameHeaderLen(len(body))+len(body)), op, body)
	m := &ring.Message{Frame: frame, From: c.id, ID: &ring.ID{Origin: origin, Seq: seq}}
	c.s.persist(c.ch, m, c.ch.publish(m, c.l))
	if _, ok := p.seen[origin]; !ok && len(p.seen) >= maxOrigins {
		p.forgetOne()
	}
	p.seen[origin] = seq
	p.mu.Unlock()
	c.l.ctr.peerIn++
	c.l.ctr.bytesIn += uint64(len(frame))
}

// forgetOne drops the origin with the lowest sequence. Call with mu held.
func (p *chanPeer) forgetOne() {
	var low, lowSeq uint64
	first := true
	for o, q := range p.seen {
		if first || q < lowSeq {
			low, lowSeq, first = o, q, false
		}
	}
	delete(p.seen, low)
}

// onPeerPlain publishes a message from a plain Mles peer as the channel's
// own: that server has no ids to give. Its history replay, at each
// (re)connect, holds what the channel already has (our messages it got,
// its clients' we relayed): a frame equal to one the history holds is
// dropped.
func (c *conn) onPeerPlain() {
	if c.state != stJoined {
		c.fr.ReleaseMessage()
		return
	}
	if c.ch.holds(c.fr.Frame()) {
		c.fr.ReleaseMessage()
		c.l.ctr.peerDuplicates++
		return
	}
	m := ring.NewMessage(c.fr.Frame(), c.id)
	c.fr.ReleaseMessage()
	c.s.persist(c.ch, m, c.ch.publish(m, c.l))
	c.l.ctr.peerIn++
	c.l.ctr.bytesIn += uint64(len(m.Frame))
}

// peerDrain sends the session what it has not got from the ring: history
// first (less what the peer's vector covers), then live traffic, each
// message in an 'M' envelope (or as it is, to a plain peer), never one
// that came from this session.
func (c *conn) peerDrain(ps *peerSess) {
	if c.state != stJoined || c.dead || c.outputFull() {
		return
	}
	c.pausedAt = 0
	l, ch, r := c.l, c.ch, c.ch.ring
	head := r.Head()
	batch := l.batch[:0]
	for c.cursor < head {
		m, st := r.Read(c.cursor)
		if st == ring.NotReady {
			break
		}
		if st == ring.Lost {
			if c.cursor < ps.end {
				c.cursor = max(r.Tail(), c.cursor+1) // history gone during the replay
				continue
			}
			c.lappedAfter(batch)
			return
		}
		seq := c.cursor
		c.cursor++
		if m.From == c.id {
			continue
		}
		id := ch.idOf(m, seq)
		if ps.vec != nil && id.Seq <= ps.vec[id.Origin] {
			continue
		}
		batch = c.appendPeerFrame(batch, ps, m.Frame, id.Origin, id.Seq)
		l.ctr.peerOut++
		l.ctr.bytesOut += uint64(len(m.Frame))
		if len(batch) >= c.writeMax(batchMax) {
			c.writeOut(batch)
			batch = batch[:0]
			if c.dead || c.outputFull() {
				break
			}
		}
	}
	if len(batch) > 0 && !c.dead {
		c.writeOut(batch)
	}
	l.batch = batch[:0]
	if !ps.endSent && !ps.plain && c.cursor >= ps.end && !c.dead {
		c.sendSynced(ps)
	}
	if c.flags&fShutdown != 0 && c.state == stJoined && c.cursor >= r.Head() {
		c.closeWith(closeShutdown)
	}
}

// appendPeerFrame appends the frame that carries the server frame f to
// the peer: enveloped with its id, or its payload alone to a plain peer;
// masked on a session we dialed.
func (c *conn) appendPeerFrame(dst []byte, ps *peerSess, f []byte, origin, seq uint64) []byte {
	op, payload := splitFrame(f)
	wire := op
	if !ps.plain {
		b := append(ps.scratch[:0], peerMessage, byte(op))
		b = binary.BigEndian.AppendUint64(b, origin)
		b = binary.BigEndian.AppendUint64(b, seq)
		payload = append(b, payload...)
		ps.scratch = payload[:0]
		wire = ws.OpBinary
	}
	if ps.out {
		return codec.AppendMaskedFrame(dst, wire, payload, maskKey())
	}
	return codec.AppendFrame(dst, wire, payload)
}

// idOf is the id of message m at ring sequence seq: its own (from a peer
// or the store), or, for a local client's, the channel's origin and the
// sequence, as the peers know it.
func (ch *channel) idOf(m *ring.Message, seq uint64) ring.ID {
	if m.ID != nil {
		return *m.ID
	}
	return ring.ID{Origin: ch.peering().origin, Seq: seq + 1}
}

// splitFrame returns the opcode and payload of f, one final unmasked
// frame (a ring message's, or one the server built to send).
func splitFrame(f []byte) (ws.OpCode, []byte) {
	return ws.OpCode(f[0] & 0x0f), f[serverHeaderLen(f):]
}

// serverHeaderLen is the header length of an unmasked frame.
func serverHeaderLen(f []byte) int {
	switch f[1] & 0x7f {
	case 126:
		return 4
	case 127:
		return 10
	}
	return 2
}

func maskKey() (k [4]byte) {
	binary.LittleEndian.PutUint32(k[:], rand.Uint32())
	return k
}

// maskFrame re-encodes the one unmasked frame p as a client frame, for a
// session we dialed (its pings, pongs, close and header frames).
func (c *conn) maskFrame(ps *peerSess, p []byte) []byte {
	op, payload := splitFrame(p)
	ps.scratch = codec.AppendMaskedFrame(ps.scratch[:0], op, payload, maskKey())
	return ps.scratch
}

// holds reports whether the channel's history holds a message whose frame
// is f.
func (ch *channel) holds(f []byte) bool {
	r := ch.ring
	for seq, head := r.HistoryStart(), r.Head(); seq < head; seq++ {
		if m, st := r.Read(seq); st == ring.Ready && bytes.Equal(m.Frame, f) {
			return true
		}
	}
	return false
}
