//go:build soak

package soak_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/poll"
)

// publish sends sequence-numbered messages on ch at its rate until ctx
// ends. ch.sent is the last sequence whose write returned.
func (r *run) publish(ctx context.Context, ch *channel, s *session) {
	defer r.pubWG.Done()
	tick := time.NewTicker(time.Second / time.Duration(ch.rate))
	defer tick.Stop()
	var buf []byte
	for seq := uint64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		buf = ch.payload(buf, seq)
		_ = s.ws.SetWriteDeadline(time.Now().Add(ioWait))
		if err := s.ws.WriteMessage(websocket.BinaryMessage, buf); err != nil {
			r.fails.add("publisher %s on %s: write seq %d: %v", s.uid, ch.name, seq, err)
			return
		}
		ch.sent.Store(seq)
	}
}

// joinAll joins n sessions concurrently, at most par dials at a time.
func (r *run) joinAll(ctx context.Context, n, par int, spec func(i int) (string, *channel, kind)) ([]*session, error) {
	out := make([]*session, n)
	errs := make([]error, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			uid, ch, k := spec(i)
			s, err := r.join(ctx, uid, ch, k, joinOpts{})
			if err != nil {
				errs[i] = err
				return
			}
			s.start()
			out[i] = s
		}()
	}
	wg.Wait()
	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			first = cmp.Or(first, err)
		}
	}
	if failed > 0 {
		return out, fmt.Errorf("%d of %d joins failed, the first: %w", failed, n, first)
	}
	return out, nil
}

// churner joins a random channel, stays 1-20 s, checks that it received
// the channel's traffic up to the moment it decided to leave, and leaves,
// over and over until ctx ends.
func (r *run) churner(ctx context.Context, i int, rng *rand.Rand) {
	defer r.actWG.Done()
	for n := 0; ctx.Err() == nil; n++ {
		ch := r.regular[rng.IntN(len(r.regular))]
		uid := fmt.Sprintf("churn%03d.%d", i, n)
		s, err := r.joinRetry(r.rootCtx, uid, ch, kindChurn, joinOpts{})
		if err != nil {
			r.fails.add("churn %s on %s: %v", uid, ch.name, err)
			return
		}
		s.start()
		r.churnJoins.Add(1)
		stay := time.NewTimer(time.Second + time.Duration(rng.Int64N(int64(19*time.Second))))
		select {
		case <-ctx.Done():
		case <-stay.C:
		}
		stay.Stop()
		target := ch.sent.Load()
		if err := caughtUp([]*session{s}, ioWait, func(*session) uint64 { return target }); err != nil {
			r.fails.add("churn member not receiving live traffic: %v", err)
		}
		s.checkJoin()
		// One in four leaves without a close frame, as a dropped client does.
		if err := s.leave(rng.IntN(4) != 0); err != nil {
			r.fails.add("churn %s on %s: leave: %v", uid, ch.name, err)
		}
		r.churnLeaves.Add(1)
	}
}

// stormStat is one reconnect storm.
type stormStat struct {
	conns     int
	closeTook time.Duration // all closed, from the first close
	joinTook  time.Duration // all joined again, from the first dial
	retries   int64         // dials repeated after a failure
}

// storm closes every storm member at once (half with a close frame, half by
// dropping the TCP connection) and reconnects them all at once.
func (r *run) storm(k int) stormStat {
	r.storming.Store(true)
	defer r.storming.Store(false)
	r.stormMu.Lock()
	old := append([]*session(nil), r.stormers...) // a nil: its last reconnect failed (a failure already)
	r.stormMu.Unlock()
	var members []*session
	for _, s := range old {
		if s != nil {
			members = append(members, s)
		}
	}
	st := stormStat{conns: len(members)}

	// Before the storm, every member is live: it has what the publisher
	// had sent when the storm began, and nothing since its join is missing.
	targets := make(map[*channel]uint64)
	for _, ch := range r.regular {
		targets[ch] = ch.sent.Load()
	}
	if err := caughtUp(members, 2*ioWait, func(s *session) uint64 { return targets[s.ch] }); err != nil {
		r.fails.add("storm %d: member not receiving live traffic: %v", k+1, err)
	}
	for _, s := range members {
		s.checkJoin()
		r.noteResume(s)
	}

	gate := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for i, s := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			if err := s.leave(i%2 == 0); err != nil {
				r.fails.add("storm %d: close %s: %v", k+1, s.uid, err)
			}
		}()
	}
	close(gate)
	wg.Wait()
	st.closeTook = time.Since(start)

	retries := r.retries.Load()
	fresh := make([]*session, len(old))
	gate = make(chan struct{})
	start = time.Now()
	for i, o := range old {
		if o == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			// A new uid: the old session may still be registered when the
			// new header arrives (abrupt close), and the server refuses a
			// duplicate (SPEC 1.2).
			uid := fmt.Sprintf("storm%03d.g%d", i, k+1)
			s, err := r.joinRetry(r.rootCtx, uid, o.ch, kindStorm, joinOpts{})
			if err != nil {
				r.fails.add("storm %d: reconnect %s: %v", k+1, uid, err)
				return
			}
			s.resumeFrom = o.last.Load()
			s.start()
			fresh[i] = s
		}()
	}
	close(gate)
	wg.Wait()
	st.joinTook = time.Since(start)
	st.retries = r.retries.Load() - retries // churn's retries meanwhile count too

	r.stormMu.Lock()
	copy(r.stormers, fresh)
	r.stormMu.Unlock()
	return st
}

// noteResume counts a reconnected storm member whose history replay
// reached back to the last message of its previous session: a client
// resyncing through the history lost nothing across the storm. Not a
// failure when it did not (a reconnect slower than the history depth is
// allowed to miss messages); reported.
func (r *run) noteResume(s *session) {
	if s.resumeFrom == 0 {
		return
	}
	r.resumes.Add(1)
	if f := s.first.Load(); f != 0 && f <= s.resumeFrom+1 {
		r.resumedNoGap.Add(1)
	}
}

// slowResult is one slow consumer.
type slowResult struct {
	uid, channel string
	closedAfter  time.Duration // from the header to the server's close
	code         string        // how the connection ended, as the client saw it
	got1008      bool
}

// slowConsumer joins ch with a small receive buffer and never reads, until
// the server's side of its connection is closed; then it reads what is
// left and expects close 1008 "slow consumer" at the end (SPEC 1.6).
func (r *run) slowConsumer(uid string, ch *channel) {
	defer r.slowWG.Done()
	s, err := r.join(r.rootCtx, uid, ch, kindSlow, joinOpts{rcvBuf: 4 << 10})
	if err != nil {
		r.fails.add("slow %s on %s: %v", uid, ch.name, err)
		return
	}
	r.slowLaunched.Add(1)
	port := s.conn.LocalAddr().(*net.TCPAddr).Port
	err = poll.Until(r.rootCtx, r.cfg.slowWait, 250*time.Millisecond, func() error {
		est, err := r.serverEstablished(s.joinedAt)
		if err != nil {
			return err
		}
		if est[port] {
			return errors.New("server's side still established")
		}
		return nil
	})
	if err != nil {
		if r.rootCtx.Err() == nil {
			r.fails.add("slow %s on %s: not closed by the server as a slow consumer: %v", uid, ch.name, err)
		}
		s.ws.Close()
		r.untrack(s)
		return
	}
	res := slowResult{uid: uid, channel: ch.name, closedAfter: time.Since(s.joinedAt)}
	r.slowClosed.Add(1)
	s.start()
	<-s.done
	res.code = closeCode(s.endErr)
	var ce *websocket.CloseError
	res.got1008 = errors.As(s.endErr, &ce) && ce.Code == websocket.ClosePolicyViolation && ce.Text == "slow consumer"
	if res.got1008 {
		r.slow1008.Add(1)
	} else if r.cfg.strictSlowClose {
		r.fails.addAtEnd("slow %s on %s: closed by the server after %v, but the client saw %s, not 1008 \"slow consumer\"",
			uid, ch.name, res.closedAfter.Round(time.Millisecond), res.code)
	}
	r.slowMu.Lock()
	r.slow = append(r.slow, res)
	r.slowMu.Unlock()
}

// every runs f at offset, offset+period, ... from now until ctx ends, on
// the calling goroutine; f runs to its end even if ctx ends meanwhile. A
// run of f longer than the period delays the next one, never doubles it.
func every(ctx context.Context, offset, period time.Duration, f func(k int)) {
	start := time.Now()
	t := time.NewTimer(offset)
	defer t.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f(k)
		next := offset + time.Duration(k+1)*period
		t.Reset(max(next-time.Since(start), 0))
	}
}

// serverEstablished is tcpEstablished for the server's port, read at most
// every 200 ms however many slow consumers wait on it. The reading is
// younger than since: a connection made after a reading is not in it.
func (r *run) serverEstablished(since time.Time) (map[int]bool, error) {
	r.tcpMu.Lock()
	defer r.tcpMu.Unlock()
	if r.tcpEst != nil && r.tcpAt.After(since) && time.Since(r.tcpAt) < 200*time.Millisecond {
		return r.tcpEst, nil
	}
	est, err := tcpEstablished(r.srv.port)
	if err != nil {
		return nil, err
	}
	r.tcpEst, r.tcpAt = est, time.Now()
	return est, nil
}
