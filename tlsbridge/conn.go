package tlsbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// State is where a Conn is in its life. It only moves forward:
// Handshaking -> Established | Failed, and any state -> Closed.
type State uint8

const (
	// Handshaking: the handshake goroutine owns the tls.Conn; the loop may
	// only feed ciphertext and flush output.
	Handshaking State = iota
	// Established: the handshake succeeded and the loop owns the tls.Conn.
	Established
	// Failed: the handshake failed (HandshakeErr says why). Output may hold an
	// alert worth flushing before the socket is closed.
	Failed
	// Closed: Close was called. Every method is a no-op or fails with
	// net.ErrClosed.
	Closed
)

var stateNames = [...]string{"handshaking", "established", "failed", "closed"}

// String returns the lower-case name of the state, for logs.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// DefaultMaxBuffered is the default Config.MaxBuffered.
const DefaultMaxBuffered = 1 << 20

// Config configures one Conn. TLS is required; every other field has a usable
// zero value.
type Config struct {
	// TLS is the crypto/tls configuration, shared by all connections (see
	// ServerConfig). Required.
	TLS *tls.Config
	// Wake asks the owning loop to come back to this connection: called from
	// the handshake goroutine (never with a lock held) when output appears in
	// an empty buffer, and once when the handshake ends either way, but not
	// after Close. It must be safe from any goroutine and should only signal
	// the loop, since loop methods may not run on the handshake goroutine
	// (gnet: func() { _ = c.Wake(nil) }). Nil means the loop polls.
	Wake func()
	// Timeout bounds the handshake, from Start. Zero means no timeout (the
	// server's own deadline still applies). How many handshakes run at once
	// is the caller's to bound: the server starts a Conn only once the whole
	// ClientHello is in (HelloComplete) and it holds a handshake slot.
	Timeout time.Duration
	// MaxBuffered bounds the ciphertext (bytes) copied while the handshake
	// goroutine is behind; beyond it ReadPlain and Feed fail with
	// ErrBufferFull. Zero means DefaultMaxBuffered.
	MaxBuffered int
	// LocalAddr and RemoteAddr are what the tls.Conn (and so
	// tls.ClientHelloInfo.Conn) report. Nil gives a placeholder address.
	LocalAddr, RemoteAddr net.Addr
}

// Conn is one TLS connection driven by an event loop: the loop feeds it
// ciphertext read from the socket, receives plaintext from ReadPlain, encrypts
// with Write and flushes the ciphertext that AppendOutput (or PeekOutput and
// DiscardOutput) hands back. Only the loop writes to the socket, so records
// stay in order.
//
// The handshake runs in a short-lived goroutine started by Start, because
// crypto/tls latches any error returned during the handshake and so cannot be
// driven with "would block". After it, the loop drives the same tls.Conn
// inline.
//
// Goroutines: "loop" methods must be called from the one goroutine that owns
// the connection (never concurrently with each other); "any goroutine"
// methods are safe from anywhere.
//
// A Conn lives as long as its socket, so it keeps only what the connection
// needs after the handshake (216 bytes on amd64): the parts of Config used later,
// not a copy of it, and the handshake's context and wait condition only while
// the handshake runs.
type Conn struct {
	tc *tls.Conn
	tr transport // its mu also guards cancel

	timeout     time.Duration // Config.Timeout
	maxBuffered int           // Config.MaxBuffered
	isClient    bool

	state   atomic.Uint32 // State
	started atomic.Bool
	exited  atomic.Bool // the handshake goroutine returned (tests wait on it)
	hsErr   error       // written by the handshake goroutine before state leaves Handshaking

	cancel context.CancelFunc // guarded by tr.mu; cancels the handshake context, nil after it
}

// NewConn returns a server-side Conn. Nothing runs until Start.
func NewConn(cfg Config) *Conn {
	c := newConn(cfg)
	c.tc = tls.Server(&c.tr, cfg.TLS)
	return c
}

// NewClientConn returns a client-side Conn, for connections the server dials
// (peers). cfg.TLS must set ServerName or InsecureSkipVerify as for
// tls.Client. The handshake goroutine starts by writing the ClientHello.
func NewClientConn(cfg Config) *Conn {
	c := newConn(cfg)
	c.isClient = true
	c.tc = tls.Client(&c.tr, cfg.TLS)
	return c
}

func newConn(cfg Config) *Conn {
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = DefaultMaxBuffered
	}
	c := &Conn{timeout: cfg.Timeout, maxBuffered: cfg.MaxBuffered}
	c.tr.cond = sync.NewCond(&c.tr.mu) // dropped when the handshake ends
	c.tr.handshaking = true
	c.tr.wake = cfg.Wake
	c.tr.local = cfg.LocalAddr
	c.tr.remote = cfg.RemoteAddr
	return c
}

// Start launches the handshake goroutine. Call it once, from the loop (in
// OnOpen); later calls do nothing. When the goroutine finishes, State is
// Established or Failed (or Closed if Close came first) and Wake was called.
func (c *Conn) Start() {
	if !c.started.CompareAndSwap(false, true) {
		return
	}
	c.tr.mu.Lock()
	if c.State() == Closed {
		c.tr.mu.Unlock()
		c.exited.Store(true)
		return
	}
	var ctx context.Context
	if c.timeout > 0 {
		ctx, c.cancel = context.WithTimeout(context.Background(), c.timeout)
	} else {
		ctx, c.cancel = context.WithCancel(context.Background())
	}
	c.tr.mu.Unlock()
	go c.handshake(ctx)
}

// handshake is the body of the handshake goroutine.
func (c *Conn) handshake(ctx context.Context) {
	defer c.exited.Store(true)
	// A timeout or Close must also wake a Read blocked on the transport's
	// condition; closing reads does.
	stop := context.AfterFunc(ctx, func() { _ = c.tr.Close() })

	err := c.tc.HandshakeContext(ctx)
	if !stop() && err == nil {
		// The context ended just as the handshake did: reads are closed.
		err = ctx.Err()
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = ErrHandshakeTimeout
	}
	next := Established
	if err != nil {
		c.hsErr = err
		next = Failed
	}
	c.tr.mu.Lock()
	c.cancel() // release the timer
	// Drop the context too: the cancel func holds it, its done channel and
	// the AfterFunc registration (about 360 B) for the life of the connection.
	c.cancel = nil
	c.tr.mu.Unlock()
	c.tr.endHandshake()
	if c.state.CompareAndSwap(uint32(Handshaking), uint32(next)) && c.tr.wake != nil {
		c.tr.wake()
	}
}

// State returns the connection's state. Any goroutine.
func (c *Conn) State() State { return State(c.state.Load()) }

// HandshakeErr returns why the handshake failed, once State is Failed; nil
// before. Any goroutine. See IsPlainHTTP.
func (c *Conn) HandshakeErr() error {
	if c.State() == Failed {
		return c.hsErr
	}
	return nil
}

// ConnectionState returns the negotiated parameters (version, ALPN, SNI).
// Loop, once Established.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if c.State() != Established {
		return tls.ConnectionState{}
	}
	return c.tc.ConnectionState()
}

// Feed copies ciphertext for the tls.Conn to read later; p may be reused once
// Feed returns. During the handshake it wakes the handshake goroutine. Loop.
// ReadPlain does this itself; Feed is for callers that want to consume input
// without decrypting it yet.
func (c *Conn) Feed(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	return c.tr.appendIn(p, c.maxBuffered)
}

// ReadPlain hands ciphertext read from the socket to the connection and
// decrypts what it can. Loop.
//
// While Handshaking it copies ciphertext for the handshake goroutine and
// returns nil without calling fn. Once Established it decrypts every complete
// record (including the rest of a record begun in an earlier call, and
// records that arrived with the handshake's last flight), calling fn with each
// chunk of plaintext, in order, until no complete record is left.
//
// ciphertext is consumed entirely on every return: after the handshake it is
// read in place (no copy) and any partial record is kept inside the tls.Conn,
// so the caller may discard all of it (gnet: Next(-1) or Discard). The chunk
// given to fn lives in plain and is valid only until fn returns. plain is the
// caller's scratch buffer; 16 KiB (one maximal record) avoids splitting.
//
// Call ReadPlain(nil, ...) whenever the loop is woken and State is
// Established, since plaintext may be waiting from the handshake. Flush output
// after every call: reading can queue records (a TLS 1.3 KeyUpdate reply, an
// alert).
//
// It returns io.EOF after the peer's close_notify, the error of fn (the
// ciphertext not yet read is then kept, copied, for the next call), or a
// crypto/tls error; after an error other than fn's, close the connection.
// Steady state costs one small allocation per record inside crypto/tls
// (readFromUntil's atLeastReader), none here.
func (c *Conn) ReadPlain(ciphertext, plain []byte, fn func(p []byte) error) error {
	switch c.State() {
	case Handshaking:
		return c.Feed(ciphertext)
	case Failed:
		return c.hsErr
	case Closed:
		return net.ErrClosed
	}
	if len(plain) == 0 {
		return io.ErrShortBuffer
	}
	c.tr.feed = ciphertext
	for {
		n, err := c.tc.Read(plain)
		if n > 0 {
			if ferr := fn(plain[:n]); ferr != nil {
				c.keepFeed()
				return ferr
			}
		}
		if err != nil {
			c.tr.feed = nil
			if err == errWouldBlock {
				return nil
			}
			return err
		}
	}
}

// keepFeed copies the unread rest of ReadPlain's ciphertext so that it
// survives the caller's buffer.
func (c *Conn) keepFeed() {
	rest := c.tr.feed
	c.tr.feed = nil
	if len(rest) > 0 {
		// Bounded by the caller's read, so ignore MaxBuffered.
		_ = c.tr.appendIn(rest, int(^uint(0)>>1))
	}
}

// Write encrypts p into the output buffer, as many records as needed (crypto/tls
// sizes early records to fit a TCP segment, then 16 KiB). Loop, once
// Established. It never blocks; the loop flushes afterwards.
func (c *Conn) Write(p []byte) (int, error) {
	switch c.State() {
	case Established:
		return c.tc.Write(p)
	case Closed:
		return 0, net.ErrClosed
	}
	return 0, ErrNotEstablished
}

// AppendOutput appends the pending ciphertext to dst, empties the output
// buffer and returns the extended slice; write it to the socket. Any
// goroutine, normally the loop at the end of every callback. It allocates
// only when dst is too small. A drained buffer above 64 KiB is dropped.
func (c *Conn) AppendOutput(dst []byte) []byte {
	c.tr.mu.Lock()
	dst = append(dst, c.tr.out...)
	c.dropOutLocked(len(c.tr.out))
	c.tr.mu.Unlock()
	return dst
}

// PeekOutput returns the pending ciphertext without copying: the copy-free
// alternative to AppendOutput for a loop that hands it straight to the
// socket's Write (gnet copies what it cannot send). Loop. The slice stays
// valid and unchanged until the loop's next DiscardOutput, AppendOutput,
// Write, CloseNotify or ReadPlain, even while the handshake goroutine appends.
func (c *Conn) PeekOutput() []byte {
	c.tr.mu.Lock()
	out := c.tr.out
	c.tr.mu.Unlock()
	return out
}

// DiscardOutput removes the first n bytes of pending ciphertext, after the
// loop wrote them. Loop.
func (c *Conn) DiscardOutput(n int) {
	c.tr.mu.Lock()
	c.dropOutLocked(n)
	c.tr.mu.Unlock()
}

func (c *Conn) dropOutLocked(n int) {
	out := c.tr.out
	if n >= len(out) {
		if cap(out) > maxIdleCap {
			c.tr.out = nil
		} else {
			c.tr.out = out[:0]
		}
		return
	}
	// Moving the rest down is safe: the loop is done with the bytes it peeked.
	c.tr.out = out[:copy(out, out[n:])]
}

// Shrink drops the bridge's empty buffers, for an idle sweep: a drained
// buffer is otherwise kept for reuse up to 64 KiB. (crypto/tls keeps its own
// input buffer, sized to the largest record received, for the life of the
// connection.) Loop.
func (c *Conn) Shrink() { c.tr.shrink() }

// Pending returns the number of ciphertext bytes waiting to be flushed. Any
// goroutine.
func (c *Conn) Pending() int {
	c.tr.mu.Lock()
	n := len(c.tr.out)
	c.tr.mu.Unlock()
	return n
}

// CloseNotify queues a close_notify alert (RFC 8446 section 6.1); later
// Writes fail. Flush, then close the socket. Loop, once Established;
// otherwise it does nothing.
func (c *Conn) CloseNotify() {
	if c.State() == Established {
		_ = c.tc.CloseWrite()
	}
}

// Close releases the buffers, fails every later call and wakes a handshake
// goroutine blocked waiting for input, which then exits without calling Wake.
// Any goroutine; idempotent. It sends nothing: use CloseNotify first for a
// graceful close.
func (c *Conn) Close() {
	for {
		s := c.state.Load()
		if State(s) == Closed {
			return
		}
		if c.state.CompareAndSwap(s, uint32(Closed)) {
			break
		}
	}
	c.tr.mu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.tr.mu.Unlock()
	c.tr.release()
}
