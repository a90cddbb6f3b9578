package server

// The HTTP side (SPEC 3): a request on the WebSocket port that is not an
// upgrade goes to Options.HTTP, a net/http handler, over an in-memory
// connection (httpConn) served by one net/http.Server off the event loops.
// The loop only moves bytes: what the client sends (decrypted in TLS mode)
// is fed to the connection's input, and what the handler writes is handed
// back to the loop in a task that writes it out (encrypted in TLS mode).
// The handler's writes wait while more than httpOutMax bytes are queued or
// unsent, so a large file to a slow client costs about that much memory.

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/mles/mles/codec"
)

// httpOutMax bounds a connection's output that the handler has written and
// the client has not taken yet (queued for the loop plus unsent in gnet).
const httpOutMax = 256 << 10

// httpInMax bounds the input waiting for the handler; a client that sends
// more before the handler reads (a large upload to a handler that does
// not read it) is closed.
const httpInMax = 1 << 20

// httpIdleTimeout closes a kept-alive HTTP connection without a request
// (a variable for the tests only).
var httpIdleTimeout = 60 * time.Second

// httpSide is the server's net/http.Server and the listener that hands it
// the in-memory connections.
type httpSide struct {
	srv *http.Server
	ln  *memListener
}

func newHTTPSide(s *Server) *httpSide {
	ln := &memListener{
		ch:   make(chan net.Conn, 1024),
		done: make(chan struct{}),
	}
	srv := &http.Server{
		Handler:           s.opts.HTTP,
		ReadHeaderTimeout: s.opts.HandshakeTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    codec.MaxHeaderBlock,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelInfo),
	}
	return &httpSide{srv: srv, ln: ln}
}

// memListener is the net.Listener of the HTTP side: the loops offer it
// connections without blocking, the net/http.Server accepts them.
type memListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (ln *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-ln.ch:
		return c, nil
	case <-ln.done:
		return nil, net.ErrClosed
	}
}

func (ln *memListener) Close() error {
	ln.once.Do(func() { close(ln.done) })
	return nil
}

func (ln *memListener) Addr() net.Addr { return ln.addr }

// offer hands c to the server, or reports that its queue is full.
func (ln *memListener) offer(c net.Conn) bool {
	select {
	case <-ln.done:
		return false
	default:
	}
	select {
	case ln.ch <- c:
		return true
	default:
		return false
	}
}

// startHTTP turns c into an HTTP connection: p (the request read so far,
// header block and any body bytes) becomes its first input.
func (c *conn) startHTTP(p []byte) {
	h := &httpConn{
		c:      c,
		local:  c.gc.LocalAddr(),
		remote: c.gc.RemoteAddr(),
	}
	if c.client != nil { // from the PROXY header
		h.remote = net.TCPAddrFromAddrPort(*c.client)
	}
	h.cond.L = &h.mu
	h.flushRun = func(context.Context) error {
		c.l.tick()
		h.flushOnLoop()
		c.l.runPending()
		return nil
	}
	h.in = append(h.in, p...)
	if !c.s.http.ln.offer(h) {
		c.httpError(503, "HTTP side busy")
		return
	}
	c.hc = h
	c.state = stHTTP
	c.endHandshake() // the HTTP side has its own timeouts
}

// onHTTP feeds the client's bytes to its HTTP connection.
func (c *conn) onHTTP(p []byte) {
	if !c.hc.feed(p) {
		c.s.log.Info("http input over the limit", "conn", c.id, "remote", c.remote())
		c.hc.fail()
		c.closeWith(closeHTTP)
	}
}

// httpConn is the in-memory net.Conn of one HTTP connection. The handler's
// goroutine reads and writes it; the loop feeds its input and takes its
// output. Everything below mu is shared between the two.
type httpConn struct {
	c        *conn // touched on the loop only
	local    net.Addr
	remote   net.Addr
	flushRun gnet.RunnableFunc

	mu     sync.Mutex
	cond   sync.Cond
	in     []byte // received, not read by the handler yet
	out    []byte // written by the handler, not taken by the loop yet
	spare  []byte // the loop's last out buffer, for reuse
	unsent int    // gnet's unsent output after the loop's last write
	queued bool   // flushRun is queued on the loop
	closed bool   // Close called: no more reads or writes
	gone   bool   // the connection ended on the loop side
	rdl    time.Time
	wdl    time.Time
	rtimer *time.Timer
	wtimer *time.Timer
}

// feed adds p to the input, on the loop. It reports false when the input
// is over httpInMax.
func (h *httpConn) feed(p []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.in)+len(p) > httpInMax {
		return false
	}
	h.in = append(h.in, p...)
	h.cond.Broadcast()
	return true
}

// fail ends the connection on the loop side: reads return EOF, writes fail.
func (h *httpConn) fail() {
	h.mu.Lock()
	h.gone = true
	h.stopTimers()
	h.cond.Broadcast()
	h.mu.Unlock()
}

func (h *httpConn) Read(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.in) == 0 {
		switch {
		case h.closed:
			return 0, net.ErrClosed
		case h.gone:
			return 0, io.EOF
		case !h.rdl.IsZero() && !time.Now().Before(h.rdl):
			return 0, os.ErrDeadlineExceeded
		}
		h.cond.Wait()
	}
	n := copy(p, h.in)
	h.in = h.in[n:]
	if len(h.in) == 0 {
		h.in = nil // a quiet kept-alive connection holds no input buffer
	}
	return n, nil
}

func (h *httpConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	for {
		var err error
		switch {
		case h.closed:
			err = net.ErrClosed
		case h.gone:
			err = io.ErrClosedPipe
		case !h.wdl.IsZero() && !time.Now().Before(h.wdl):
			err = os.ErrDeadlineExceeded
		}
		if err != nil {
			h.mu.Unlock()
			return 0, err
		}
		if len(h.out)+h.unsent < httpOutMax {
			break
		}
		h.cond.Wait()
	}
	h.out = append(h.out, p...)
	kick := h.claimWake()
	h.mu.Unlock()
	if kick {
		h.wake()
	}
	return len(p), nil
}

// claimWake reports whether the caller is to queue flushRun on the loop:
// once until the loop has run it. mu is held.
func (h *httpConn) claimWake() bool {
	if h.queued {
		return false
	}
	h.queued = true
	return true
}

// wake queues flushRun on the loop, outside mu: the loop takes mu, and
// Execute writes to the loop's eventfd.
func (h *httpConn) wake() {
	if err := h.c.l.el.Execute(context.Background(), h.flushRun); err != nil {
		h.mu.Lock()
		h.gone = true // engine stopping
		h.cond.Broadcast()
		h.mu.Unlock()
	}
}

// Close is the handler's end of the connection: what it wrote goes out,
// then the loop closes the socket.
func (h *httpConn) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.stopTimers()
	h.cond.Broadcast()
	kick := !h.gone && h.claimWake()
	h.mu.Unlock()
	if kick {
		h.wake()
	}
	return nil
}

// flushOnLoop writes the handler's output, on the loop, and closes the
// connection once the handler has closed it and its output is out.
func (h *httpConn) flushOnLoop() {
	c := h.c
	h.mu.Lock()
	out := h.out
	h.out = h.spare[:0]
	h.queued = false
	closed := h.closed
	h.mu.Unlock()
	if c.dead || c.state != stHTTP {
		return
	}
	if len(out) > 0 {
		c.send(out)
		c.flush()
	}
	h.mu.Lock()
	h.spare = out[:0]
	h.mu.Unlock()
	if closed {
		c.closeWith(closeHTTPDone)
		return
	}
	h.pace()
}

// pace records gnet's unsent output for the writers, on the loop, and
// waits on the loop's waiting list while it is over httpOutMax.
func (h *httpConn) pace() {
	c := h.c
	if c.dead {
		return
	}
	unsent := c.gc.OutboundBuffered()
	h.mu.Lock()
	h.unsent = unsent
	h.cond.Broadcast()
	h.mu.Unlock()
	if unsent >= httpOutMax {
		c.l.wait(c)
	}
}

func (h *httpConn) stopTimers() {
	if h.rtimer != nil {
		h.rtimer.Stop()
	}
	if h.wtimer != nil {
		h.wtimer.Stop()
	}
}

func (h *httpConn) LocalAddr() net.Addr  { return h.local }
func (h *httpConn) RemoteAddr() net.Addr { return h.remote }

func (h *httpConn) SetDeadline(t time.Time) error {
	_ = h.SetReadDeadline(t)
	return h.SetWriteDeadline(t)
}

func (h *httpConn) SetReadDeadline(t time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rdl = t
	h.rtimer = h.arm(h.rtimer, t)
	return nil
}

func (h *httpConn) SetWriteDeadline(t time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.wdl = t
	h.wtimer = h.arm(h.wtimer, t)
	return nil
}

// arm sets timer tm to wake the waiters at t (none for a zero t); mu is
// held.
func (h *httpConn) arm(tm *time.Timer, t time.Time) *time.Timer {
	if tm != nil {
		tm.Stop()
	}
	h.cond.Broadcast() // a waiter rechecks a deadline moved to the past
	if t.IsZero() {
		return tm
	}
	d := time.Until(t)
	if tm == nil {
		return time.AfterFunc(d, func() {
			h.mu.Lock()
			h.cond.Broadcast()
			h.mu.Unlock()
		})
	}
	tm.Reset(d)
	return tm
}
