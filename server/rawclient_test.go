package server_test

// A raw WebSocket client for the end-to-end tests: it writes hand-crafted
// frames (gobwas/ws low-level API) over net.Conn or tls.Conn and sees every
// frame the server sends, control frames included.

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

// ---------------------------------------------------------------------------
// raw client

// rawClient speaks WebSocket by hand, so tests can put any byte on the wire
// and see every frame the server sends, control frames included.
type rawClient struct {
	conn net.Conn
	tcp  *net.TCPConn
	br   *bufio.Reader
	resp *http.Response

	wmu sync.Mutex // serialises writes from several goroutines
}

type dialConfig struct {
	// protocol is the Sec-WebSocket-Protocol value; noProtocol omits it.
	protocol   string
	noProtocol bool
	// tls overrides the client TLS configuration.
	tls *tls.Config
	// extra is written in the same Write as the upgrade request.
	extra []byte
	// rcvBuf sets SO_RCVBUF before connecting (0: system default).
	rcvBuf int
	// localIP is the source address to dial from (a loopback address such
	// as 127.0.0.2); empty lets the kernel choose.
	localIP string
	// preface is written first, before TLS and the upgrade (a PROXY
	// protocol header), split into writes of prefaceChunk bytes when that
	// is set.
	preface      []byte
	prefaceChunk int
	// headers are added to the upgrade request ("X-Forwarded-For: ...").
	headers []string
}

// dialTransport opens TCP (and TLS in TLS mode, handshake done).
func (ts *testServer) dialTransport(cfg dialConfig) (net.Conn, *net.TCPConn, error) {
	d := net.Dialer{Timeout: shortWait}
	if cfg.localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.localIP)}
	}
	if cfg.rcvBuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, cfg.rcvBuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.Dial("tcp", ts.addr)
	if err != nil {
		return nil, nil, err
	}
	tcp := c.(*net.TCPConn)
	if err := writeChunked(c, cfg.preface, cfg.prefaceChunk); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("write preface: %w", err)
	}
	if !ts.tls {
		return c, tcp, nil
	}
	tc := cfg.tls
	if tc == nil {
		tc = clientTLSConfig(ts.t)
	}
	conn := tls.Client(c, tc)
	_ = conn.SetDeadline(time.Now().Add(shortWait))
	if err := conn.Handshake(); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("tls handshake: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, tcp, nil
}

// writeChunked writes p in writes of chunk bytes (whole when chunk is 0),
// with TCP_NODELAY so that each is its own segment.
func writeChunked(c net.Conn, p []byte, chunk int) error {
	if chunk <= 0 {
		chunk = len(p)
	}
	for len(p) > 0 {
		n := min(chunk, len(p))
		if _, err := c.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if len(p) > 0 {
			time.Sleep(time.Millisecond) // pacing a dribble, not waiting on a condition
		}
	}
	return nil
}

func newWSKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// dialUpgrade connects, sends the upgrade request and reads the response,
// whatever its status. The caller checks resp.
func (ts *testServer) dialUpgrade(cfg dialConfig) (*rawClient, error) {
	conn, tcp, err := ts.dialTransport(cfg)
	if err != nil {
		return nil, err
	}
	var extra, drop []string
	if cfg.protocol != "" || cfg.noProtocol {
		drop = []string{"Sec-WebSocket-Protocol"}
	}
	if cfg.protocol != "" && !cfg.noProtocol {
		extra = []string{"Sec-WebSocket-Protocol: " + cfg.protocol}
	}
	extra = append(extra, cfg.headers...)
	key := newWSKey()
	req := []byte(mlestest.UpgradeRequest(ts.addr, key, extra, drop...))
	_ = conn.SetDeadline(time.Now().Add(shortWait))
	if _, err := conn.Write(append(req, cfg.extra...)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("write upgrade: %w", err)
	}
	c := &rawClient{conn: conn, tcp: tcp, br: bufio.NewReaderSize(conn, 64<<10)}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read upgrade response: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	c.resp = resp
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if got, want := resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(key); got != want {
			conn.Close()
			return nil, fmt.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
		}
	}
	return c, nil
}

// upgraded returns a raw client past a successful 101 (header not sent).
func (ts *testServer) upgraded(t testing.TB, cfg dialConfig) *rawClient {
	t.Helper()
	c, err := ts.dialUpgrade(cfg)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	t.Cleanup(func() { c.conn.Close() })
	if c.resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(c.resp.Body, 512))
		t.Fatalf("upgrade status %d (%q), want 101", c.resp.StatusCode, body)
	}
	if got := c.resp.Header.Get("Sec-WebSocket-Protocol"); got != subprotocol {
		t.Fatalf("101 Sec-WebSocket-Protocol %q, want %q", got, subprotocol)
	}
	return c
}

// join upgrades and sends the header frame {"uid":uid,"channel":channel}
// (plus auth when given). The protocol has no join acknowledgement: use
// waitMembers or a message round trip to know the join took effect.
func (ts *testServer) join(t testing.TB, uid, channel string, auth ...string) *rawClient {
	t.Helper()
	c := ts.upgraded(t, dialConfig{})
	if err := c.send(ws.OpText, headerJSON(uid, channel, auth...)); err != nil {
		t.Fatalf("send header: %v", err)
	}
	return c
}

// joinErr is join for goroutines: no t.Fatal, the caller closes the conn.
func (ts *testServer) joinErr(uid, channel string, cfg dialConfig) (*rawClient, error) {
	c, err := ts.dialUpgrade(cfg)
	if err != nil {
		return nil, err
	}
	if c.resp.StatusCode != http.StatusSwitchingProtocols {
		c.conn.Close()
		return nil, fmt.Errorf("upgrade status %d", c.resp.StatusCode)
	}
	if err := c.send(ws.OpText, headerJSON(uid, channel)); err != nil {
		c.conn.Close()
		return nil, err
	}
	return c, nil
}

// joinSeq joins and waits until the server counts the membership, so that
// joins happen in a known order (and history holds their frames in it).
func (ts *testServer) joinSeq(t testing.TB, uid, channel string, auth ...string) *rawClient {
	t.Helper()
	before := ts.Stats().Members
	c := ts.join(t, uid, channel, auth...)
	ts.waitMembers(t, before+1)
	return c
}

// waitMembers waits until the server counts n joined memberships.
func (ts *testServer) waitMembers(t testing.TB, n int64) {
	t.Helper()
	poll.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := ts.Stats().Members; got != n {
			return fmt.Errorf("Stats().Members = %d, want %d", got, n)
		}
		return nil
	})
}

// frameBytes encodes f, masking it with a random key when mask is set.
func frameBytes(f ws.Frame, mask bool) []byte {
	if mask {
		f = ws.MaskFrame(f)
	}
	b, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return b
}

// maskedFrame builds a masked frame with explicit fin, rsv and opcode.
func maskedFrame(op ws.OpCode, fin bool, rsv byte, p []byte) []byte {
	f := ws.NewFrame(op, fin, p)
	f.Header.Rsv = rsv
	return frameBytes(f, true)
}

func (c *rawClient) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := c.conn.Write(b)
	return err
}

// send writes one masked, final frame.
func (c *rawClient) send(op ws.OpCode, p []byte) error {
	return c.write(maskedFrame(op, true, 0, p))
}

func (c *rawClient) mustSend(t testing.TB, op ws.OpCode, p []byte) {
	t.Helper()
	if err := c.send(op, p); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// nextFrame reads one frame of any kind. Server frames must be unmasked
// (RFC 6455 section 5.1); a masked one is an error.
func (c *rawClient) nextFrame(d time.Duration) (ws.Frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		return ws.Frame{}, errors.New("server sent a masked frame")
	}
	if h.Length > 64<<20 {
		return ws.Frame{}, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return ws.Frame{}, err
	}
	return ws.Frame{Header: h, Payload: p}, nil
}

// closeError reports a close frame where a data message was expected.
type closeError struct {
	code   ws.StatusCode
	reason string
}

func (e *closeError) Error() string {
	return fmt.Sprintf("close frame %d %q", e.code, e.reason)
}

// message is one delivered data message.
type message struct {
	op   ws.OpCode
	data []byte
}

// recv returns the next data frame, skipping server pings and pongs. A
// close frame comes back as *closeError. Every delivery must be one final
// frame with a data opcode (SPEC 1.3: reassembled before delivery).
func (c *rawClient) recv(d time.Duration) (message, error) {
	deadline := time.Now().Add(d)
	for {
		f, err := c.nextFrame(time.Until(deadline))
		if err != nil {
			return message{}, err
		}
		switch f.Header.OpCode {
		case ws.OpPing, ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			return message{}, &closeError{code, reason}
		case ws.OpText, ws.OpBinary:
			if !f.Header.Fin {
				return message{}, errors.New("delivery is fragmented (fin=0)")
			}
			if f.Header.Rsv != 0 {
				return message{}, fmt.Errorf("delivery with rsv bits %03b", f.Header.Rsv)
			}
			return message{f.Header.OpCode, f.Payload}, nil
		default:
			return message{}, fmt.Errorf("unexpected frame opcode %v", f.Header.OpCode)
		}
	}
}

func (c *rawClient) mustRecv(t testing.TB) message {
	t.Helper()
	m, err := c.recv(shortWait)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return m
}

// expectMsg asserts the next delivery is exactly (op, data).
func (c *rawClient) expectMsg(t testing.TB, op ws.OpCode, data string) {
	t.Helper()
	m := c.mustRecv(t)
	if m.op != op || string(m.data) != data {
		t.Fatalf("got %v %q, want %v %q", m.op, trunc(m.data), op, trunc([]byte(data)))
	}
}

func trunc(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + fmt.Sprintf("...(%d bytes)", len(b))
	}
	return string(b)
}

// awaitClose reads until a close frame (data and pings before it are
// skipped) and returns its code and reason; then it checks the server
// closes the TCP connection.
func (c *rawClient) awaitClose(d time.Duration) (ws.StatusCode, string, error) {
	deadline := time.Now().Add(d)
	for {
		f, err := c.nextFrame(time.Until(deadline))
		if err != nil {
			return 0, "", fmt.Errorf("no close frame: %w", err)
		}
		if f.Header.OpCode != ws.OpClose {
			continue
		}
		if len(f.Payload) == 1 {
			return 0, "", errors.New("close frame with a 1-byte payload")
		}
		code, reason := ws.ParseCloseFrameData(f.Payload)
		// After its close frame the server must close the socket.
		if err := c.awaitEOF(time.Until(deadline) + time.Second); err != nil {
			return code, reason, err
		}
		return code, reason, nil
	}
}

// awaitEOF waits until the server closes the connection; frames are skipped.
func (c *rawClient) awaitEOF(d time.Duration) error {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.br)
	if err == nil || isReset(err) {
		return nil
	}
	return fmt.Errorf("connection not closed by the server: %w", err)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

// expectClose asserts the server sends close code within d and then
// closes the connection. It returns the reason.
func (c *rawClient) expectClose(t testing.TB, code ws.StatusCode, d time.Duration) string {
	t.Helper()
	got, reason, err := c.awaitClose(d)
	if err != nil && got == 0 {
		t.Fatalf("want close %d: %v", code, err)
	}
	if got != code {
		t.Fatalf("close code %d (%q), want %d", got, reason, code)
	}
	if err != nil {
		t.Fatalf("after close %d: %v", code, err)
	}
	return reason
}

func (c *rawClient) Close() error { return c.conn.Close() }
