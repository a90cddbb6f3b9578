package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// seqTrack checks that one publisher's sequence numbers arrive contiguous and
// in order. It is owned by one reader goroutine.
type seqTrack struct {
	first, last      int64 // -1 before the first message
	n                int64
	outOfOrder, gaps int64
}

func newSeqTrack() seqTrack { return seqTrack{first: -1, last: -1} }

func (t *seqTrack) add(seq uint64) {
	s := int64(seq)
	switch {
	case t.last < 0:
		t.first = s
	case s == t.last+1:
	case s <= t.last:
		t.outOfOrder++
		return
	default:
		t.gaps += s - t.last - 1
	}
	t.last = s
	t.n++
}

// joinerResult is what one history joiner saw.
type joinerResult struct {
	target    int64 // last sequence number stored before the joiner dialed
	reached   bool  // received target
	latencyUs int64 // dial start to target received
	histMsgs  int64 // messages with seq <= target
	track     seqTrack
	err       error
}

// runHistory stores -stored messages in one channel, then -joiners members
// join (at most -join-concurrency at a time) and each measures the time from
// dial start until it has every message that was stored before it dialed.
// While they join, the publisher keeps publishing live at -rate, so that each
// joiner also checks the seam between history and live: the sequence numbers
// it receives must be contiguous and in order, no loss, no duplicate.
func runHistory(ctx context.Context, o *Options) (*Result, error) {
	res := newResult(o)
	clk := clock{base: time.Now()}
	ch := o.name("hist", 0)
	pub, err := openSession(ctx, o, o.name("hp", 0), ch, readBufSize, false)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	defer pub.Close()
	watcher, err := openSession(ctx, o, o.name("hw", 0), ch, readBufSize, false)
	if err != nil {
		return nil, fmt.Errorf("watcher: %w", err)
	}
	defer watcher.Close()
	if o.Mode == ModeCentrifugo {
		if err := pub.awaitSubscribed(clk, nil); err != nil {
			return nil, fmt.Errorf("publisher: %w", err)
		}
		if err := watcher.awaitSubscribed(clk, nil); err != nil {
			return nil, fmt.Errorf("watcher: %w", err)
		}
		if watcher.epoch == "" {
			return nil, errors.New("centrifugo gave no stream epoch: enable history and recovery for the channel (peers/centrifugo/config-history.json)")
		}
	}
	// pub drains its own connection (join frames, Centrifugo echoes, pings).
	go pub.readLoop(clk, func(message, int64) {})

	// The watcher is an ordinary member: what it received, the server has
	// stored (the history is written before or while the fan-out happens).
	var (
		stored atomic.Int64
		wmu    sync.Mutex
		wtrack = newSeqTrack()
	)
	stored.Store(-1)
	go watcher.readLoop(clk, func(m message, _ int64) {
		if m.pub != 0 {
			return
		}
		wmu.Lock()
		wtrack.add(m.seq)
		wmu.Unlock()
		stored.Store(wtrack.last)
	})

	payload := initPayload(o.marker, o.Payload)
	var seq uint64
	for ; seq < uint64(o.Stored); seq++ {
		fillPayload(payload, 0, seq, clk.now())
		if err := pub.publish(payload); err != nil {
			return nil, fmt.Errorf("publisher: %w", err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for stored.Load() < int64(o.Stored)-1 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("the watcher received %d of %d stored messages", stored.Load()+1, o.Stored)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Live traffic during the joins.
	stopLive := make(chan struct{})
	liveDone := make(chan struct{})
	go func() {
		defer close(liveDone)
		if o.Rate <= 0 {
			return
		}
		interval := time.Duration(float64(time.Second) / o.Rate)
		next := time.Now().Add(time.Duration(rand.Int64N(int64(interval))))
		for {
			select {
			case <-stopLive:
				return
			case <-time.After(time.Until(next)):
			}
			fillPayload(payload, 0, seq, clk.now())
			if err := pub.publish(payload); err != nil {
				return
			}
			seq++
			next = next.Add(interval)
		}
	}()

	joiners := make([]joinerResult, o.Joiners)
	a := sampleCPU(o.ServerPID)
	start := time.Now()
	dialAll(ctx, o.JoinPar, o.Joiners, false, func(ctx context.Context, i int) error {
		joiners[i] = joinHistory(ctx, o, clk, ch, watcher.epoch, i, stored.Load())
		return nil
	})
	window := time.Since(start).Seconds()
	res.setCPU(a, sampleCPU(o.ServerPID), window)
	close(stopLive)
	<-liveDone

	var (
		h    histogram
		msgs []int64
		ok   = true
	)
	wmu.Lock()
	res.OutOfOrder, res.Gaps = wtrack.outOfOrder, wtrack.gaps
	wmu.Unlock()
	for i := range joiners {
		j := &joiners[i]
		res.Expected += j.target + 1
		res.Delivered += j.histMsgs
		res.OutOfOrder += j.track.outOfOrder
		res.Gaps += j.track.gaps
		msgs = append(msgs, j.histMsgs)
		if j.err != nil {
			res.addError(fmt.Errorf("joiner %d: %w", i, j.err))
		}
		if !j.reached || j.track.outOfOrder+j.track.gaps > 0 {
			ok = false
		}
		if j.reached {
			res.HistoryReached++
			h.record(j.latencyUs)
		}
		if j.track.first == 0 {
			res.HistoryComplete++
		}
	}
	if res.OutOfOrder+res.Gaps > 0 {
		ok = false
	}
	slices.Sort(msgs)
	res.HistoryMsgsMin = int(msgs[0])
	if n := len(msgs); n%2 == 1 {
		res.HistoryMsgsMedian = float64(msgs[n/2])
	} else {
		res.HistoryMsgsMedian = float64(msgs[n/2-1]+msgs[n/2]) / 2
	}
	res.HistoryOK = &ok
	res.setLatency(&h)
	res.finish(o)
	if res.HistoryComplete < o.Joiners {
		res.Notes = append(res.Notes, "some joiners' history did not start at sequence 0: the server's history limit evicted the oldest messages "+
			"(every join frame and live message is stored too); give the server a limit above stored + joiners + live messages to replay all")
	}
	return res, ctx.Err()
}

// joinHistory is one joiner: dial, join, and read until the target (the
// last message stored before the dial) has arrived. epoch (Centrifugo only)
// asks for the stream to be recovered from its start, then on through the
// live messages for a moment to check the seam.
func joinHistory(ctx context.Context, o *Options, clk clock, ch, epoch string, i int, target int64) (jr joinerResult) {
	jr.target = target
	jr.track = newSeqTrack()
	start := clk.now()
	liveAfter := int64(0)
	if o.Rate > 0 {
		liveAfter = 2 // live messages to see after the target
	}
	var reachedAt int64
	onMsg := func(m message, now int64) {
		if m.pub != 0 {
			return
		}
		jr.track.add(m.seq)
		if int64(m.seq) <= target {
			jr.histMsgs++
		}
		if int64(m.seq) >= target && !jr.reached {
			jr.reached = true
			jr.latencyUs = (now - start) / 1000
			reachedAt = now
		}
	}
	s := &session{mode: o.Mode, channel: ch, marker: o.marker}
	c, err := dialWS(ctx, o.target, s.subprotocol(), readBufSize, false, nil)
	if err != nil {
		jr.err = err
		return jr
	}
	defer c.Close()
	s.wsConn = c
	if err := s.join(o.name("hj", i), epoch); err != nil {
		jr.err = err
		return jr
	}
	if o.Mode == ModeCentrifugo {
		if err := s.awaitSubscribed(clk, onMsg); err != nil {
			jr.err = err
			return jr
		}
	}
	// Give up on the target after 15 s; after reaching it, wait at most three
	// live intervals plus 0.5 s for the seam.
	seamWait := int64(500 * time.Millisecond)
	if o.Rate > 0 {
		seamWait += int64(3 * float64(time.Second) / o.Rate)
	}
	c.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		for {
			op, _, p, ok := c.fr.next()
			if !ok {
				break
			}
			closed, err := s.handleFrame(op, p, clk.now(), onMsg)
			if closed {
				jr.err = fmt.Errorf("closed by the server: %s", closeReason(p))
				return jr
			}
			if err != nil {
				jr.err = err
				return jr
			}
		}
		if jr.reached {
			if jr.track.last >= target+liveAfter {
				return jr
			}
			c.nc.SetReadDeadline(clk.base.Add(time.Duration(reachedAt + seamWait)))
		}
		if err := c.fr.fill(c.nc); err != nil {
			var ne interface{ Timeout() bool }
			if !jr.reached || !(errors.As(err, &ne) && ne.Timeout()) {
				jr.err = err
			}
			return jr
		}
	}
}
