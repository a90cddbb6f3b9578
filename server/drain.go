package server

// Lame-duck drain and shutdown (SPEC 5), as nats-server does it: the
// server stops being ready and stops accepting at once, then closes its
// connections with 1001 spread over a drain time, so that clients do not
// all reconnect in the same instant; each member first gets what was
// accepted before its turn. Shutdown then stops the event loops.

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// drainStep is the interval between two rounds of closes in a spread
// drain.
const drainStep = 50 * time.Millisecond

// Ready reports whether the server accepts connections: started, not
// draining and not stopped (/readyz).
func (s *Server) Ready() bool {
	select {
	case <-s.booted:
	default:
		return false
	}
	select {
	case <-s.stopped:
		return false
	default:
	}
	return !s.lameDuck.Load()
}

// Drain is the lame-duck drain: Ready turns false and new connections are
// refused at once (the listening sockets are closed, so with ReusePort
// another process on the port takes them all), then the connections are
// closed with 1001, spread evenly over spread; members keep exchanging
// messages until their turn, and each first receives what was accepted
// before it. Drain returns once every connection is gone, or DrainTimeout
// after the spread, or when ctx ends. The event loops keep running:
// Shutdown stops them. Drain runs once; later calls return its result.
func (s *Server) Drain(ctx context.Context, spread time.Duration) error {
	s.drainOnce.Do(func() { s.drainErr = s.drain(ctx, max(spread, 0)) })
	return s.drainErr
}

func (s *Server) drain(ctx context.Context, spread time.Duration) error {
	select {
	case <-s.booted:
	case <-s.stopped:
		return nil
	}
	// One deadline for the whole drain: members get three quarters of
	// DrainTimeout after the spread to receive their backlog, closing
	// connections the rest to flush.
	start := time.Now()
	end := start.Add(spread)
	s.shutdownData.Store(end.Add(s.opts.DrainTimeout * 3 / 4).UnixNano())
	s.shutdownEnd.Store(end.Add(s.opts.DrainTimeout).UnixNano())
	// The listeners close first: a connection the kernel queued before
	// that is accepted and served like any other (OnOpen admits it), and
	// the drain closes it in its turn.
	n, err := s.closeListeners()
	s.lameDuck.Store(true)
	s.log.Info("draining", "conns", s.conns.Load(), "spread", spread, "listeners closed", n, "err", err)
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req"); s.opts.ReusePort && string(b) == "0\n" {
		s.log.Warn("net.ipv4.tcp_migrate_req is 0: connections queued at the closed listener were reset; set it to 1 so that the other process takes them")
	}
	if s.http != nil {
		_ = s.http.ln.Close() // the HTTP side takes no new connection
	}
	dctx, cancel := context.WithDeadline(ctx, end.Add(s.opts.DrainTimeout))
	defer cancel()

	// The spread: in each round every loop closes its share of what it
	// still holds, so that round k of m has closed about k/m of them.
	rounds := max(int(spread/drainStep), 1)
	for k := 1; k < rounds && s.conns.Load() > 0; k++ {
		select {
		case <-dctx.Done():
			return dctx.Err()
		case <-time.After(time.Until(start.Add(spread * time.Duration(k) / time.Duration(rounds)))):
		}
		s.onLoops(func(l *loop) { l.closeShare(k, rounds) })
	}
	if s.conns.Load() > 0 { // nothing left: no reason to wait out the spread
		select {
		case <-dctx.Done():
			return dctx.Err()
		case <-time.After(time.Until(end)):
		}
	}

	// The last round: nothing more is read from members, and once every
	// loop has run a task after draining was set, no callback that
	// started before it is still publishing: the heads the members drain
	// to are final.
	s.draining.Store(true)
	if !s.eachLoop(dctx, func(*loop) {}) {
		return dctx.Err()
	}
	s.onLoops((*loop).closeAll)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.conns.Load() > 0 {
		select {
		case <-dctx.Done():
			s.log.Warn("drain timeout: closing the remaining connections", "conns", s.conns.Load())
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// onLoops runs f on every loop in a task, without waiting for it.
func (s *Server) onLoops(f func(*loop)) {
	for _, l := range *s.loops.Load() {
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			f(l)
			return nil
		}))
	}
}

// eachLoop runs f on every loop in a task and waits until all have run
// it, or ctx ends; a loop whose engine is stopping runs nothing more and
// counts as done. It reports whether every loop ran f.
func (s *Server) eachLoop(ctx context.Context, f func(*loop)) bool {
	loops := *s.loops.Load()
	done := make(chan struct{}, len(loops)) // a task late past ctx does not block
	for _, l := range loops {
		if l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			f(l)
			done <- struct{}{}
			return nil
		})) != nil {
			done <- struct{}{}
		}
	}
	for range loops {
		select {
		case <-done:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// Shutdown refuses new connections, closes every WebSocket with 1001 "server
// shutdown" at once (after Drain, none is left), waits for the connections
// to go (at most DrainTimeout, or until ctx ends) and stops the event
// loops. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		select {
		case <-s.booted:
		case <-s.stopped:
			s.closeBus(ctx)
			return
		}
		dctx, cancel := context.WithTimeout(ctx, s.opts.DrainTimeout)
		defer cancel()
		_ = s.Drain(dctx, 0)
		if err := s.eng.Stop(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			s.shutdownErr = err
		}
		<-s.stopped
		if s.http != nil {
			_ = s.http.srv.Close() // handlers still running see their connections closed
		}
		s.closeBus(ctx)
		s.reg.releaseAll()
		if s.store != nil {
			if err := s.store.Close(); err != nil && s.shutdownErr == nil { // flushes what was accepted
				s.shutdownErr = err
			}
		}
	})
	return s.shutdownErr
}

// closeBus publishes what the loops queued for NATS (for up to
// busCloseWait) and closes the connection.
func (s *Server) closeBus(ctx context.Context) {
	if s.bus == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, busCloseWait)
	defer cancel()
	s.bus.close(ctx)
}

// busCloseWait bounds how long a shutdown waits for NATS to take what the
// loops queued.
const busCloseWait = 5 * time.Second

// closeShare is round k of m of a spread drain on the loop: it starts
// closing connections (members after what they are owed, with 1001) until
// k/m of those it held at the first round are closing. One still in its
// TLS or HTTP handshake is left to finish it (it was accepted before the
// listeners closed: a reset now would fail a client that did nothing
// wrong); it is closed with 1001 in a later round, or in the last.
func (l *loop) closeShare(k, m int) {
	l.tick()
	if !l.drain.started {
		l.drain.started = true
		for c := range l.conns {
			if c.state != stClosing && c.flags&fShutdown == 0 {
				l.drain.total++
			}
		}
	}
	for c := range l.conns {
		if l.drain.closed >= l.drain.total*k/m {
			break
		}
		if c.state == stClosing || c.flags&fShutdown != 0 || c.state < stHeader {
			continue
		}
		l.drain.closed++
		c.shutdown()
	}
	l.runPending()
}

// shutdown closes c for a drain: a member gets what it is owed first.
func (c *conn) shutdown() {
	if c.state == stJoined {
		c.flags |= fShutdown
		c.drain()
		return
	}
	c.closeWith(closeShutdown)
}

// closeListeners closes the engine's listening sockets (one per loop with
// ReusePort) while gnet runs on: gnet has no call for it, so each is found
// in /proc/self/fd by its address and replaced under its descriptor
// number by a stand-in (dup3). The kernel then drops the listening
// socket from the port (and from a SO_REUSEPORT group, whose other members
// get every new connection) and from gnet's epoll; gnet closes the stand-in
// when it stops. It returns how many it closed.
func (s *Server) closeListeners() (int, error) {
	want, ok := s.addr.(*net.TCPAddr)
	if !ok {
		return 0, errors.New("listen address is not TCP")
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	closed := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil || !sameAddr(sa, want) {
			continue
		}
		stand, err := standIn()
		if err != nil {
			return closed, err
		}
		err = unix.Dup3(stand, fd, unix.O_CLOEXEC)
		_ = unix.Close(stand)
		if err != nil {
			return closed, err
		}
		closed++
	}
	return closed, nil
}

// standIn returns the socket that takes a closed listener's descriptor
// number: non-blocking and listening on an ephemeral loopback port that
// nobody knows. gnet may have taken the listener's readiness from epoll
// just before the swap; its accept on the stand-in then finds nothing
// (EAGAIN) rather than failing (EINVAL from a socket that does not listen),
// which gnet takes for a broken listener and stops the whole engine.
func standIn() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err == nil {
		err = unix.Listen(fd, 1)
	}
	if err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// sameAddr reports whether sa is the listen address a.
func sameAddr(sa unix.Sockaddr, a *net.TCPAddr) bool {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port == a.Port && net.IP(sa.Addr[:]).Equal(a.IP)
	case *unix.SockaddrInet6:
		return sa.Port == a.Port && net.IP(sa.Addr[:]).Equal(a.IP)
	}
	return false
}
