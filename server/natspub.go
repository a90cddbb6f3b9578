package server

// The bus's publisher goroutine (natsbus.go): the one writer of this
// server's messages to the stream, in the order the loops queued them.
//
// Order is kept through failures. nats.go's reconnect buffer is off, so
// nothing is sent behind the publisher's back when a connection comes
// back. When the stream leaves publishes unacknowledged for stallAfter, or
// NATS reconnected with publishes in flight, the publisher sends nothing
// new until every publish in flight is acknowledged or failed, then sends
// the failed ones again in their first order (with their message ids, so
// that a copy JetStream stored although its acknowledgement was lost is
// dropped), and only then what was queued after them. With the connection
// down, or a stall longer than localFirstAfter, it also switches to local
// delivery first (localFirst): the local members get at once, in order,
// what is on the way (sent and not back yet) and what is queued, and the
// loops deliver what follows themselves. A message delivered here first
// is never delivered here again when it comes back from the stream: it is
// marked in the envelope, or (on the way when the switch came) remembered
// by number.
//
// Not kept: in a JetStream leader election with the connection up, a
// publish lost with the old leader is stored when sent again, after those
// that this server sent in the moments before it stalled (at most
// stallAfter) and the new leader stored: those few messages of one sender
// may come out of order, in the same order on every server.

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// busFlight is what the publisher knows of its messages on the way: sent
// to the stream and not yet back from it.
type busFlight struct {
	mu sync.Mutex
	// pending are the messages by number until they come back from the
	// stream (natsBus.back), or sweepAfter after their acknowledgement
	// (a channel whose link stopped never gets them back).
	pending   map[uint64]*flightMsg
	local     map[uint64]struct{} // numbers delivered here before they came back
	unacked   int                 // publishes neither acknowledged nor failed
	lastAck   time.Time
	lastSweep time.Time
}

type flightMsg struct {
	ch    *channel
	data  []byte
	acked time.Time // zero until acknowledged
}

// sweepAfter is how long an acknowledged message that did not come back
// is remembered.
const sweepAfter = 30 * time.Second

// stallAfter is how long the stream may leave every publish in flight
// unacknowledged before the publisher stalls: it sends nothing new until
// they are settled.
const stallAfter = 250 * time.Millisecond

// localFirstAfter is how long a stall lasts, with the NATS connection up
// (a JetStream leader election takes seconds), before local members get
// their messages without the stream; with the connection down they get
// them at once.
const localFirstAfter = 2 * time.Second

// localMax bounds the numbers remembered as delivered here first; past it
// they are forgotten (such a message, if it did reach the stream, would be
// delivered here a second time).
const localMax = 1 << 16

// publisher publishes the queued messages in order, each with a message
// id so that JetStream keeps one copy of a publish sent again.
func (b *natsBus) publisher() {
	defer b.wg.Done()
	var n uint64
	idPrefix := strconv.FormatUint(b.origin, 36) + "-"
	select { // nothing goes out before the stream is there
	case <-b.ready:
	case <-b.ctx.Done():
		return
	}
	for {
		b.recover()
		var o busOut
		if len(b.backlog) > 0 {
			o = b.backlog[0]
			b.backlog[0] = busOut{}
			b.backlog = b.backlog[1:]
		} else {
			select {
			case o = <-b.q:
			case <-b.poke:
				if !b.connected.Load() {
					b.localFirst()
				}
				continue
			case <-b.ctx.Done():
				return
			}
		}
		n++
		if o.data[0] == busMessage && o.data[1]&busLocal == 0 && !b.through() {
			// Queued while the stream answered, and it no longer does:
			// the local members get it now, the stream when it can.
			o.data[1] |= busLocal
			b.deliverLocal(o.ch, o.data)
		}
		x := o.ch.natsState(b)
		subj := x.subjM
		if o.kind == busJoin {
			subj = x.subjJ
		}
		m := &nats.Msg{Subject: subj, Data: o.data, Header: nats.Header{jetstream.MsgIDHeader: []string{idPrefix + strconv.FormatUint(n, 36)}}}
		b.fl.mu.Lock()
		if o.kind == busMessage {
			b.fl.pending[n] = &flightMsg{ch: o.ch, data: o.data}
		}
		b.fl.mu.Unlock()
		for !b.send1(m) {
			b.recover() // a reconnect with publishes in flight: they go first
		}
	}
}

// stalled reports whether publishes are in flight and the stream has
// acknowledged none for stallAfter.
func (b *natsBus) stalled() bool {
	b.fl.mu.Lock()
	defer b.fl.mu.Unlock()
	now := time.Now()
	if now.Sub(b.fl.lastSweep) > time.Second {
		b.fl.lastSweep = now
		for k, f := range b.fl.pending {
			if !f.acked.IsZero() && now.Sub(f.acked) > sweepAfter {
				delete(b.fl.pending, k)
				delete(b.fl.local, k)
			}
		}
	}
	return b.fl.unacked > 0 && now.Sub(b.fl.lastAck) > stallAfter
}

// recover handles a stall or failed publishes before anything new goes
// out (see the file comment).
func (b *natsBus) recover() {
	if len(b.retry) == 0 && !b.stalled() && !b.reconnected() && !b.settling {
		return
	}
	b.settling = false
	start := time.Now()
	for b.ctx.Err() == nil {
		if !b.connected.Load() || time.Since(start) > localFirstAfter {
			b.localFirst()
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-b.js.PublishAsyncComplete():
			t.Stop()
		case <-t.C:
			continue
		case <-b.ctx.Done():
			t.Stop()
			return
		}
		if len(b.retry) == 0 {
			return
		}
		var failed []*nats.Msg
		for len(b.retry) > 0 {
			failed = append(failed, <-b.retry)
		}
		slices.SortFunc(failed, func(x, y *nats.Msg) int { return cmp.Compare(msgNum(x), msgNum(y)) })
		for i, m := range failed {
			if !b.send1(m) { // reconnected again: start over with the rest
				for _, r := range failed[i:] {
					b.retry <- r
				}
				break
			}
		}
	}
}

// reconnected reports whether NATS reconnected since the last look with
// publishes in flight: nats.go fails them, but its callbacks may come
// after a new publish went out, which must wait for them.
func (b *natsBus) reconnected() bool {
	cur := b.nc.Stats().Reconnects
	if cur == b.epoch {
		return false
	}
	b.epoch = cur
	b.fl.mu.Lock()
	defer b.fl.mu.Unlock()
	b.settling = b.fl.unacked > 0
	return b.settling
}

// localFirst switches the loops to local delivery first and delivers here
// what is in flight and was not yet, in order.
func (b *natsBus) localFirst() {
	if !b.answering.Load() {
		return
	}
	b.fl.mu.Lock()
	nums := make([]uint64, 0, len(b.fl.pending))
	for k, f := range b.fl.pending {
		if _, done := b.fl.local[k]; !done && f.data[1]&busLocal == 0 {
			nums = append(nums, k)
		}
	}
	slices.Sort(nums)
	due := make([]*flightMsg, len(nums))
	for i, k := range nums {
		due[i] = b.fl.pending[k]
		if len(b.fl.local) < localMax {
			b.fl.local[k] = struct{}{}
		}
	}
	b.fl.mu.Unlock()
	for _, f := range due {
		b.deliverLocal(f.ch, f.data)
	}
	// What the loops queued while the stream answered comes before what
	// they deliver here from now on: deliver it now, publish it later.
	b.modeMu.Lock()
	defer b.modeMu.Unlock()
	b.answering.Store(false)
	b.s.log.Warn("nats: the stream does not acknowledge; local members go on without it")
	for len(b.q) > 0 {
		o := <-b.q
		if o.data[0] == busMessage && o.data[1]&busLocal == 0 {
			o.data[1] |= busLocal
			b.deliverLocal(o.ch, o.data)
		}
		b.backlog = append(b.backlog, o)
	}
}

// back takes own message number n off the way, as it came back from the
// stream, and reports whether it was delivered here before.
func (b *natsBus) back(n uint64) bool {
	b.fl.mu.Lock()
	defer b.fl.mu.Unlock()
	delete(b.fl.pending, n)
	if len(b.fl.local) == 0 {
		return false
	}
	_, ok := b.fl.local[n]
	delete(b.fl.local, n)
	return ok
}

// msgNum is the publisher's number of m, from its message id.
func msgNum(m *nats.Msg) uint64 {
	return idNum(m.Header.Get(jetstream.MsgIDHeader))
}

func idNum(id string) uint64 {
	n, _ := strconv.ParseUint(id[strings.LastIndexByte(id, '-')+1:], 36, 64)
	return n
}

// send1 hands m to nats.go, waiting (on this goroutine only) while NATS
// is away or nats.go cannot take it. It returns false, without sending m,
// when NATS reconnected with publishes in flight (recover first).
func (b *natsBus) send1(m *nats.Msg) bool {
	wait := 10 * time.Millisecond
	for b.ctx.Err() == nil {
		if b.reconnected() {
			return false
		}
		if b.connected.Load() {
			_, err := b.js.PublishMsgAsync(m)
			if err == nil {
				b.published.Add(1)
				b.fl.mu.Lock()
				if b.fl.unacked == 0 {
					b.fl.lastAck = time.Now() // the wait for an acknowledgement starts now
				}
				b.fl.unacked++
				b.fl.mu.Unlock()
				return true
			}
			if strings.Contains(err.Error(), nats.ErrMaxPayload.Error()) {
				b.tooLarge.Add(1)
				b.fl.mu.Lock()
				delete(b.fl.pending, msgNum(m))
				b.fl.mu.Unlock()
				return true
			}
		} else {
			b.localFirst()
		}
		sleepCtx(b.ctx, wait)
		wait = min(2*wait, 250*time.Millisecond)
	}
	return true
}

// onFail takes a publish that JetStream did not acknowledge: it is sent
// again (recover).
func (b *natsBus) onFail(m *nats.Msg, err error) {
	b.failed.Add(1)
	b.s.log.Debug("nats: a publish was not acknowledged", "err", err)
	b.fl.mu.Lock()
	b.fl.unacked--
	b.fl.mu.Unlock()
	select {
	case b.retry <- m:
	default:
		b.s.log.Warn("nats: retry queue full; a message is lost for the other servers")
	}
}

// onAck takes an acknowledgement: the stream answers.
func (b *natsBus) onAck(m *nats.Msg) {
	b.acked.Add(1)
	b.settle(m)
	if !b.answering.Load() {
		select {
		case <-b.ready:
			if !b.answering.Swap(true) {
				b.s.log.Info("nats: the stream acknowledges again")
			}
		default:
		}
	}
}

// settle records m's acknowledgement.
func (b *natsBus) settle(m *nats.Msg) {
	n := msgNum(m)
	now := time.Now()
	b.fl.mu.Lock()
	if f := b.fl.pending[n]; f != nil {
		f.acked = now
	}
	b.fl.unacked--
	b.fl.lastAck = now
	b.fl.mu.Unlock()
}

// deliverLocal puts an own message that did not go through the stream
// into its channel's ring (publisher goroutine).
func (b *natsBus) deliverLocal(ch *channel, data []byte) {
	from := uint64(0)
	if len(data) >= busEnvelope {
		from = uint64FromEnvelope(data)
	}
	b.publishOwn(ch, from, data[busEnvelope:])
	b.localOnly.Add(1)
}
