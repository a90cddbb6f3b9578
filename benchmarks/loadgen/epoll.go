package main

import (
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
)

// epollReader reads many plain connections from one goroutine: one
// epoll_wait returns every ready socket and each gets exactly one read(2).
//
// Why not one goroutine per connection: with Go's edge-triggered netpoller a
// reader that drained its socket must read again until EAGAIN before it may
// park, so every wake-up costs two reads plus a goroutine switch, and on one
// core the scheduler polls the network only when it runs dry (or every 10 ms
// from sysmon), which adds queueing to the latency being measured. Measured
// here with 1000 members: the goroutine readers used 5.8 us of CPU per
// wake-up. Level-triggered epoll needs one read per wake-up and takes the
// receive time right after it.
//
// The connections stay owned by their net.Conn for writes (publishing, pongs)
// and for closing; run must have returned before any of them is closed, so
// that a file descriptor is never read after it was reused.
type epollReader struct {
	epfd  int
	conns map[int32]*epollConn
}

type epollConn struct {
	s     *session
	fd    int
	onMsg func(message, int64)
	done  func(code int, err error) // called once when the server ends it
}

func newEpollReader() (*epollReader, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &epollReader{epfd: fd, conns: map[int32]*epollConn{}}, nil
}

// add registers a plain TCP session; it must not be called while run runs.
func (e *epollReader) add(s *session, onMsg func(message, int64), done func(int, error)) error {
	tc, ok := s.nc.(*net.TCPConn)
	if !ok {
		return errors.New("loadgen: epoll reader needs a plain TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(e.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return err
	}
	e.conns[int32(fd)] = &epollConn{s: s, fd: fd, onMsg: onMsg, done: done}
	return nil
}

// run reads until stop is set (checked at least every 10 ms).
func (e *epollReader) run(clk clock, stop *atomic.Bool) {
	// The thread blocks in epoll_wait; keep it to itself so publishers'
	// timers run on the other P (main raises GOMAXPROCS to at least 2).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer syscall.Close(e.epfd)
	events := make([]syscall.EpollEvent, 256)
	for !stop.Load() {
		n, err := syscall.EpollWait(e.epfd, events, 10)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		for i := range n {
			c := e.conns[events[i].Fd]
			if c == nil {
				continue
			}
			if code, err, ended := c.readOnce(clk); ended {
				syscall.EpollCtl(e.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
				delete(e.conns, events[i].Fd)
				c.done(code, err)
			}
		}
	}
}

// readOnce does one read and handles every complete frame; ended reports a
// close frame, end of stream or read error.
func (c *epollConn) readOnce(clk clock) (code int, err error, ended bool) {
	fr := &c.s.fr
	fr.compact()
	n, rerr := syscall.Read(c.fd, fr.buf[fr.w:])
	if rerr == syscall.EAGAIN || rerr == syscall.EINTR {
		return 0, nil, false
	}
	if rerr != nil {
		return 0, rerr, true
	}
	if n == 0 {
		return 0, errors.New("end of stream without a close frame"), true
	}
	fr.w += n
	now := clk.now()
	for {
		op, _, p, ok := fr.next()
		if !ok {
			return 0, nil, false
		}
		closed, werr := c.s.handleFrame(op, p, now, c.onMsg)
		if closed {
			return closeCode(p), nil, true
		}
		if werr != nil {
			return 0, werr, true
		}
	}
}
