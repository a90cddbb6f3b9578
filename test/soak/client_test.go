//go:build soak

package soak_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/poll"
)

// subprotocol is the one the server requires (SPEC 1.1).
const subprotocol = "mles-websocket"

// Every published message starts with the publisher's id, its sequence
// number and its send time; the rest is a pattern derived from id and
// sequence, so a receiver checks size and content as well as order.
const msgHeader = 20 // uint32 publisher id, uint64 seq, int64 unix nanoseconds, big-endian

// channel is one soak channel: its publisher and what it sent.
type channel struct {
	name    string
	id      uint32 // publisher id, carried in every message
	rate    int    // messages per second
	minSize int    // payload bytes, inclusive
	maxSize int

	sent  atomic.Uint64 // last sequence whose write returned; 0 before the first
	final atomic.Uint64 // sent when the publisher stopped; 0 while it runs
}

// mix is splitmix64's finaliser: a cheap, well-spread hash.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// size returns the payload length of message seq of the channel.
func (ch *channel) size(seq uint64) int {
	span := uint64(ch.maxSize - ch.minSize + 1)
	return ch.minSize + int(mix(uint64(ch.id)<<40^seq)%span)
}

// payload builds message seq, sent now, into buf (reused by the publisher).
func (ch *channel) payload(buf []byte, seq uint64) []byte {
	n := ch.size(seq)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	binary.BigEndian.PutUint32(buf, ch.id)
	binary.BigEndian.PutUint64(buf[4:], seq)
	binary.BigEndian.PutUint64(buf[12:], uint64(time.Now().UnixNano()))
	b := byte(seq*31 + uint64(ch.id))
	for i := msgHeader; i < n; i++ {
		buf[i] = b + byte(i)
	}
	return buf
}

// check parses and verifies a received message of the channel: it returns
// the sequence and the send time.
func (ch *channel) check(p []byte) (uint64, time.Time, error) {
	var sent time.Time
	if len(p) < msgHeader {
		return 0, sent, fmt.Errorf("message of %d bytes, shorter than its header", len(p))
	}
	if id := binary.BigEndian.Uint32(p); id != ch.id {
		return 0, sent, fmt.Errorf("message of publisher %d on channel of publisher %d", id, ch.id)
	}
	seq := binary.BigEndian.Uint64(p[4:])
	sent = time.Unix(0, int64(binary.BigEndian.Uint64(p[12:])))
	if want := ch.size(seq); len(p) != want {
		return seq, sent, fmt.Errorf("seq %d: %d bytes, want %d", seq, len(p), want)
	}
	b := byte(seq*31 + uint64(ch.id))
	for i := msgHeader; i < len(p); i++ {
		if p[i] != b+byte(i) {
			return seq, sent, fmt.Errorf("seq %d: payload corrupt at byte %d", seq, i)
		}
	}
	return seq, sent, nil
}

// kind is a session's role, which decides what it verifies.
type kind uint8

const (
	kindPublisher kind = iota // sends; must never receive a data message (no echo)
	kindHealthy               // joined for the whole run
	kindStorm                 // closed and reconnected by every storm
	kindChurn                 // joins, stays 1-20 s, leaves
	kindSlow                  // stops reading until the server closes it
	kindProbe                 // the end-of-run checks
)

var kindNames = [...]string{"publisher", "healthy", "storm", "churn", "slow", "probe"}

func (k kind) String() string { return kindNames[k] }

// session is one connection of a soak member. The reader goroutine owns
// the verification state; other goroutines read it through the atomics.
type session struct {
	uid  string
	ch   *channel
	kind kind
	ws   *websocket.Conn
	conn *countedConn
	r    *run

	joinSent   uint64 // ch.sent just before the header went out
	joinedAt   time.Time
	resumeFrom uint64 // storm members: the last seq of the previous session

	first  atomic.Uint64 // first seq received (history included); 0: none yet
	last   atomic.Uint64 // last seq received and verified
	got    atomic.Uint64 // binary messages received
	texts  atomic.Uint64 // text frames (stored join frames of the history)
	broken atomic.Bool   // a verification failed: counted once, the rest noise

	done   chan struct{} // closed when the reader returned
	endErr error         // the read error that ended it; valid after done
}

// header is the Mles join frame (SPEC 1.2), without auth: the server runs
// without MLES_KEY.
type header struct {
	UID     string `json:"uid"`
	Channel string `json:"channel"`
}

// countedConn counts the client's open TCP connections: the number the
// server's descriptors are compared with.
type countedConn struct {
	net.Conn
	r    *run
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.r.held.Add(-1) })
	return err
}

func (r *run) countConn(c net.Conn) *countedConn {
	n := r.held.Add(1)
	for {
		p := r.peak.Load()
		if n <= p || r.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return &countedConn{Conn: c, r: r}
}

// joinOpts are the optional parts of a join.
type joinOpts struct {
	rcvBuf int // SO_RCVBUF set before connect; 0 leaves the kernel default
}

// joinRetry is join with up to two more attempts after a failed one,
// counted in r.retries: under a CPU-starved test process the server's
// handshake timeout (10 s) may close a dial that is merely slow. A third
// failure is the caller's to report.
func (r *run) joinRetry(ctx context.Context, uid string, ch *channel, k kind, o joinOpts) (*session, error) {
	for attempt := 1; ; attempt++ {
		s, err := r.join(ctx, uid, ch, k, o)
		if err == nil || attempt == 3 || ctx.Err() != nil {
			if err != nil {
				err = fmt.Errorf("%w (attempt %d)", err, attempt)
			}
			return s, err
		}
		r.retries.Add(1)
	}
}

// join dials the server, checks the subprotocol, samples the channel's
// publisher and sends the header. It does not start the reader.
func (r *run) join(ctx context.Context, uid string, ch *channel, k kind, o joinOpts) (*session, error) {
	s := &session{uid: uid, ch: ch, kind: k, r: r, done: make(chan struct{})}
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{Timeout: 30 * time.Second}
			if o.rcvBuf > 0 {
				nd.Control = func(_, _ string, rc syscall.RawConn) error {
					var serr error
					err := rc.Control(func(fd uintptr) {
						serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvBuf)
					})
					return errors.Join(err, serr)
				}
			}
			r.dialing.Add(1)
			c, err := nd.DialContext(ctx, network, addr)
			if err == nil {
				s.conn = r.countConn(c)
			}
			r.dialing.Add(-1)
			if err != nil {
				return nil, err
			}
			return s.conn, nil
		},
		TLSClientConfig:  &tls.Config{InsecureSkipVerify: true}, // the server's ephemeral self-signed certificate
		Subprotocols:     []string{subprotocol},
		HandshakeTimeout: 30 * time.Second,
		ReadBufferSize:   8 << 10,
		WriteBufferSize:  8 << 10,
	}
	ws, resp, err := d.DialContext(ctx, r.url, nil)
	if err != nil {
		if s.conn != nil {
			s.conn.Close()
		}
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %s)", uid, err, resp.Status)
		}
		return nil, fmt.Errorf("dial %s: %w", uid, err)
	}
	s.ws = ws
	// gorilla's own pong gets a 1 s write deadline, and a timed-out TLS
	// write breaks the connection for good: a test process starved for a
	// second by other work on the machine would lose healthy members.
	ws.SetPingHandler(func(data string) error {
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(ioWait))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	if p := ws.Subprotocol(); p != subprotocol {
		ws.Close()
		return nil, fmt.Errorf("dial %s: subprotocol %q, want %q", uid, p, subprotocol)
	}
	hdr, err := json.Marshal(header{UID: uid, Channel: ch.name})
	if err != nil {
		ws.Close()
		return nil, err
	}
	s.joinSent = ch.sent.Load()
	s.joinedAt = time.Now()
	_ = ws.SetWriteDeadline(time.Now().Add(ioWait))
	err = ws.WriteMessage(websocket.TextMessage, hdr)
	_ = ws.SetWriteDeadline(time.Time{})
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("header of %s: %w", uid, err)
	}
	r.joins.Add(1)
	r.track(s)
	if err := r.rootCtx.Err(); err != nil { // cleanup has begun: it may not see s
		r.untrack(s)
		ws.Close()
		return nil, err
	}
	return s, nil
}

// read runs the session's reader until the connection ends: every message
// is verified as it arrives. It closes s.done.
func (s *session) read() {
	defer s.r.readers.Done()
	defer close(s.done)
	defer s.r.untrack(s)
	if s.kind == kindSlow {
		// Reading the backlog after the server's close: bounded, so a
		// server that did not close it cannot keep the test reading.
		_ = s.ws.SetReadDeadline(time.Now().Add(2 * ioWait))
	}
	for {
		mt, p, err := s.ws.ReadMessage()
		if err != nil {
			s.endErr = err
			s.ws.Close()
			return
		}
		switch mt {
		case websocket.TextMessage:
			s.onText(p)
		case websocket.BinaryMessage:
			s.onBinary(p)
		}
	}
}

// start starts the reader goroutine.
func (s *session) start() {
	s.r.readers.Add(1)
	go s.read()
}

// onText checks a stored join frame of the history (SPEC 1.3, 1.4): the
// channel's, never the member's own, and re-encoded without auth.
func (s *session) onText(p []byte) {
	s.texts.Add(1)
	var h map[string]any
	if err := json.Unmarshal(p, &h); err != nil {
		s.fail("text frame %.60q is not a join frame: %v", p, err)
		return
	}
	uid, _ := h["uid"].(string)
	chName, _ := h["channel"].(string)
	switch {
	case len(h) != 2 || uid == "":
		s.fail("text frame %.80q: want exactly uid and channel", p)
	case chName != s.ch.name:
		s.fail("join frame of channel %q delivered on %q", chName, s.ch.name)
	case uid == s.uid:
		s.fail("own join frame delivered back")
	}
}

// onBinary is the loss and order check: after the first message (history
// or live), every message of the channel's publisher is the previous
// sequence plus one. The history is the channel's last messages in order,
// followed without interleaving by live traffic (SPEC 1.3), so the rule
// holds across the replay boundary too.
func (s *session) onBinary(p []byte) {
	if s.kind == kindPublisher {
		s.fail("publisher received a data message of %d bytes (echo or foreign traffic)", len(p))
		return
	}
	seq, sent, err := s.ch.check(p)
	if err != nil {
		s.fail("%v", err)
		return
	}
	s.got.Add(1)
	s.r.delivered.Add(1)
	if seq > s.joinSent && s.kind != kindSlow { // live: sent after the join; a slow one reads its backlog late
		s.r.latency.add(time.Since(sent))
	}
	last := s.last.Load()
	if last == 0 {
		s.first.Store(seq)
		s.last.Store(seq)
		return
	}
	if want := last + 1; seq != want {
		if seq > want {
			s.r.lost.Add(seq - want)
			s.fail("loss: expected seq %d, got %d (%d missing)", want, seq, seq-want)
		} else {
			s.r.reordered.Add(1)
			s.fail("reorder or duplicate: expected seq %d, got %d", want, seq)
		}
	}
	s.last.Store(seq)
}

// fail records a verification failure of the session, naming channel and
// receiver. A broken session reports its first failure only.
func (s *session) fail(format string, args ...any) {
	if s.broken.Swap(true) {
		return
	}
	s.r.fails.add("%s %s on %s: %s", s.kind, s.uid, s.ch.name, fmt.Sprintf(format, args...))
}

// leave closes the session: with a close frame and the echo awaited
// (graceful), or by dropping the TCP connection (abrupt).
func (s *session) leave(graceful bool) error {
	if graceful {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		if err := s.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(ioWait)); err != nil {
			s.ws.Close()
			<-s.done
			return fmt.Errorf("close frame: %w", err)
		}
		select {
		case <-s.done:
		case <-time.After(ioWait):
			s.ws.Close()
			<-s.done
			return fmt.Errorf("no close echo within %v", ioWait)
		}
		s.ws.Close()
		if !websocket.IsCloseError(s.endErr, websocket.CloseNormalClosure) {
			return fmt.Errorf("close echo: %v", s.endErr)
		}
		return nil
	}
	s.conn.Close() // TCP only: no close frame, no TLS close_notify
	<-s.done
	s.ws.Close()
	return nil
}

// caughtUp waits until every session has received at least target(s).
func caughtUp(ss []*session, d time.Duration, target func(*session) uint64) error {
	return poll.Until(context.Background(), d, 20*time.Millisecond, func() error {
		for _, s := range ss {
			select {
			case <-s.done:
				return fmt.Errorf("%s %s on %s: connection ended at seq %d: %v",
					s.kind, s.uid, s.ch.name, s.last.Load(), s.endErr)
			default:
			}
			if l, want := s.last.Load(), target(s); l < want {
				return fmt.Errorf("%s %s on %s: at seq %d, want %d", s.kind, s.uid, s.ch.name, l, want)
			}
		}
		return nil
	})
}

// checkJoin verifies that a session got everything published after its
// header went out: its first message is at most one past what the
// publisher had sent then (the rest came from the history).
func (s *session) checkJoin() {
	if f := s.first.Load(); f == 0 || f > s.joinSent+1 {
		s.fail("first seq %d, but the publisher was at %d when the header went out: messages after the join are missing",
			f, s.joinSent)
	}
}

// failures collects what went wrong in any goroutine; the test goroutine
// reports them. The first one also ends the traffic phase early.
type failures struct {
	mu    sync.Mutex
	n     int
	list  []string
	first chan struct{}
	once  sync.Once
}

const failuresKept = 40

func newFailures() *failures { return &failures{first: make(chan struct{})} }

func (f *failures) add(format string, args ...any) {
	f.addAtEnd(format, args...)
	f.once.Do(func() { close(f.first) })
}

// addAtEnd records a failure that does not end the traffic phase: one that
// says nothing about the traffic that follows it.
func (f *failures) addAtEnd(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	f.mu.Lock()
	f.n++
	if len(f.list) < failuresKept {
		f.list = append(f.list, msg)
	}
	f.mu.Unlock()
}

func (f *failures) snapshot() (int, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n, append([]string(nil), f.list...)
}

// closeCode describes how a session's connection ended.
func closeCode(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Code == websocket.CloseAbnormalClosure { // gorilla's own code for an end without close frame
			return fmt.Sprintf("no close frame (1006 %s)", ce.Text)
		}
		if ce.Text != "" {
			return fmt.Sprintf("%d %q", ce.Code, ce.Text)
		}
		return fmt.Sprint(ce.Code)
	}
	if err == nil {
		return "open"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s) > 60 {
		s = s[i+2:]
	}
	return "no close frame (" + s + ")"
}

// latencies is a histogram of delivery latencies (publisher's write to
// receiver's read) in power-of-two millisecond buckets: bucket i counts
// latencies below 2^i ms. It tells a server stall from a lost message.
type latencies struct {
	buckets [20]atomic.Uint64
	max     atomic.Int64
}

func (l *latencies) add(d time.Duration) {
	i := 0
	for ms := d.Milliseconds(); ms >= 1<<i && i < len(l.buckets)-1; i++ {
	}
	l.buckets[i].Add(1)
	for {
		m := l.max.Load()
		if int64(d) <= m || l.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// quantile returns the upper bound of the bucket holding quantile q.
func (l *latencies) quantile(q float64) time.Duration {
	var n uint64
	for i := range l.buckets {
		n += l.buckets[i].Load()
	}
	if n == 0 {
		return 0
	}
	want := uint64(q * float64(n))
	var c uint64
	for i := range l.buckets {
		c += l.buckets[i].Load()
		if c > want || c == n {
			return time.Duration(1<<i) * time.Millisecond
		}
	}
	return time.Duration(l.max.Load())
}
