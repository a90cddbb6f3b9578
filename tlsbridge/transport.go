package tlsbridge

import (
	"net"
	"sync"
	"time"
)

// errWouldBlock is what the transport's Read returns after the handshake when
// every fed byte has been handed to crypto/tls. It is a net.Error with
// Temporary() == true: (*tls.Conn).readRecordOrCCS does not latch such errors
// (conn.go: `if e, ok := err.(net.Error); !ok || !e.Temporary() {
// c.in.setErrorLocked(err) }`), so the partial record stays in tls.Conn's
// rawInput and the next Read resumes it. It is a package-level pointer so that
// returning it never allocates.
var errWouldBlock net.Error = &wouldBlockError{}

type wouldBlockError struct{}

func (*wouldBlockError) Error() string { return "tlsbridge: would block" }

// Timeout reports false: nothing timed out, the loop simply has no more bytes.
func (*wouldBlockError) Timeout() bool { return false }

// Temporary reports true, which is the whole point: see errWouldBlock.
func (*wouldBlockError) Temporary() bool { return true }

// maxIdleCap is the capacity above which a drained buffer is dropped rather
// than kept for reuse, so that one burst does not pin memory on an idle
// connection.
const maxIdleCap = 64 << 10

// transport is the net.Conn under the tls.Conn. It never touches a socket: its
// Read takes ciphertext handed over by the event loop, its Write appends
// ciphertext to the output buffer that only the loop flushes to the socket.
//
// Ownership: fields under mu are shared by the loop, the handshake goroutine
// and Close (any goroutine). feed is owned by the loop and only used after the
// handshake, inside ReadPlain.
type transport struct {
	mu   sync.Mutex
	cond *sync.Cond // signalled when in grows or reads are closed; uses mu; nil after the handshake

	// Guarded by mu.
	in          []byte // copied ciphertext not yet read by crypto/tls
	inOff       int    // read position in in
	out         []byte // ciphertext waiting for the loop to flush
	handshaking bool   // Read blocks on cond instead of returning errWouldBlock
	readClosed  bool   // Read fails with net.ErrClosed (timeout or Close)
	closed      bool   // Close was called: Write fails too, buffers released

	// Owned by the loop; set by ReadPlain for the duration of one call.
	feed []byte

	wake   func() // Config.Wake; called without mu held
	local  net.Addr
	remote net.Addr
}

var _ net.Conn = (*transport)(nil)

// Read implements net.Conn for crypto/tls. During the handshake it blocks until
// the loop has fed ciphertext or reads were closed; afterwards it returns what
// was fed (first the copied leftovers, then ReadPlain's slice) and then
// errWouldBlock.
func (t *transport) Read(p []byte) (int, error) {
	t.mu.Lock()
	for {
		if t.readClosed {
			t.mu.Unlock()
			return 0, net.ErrClosed
		}
		if t.inOff < len(t.in) {
			n := copy(p, t.in[t.inOff:])
			t.inOff += n
			if t.inOff == len(t.in) {
				t.resetInLocked()
			}
			t.mu.Unlock()
			return n, nil
		}
		if !t.handshaking {
			break
		}
		t.cond.Wait()
	}
	t.mu.Unlock()
	if len(t.feed) > 0 {
		n := copy(p, t.feed)
		t.feed = t.feed[n:]
		return n, nil
	}
	return 0, errWouldBlock
}

// resetInLocked empties in after it was read completely, dropping it when a
// burst made it large.
func (t *transport) resetInLocked() {
	t.inOff = 0
	if cap(t.in) > maxIdleCap {
		t.in = nil
	} else {
		t.in = t.in[:0]
	}
}

// appendIn copies ciphertext into in (p is only valid during the caller's
// callback) and wakes a handshake blocked in Read. It fails with ErrBufferFull
// beyond limit bytes and with net.ErrClosed after Close.
func (t *transport) appendIn(p []byte, limit int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return net.ErrClosed
	}
	if len(t.in)-t.inOff+len(p) > limit {
		return ErrBufferFull
	}
	if t.inOff > 0 && t.inOff == len(t.in) {
		t.resetInLocked()
	}
	t.in = append(t.in, p...)
	t.broadcastLocked()
	return nil
}

// endHandshake switches Read from blocking to "would block" and lets go of
// the handshake's input buffer if the handshake read all of it.
func (t *transport) endHandshake() {
	t.mu.Lock()
	t.handshaking = false
	t.broadcastLocked()
	t.cond = nil // nobody waits any more
	if t.inOff == len(t.in) {
		t.in, t.inOff = nil, 0
	}
	t.mu.Unlock()
}

// shrink drops empty buffers.
func (t *transport) shrink() {
	t.mu.Lock()
	if t.inOff == len(t.in) {
		t.in, t.inOff = nil, 0
	}
	if len(t.out) == 0 {
		t.out = nil
	}
	t.mu.Unlock()
}

// Write implements net.Conn for crypto/tls. crypto/tls reuses the buffer it
// passes in (outBufPool, sendBuf), so Write copies. During the handshake the
// first bytes into an empty buffer ask the loop for a flush; later bytes ride
// on that same wake-up. After the handshake only the loop writes, and it
// flushes when its callback ends, so no wake-up is needed.
func (t *transport) Write(p []byte) (int, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return 0, net.ErrClosed
	}
	wake := t.handshaking && len(t.out) == 0 && len(p) > 0
	t.out = append(t.out, p...)
	t.mu.Unlock()
	if wake && t.wake != nil {
		t.wake()
	}
	return len(p), nil
}

// Close implements net.Conn. crypto/tls calls it when the handshake context
// ends (context.AfterFunc in handshakeContext); it fails reads and wakes a
// blocked Read, but leaves pending output (an alert) for the loop to flush.
func (t *transport) Close() error {
	t.mu.Lock()
	t.readClosed = true
	t.broadcastLocked()
	t.mu.Unlock()
	return nil
}

// release is the bridge's Close: reads and writes fail and buffers go.
func (t *transport) release() {
	t.mu.Lock()
	t.readClosed = true
	t.closed = true
	t.in, t.inOff, t.out = nil, 0, nil
	t.broadcastLocked()
	t.mu.Unlock()
}

// broadcastLocked wakes the handshake goroutine's waits, if it still may wait.
func (t *transport) broadcastLocked() {
	if t.cond != nil {
		t.cond.Broadcast()
	}
}

func (t *transport) LocalAddr() net.Addr {
	if t.local == nil {
		return bridgeAddr{}
	}
	return t.local
}

func (t *transport) RemoteAddr() net.Addr {
	if t.remote == nil {
		return bridgeAddr{}
	}
	return t.remote
}

// Deadlines are the loop's business (and the handshake context's); crypto/tls
// only sets a write deadline around close_notify, which cannot block here.
func (t *transport) SetDeadline(time.Time) error      { return nil }
func (t *transport) SetReadDeadline(time.Time) error  { return nil }
func (t *transport) SetWriteDeadline(time.Time) error { return nil }

// bridgeAddr stands in for an address the caller did not give, so that code
// calling RemoteAddr().String() (GetCertificate hooks, loggers) never panics.
type bridgeAddr struct{}

func (bridgeAddr) Network() string { return "tlsbridge" }
func (bridgeAddr) String() string  { return "tlsbridge" }
