package server

// A channel's link to the stream (natsbus.go), from its first local member
// to its last. Live messages come by core NATS: the stream republishes
// every message it stores (StreamConfig.RePublish) to prefix_live.<hash>.m
// or .j, with its stream sequence and the sequence of the subject's
// previous message, so the channel takes each once, in the stream's order,
// and sees a gap at once. What the channel lacks (everything, for a
// channel new to this server or a server that restarted; what NATS dropped
// or sent while the link was down) it reads from the stream itself: the
// catch-up, an ordered consumer from the sequence after the last one
// taken up to the stream's last. Live messages that arrive meanwhile wait
// and are taken after it.
//
// Joiners that come while the first catch-up runs are held (peersync.go)
// until it is done, so a server that restarts, or sees the channel for
// the first time, gives them the whole history before live traffic; if
// the stream does not answer, they go on after peerSyncWait with what
// this server has.

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// chanNATS is a channel's state on NATS.
type chanNATS struct {
	subjM, subjJ string // the stream's subjects
	live         string // the republished subjects, a wildcard
	sub          *natsSub
	// mu is held while a message from NATS enters the channel (one at a
	// time, in the stream's order) and guards the fields below and sub's
	// catching and pending.
	mu sync.Mutex
	// last is the stream sequence of the last message taken, per subject
	// (0: messages, 1: join frames).
	last [2]uint64
	// sinceRoom counts the messages taken since the last wait for the
	// loops (channel.room).
	sinceRoom int
}

// natsSub is one run of a channel's link, from link to unlink.
type natsSub struct {
	b      *natsBus
	ch     *channel
	x      *chanNATS
	ctx    context.Context
	cancel context.CancelFunc
	synced atomic.Bool   // the first catch-up is done (or failed)
	wake   chan struct{} // a gap: catch up again

	catching bool        // a catch-up runs: live messages wait in pending (x.mu)
	pending  []*nats.Msg // (x.mu)
	dropped  bool        // pending overflowed (x.mu): catch up again after
}

// pendingMax bounds the live messages held while a catch-up runs; past
// it they are dropped and read from the stream by the next catch-up.
const pendingMax = 1 << 14

// natsState returns the channel's NATS state, making it on first use.
func (ch *channel) natsState(b *natsBus) *chanNATS {
	if x := ch.nats.Load(); x != nil {
		return x
	}
	x := &chanNATS{}
	x.subjM, x.subjJ, x.live = b.subjects(ch.name)
	if ch.nats.CompareAndSwap(nil, x) {
		return x
	}
	return ch.nats.Load()
}

// subscribe starts the channel's link. Call with ch.mu held; the caller
// counts it among the resyncs joiners wait for.
func (b *natsBus) subscribe(ch *channel) {
	x := ch.natsState(b)
	sub := &natsSub{b: b, ch: ch, x: x, wake: make(chan struct{}, 1)}
	sub.ctx, sub.cancel = context.WithCancel(b.ctx)
	x.sub = sub
	b.consumers.Add(1)
	b.subs.Store(sub, nil)
	go sub.run()
}

// unsubscribeNATS stops the channel's link. Call with ch.mu held.
func (ch *channel) unsubscribeNATS() {
	if x := ch.nats.Load(); x != nil && x.sub != nil {
		x.sub.cancel()
		x.sub = nil
	}
}

func (sub *natsSub) run() {
	defer func() {
		sub.b.subs.Delete(sub)
		sub.b.consumers.Add(-1)
	}()
	wait := 100 * time.Millisecond
	for {
		err := sub.follow()
		if sub.ctx.Err() != nil {
			return
		}
		sub.done()
		sub.b.s.log.Warn("nats: channel link failed; starting it again", "channel", sub.ch.hid, "err", err)
		if !sleepCtx(sub.ctx, wait) {
			return
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// follow subscribes to the live subjects, catches up, and catches up
// again on every gap, until the link stops or fails.
func (sub *natsSub) follow() error {
	b, x := sub.b, sub.x
	select {
	case <-b.ready:
	case <-sub.ctx.Done():
		return nil
	}
	x.mu.Lock()
	sub.catching, sub.pending, sub.dropped = true, nil, false
	x.mu.Unlock()
	s, err := b.nc.Subscribe(x.live, sub.onLive)
	if err != nil {
		return err
	}
	defer func() { _ = s.Unsubscribe() }()
	_ = s.SetPendingLimits(pendingMax, 64<<20)
	for {
		if err := sub.catchUp(); err != nil {
			return err
		}
		sub.done()
		select {
		case <-sub.wake:
			x.mu.Lock()
			sub.catching = true // live messages wait from here on
			x.mu.Unlock()
		case <-sub.ctx.Done():
			return nil
		}
	}
}

// catchUpAll has every channel link catch up, as NATS reconnected: what
// was republished while the connection was down never arrives live.
func (b *natsBus) catchUpAll() {
	b.subs.Range(func(k, _ any) bool {
		k.(*natsSub).wakeUp()
		return true
	})
}

func (sub *natsSub) wakeUp() {
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// onLive takes a republished message (the subscription's goroutine).
func (sub *natsSub) onLive(m *nats.Msg) {
	x := sub.x
	x.mu.Lock()
	defer x.mu.Unlock()
	if sub.catching {
		if len(sub.pending) < pendingMax {
			sub.pending = append(sub.pending, m)
		} else {
			sub.dropped = true
		}
		return
	}
	sub.applyLocked(m)
}

// applyLocked takes a live message in order, or starts a catch-up if the
// subject's previous message is not in yet. Call with x.mu held, not
// catching.
func (sub *natsSub) applyLocked(m *nats.Msg) {
	x := sub.x
	k := kindIndex(m.Data)
	if k < 0 {
		return
	}
	seq, _ := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	prev, _ := strconv.ParseUint(m.Header.Get(lastSequenceHeader), 10, 64)
	if seq <= x.last[k] {
		return // taken already (by a catch-up)
	}
	if prev > x.last[k] {
		// A gap: the stream has messages this channel lacks.
		sub.catching = true
		sub.pending = append(sub.pending[:0], m)
		sub.b.gaps.Add(1)
		sub.wakeUp()
		return
	}
	x.last[k] = seq
	sub.b.deliver(sub.ch, m.Data, m.Header.Get(jetstream.MsgIDHeader))
}

// lastSequenceHeader is the republished message's header with the
// sequence of its subject's previous message.
const lastSequenceHeader = "Nats-Last-Sequence"

// kindIndex is the index into chanNATS.last of an enveloped message.
func kindIndex(data []byte) int {
	if len(data) < busEnvelope {
		return -1
	}
	switch data[0] {
	case busMessage:
		return 0
	case busJoin:
		return 1
	}
	return -1
}

// catchUp reads from the stream what the channel lacks, up to the
// stream's last message of its subjects, then takes the live messages
// that waited.
func (sub *natsSub) catchUp() error {
	b, x := sub.b, sub.x
	// A request lost in a JetStream leader election waits out this
	// bound; the link then starts again.
	ctx, cancel := context.WithTimeout(sub.ctx, 10*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return err
	}
	var target uint64
	for _, subj := range []string{x.subjM, x.subjJ} {
		m, err := st.GetLastMsgForSubject(ctx, subj)
		switch {
		case err == nil:
			target = max(target, m.Sequence)
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return err
		}
	}
	x.mu.Lock()
	from := min(x.last[0], x.last[1]) + 1
	have := max(x.last[0], x.last[1])
	x.mu.Unlock()
	if target > have {
		// An ephemeral pull consumer without acks, in memory, gone when
		// the catch-up is done (or, should it be left, after a minute).
		cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
			FilterSubjects:    []string{x.subjM, x.subjJ},
			DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:       from,
			AckPolicy:         jetstream.AckNonePolicy,
			MemoryStorage:     true,
			Replicas:          1,
			InactiveThreshold: time.Minute,
		})
		if err != nil {
			return err
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name)
		}()
		for done := false; !done; {
			if err := ctx.Err(); err != nil {
				return err
			}
			batch, err := cons.FetchNoWait(256)
			if err != nil {
				return err
			}
			n := 0
			for m := range batch.Messages() {
				n++
				md, err := m.Metadata()
				if err != nil {
					continue
				}
				seq, data := md.Sequence.Stream, m.Data()
				if k := kindIndex(data); k >= 0 {
					x.mu.Lock()
					if seq > x.last[k] {
						x.last[k] = seq
						b.deliver(sub.ch, data, m.Headers().Get(jetstream.MsgIDHeader))
					}
					x.mu.Unlock()
				}
				done = done || seq >= target || md.NumPending == 0
			}
			if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
				return err
			}
			done = done || n == 0
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	sub.catching = false
	pending, dropped := sub.pending, sub.dropped
	sub.pending, sub.dropped = nil, false
	for i, m := range pending {
		sub.applyLocked(m)
		if sub.catching { // a gap again: keep the rest for the next catch-up
			sub.pending = append(sub.pending, pending[i+1:]...)
			return nil
		}
	}
	if dropped {
		sub.catching = true
		sub.b.gaps.Add(1)
		sub.wakeUp()
	}
	return nil
}

// done marks the first catch-up as in (or failed), once: the held
// joiners go on when it was the last resync they waited for.
func (sub *natsSub) done() {
	if !sub.synced.CompareAndSwap(false, true) {
		return
	}
	ch := sub.ch
	ch.mu.Lock()
	if sub.x.sub != sub || ch.syncing == 0 {
		ch.mu.Unlock()
		return
	}
	held := ch.syncedOneLocked()
	ch.mu.Unlock()
	releaseHeld(held)
}
