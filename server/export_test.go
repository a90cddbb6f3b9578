package server

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// SweepIdleChannels runs the idle-channel sweep at once with the given
// cutoff, as the ticker does every ChannelIdle/2 at most once a minute; for
// the end-to-end tests (package server_test), which cannot wait that long.
func (s *Server) SweepIdleChannels(cutoff time.Time) { s.reg.sweepIdle(cutoff.UnixNano()) }

// LoopThreads returns the OS thread id of each event loop that has had a
// connection. The ids stay valid only with Options.LockOSThread, which
// pins each loop to its thread; BenchmarkFanout reads the loops' CPU time
// from them.
func (s *Server) LoopThreads() []int {
	loops := *s.loops.Load()
	ids := make([]int, len(loops))
	var wg sync.WaitGroup
	for i, l := range loops {
		wg.Add(1)
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			ids[i] = syscall.Gettid()
			wg.Done()
			return nil
		}))
		if err != nil {
			wg.Done()
		}
	}
	wg.Wait()
	return ids
}

// HoldLoops stops every event loop that has had a connection in a task
// until release is called, so that a test can make several clients' bytes
// arrive before the loops read any of them: the loops then read them all
// in one poll round, as a busy server does.
func (s *Server) HoldLoops() (release func()) {
	loops := *s.loops.Load()
	held, done := make(chan struct{}, len(loops)), make(chan struct{})
	for _, l := range loops {
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			held <- struct{}{}
			<-done
			return nil
		}))
		if err != nil {
			held <- struct{}{}
		}
	}
	for range loops {
		<-held
	}
	return func() { close(done) }
}

// HoldLoopsExcept is HoldLoops for every loop but the one that owns the
// connection from the client address addr (host:port, as the client's
// LocalAddr): that client's bytes are read and published while the other
// loops wait. held is how many loops it holds (0 when all connections
// share the client's loop).
func (s *Server) HoldLoopsExcept(addr string) (release func(), held int) {
	loops := *s.loops.Load()
	type answer struct{ held bool }
	answers, done := make(chan answer, len(loops)), make(chan struct{})
	for _, l := range loops {
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			for c := range l.conns {
				if !c.dead && c.gc.RemoteAddr().String() == addr {
					answers <- answer{false}
					return nil
				}
			}
			answers <- answer{true}
			<-done
			return nil
		}))
		if err != nil {
			answers <- answer{false}
		}
	}
	for range loops {
		if (<-answers).held {
			held++
		}
	}
	return func() { close(done) }, held
}

// SetHTTPIdleTimeout sets how long the HTTP side of servers created from
// now on keeps an idle kept-alive connection, and returns the old value.
func SetHTTPIdleTimeout(d time.Duration) time.Duration {
	old := httpIdleTimeout
	httpIdleTimeout = d
	return old
}

// MarkLameDuck sets the drain's flag without closing the listeners, as
// the instant after the listeners closed looks to a connection the kernel
// had queued before: OnOpen must serve it.
func (s *Server) MarkLameDuck() { s.lameDuck.Store(true) }
