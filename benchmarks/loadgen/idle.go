package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// idleSettle is the pause between the last join and the memory readings, so
// that the server has processed every join and freed handshake buffers, and
// idle housekeeping had its chance (mles returns free heap to the OS 2-3 s
// after the last connection opened).
const idleSettle = 5 * time.Second

// runIdle joins -conns connections (-members per channel), reports the join
// rate, then the server's RSS and the kernel's slab growth per connection.
func runIdle(ctx context.Context, o *Options) (*Result, error) {
	res := newResult(o)
	res.Conns = o.Conns
	clk := clock{base: time.Now()}
	rssBefore, slabBefore := procRSS(o.ServerPID), slabBytes()

	sessions := make([]*session, o.Conns)
	closeAll := func() {
		for _, s := range sessions {
			if s != nil {
				s.Close()
			}
		}
	}
	a := sampleCPU(o.ServerPID)
	start := time.Now()
	failed, first := dialAll(ctx, o.Dialers, o.Conns, false, func(ctx context.Context, i int) error {
		s, err := openSession(ctx, o, o.name("u", i), o.name("idle", i/o.Members), 2048, false)
		if err != nil {
			return err
		}
		if o.Mode == ModeCentrifugo {
			if err := s.awaitSubscribed(clk, nil); err != nil {
				s.Close()
				return err
			}
		}
		s.fr = frameReader{} // idle members do not read: release the buffer
		sessions[i] = s
		return nil
	})
	elapsed := time.Since(start).Seconds()
	res.setCPU(a, sampleCPU(o.ServerPID), elapsed)
	joined := o.Conns - failed
	res.JoinFailed = failed
	if first != nil {
		res.addError(first)
	}
	if joined == 0 || ctx.Err() != nil {
		closeAll()
		if first == nil {
			first = ctx.Err()
		}
		return nil, fmt.Errorf("no connection joined: %w", first)
	}
	res.JoinRate = float64(joined) / elapsed
	res.WindowS = elapsed

	select {
	case <-time.After(idleSettle):
	case <-ctx.Done():
	}
	rssAfter, slabAfter := procRSS(o.ServerPID), slabBytes()
	if rssBefore >= 0 && rssAfter >= 0 {
		res.RSSPerConnBytes = float64(rssAfter-rssBefore) / float64(joined)
	}
	if slabBefore >= 0 && slabAfter >= 0 {
		res.KernelPerConnBytes = float64(slabAfter-slabBefore) / float64(joined)
		res.KernelPerConnNote = "Slab delta in /proc/meminfo / conns: both loopback ends (server and loadgen sockets)"
	}
	res.ServerRSSAfterBytes = rssAfter

	// Which connections did the server keep? A closed one has a close frame
	// or an end of stream waiting.
	var alive int64
	done := make(chan bool, o.Dialers)
	go func() {
		dialAll(context.Background(), o.Dialers, len(sessions), false, func(_ context.Context, i int) error {
			if s := sessions[i]; s != nil {
				done <- isAlive(s)
			}
			return nil
		})
		close(done)
	}()
	for ok := range done {
		if ok {
			alive++
		}
	}
	res.ConnsAlive = int(alive)
	closeAll()
	return res, nil
}

// isAlive reads what is waiting on an idle connection for a moment and
// reports whether the server still has it open.
func isAlive(s *session) bool {
	s.fr = frameReader{buf: make([]byte, 4096)}
	s.nc.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
	for {
		for {
			op, _, p, ok := s.fr.next()
			if !ok {
				break
			}
			if op == opPing {
				s.writeFrame(opPong, p)
			}
			if op == opClose {
				return false
			}
		}
		if err := s.fr.fill(s.nc); err != nil {
			var ne interface{ Timeout() bool }
			return errors.As(err, &ne) && ne.Timeout()
		}
	}
}
